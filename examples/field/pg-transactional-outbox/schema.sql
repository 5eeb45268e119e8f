-- Schema of the pg-transactional-outbox field example (dualcheck applies it
-- with --schema to the run's fresh database, before the service starts).
--
-- The outbox part is what pg-transactional-outbox 0.5.7 generates itself:
-- DatabaseSetup in node_modules/pg-transactional-outbox/src/setup/database-setup.ts
-- (dropAndCreateTable, createPollingFunction, setupPollingIndexes,
-- setupReplicationCore, setupReplicationSlot), called with schema "public",
-- table "outbox", function "next_outbox_messages", publication
-- "pg_transactional_outbox_pub" and slot "pg_transactional_outbox_slot" (the
-- names of the README's producer example). It holds the set-up of both
-- listeners, so one file serves OUTBOX_STRATEGY=replication and =polling.
--
-- Adapted to dualcheck, nothing else:
-- * roles: the README advises a listener role (with REPLICATION) and a handler
--   role, and DatabaseSetup emits GRANTs and `ALTER ROLE <listener> WITH
--   REPLICATION` for them. dualcheck's database user is a superuser and the
--   service connects with it for everything (DATABASE_URL), so the roles, the
--   GRANTs and the ALTER ROLE are left out.
-- * transactions: dualcheck sends this file as one multi-statement query,
--   which PostgreSQL runs as ONE implicit transaction. The library's script
--   says the slot must be created "in a separate database transaction or it
--   will fail" (a transaction that has written cannot create a logical slot),
--   so the DDL is wrapped in BEGIN/COMMIT and the slot statements come after.
-- * the slot name is server-wide: two runs of this example at the same time
--   on one PostgreSQL server share "pg_transactional_outbox_slot" (the
--   library's set-up drops an existing slot of that name first; an active one
--   cannot be dropped, and then this file fails).

BEGIN;

-- The business table: `--committed-sql "SELECT id FROM orders"`.
CREATE TABLE IF NOT EXISTS public.orders (
    id bigint PRIMARY KEY,
    customer_id text NOT NULL,
    line_no bigint NOT NULL
);

-- ### DatabaseSetup.dropAndCreateTable (outbox)

CREATE SCHEMA IF NOT EXISTS public;

DROP TABLE IF EXISTS public.outbox CASCADE;
CREATE TABLE public.outbox (
  id uuid PRIMARY KEY,
  aggregate_type TEXT NOT NULL,
  aggregate_id TEXT NOT NULL,
  message_type TEXT NOT NULL,
  segment TEXT,
  concurrency TEXT NOT NULL DEFAULT 'sequential',
  payload JSONB NOT NULL,
  metadata JSONB,
  locked_until TIMESTAMPTZ NOT NULL DEFAULT to_timestamp(0),
  created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  processed_at TIMESTAMPTZ,
  abandoned_at TIMESTAMPTZ,
  started_attempts smallint NOT NULL DEFAULT 0,
  finished_attempts smallint NOT NULL DEFAULT 0
);
ALTER TABLE public.outbox ADD CONSTRAINT outbox_concurrency_check
  CHECK (concurrency IN ('sequential', 'parallel'));

-- ### DatabaseSetup.createPollingFunction (polling listener)

DROP FUNCTION IF EXISTS public.next_outbox_messages(integer, integer);
CREATE OR REPLACE FUNCTION public.next_outbox_messages(
  max_size integer, lock_ms integer)
    RETURNS SETOF public.outbox
    LANGUAGE 'plpgsql'

AS $BODY$
DECLARE
  loop_row public.outbox%ROWTYPE;
  message_row public.outbox%ROWTYPE;
  ids uuid[] := '{}';
BEGIN

  IF max_size < 1 THEN
    RAISE EXCEPTION 'The max_size for the next messages batch must be at least one.' using errcode = 'MAXNR';
  END IF;

  -- get (only) the oldest message of every segment but only return it if it is not locked
  FOR loop_row IN
    SELECT * FROM public.outbox m WHERE m.id in (SELECT DISTINCT ON (segment) id
      FROM public.outbox
      WHERE processed_at IS NULL AND abandoned_at IS NULL
      ORDER BY segment, created_at) order by created_at
  LOOP
    BEGIN
      EXIT WHEN cardinality(ids) >= max_size;

      SELECT *
        INTO message_row
        FROM public.outbox
        WHERE id = loop_row.id
        FOR NO KEY UPDATE NOWAIT; -- throw/catch error when locked

      IF message_row.locked_until > NOW() THEN
        CONTINUE;
      END IF;

      ids := array_append(ids, message_row.id);
    EXCEPTION
      WHEN lock_not_available THEN
        CONTINUE;
      WHEN serialization_failure THEN
        CONTINUE;
    END;
  END LOOP;

  -- if max_size not reached: get the oldest parallelizable message independent of segment
  IF cardinality(ids) < max_size THEN
    FOR loop_row IN
      SELECT * FROM public.outbox
        WHERE concurrency = 'parallel' AND processed_at IS NULL AND abandoned_at IS NULL AND locked_until < NOW()
          AND id NOT IN (SELECT UNNEST(ids))
        order by created_at
    LOOP
      BEGIN
        EXIT WHEN cardinality(ids) >= max_size;

        SELECT *
          INTO message_row
          FROM public.outbox
          WHERE id = loop_row.id
          FOR NO KEY UPDATE NOWAIT; -- throw/catch error when locked

        ids := array_append(ids, message_row.id);
      EXCEPTION
        WHEN lock_not_available THEN
          CONTINUE;
        WHEN serialization_failure THEN
          CONTINUE;
      END;
    END LOOP;
  END IF;

  -- set a short lock value so the the workers can each process a message
  IF cardinality(ids) > 0 THEN

    RETURN QUERY
      UPDATE public.outbox
        SET locked_until = clock_timestamp() + (lock_ms || ' milliseconds')::INTERVAL, started_attempts = started_attempts + 1
        WHERE ID = ANY(ids)
        RETURNING *;

  END IF;
END;
$BODY$;

-- ### DatabaseSetup.setupPollingIndexes (polling listener)

DROP INDEX IF EXISTS outbox_segment_idx;
CREATE INDEX outbox_segment_idx ON public.outbox (segment);
DROP INDEX IF EXISTS outbox_created_at_idx;
CREATE INDEX outbox_created_at_idx ON public.outbox (created_at);
DROP INDEX IF EXISTS outbox_processed_at_idx;
CREATE INDEX outbox_processed_at_idx ON public.outbox (processed_at);
DROP INDEX IF EXISTS outbox_abandoned_at_idx;
CREATE INDEX outbox_abandoned_at_idx ON public.outbox (abandoned_at);
DROP INDEX IF EXISTS outbox_locked_until_idx;
CREATE INDEX outbox_locked_until_idx ON public.outbox (locked_until);

-- ### DatabaseSetup.setupReplicationCore (replication listener), without
-- `ALTER ROLE ... WITH REPLICATION` (the user is a superuser)
DROP PUBLICATION IF EXISTS pg_transactional_outbox_pub;
CREATE PUBLICATION pg_transactional_outbox_pub FOR TABLE public.outbox WITH (publish = 'insert');

COMMIT;

-- ### DatabaseSetup.setupReplicationSlot (replication listener), after the
-- COMMIT above: its own transaction, which has written nothing.
SELECT pg_drop_replication_slot('pg_transactional_outbox_slot')
  FROM pg_replication_slots WHERE slot_name = 'pg_transactional_outbox_slot';

-- NOTE: This must be run in a separate database transaction or it will fail
SELECT pg_create_logical_replication_slot('pg_transactional_outbox_slot', 'pgoutput');
