//! The services themselves (real PostgreSQL, Kafka and Toxiproxy started by the harness, or the user's own through `--backend external`): start, faults and heals, teardown. Needs `bash ci/setup`.
//!
//! Every test of this binary takes the one lock of [`support`]: the runs and
//! environments would not fit two cores at once.

#[path = "../support/mod.rs"]
mod support;

mod actionlint;
mod book;
mod external;
mod local;
mod postgres_dir;
mod teardown;
mod three_brokers;
