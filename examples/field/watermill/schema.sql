-- The business table of the Watermill orders service (dualcheck creates it
-- with --schema). Watermill creates its own tables when the service starts
-- (InitializeSchema): "watermill_events_to_forward" (the outbox) and
-- "watermill_offsets_events_to_forward" (the Forwarder's position).
-- The committed-ops query is `SELECT id FROM orders`.
CREATE TABLE IF NOT EXISTS orders (
    id bigint PRIMARY KEY,
    customer_id text NOT NULL,
    line_no bigint NOT NULL
);
