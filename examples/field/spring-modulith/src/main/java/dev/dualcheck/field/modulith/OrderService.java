package dev.dualcheck.field.modulith;

import java.util.UUID;

import org.springframework.context.ApplicationEventPublisher;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.stereotype.Service;
import org.springframework.transaction.annotation.Transactional;

/**
 * The business transaction, as events.adoc ("Working with Application Events") shows it: a {@code @Transactional}
 * method changes state and publishes the event with Spring's {@link ApplicationEventPublisher}. The event
 * publication registry writes the {@code event_publication} row "as part of the original business transaction"
 * (section {@code publication-registry}); the Kafka externalizer runs after the commit.
 */
@Service
class OrderService {

	private final JdbcTemplate jdbc;
	private final ApplicationEventPublisher events;

	OrderService(JdbcTemplate jdbc, ApplicationEventPublisher events) {
		this.jdbc = jdbc;
		this.events = events;
	}

	/**
	 * Inserts the order and publishes {@link OrderPlaced} in one transaction; with {@code fail} both happen and the
	 * transaction is then rolled back ({@link RollbackRequested}).
	 *
	 * @return the event id.
	 * @throws BodyFailed when a statement of the transaction failed (so it was rolled back, never committed).
	 */
	@Transactional
	public UUID place(long id, String orderId, String customerId, long lineNo, boolean fail) {

		var eventId = UUID.randomUUID();

		try {
			jdbc.update("INSERT INTO orders (id, customer_id, line_no) VALUES (?, ?, ?)", id, customerId, lineNo);
			events.publishEvent(new OrderPlaced(eventId, orderId, customerId, lineNo));
		} catch (RuntimeException e) {
			throw new BodyFailed(e);
		}

		if (fail) {
			throw new RollbackRequested();
		}

		return eventId;
	}

	/** A statement inside the transaction failed: rolled back, not committed. */
	static class BodyFailed extends RuntimeException {
		BodyFailed(RuntimeException cause) {
			super(cause.getMessage(), cause);
		}
	}

	/** {@code "fail": true}: the order and the event were written, then rolled back on purpose. */
	static class RollbackRequested extends RuntimeException {
		RollbackRequested() {
			super("rollback requested", null, false, false);
		}
	}
}
