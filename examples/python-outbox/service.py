#!/usr/bin/env python3
"""A transactional-outbox service in Python, written the way a team would:
psycopg 3 for Postgres, confluent-kafka for Kafka, the standard library's
ThreadingHTTPServer for HTTP. It speaks dualcheck's `exec` contract:

    POST /ops {"op","key","seq","payload","abort","hold_ms","events","write"}
        one transaction: INSERT the order's rows and outbox rows (one each per
        event: `events` lists them when there are several, on their keys, and
        `write` says how: one INSERT per row, one multi-row INSERT, or COPY), hold `hold_ms`,
        COMMIT -> 200; `abort` -> ROLLBACK and 409; an error before COMMIT -> 409
        (certainly not committed); an error during COMMIT -> 500 (unknown).
    GET /health   -> 200
    GET /backlog  -> {"backlog": N}  (outbox rows + records still in the producer)

A relay thread publishes the outbox: each round it takes the oldest pending
event of every key (so one event per key is in flight: per-key order holds),
produces them with an idempotent producer, waits for the delivery reports and
deletes only the rows Kafka acknowledged. A crash anywhere republishes at most
(same event id: an idempotent consumer absorbs it), never loses.

Environment: DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC, PORT (set by dualcheck).
Tables: schema.sql (dualcheck runs it with --schema).
"""
import json
import logging
import os
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from confluent_kafka import KafkaException, Producer

DATABASE_URL = os.environ["DATABASE_URL"]
KAFKA_BOOTSTRAP = os.environ["KAFKA_BOOTSTRAP"]
TOPIC = os.environ["TOPIC"]
PORT = int(os.environ["PORT"])

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
log = logging.getLogger("outbox")


def connect():
    """A new connection with client-side guards against dead links."""
    return psycopg.connect(
        DATABASE_URL,
        connect_timeout=5,
        options="-c statement_timeout=10000",
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=2,
        tcp_user_timeout=10000,
    )


class Pool:
    """A tiny connection pool: a connection that raised is thrown away."""

    def __init__(self):
        self.idle = queue.LifoQueue()

    def get(self):
        while True:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                return connect()
            if not conn.closed:
                return conn

    def put(self, conn):
        self.idle.put(conn)


pool = Pool()


class Aborted(Exception):
    """The op asked for a rollback."""


def handle_op(op):
    """Runs the business transaction; returns (HTTP status, body)."""
    try:
        conn = pool.get()
    except psycopg.Error as e:
        return 409, f"no database connection: {e}"
    try:
        events = op.get("events") or [{"index": 0, "key": op["key"], "seq": op["seq"]}]
        orders, outbox = [], []
        for e in events:
            event_id = str(uuid.uuid4())
            value = {"op": op["op"], "seq": e["seq"], "key": e["key"], "event": event_id}
            if e["index"]:
                value["index"] = e["index"]
            orders.append((op["op"], e["index"], e["key"], e["seq"], op.get("payload", "")))
            outbox.append((event_id, e["key"], json.dumps(value)))
        with conn.cursor() as cur:
            write_rows(cur, op.get("write", "single"), "orders", ("op", "idx", "key", "seq", "payload"), orders)
            write_rows(cur, op.get("write", "single"), "outbox", ("event_id", "key", "value"), outbox)
        if op.get("hold_ms"):
            time.sleep(op["hold_ms"] / 1000.0)
        if op.get("abort"):
            raise Aborted()
    except Aborted:
        conn.rollback()
        pool.put(conn)
        return 409, "aborted on purpose; rolled back"
    except Exception as e:  # before COMMIT: the transaction cannot have committed
        conn.close()
        return 409, f"not committed: {e}"
    try:
        conn.commit()
    except Exception as e:  # during COMMIT: we cannot know
        conn.close()
        return 500, f"commit outcome unknown: {e}"
    pool.put(conn)
    return 200, "ok"


def write_rows(cur, shape, table, columns, rows):
    """Writes `rows` into `table` as the op asks: one INSERT per row
    (`single`), one INSERT of every row (`multi-row`) or COPY (`copy`)."""
    names = ", ".join(columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    if shape == "copy":
        with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    elif shape == "multi-row":
        cur.execute(f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * len(rows)), [v for r in rows for v in r])
    else:
        for row in rows:
            cur.execute(f"INSERT INTO {table} ({names}) VALUES {one}", row)


class Relay(threading.Thread):
    """Publishes outbox rows, deleting each only after Kafka acknowledged it."""

    def __init__(self):
        super().__init__(name="relay", daemon=True)
        self.producer = None
        self.fatal = False

    def new_producer(self):
        def on_error(err):
            if err.fatal():
                self.fatal = True
            log.warning("kafka: %s", err)

        self.fatal = False
        self.producer = Producer(
            {
                "bootstrap.servers": KAFKA_BOOTSTRAP,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 3000,
                "error_cb": on_error,
            }
        )

    def run(self):
        conn = None
        while True:
            try:
                if self.producer is None or self.fatal:
                    self.new_producer()
                if conn is None or conn.closed:
                    conn = connect()
                    conn.autocommit = True
                self.producer.poll(0)  # serve delivery reports and errors
                if not self.round(conn):
                    time.sleep(0.05)
            except Exception as e:
                log.warning("relay round failed (retrying): %s", e)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.5)

    def round(self, conn):
        """One round; returns whether there was anything to publish."""
        rows = conn.execute(
            "SELECT DISTINCT ON (key) id, event_id, key, value FROM outbox ORDER BY key, id LIMIT 500"
        ).fetchall()
        if not rows:
            return False
        acked = []

        def on_delivery(err, msg, row_id):
            if err is None:
                acked.append(row_id)

        for row_id, event_id, key, value in rows:
            self.producer.produce(
                TOPIC,
                key=key,
                value=value,
                headers={"event_id": str(event_id)},
                on_delivery=lambda err, msg, row_id=row_id: on_delivery(err, msg, row_id),
            )
        # Wait for every delivery report (message.timeout.ms bounds it).
        self.producer.flush(15)
        if acked:
            conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (acked,))
        if len(acked) < len(rows):
            time.sleep(0.2)  # Kafka unreachable: do not spin
        return True

    def backlog(self):
        with connect() as c:
            (n,) = c.execute("SELECT count(*) FROM outbox").fetchone()
        return n + (len(self.producer) if self.producer is not None else 0)


relay = Relay()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if not body.startswith("{") else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "ok")
        elif self.path == "/backlog":
            try:
                self.reply(200, json.dumps({"backlog": relay.backlog()}))
            except Exception as e:
                self.reply(503, f"cannot read the backlog: {e}")
        else:
            self.reply(404, "not found")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/ops":
            self.reply(404, "not found")
            return
        try:
            op = json.loads(body)
        except ValueError as e:
            self.reply(400, f"bad JSON: {e}")
            return
        status, text = handle_op(op)
        self.reply(status, text)

    def log_message(self, fmt, *args):  # no line per request
        pass


if __name__ == "__main__":
    relay.start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log.info("outbox service on 127.0.0.1:%d, topic %s", PORT, TOPIC)
    server.serve_forever()
