//! What `dualcheck run` must show, each a real run through the `dualcheck` binary as a user runs it: the verdicts, CDC, custom faults, idle windows, interrupts, reads and in-doubt transactions, trails, the examples and templates, the field study's libraries. Needs `bash ci/setup`.
//!
//! Every test of this binary takes the one lock of [`support`]: the runs and
//! environments would not fit two cores at once.

#[path = "../support/mod.rs"]
mod support;

mod cdc;
mod exec_examples;
mod exec_templates;
mod fault_cmd;
mod field;
mod idle;
mod interrupted;
mod reads_in_doubt;
mod trails;
mod verdicts;
