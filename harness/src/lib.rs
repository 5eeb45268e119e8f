//! The `dualcheck` harness: environments (real PostgreSQL, Kafka and
//! Toxiproxy), nemesis, runner, history recorder, summaries and reports, and
//! the work behind `sweep` (and `compare`), `bench` and `doctor`. The command line itself
//! (argument parsing, printing, exit codes) is the binary's `cli` module: the
//! library never depends on it.

pub mod app_process;
pub mod bench;
pub mod doctor;
pub use services as env;
pub mod in_doubt;
pub mod merge;
pub mod nemesis;
pub mod observer;
pub mod ops_series;
pub use record;
pub mod recorder;
pub mod relay_rate;
pub use report::render;
pub mod replay;
pub use record::run_dir;
pub use report;
pub mod run_options;
pub mod runner;
pub use report::serve;
pub mod shrink;
pub use report::summary;
pub mod sweep;
pub mod template;
pub mod trails;
pub mod verification;
pub mod zoo;
