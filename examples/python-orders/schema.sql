-- Tables of the orders service (dualcheck creates them with --schema).
-- The client's `reference` is where dualcheck's op id travels (the request
-- template puts {op} there): the committed-ops query is
-- `SELECT reference::bigint FROM orders`.
CREATE TABLE IF NOT EXISTS orders (
    order_id uuid PRIMARY KEY,
    customer_id text NOT NULL,
    reference text NOT NULL UNIQUE,
    line_no integer NOT NULL,
    note text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The transactional outbox: one row per event, written in the order's
-- transaction, marked published once Kafka acknowledged it.
CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    aggregate_id text NOT NULL,
    payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (aggregate_id, id) WHERE published_at IS NULL;
