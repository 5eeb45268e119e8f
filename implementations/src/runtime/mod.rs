//! What the patterns share at run time: configuration from the environment,
//! the reconnecting database pool, the Kafka producer (and a transactional one), retry back-off, the
//! crash point, the business transaction, the pieces of patterns that consume
//! their own topic (consumer, read cache, inbox), and the HTTP server that
//! turns the black-box contract into [`crate::Pattern`] calls.

pub mod backoff;
pub mod business;
pub mod config;
pub mod crash;
pub mod db;
pub mod inbox;
pub mod interrupt;
pub mod journal;
pub mod kafka;
pub mod kafka_txn;
pub mod own_consumer;
pub mod read_cache;
pub mod server;
