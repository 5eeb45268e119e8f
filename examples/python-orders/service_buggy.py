#!/usr/bin/env python3
"""An orders service with a transactional outbox WITH A REALISTIC BUG, else
as service.py: its own API and event format (nothing of dualcheck's contract):

    POST /orders {"customerId","reference","lineNo","note"}
        one transaction: INSERT the order and its OrderCreated outbox row;
        201 {"orderId",...}; 400 invalid; 409 duplicate reference;
        503 no database; 500 anything else (e.g. an error during COMMIT).
    GET /customers/{customerId}/orders/latest -> 200 {"orderId","lineNo",...} or 404
    GET /admin/outbox -> {"pending": N}   (the outbox gauge)
    GET /health       -> 200

Events on $TOPIC, keyed by customerId:
    {"eventId","type":"OrderCreated","occurredAt","orderId","customerId","reference","lineNo"}

THE BUG (on purpose; a negative control for dualcheck): the relay claims a
batch by marking it published in one UPDATE ... RETURNING (so two relays
never send the same row) and then hands it to the producer without waiting
for the delivery reports. While Kafka is unreachable the producer's queue
times out (message.timeout.ms), or the process dies with it, and those
events are gone: dualcheck reports them `lost`.

dualcheck verifies it through a request template and a record mapping
(dualcheck-template.toml), no adapter code.

Environment: DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC, PORT.
Tables: schema.sql.
"""
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
from confluent_kafka import Producer

DATABASE_URL = os.environ["DATABASE_URL"]
KAFKA_BOOTSTRAP = os.environ["KAFKA_BOOTSTRAP"]
TOPIC = os.environ["TOPIC"]
PORT = int(os.environ["PORT"])

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
log = logging.getLogger("orders")


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


class Invalid(Exception):
    """The request is not a valid order."""


def parse_order(body):
    try:
        order = json.loads(body)
    except ValueError as e:
        raise Invalid(f"bad JSON: {e}")
    for field, kind in (("customerId", str), ("reference", str), ("lineNo", int)):
        if not isinstance(order.get(field), kind):
            raise Invalid(f"{field} is required ({kind.__name__})")
    return order


def create_order(order):
    """Runs the business transaction; returns (HTTP status, JSON body)."""
    try:
        conn = pool.get()
    except psycopg.Error as e:
        return 503, {"error": f"database unavailable: {e}"}
    order_id = str(uuid.uuid4())
    event = {
        "eventId": str(uuid.uuid4()),
        "type": "OrderCreated",
        "occurredAt": datetime.now(timezone.utc).isoformat(),
        "orderId": order_id,
        "customerId": order["customerId"],
        "reference": order["reference"],
        "lineNo": order["lineNo"],
    }
    try:
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO orders (order_id, customer_id, reference, line_no, note) VALUES (%s, %s, %s, %s, %s)",
                (order_id, order["customerId"], order["reference"], order["lineNo"], order.get("note")),
            )
            cur.execute(
                "INSERT INTO outbox (event_id, aggregate_id, payload) VALUES (%s, %s, %s)",
                (event["eventId"], order["customerId"], json.dumps(event)),
            )
        conn.commit()
    except psycopg.errors.UniqueViolation:
        conn.rollback()
        pool.put(conn)
        return 409, {"error": f"reference {order['reference']} exists"}
    except Exception as e:
        conn.close()
        return 500, {"error": str(e)}
    pool.put(conn)
    return 201, {"orderId": order_id, "reference": order["reference"]}


def latest_order(customer_id):
    with connect() as c:
        row = c.execute(
            "SELECT order_id, line_no, reference FROM orders WHERE customer_id = %s ORDER BY line_no DESC LIMIT 1",
            (customer_id,),
        ).fetchone()
    if row is None:
        return None
    return {"orderId": str(row[0]), "customerId": customer_id, "lineNo": row[1], "reference": row[2]}


class Relay(threading.Thread):
    """Publishes outbox rows, marking each published only after Kafka acknowledged it."""

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
                self.producer.poll(0)
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
        # BUG: claimed = marked published, before Kafka has anything.
        rows = conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id IN ("
            " SELECT DISTINCT ON (aggregate_id) id FROM outbox"
            " WHERE published_at IS NULL ORDER BY aggregate_id, id LIMIT 500)"
            " RETURNING id, aggregate_id, payload"
        ).fetchall()
        if not rows:
            return False
        for row_id, customer_id, payload in sorted(rows):
            self.producer.produce(TOPIC, key=customer_id, value=payload)
        self.producer.poll(0)
        return True

    def pending(self):
        with connect() as c:
            (n,) = c.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()
        return n + (len(self.producer) if self.producer is not None else 0)


relay = Relay()
LATEST = re.compile(r"^/customers/([^/]+)/orders/latest$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        m = LATEST.match(self.path)
        try:
            if self.path == "/health":
                self.reply(200, {"status": "up"})
            elif self.path == "/admin/outbox":
                self.reply(200, {"pending": relay.pending()})
            elif m:
                order = latest_order(m.group(1))
                self.reply(200, order) if order else self.reply(404, {"error": "no orders"})
            else:
                self.reply(404, {"error": "not found"})
        except Exception as e:
            self.reply(503, {"error": str(e)})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != "/orders":
            self.reply(404, {"error": "not found"})
            return
        try:
            order = parse_order(body)
        except Invalid as e:
            self.reply(400, {"error": str(e)})
            return
        status, obj = create_order(order)
        self.reply(status, obj)

    def log_message(self, fmt, *args):  # no line per request
        pass


if __name__ == "__main__":
    relay.start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    log.info("orders service on 127.0.0.1:%d, topic %s", PORT, TOPIC)
    server.serve_forever()
