//! The `dualcheck` harness: command line, environments (real PostgreSQL,
//! Kafka and Toxiproxy), nemesis, runner, history recorder and reports.

pub mod app;
pub mod app_process;
pub mod cli_bench;
pub mod cli_check;
pub mod cli_compare;
pub mod cli_report;
pub mod cli_run;
pub mod doctor;
pub mod env;
pub mod in_doubt;
pub mod nemesis;
pub mod observer;
pub mod recorder;
pub mod relay_rate;
pub mod report;
pub mod run_dir;
pub mod runner;
pub mod verification;
