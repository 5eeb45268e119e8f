-- The business table of the Spring Modulith orders service (dualcheck creates
-- it with --schema). Spring Modulith creates its own table when the service
-- starts (spring.modulith.events.jdbc.schema-initialization.enabled=true, from
-- the schema file it ships, schemas/v2/schema-postgresql.sql):
-- event_publication (and event_publication_archive in the archive completion
-- mode). The committed-ops query is `SELECT id FROM orders`.
CREATE TABLE IF NOT EXISTS orders (
    id bigint PRIMARY KEY,
    customer_id text NOT NULL,
    line_no bigint NOT NULL
);
