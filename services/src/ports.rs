//! Free loopback ports for the services of a run.
//!
//! A port is found by binding `127.0.0.1:0` and reading the port the kernel
//! chose. The listener is closed before the service binds it, so another program
//! could take it in between; to keep our own services from colliding with each
//! other, ports handed out by this process are remembered and never handed out
//! twice.

use anyhow::{Context, Result};
use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Returns a loopback TCP port that is free now and was not returned before by
/// this process.
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .context("binding 127.0.0.1:0 to find a free port (is the loopback interface up?)")?;
        let port = listener.local_addr()?.port();
        let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free loopback port found after 100 tries")
}

/// Returns `n` distinct free loopback ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports(20).unwrap();
        let set: HashSet<_> = ports.iter().collect();
        assert_eq!(set.len(), ports.len());
        for p in ports {
            TcpListener::bind(("127.0.0.1", p)).expect("port should be bindable");
        }
    }
}
