//! What the tests that need the real services share: the one lock that runs
//! them one at a time (an environment or a run fills the two cores of a CI
//! machine), the shared environment ([`services`]), runs of the `dualcheck`
//! binary and their typed results ([`runs`]), and the implementations'
//! processes and topics ([`patterns`]).

#![allow(dead_code)]

pub mod docs;
pub mod patterns;
pub mod runs;
pub mod services;

use std::sync::{Condvar, Mutex};

/// A tool `ci/setup` provides: at `installed` (under the cache) when it is
/// there, else the first `name` on PATH; `None` when neither.
pub fn tool(name: &str, installed: Option<std::path::PathBuf>) -> Option<std::path::PathBuf> {
    installed.filter(|p| p.is_file()).or_else(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The machine's two slots (two cores): a test that starts services or a run
/// holds both ([`alone`]), except a run whose verdict does not hang on its
/// timing, which holds one ([`beside_another`]) and so may overlap one other
/// such run: a correct pattern is valid at any speed (load is one more
/// fault), and a bug that every op of a fault window shows (naive under a
/// partition, a read without its cache) shows it at any speed. A negative
/// control that needs a fault placed just so, a measured timing, a Ctrl-C
/// or an environment's faults are shared with nothing.
static SLOTS: (Mutex<u8>, Condvar) = (Mutex::new(0), Condvar::new());

/// The slots of the machine.
const CAPACITY: u8 = 2;

/// Slots held until dropped.
pub struct Slots(u8);

impl Drop for Slots {
    fn drop(&mut self) {
        let (used, freed) = &SLOTS;
        *used.lock().unwrap_or_else(|e| e.into_inner()) -= self.0;
        freed.notify_all();
    }
}

fn take(n: u8) -> Slots {
    forget_stale_runs();
    let (used, freed) = &SLOTS;
    let mut held = used.lock().unwrap_or_else(|e| e.into_inner());
    while *held + n > CAPACITY {
        held = freed.wait(held).unwrap_or_else(|e| e.into_inner());
    }
    *held += n;
    Slots(n)
}

/// The whole machine: nothing else runs meanwhile.
pub fn alone() -> Slots {
    take(CAPACITY)
}

/// Half the machine: for a run whose verdict does not hang on its timing.
pub fn beside_another() -> Slots {
    take(1)
}

/// Removes, once per test binary, the run directories earlier test binaries
/// left in the temporary directory (`dualcheck-runs-PID/`, and the shared
/// environments' `dualcheck/run-TIME-PID-N/`, each over a gigabyte of
/// Postgres and Kafka data) whose process is gone: a failed test's runs stay
/// for reading until the next suite, and a machine that runs the suite again
/// and again does not fill its disk.
fn forget_stale_runs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let tmp = std::env::temp_dir();
        let stale = |pid: Option<&str>| {
            pid.and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists())
        };
        let entries = |dir: &std::path::Path| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect::<Vec<_>>()
        };
        for (name, path) in entries(&tmp) {
            if stale(name.strip_prefix("dualcheck-runs-")) {
                let _ = std::fs::remove_dir_all(path);
            }
        }
        for (name, path) in entries(&tmp.join("dualcheck")) {
            // run-TIME-PID-N
            if name.starts_with("run-") && stale(name.split('-').nth(2)) {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    });
}
