//! The built-in implementations against the HTTP contract on a real shared environment: what each pattern publishes, and how the relays behave under restarts and contention. Needs `bash ci/setup`.
//!
//! Every test of this binary takes the one lock of [`support`]: the runs and
//! environments would not fit two cores at once.

#[path = "../support/mod.rs"]
mod support;

mod contract;
mod outbox;
