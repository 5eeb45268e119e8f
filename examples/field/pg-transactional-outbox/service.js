'use strict';
// The orders service of the dualcheck field study for pg-transactional-outbox
// 0.5.7, written the way the library's README ("Implementing the transactional
// outbox producer") tells a team to: the order and its outbox message are
// stored in one transaction with `initializeMessageStorage`, and the
// library's outbox listener (logical replication or polling) calls our
// message publisher, which sends each message to Kafka with kafkajs.
//
// Environment: DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC, PORT (required),
// OUTBOX_STRATEGY = replication (default) | polling, LOG_LEVEL (default info).
// HTTP on 127.0.0.1:$PORT:
//   POST /orders {"orderId":"17","customerId":"k3","lineNo":5,"fail":false}
//     201 committed; 422 rolled back on request (fail=true); 409 certainly
//     not committed; 500 unknown (the COMMIT's outcome was not seen)
//   GET /health  200
// Logs (JSON lines, pino) go to stderr.

// ---- configuration (checked before anything else starts) -------------------

const REQUIRED = ['DATABASE_URL', 'KAFKA_BOOTSTRAP', 'TOPIC', 'PORT'];
const missing = REQUIRED.filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(
    `pg-transactional-outbox example: missing environment variable(s): ${missing.join(', ')}.\n` +
      'It needs DATABASE_URL (postgres://user@127.0.0.1:port/db), KAFKA_BOOTSTRAP (host:port,...), ' +
      'TOPIC and PORT; OUTBOX_STRATEGY=replication|polling is optional (default replication).',
  );
  process.exit(2);
}
const { DATABASE_URL, KAFKA_BOOTSTRAP, TOPIC } = process.env;
const PORT = Number(process.env.PORT);
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error(`pg-transactional-outbox example: PORT must be a TCP port, not "${process.env.PORT}".`);
  process.exit(2);
}
const STRATEGY = process.env.OUTBOX_STRATEGY || 'replication';
if (STRATEGY !== 'replication' && STRATEGY !== 'polling') {
  console.error(
    `pg-transactional-outbox example: OUTBOX_STRATEGY must be "replication" or "polling", not "${STRATEGY}".`,
  );
  process.exit(2);
}
const BROKERS = KAFKA_BOOTSTRAP.split(',')
  .map((b) => b.trim())
  .filter(Boolean);

// ---- libraries ---------------------------------------------------------------

const crypto = require('node:crypto');
const http = require('node:http');
const { Kafka, Partitioners, logLevel } = require('kafkajs');
const { Pool } = require('pg');
const pino = require('pino');
const {
  createReplicationMutexConcurrencyController,
  initializeMessageStorage,
  initializePollingMessageListener,
  initializeReplicationMessageListener,
} = require('pg-transactional-outbox');

// The library's getDefaultLogger('outbox') is this pino logger on stdout; the
// same logger on stderr, written synchronously (a SIGKILL loses no line).
const logger = pino(
  {
    name: 'outbox',
    level: process.env.LOG_LEVEL || 'info',
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  pino.destination({ dest: 2, sync: true }),
);

// kafkajs logs to the console (stdout) unless given a logCreator: into pino.
const kafkaLogCreator = () => ({ namespace, level, log }) => {
  const { message, timestamp, logger: _name, ...extra } = log;
  const method =
    level === logLevel.ERROR ? 'error' : level === logLevel.WARN ? 'warn' : level === logLevel.INFO ? 'info' : 'debug';
  logger[method]({ kafkajs: namespace, ...extra }, message);
};

const kafka = new Kafka({
  clientId: 'orders-service',
  brokers: BROKERS,
  logCreator: kafkaLogCreator,
});
const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });

// ---- the outbox, as the README's producer example sets it up ---------------

// The message publisher: the library calls it for every outbox message and
// marks the message processed only when it resolves.
const messagePublisher = {
  handle: async (message) => {
    await producer.send({
      topic: TOPIC,
      messages: [
        {
          key: message.aggregateId,
          value: JSON.stringify(message.payload),
          headers: { 'event-id': message.id },
        },
      ],
    });
  },
};

const dbListenerConfig = { connectionString: DATABASE_URL };
const baseSettings = {
  dbSchema: 'public',
  dbTable: 'outbox',
  enableMaxAttemptsProtection: false,
  enablePoisonousMessageProtection: false,
};
const replicationConfig = {
  outboxOrInbox: 'outbox',
  dbListenerConfig,
  settings: {
    ...baseSettings,
    dbPublication: 'pg_transactional_outbox_pub',
    dbReplicationSlot: 'pg_transactional_outbox_slot',
  },
};
const pollingConfig = {
  outboxOrInbox: 'outbox',
  dbListenerConfig,
  settings: {
    ...baseSettings,
    nextMessagesBatchSize: 5,
    nextMessagesFunctionName: 'next_outbox_messages',
    nextMessagesPollingIntervalInMs: 250,
  },
};
const listenerConfig = STRATEGY === 'replication' ? replicationConfig : pollingConfig;

// Stores the outbox message in the caller's open transaction.
const storeOutboxMessage = initializeMessageStorage(listenerConfig, logger);

// The business side's own pool.
const pool = new Pool({ connectionString: DATABASE_URL });
pool.on('error', (err) => logger.error(err, 'PostgreSQL pool error'));

// ---- POST /orders -----------------------------------------------------------

class BadRequest extends Error {}

