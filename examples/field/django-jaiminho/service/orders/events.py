"""The event publisher: a function decorated with jaiminho's @save_to_outbox
(README, "Getting Started", step 5) that sends one event to Kafka.

Called inside the order's transaction, the decorator does not send anything:
jaiminho stores the call (this function and its argument, serialized with
dill) and runs it later, when the transaction has committed
(publish-on-commit: right after COMMIT, in the request; keep-order: from the
events_relay command), with the argument it was given. The function must stay
at this module path (orders.events.publish_order_placed): the stored events
refer to it (README, "Non-retryable exceptions in detail").

It raises when Kafka did not acknowledge the record: jaiminho then keeps the
event for the relay to retry.
"""
import json
import threading

from confluent_kafka import KafkaException, Producer
from django.conf import settings

from jaiminho.send import save_to_outbox

# librdkafka gives up on a record after this long (its default is 5 minutes);
# flush waits a little longer, so the delivery report has arrived by then.
DELIVERY_TIMEOUT_MS = 10_000
FLUSH_TIMEOUT_S = 15.0

_producer = None
_producer_lock = threading.Lock()


def producer():
    """One producer per process (thread-safe), made on first use."""
    global _producer
    with _producer_lock:
        if _producer is None:
            _producer = Producer(
                {
                    "bootstrap.servers": settings.KAFKA_BOOTSTRAP,
                    "client.id": "orders-service",
                    "acks": "all",
                    "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                }
            )
        return _producer


@save_to_outbox
def publish_order_placed(event):
    """Sends {"type":"OrderPlaced","orderId",..,"customerId",..,"lineNo",..,"eventId",..}
    to the orders topic, key = customerId, header event-id = eventId, and
    waits for Kafka's acknowledgement (acks=all)."""
    report = {}

    def on_delivery(err, msg):
        report["error"] = err

    p = producer()
    p.produce(
        settings.ORDERS_TOPIC,
        key=event["customerId"].encode(),
        value=json.dumps(event).encode(),
        headers=[("event-id", event["eventId"].encode())],
        on_delivery=on_delivery,
    )
    p.flush(FLUSH_TIMEOUT_S)
    if "error" not in report:
        raise KafkaException(f"event {event['eventId']}: no delivery report within {FLUSH_TIMEOUT_S} s")
    if report["error"] is not None:
        raise KafkaException(report["error"])
