//! The implementation under test: the process the harness owns
//! ([`owner`]: [`AppProcess`], started from an [`AppCommand`] with its
//! [`AppVars`]) and the client side of the black-box HTTP contract
//! ([`client`]: [`AppClient`], its [`Reply`] and [`CrashPoint`];
//! docs/http-contract.md). An [`AppProcess`] dereferences to its client.

pub mod client;
pub mod owner;

pub use client::{AppClient, CrashPoint, Reply};
pub use owner::{AppCommand, AppProcess, AppVars};
