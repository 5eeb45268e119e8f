//! The built-in patterns, one module (file or folder) each, and the
//! [`REGISTRY`] that names them for the CLI.
//!
//! Adding a pattern: a module here exporting `pub const INFO: PatternInfo`
//! (see [`PatternInfo::new`]), its `mod` line and its line in [`REGISTRY`].
//! The harness reads only the [`PatternInfo`]; nothing else changes.

pub mod cdc;
pub mod debezium;
pub mod kafka_first;
pub mod listen_to_yourself;
pub mod naive;
pub mod outbox;
pub mod two_phase;

use crate::PatternInfo;
use anyhow::Result;

/// Every built-in implementation, in the order `dualcheck list` shows them.
pub const REGISTRY: &[PatternInfo] = &[
    naive::INFO,
    naive::publish_first::INFO,
    outbox::POLL,
    outbox::NOTIFY,
    outbox::ID_CURSOR,
    outbox::XID,
    listen_to_yourself::INFO,
    kafka_first::INFO,
    two_phase::INFO,
    cdc::logical::INFO,
    cdc::outbox::INFO,
    debezium::INFO,
];

/// Looks a built-in implementation up by CLI name.
pub fn lookup(name: &str) -> Result<&'static PatternInfo> {
    REGISTRY.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<_> = REGISTRY.iter().map(|p| p.name).collect();
        anyhow::anyhow!(
            "unknown implementation `{name}`; built-in ones are: {} (or use `--impl exec --cmd ...` for your own)",
            names.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_found() {
        for p in REGISTRY {
            assert_eq!(lookup(p.name).unwrap().name, p.name);
            assert_eq!(REGISTRY.iter().filter(|q| q.name == p.name).count(), 1);
        }
        let e = lookup("nope").err().unwrap().to_string();
        assert!(e.contains("outbox-poll"), "{e}");
    }
}
