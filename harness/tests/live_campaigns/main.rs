//! Campaigns over many runs on services started once: `sweep`, `merge`, `zoo`, `shrink`, `bench`, `gate`. Needs `bash ci/setup`.
//!
//! Every test of this binary takes the one lock of [`support`]: the runs and
//! environments would not fit two cores at once.

#[path = "../support/mod.rs"]
mod support;

mod bench;
mod gate;
mod shrink;
mod sweep;
mod zoo;
mod zoo_mutants;
