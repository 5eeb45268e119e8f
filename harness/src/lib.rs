//! The `dualcheck` harness: environments (real PostgreSQL, Kafka and
//! Toxiproxy), nemesis, runner, history recorder, summaries and reports, and
//! the work behind `sweep` (and `compare`), `bench` and `doctor`. The command line itself
//! (argument parsing, printing, exit codes) is the binary's `cli` module: the
//! library never depends on it.

pub use dualcheck_run::app_process;
pub mod bench;
pub mod doctor;
pub use dualcheck_run::in_doubt;
pub use services as env;
pub mod merge;
pub use dualcheck_run::nemesis;
pub use dualcheck_run::observer;
pub use dualcheck_run::ops_series;
pub use dualcheck_run::recorder;
pub use record;
pub mod relay_rate;
pub use report::render;
pub mod replay;
pub use dualcheck_run::run_options;
pub use dualcheck_run::runner;
pub use record::run_dir;
pub use report;
pub use report::serve;
pub mod shrink;
pub use report::summary;
pub mod sweep;
pub use dualcheck_run::template;
pub use dualcheck_run::trails;
pub use dualcheck_run::verification;
pub mod zoo;
