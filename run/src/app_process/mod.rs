//! The implementation under test: the process the harness owns
//! ([`owner`]: [`AppProcess`], started from an [`AppCommand`] with its
//! [`AppVars`]) and the client side of the black-box HTTP contract
//! ([`client`]: [`AppClient`], its [`Reply`] and [`CrashPoint`];
//! docs/http-contract.md). An [`AppProcess`] dereferences to its client.
//! A run's processes together, instances and relays, are its [`Fleet`].

pub mod client;
pub mod fleet;
pub mod owner;

pub use client::{AppClient, CrashPoint, Reply};
pub use fleet::Fleet;
pub use owner::{AppCommand, AppProcess, AppVars};