function parseOrder(body) {
  let o;
  try {
    o = JSON.parse(body);
  } catch {
    throw new BadRequest('the body is not JSON');
  }
  if (o === null || typeof o !== 'object') throw new BadRequest('the body is not a JSON object');
  const orderId = typeof o.orderId === 'number' ? String(o.orderId) : o.orderId;
  if (typeof orderId !== 'string' || !/^[0-9]{1,18}$/.test(orderId)) {
    throw new BadRequest('orderId must be a string of digits');
  }
  if (typeof o.customerId !== 'string' || o.customerId === '') {
    throw new BadRequest('customerId must be a non-empty string');
  }
  if (!Number.isSafeInteger(o.lineNo)) throw new BadRequest('lineNo must be an integer');
  if (o.fail !== undefined && typeof o.fail !== 'boolean') throw new BadRequest('fail must be a boolean');
  return { orderId, customerId: o.customerId, lineNo: o.lineNo, fail: o.fail === true };
}

// A COMMIT the server answered with an error of these classes rolled back:
// 40 transaction rollback (serialization failure, deadlock), 23 integrity
// constraint violation (deferred constraints). Any other failure of the
// COMMIT, above all a lost connection, leaves its outcome unknown.
const certainlyRolledBack = (err) => typeof err?.code === 'string' && /^(40|23)/.test(err.code);

async function placeOrder({ orderId, customerId, lineNo, fail }) {
  let client;
  try {
    client = await pool.connect();
  } catch (err) {
    logger.warn(err, `order ${orderId}: no database connection`);
    return [409, `no database connection: ${err.message}`];
  }
  let committing = false;
  try {
    // The order and the outbox message must be inserted in the same transaction.
    await client.query('START TRANSACTION ISOLATION LEVEL SERIALIZABLE');
    await client.query('INSERT INTO public.orders (id, customer_id, line_no) VALUES ($1, $2, $3)', [
      orderId,
      customerId,
      lineNo,
    ]);
    const message = {
      id: crypto.randomUUID(),
      aggregateType: 'customer',
      aggregateId: customerId,
      messageType: 'OrderPlaced',
      payload: { type: 'OrderPlaced', orderId, customerId, lineNo },
      createdAt: new Date().toISOString(),
    };
    await storeOutboxMessage(message, client);
    if (fail) {
      await client.query('ROLLBACK');
      client.release();
      return [422, `order ${orderId} rolled back on request`];
    }
    committing = true;
    const result = await client.query('COMMIT');
    client.release();
    if (result.command === 'ROLLBACK') {
      return [409, `order ${orderId}: the transaction was rolled back`];
    }
    return [201, JSON.stringify({ orderId, eventId: message.id })];
  } catch (err) {
    if (!committing) {
      // In case of an error roll back the DB transaction: neither the order
      // nor the outbox message is stored.
      try {
        await client.query('ROLLBACK');
      } catch {
        // the connection is gone: the transaction is gone with it
      }
      client.release(true);
      logger.warn(err, `order ${orderId}: not stored`);
      return [409, `order ${orderId} not stored: ${err.message}`];
    }
    client.release(true);
    if (certainlyRolledBack(err)) {
      logger.warn(err, `order ${orderId}: COMMIT refused`);
      return [409, `order ${orderId}: COMMIT refused: ${err.message}`];
    }
    logger.error(err, `order ${orderId}: COMMIT outcome unknown`);
    return [500, `order ${orderId}: COMMIT outcome unknown: ${err.message}`];
  }
}

// ---- HTTP -------------------------------------------------------------------

function answer(res, status, text) {
  const json = text.startsWith('{');
  res.writeHead(status, { 'content-type': json ? 'application/json' : 'text/plain; charset=utf-8' });
  res.end(json ? text : `${text}\n`);
}

const server = http.createServer((req, res) => {
  const path = (req.url || '/').split('?')[0];
  if (req.method === 'GET' && path === '/health') {
    answer(res, 200, 'ok');
    return;
  }
  if (req.method === 'POST' && path === '/orders') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let order;
      try {
        order = parseOrder(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        answer(res, 400, err instanceof BadRequest ? err.message : String(err));
        return;
      }
      placeOrder(order).then(
        ([status, text]) => answer(res, status, text),
        (err) => {
          logger.error(err, 'POST /orders failed');
          answer(res, 500, String(err));
        },
      );
    });
    return;
  }
  answer(res, 404, 'not found');
});

// ---- start and stop ---------------------------------------------------------

let shutdownListener = async () => {};

async function main() {
  await producer.connect();

  // Start the outbox listener: it receives all outbox table inserts from the
  // WAL (replication) or by polling, and calls messagePublisher.handle for
  // each ("It cares for the at least once delivery").
  if (STRATEGY === 'replication') {
    [shutdownListener] = initializeReplicationMessageListener(replicationConfig, messagePublisher, logger, {
      concurrencyStrategy: createReplicationMutexConcurrencyController(),
    });
  } else {
    [shutdownListener] = initializePollingMessageListener(pollingConfig, messagePublisher, logger);
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(PORT, '127.0.0.1', resolve);
  });
  logger.info(
    { strategy: STRATEGY, port: PORT, topic: TOPIC, brokers: BROKERS },
    `orders service listening on 127.0.0.1:${PORT} (outbox listener: ${STRATEGY})`,
  );
}

async function stop(signal) {
  logger.info(`${signal}: stopping`);
  server.close();
  try {
    await shutdownListener();
    await producer.disconnect();
    await pool.end();
  } catch (err) {
    logger.warn(err, 'error while stopping');
  }
  process.exit(0);
}
process.once('SIGTERM', () => void stop('SIGTERM'));
process.once('SIGINT', () => void stop('SIGINT'));

main().catch((err) => {
  logger.fatal(err, 'the orders service could not start');
  process.exit(1);
});
