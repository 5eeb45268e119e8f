//! Tests that need no service: `dualcheck check`, the reports and the runs page on histories and run directories written here.

#[path = "../support/mod.rs"]
mod support;

mod cli_check;
mod cli_reference;
mod docs_consistency;
mod gate_evidence;
mod refusals;
mod report;
mod serve;
