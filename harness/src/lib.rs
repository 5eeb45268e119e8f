//! The `dualcheck` harness: command line, environments (real PostgreSQL,
//! Kafka and Toxiproxy), nemesis, runner, history recorder and reports.

pub mod app;
pub mod cli_check;
pub mod doctor;
pub mod env;
