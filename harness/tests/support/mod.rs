//! What the tests that need the real services share: the one lock that runs
//! them one at a time (an environment or a run fills the two cores of a CI
//! machine), the shared environment ([`services`]), runs of the `dualcheck`
//! binary and their typed results ([`runs`]), and the implementations'
//! processes and topics ([`patterns`]).

#![allow(dead_code)]

pub mod patterns;
pub mod runs;
pub mod services;

/// Held by every test that starts services or a run, so that none overlaps another.
pub static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
