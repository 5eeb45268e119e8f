//! `dualcheck-record`, the run record: what a run directory holds, typed
//! both ways. Everything that writes or reads a run's configuration, results
//! or fault catalogue goes through here, so a new field is stated once; the
//! names of the run directory's files are in [`run_dir`] and nowhere else.
//!
//! This crate is the bottom layer of the harness: pure data and the files of
//! a run directory. It may use `dualcheck-workloads` and `dualcheck-checkers`
//! and no other crate of the workspace; it talks to no service (no Postgres,
//! no Kafka, no HTTP) and starts no process.

#![warn(missing_docs)]

pub mod config;
pub mod fault;
pub mod quote;
pub mod redact;
pub mod run_dir;
pub mod template_options;

pub use config::{EnvironmentRecord, RecordedApp, RecordedBackend, RecordedConfig, ReproFiles, Versions};
pub use fault::{Fault, FaultFamily};
pub use quote::{quote, quote_line};
pub use redact::redact;
pub use template_options::TemplateOptions;
