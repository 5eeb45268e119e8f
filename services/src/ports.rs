//! Free loopback ports for the services of a run.
//!
//! A port is picked at random below the kernel's ephemeral range
//! (`/proc/sys/net/ipv4/ip_local_port_range`) and checked by binding it. Below
//! that range, because the kernel hands the ephemeral ports to every outgoing
//! connection of the machine (Kafka clients open many): a port found by binding
//! `127.0.0.1:0` could be taken by one before its service binds it, or after a
//! fault stops the service. Where no such range can be read, the kernel's
//! choice (`127.0.0.1:0`) is taken. The check's listener is closed before the
//! service binds the port, so another program could still take it in between;
//! to keep our own services from colliding with each other, ports handed out
//! by this process are remembered and never handed out
//! twice, and each is leased for the life of this process to every dualcheck
//! process of the machine: a file named after the port in a shared directory
//! holds the owner's pid ([`lease`]). Two runs started side by side (tests,
//! shards of a sweep) thus never take each other's ports, nor a port whose
//! service is down for a fault (a killed Postgres comes back on its port).

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
    let below_ephemeral = below_ephemeral();
    for _ in 0..200 {
        let candidate = match &below_ephemeral {
            Some(range) => fastrand::u16(range.clone()),
            None => 0,
        };
        match claim(candidate) {
            Ok(Some(port)) => return Ok(port),
            Ok(None) => continue,
            // Only the kernel's own choice failing means loopback itself is unusable.
            Err(e) if candidate == 0 => {
                return Err(e).context("binding 127.0.0.1:0 to find a free port (is the loopback interface up?)");
            }
            Err(_) => continue,
        }
    }
    anyhow::bail!("no free loopback port found after 200 tries")
}

/// Claims `port` (0: the kernel's choice) for this process if it can be bound
/// now, was not handed out before, and no live dualcheck process leases it:
/// `Ok(None)` when it is taken, an error when it cannot be bound.
fn claim(port: u16) -> std::io::Result<Option<u16>> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let port = listener.local_addr()?.port();
    let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    if !seen.contains(&port) && lease(port) {
        seen.insert(port);
        return Ok(Some(port));
    }
    Ok(None)
}

/// The lowest port handed out: above the registered ports most local servers use.
const LOWEST: u16 = 10_000;

/// The ports handed out: from [`LOWEST`] to the kernel's ephemeral range,
/// if that range can be read and leaves room below it.
fn below_ephemeral() -> Option<std::ops::Range<u16>> {
    ephemeral_range_start()
        .filter(|start| *start > LOWEST + 1000)
        .map(|start| LOWEST..start)
}

/// The first port of the kernel's ephemeral range, if it can be read.
fn ephemeral_range_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The directory of the leases: shared by every user of the machine.
fn lease_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("dualcheck-port-leases")
}

/// Leases `port` to this process unless a live dualcheck process holds it:
/// its file in [`lease_dir`] is created with this pid, or taken over from a
/// process that is gone. A lease that cannot be written (a read-only or
/// foreign directory) is not held against the port: without the shared
/// directory a process still never hands a port out twice itself.
fn lease(port: u16) -> bool {
    let dir = lease_dir();
    match std::fs::create_dir(&dir) {
        // Anyone may lease (the directory is shared like /tmp itself): said
        // once, by the process that makes it.
        Ok(()) => {
            let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return true,
    }
    let file = dir.join(port.to_string());
    let me = std::process::id();
    for _ in 0..2 {
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&file) {
            Ok(mut f) => {
                use std::io::Write;
                return f.write_all(me.to_string().as_bytes()).is_ok();
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let owner = std::fs::read_to_string(&file)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok());
                match owner {
                    Some(pid) if pid as u32 == me => return true,
                    Some(pid) if super::process::pid_alive(pid) => return false,
                    // A lease of a process that is gone (or half written): taken over.
                    _ => {
                        let _ = std::fs::remove_file(&file);
                    }
                }
            }
            Err(_) => return true,
        }
    }
    false
}

/// Returns `n` distinct free loopback ports (see [`free_port`]).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| free_port()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_leased_by_a_live_process_is_not_handed_out() {
        let port = free_port().unwrap();
        let file = lease_dir().join(port.to_string());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), std::process::id().to_string());
        // Another live process (pid 1) holds it: not leased to us again.
        std::fs::write(&file, "1").unwrap();
        assert!(!lease(port));
        // Its owner is gone: taken over.
        std::fs::write(&file, "2147483646").unwrap();
        assert!(lease(port));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), std::process::id().to_string());
    }

    #[test]
    fn ports_are_distinct_leased_to_us_and_below_the_ephemeral_range() {
        let ports = free_ports(20).unwrap();
        if let Some(range) = below_ephemeral() {
            assert!(ports.iter().all(|p| range.contains(p)), "{ports:?} not in {range:?}");
        }
        let set: HashSet<_> = ports.iter().collect();
        assert_eq!(set.len(), ports.len());
        for p in ports {
            let owner = std::fs::read_to_string(lease_dir().join(p.to_string())).unwrap();
            assert_eq!(owner, std::process::id().to_string(), "port {p}");
        }
    }

    // Whether a handed-out port is still free later is not ours to promise
    // (the module's doc says why); that a port bound now is never handed out is.
    #[test]
    fn a_bound_port_is_not_claimed_and_a_claimed_port_not_again() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(claim(port).is_err(), "port {port} is bound by this test");
        drop(held);
        assert_eq!(claim(port).unwrap(), Some(port));
        assert_eq!(claim(port).unwrap(), None, "handed out twice");
    }
}
