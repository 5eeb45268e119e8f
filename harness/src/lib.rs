//! The `dualcheck` harness: the campaigns — `sweep` (and `compare`), `zoo`, `gate`,
//! `shrink` and `replay`, `bench` (with the relays' publish rate), `merge`,
//! `doctor` — over the layers below, and the one library a team's tests name.
//! Every campaign of many runs carries them out through one [`campaign`]
//! runner (services per broker count, run numbers, restores, shutdown).
//!
//! The layers are crates of their own (docs/layout.md), each re-exported
//! here under the module name it always had, so every `dualcheck::` path
//! stays as it was:
//!
//! - `dualcheck-record`: [`record`], [`run_dir`] — the run record, pure data;
//! - `dualcheck-services`: [`env`](mod@env) — the real services;
//! - `dualcheck-report`: [`report`], [`render`], [`summary`], [`serve`] —
//!   what a run found, from its run directory alone (no librdkafka);
//! - `dualcheck-run`: [`app_process`], [`template`], [`observer`],
//!   [`recorder`], [`nemesis`], [`runner`], [`run_options`],
//!   [`verification`], [`in_doubt`], [`ops_series`], [`trails`] — one run.
//!
//! This crate may use all of them; none of them uses it. The command line
//! itself (argument parsing, printing, exit codes) is the binary's `cli`
//! module: the library never depends on it.

#![warn(missing_docs)]

pub mod bench;
pub mod campaign;
pub mod doctor;
pub mod gate;
pub mod merge;
pub mod relay_rate;
pub mod replay;
pub mod shrink;
pub mod sweep;
pub mod zoo;

pub use dualcheck_run::{
    app_process, in_doubt, nemesis, observer, ops_series, recorder, run_options, runner, template, trails, verification,
};
pub use record::{self, run_dir};
pub use report::{self, render, serve, summary};
pub use services as env;
