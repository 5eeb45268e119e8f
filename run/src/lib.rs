//! `dualcheck-run`: one run, Jepsen-style. The implementation under test as
//! a process the harness owns ([`app_process::owner`]) and the client side of
//! the HTTP contract ([`app_process::client`]), the service templates
//! ([`template`]), the observer reading the topic ([`observer`]), the history
//! recorder ([`recorder`]), the nemesis and its faults ([`nemesis`]), the
//! runner going through a run's phases ([`runner`]), with what it collects
//! while the implementation runs ([`in_doubt`], [`ops_series`], [`trails`]);
//! the options a run is configured from ([`run_options`]) and the Rust API
//! for `cargo test` ([`verification`]).
//!
//! What this crate may use: of the workspace, `dualcheck-record` (the run
//! record), `dualcheck-services` (the services), `dualcheck-report` (a run
//! ends by writing its report), and `dualcheck-checkers`,
//! `dualcheck-workloads`, `dualcheck-implementations`. It never uses the
//! campaigns (sweep, shrink, bench, ...) or the command line: the `dualcheck`
//! crate sits above it and re-exports every module here under its old path
//! (`dualcheck::runner`, `dualcheck::nemesis`, ...).

#![warn(missing_docs)]

pub mod app_process;
pub mod in_doubt;
pub mod nemesis;
pub mod observer;
pub mod ops_series;
pub mod recorder;
pub mod run_options;
pub mod runner;
pub mod template;
pub mod trails;
pub mod verification;
