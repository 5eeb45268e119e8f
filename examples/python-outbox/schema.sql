-- Tables of the Python outbox example (dualcheck creates them with --schema).
-- The business table: the committed-ops query is `SELECT op FROM orders`
-- (one row per event of an op: an order's lines).
CREATE TABLE IF NOT EXISTS orders (
    op bigint NOT NULL,
    idx int NOT NULL DEFAULT 0,
    PRIMARY KEY (op, idx),
    key text NOT NULL,
    seq bigint NOT NULL,
    payload text,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- The transactional outbox: one row per event, written in the business transaction.
CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_key_id ON outbox (key, id);
