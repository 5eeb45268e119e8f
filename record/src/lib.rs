//! `dualcheck-record`, the run record: what a run directory holds, typed
//! both ways. Everything that writes or reads a run's configuration, results
//! or fault catalogue goes through here, so a new field is stated once; the
//! names of the run directory's files are in [`run_dir`] and nowhere else.
//!
//! Beside the configuration and the fault catalogue, it holds what the report
//! needs about a run's results: the run's own figures ([`results`]), the
//! in-doubt figures ([`in_doubt`]), the operational series and what is judged
//! from them ([`ops_series`]), and each example's trail as built from the run
//! directory ([`trails`]). Whatever collects these from the services or the
//! running implementation is the run crate's.
//!
//! This crate is the bottom layer of the harness: pure data and the files of
//! a run directory. It may use `dualcheck-workloads` and `dualcheck-checkers`
//! and no other crate of the workspace; it talks to no service (no Postgres,
//! no Kafka, no HTTP) and starts no process.

#![warn(missing_docs)]

pub mod config;
pub mod fault;
pub mod in_doubt;
pub mod ops_series;
pub mod quote;
pub mod redact;
pub mod results;
pub mod run_dir;
pub mod template_options;
pub mod trails;

pub use config::{EnvironmentRecord, RecordedApp, RecordedBackend, RecordedConfig, ReproFiles, Versions};
pub use fault::{Fault, FaultFamily};
pub use quote::{quote, quote_line};
pub use redact::redact;
pub use template_options::TemplateOptions;
