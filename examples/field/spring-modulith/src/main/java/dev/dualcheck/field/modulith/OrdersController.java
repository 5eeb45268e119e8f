package dev.dualcheck.field.modulith;

import java.util.Map;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.transaction.CannotCreateTransactionException;
import org.springframework.transaction.TransactionSystemException;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RestController;

/**
 * {@code POST /orders} and {@code GET /health}.
 *
 * <p>Answers: 201 committed; 422 rolled back on request ({@code "fail": true}); 409 certainly not committed (a
 * statement failed inside the transaction, e.g. a duplicate id, or the transaction could not begin); 500 anything
 * else (the COMMIT failed or its outcome is unknown); 400 a malformed request.
 */
@RestController
class OrdersController {

	private static final Logger LOG = LoggerFactory.getLogger(OrdersController.class);

	private final OrderService orders;

	OrdersController(OrderService orders) {
		this.orders = orders;
	}

	record OrderRequest(String orderId, String customerId, Long lineNo, Boolean fail) {}

	@PostMapping("/orders")
	ResponseEntity<?> place(@RequestBody OrderRequest request) {

		if (request.orderId() == null || !request.orderId().matches("[0-9]{1,18}") || request.customerId() == null
				|| request.lineNo() == null) {
			return status(HttpStatus.BAD_REQUEST,
					"need orderId (a string of digits), customerId (a string), lineNo (an integer), fail (a boolean)");
		}

		var fail = Boolean.TRUE.equals(request.fail());

		try {

			var eventId = orders.place(Long.parseLong(request.orderId()), request.orderId(), request.customerId(),
					request.lineNo(), fail);

			return ResponseEntity.status(HttpStatus.CREATED)
					.body(Map.of("orderId", request.orderId(), "eventId", eventId.toString()));

		} catch (OrderService.RollbackRequested e) {
			return status(HttpStatus.UNPROCESSABLE_CONTENT, "rolled back on request");
		} catch (OrderService.BodyFailed | CannotCreateTransactionException e) {
			LOG.info("order {} not committed: {}", request.orderId(), e.getMessage());
			return status(HttpStatus.CONFLICT, "not committed: " + e.getMessage());
		} catch (TransactionSystemException e) {
			// The rollback after a failed body failed in turn: still never committed.
			if (e.getApplicationException() instanceof OrderService.RollbackRequested) {
				return status(HttpStatus.UNPROCESSABLE_CONTENT, "rolled back on request");
			}
			if (e.getApplicationException() instanceof OrderService.BodyFailed) {
				return status(HttpStatus.CONFLICT, "not committed: " + e.getMessage());
			}
			LOG.warn("order {}: outcome unknown", request.orderId(), e);
			return status(HttpStatus.INTERNAL_SERVER_ERROR, "outcome unknown: " + e.getMessage());
		} catch (RuntimeException e) {
			LOG.warn("order {}: outcome unknown", request.orderId(), e);
			return status(HttpStatus.INTERNAL_SERVER_ERROR, "outcome unknown: " + e.getMessage());
		}
	}

	@GetMapping("/health")
	ResponseEntity<String> health() {
		return ResponseEntity.ok("ok\n");
	}

	private static ResponseEntity<String> status(HttpStatus status, String message) {
		return ResponseEntity.status(status).body(message + "\n");
	}
}
