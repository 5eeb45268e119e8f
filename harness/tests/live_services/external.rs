//! `--backend external` (issue 17) against services started by `dualcheck env
//! up`, through the binary as a user runs it: verdicts as with the local
//! backend, nothing of a run left on the services afterwards (database, slots,
//! publications, topic), concurrent runs against the same services, and no
//! password anywhere a run writes or prints.

use dualcheck::runner::RunOutcome;
use dualcheck::sweep::SweepOutcome;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::runs::{assert_no_process_left, out_dir, parse_output, walk};

fn dualcheck() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dualcheck"))
}

/// A `dualcheck env up` in the foreground, stopped by `dualcheck env down` when dropped.
struct EnvUp {
    child: Child,
    out: PathBuf,
    /// The variables of its `--env-file`.
    vars: Vec<(String, String)>,
    /// Its `--json` line. JSON: cli/env.rs writes it with `json!`, no
    /// library type has it.
    info: Value,
}

impl EnvUp {
    fn start(out: &Path) -> EnvUp {
        Self::start_with(Path::new(env!("CARGO_BIN_EXE_dualcheck")), out)
    }

    /// [`EnvUp::start`] with the binary at `bin` (a link of another name).
    fn start_with(bin: &Path, out: &Path) -> EnvUp {
        let env_file = out.join("services.env");
        let mut child = Command::new(bin)
            .args(["env", "up", "--json", "--out"])
            .arg(out)
            .arg("--env-file")
            .arg(&env_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting dualcheck env up");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("dualcheck env up printed no JSON line ({e}): {line:?}")
        });
        let vars = std::fs::read_to_string(&env_file)
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_string(), v.trim_matches('\'').to_string())
            })
            .collect();
        EnvUp {
            child,
            out: out.to_path_buf(),
            vars,
            info,
        }
    }

    fn var(&self, k: &str) -> String {
        self.vars
            .iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("{k} in the env file: {:?}", self.vars))
            .1
            .clone()
    }

    /// `dualcheck ARGS --backend external` with the env file's variables set, as `set -a; . F` does.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = dualcheck();
        c.args(args).args(["--backend", "external"]);
        for (k, v) in &self.vars {
            c.env(k, v);
        }
        c
    }

    /// What runs leave on the services: databases other than the standard
    /// ones, replication slots, topics other than Kafka's own.
    fn leftovers(&self) -> Vec<String> {
        let pg = self.var("DUALCHECK_PG_URL");
        let kafka = self.var("DUALCHECK_KAFKA_BOOTSTRAP");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut left: Vec<String> = rt.block_on(async {
            let c = dualcheck::env::postgres::connect(&pg).await.unwrap();
            let mut left = Vec::new();
            for row in c
                .query(
                    "SELECT 'database ' || datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1')
                     UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots
                     UNION ALL SELECT 'publication ' || pubname FROM pg_publication",
                    &[],
                )
                .await
                .unwrap()
            {
                left.push(row.get::<_, String>(0));
            }
            left
        });
        let topics = dualcheck::env::kafka::topic_names(&kafka, Duration::from_secs(20)).unwrap();
        left.extend(
            topics
                .into_iter()
                .filter(|t| !t.starts_with("__"))
                .map(|t| format!("topic {t}")),
        );
        left
    }

    /// `dualcheck env down`: the up process and every service end.
    fn down(mut self) {
        let o = dualcheck()
            .args(["env", "down", "--out"])
            .arg(&self.out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
        let _ = self.child.wait();
        for pid in self.info["service_pids"].as_array().unwrap() {
            let pid = pid.as_i64().unwrap() as i32;
            assert!(
                !dualcheck::env::process::pid_alive(pid),
                "service process {pid} still runs after `dualcheck env down`"
            );
        }
        assert!(!self.out.join("env.json").exists(), "the state file is removed");
        assert_no_process_left(&self.out);
        std::mem::forget(self);
    }
}

impl Drop for EnvUp {
    fn drop(&mut self) {
        // A failed test still stops the services.
        let _ = dualcheck().args(["env", "down", "--out"]).arg(&self.out).output();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result object of a `run --json`, with its exit code.
fn result_of(name: &str, o: &Output) -> (i32, RunOutcome) {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let code = o.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{name}: exit {code}\n{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = parse_output(name, o);
    (code, v)
}

#[test]
fn runs_against_env_up_give_the_local_verdicts_run_side_by_side_and_leave_nothing() {
    let _guard = crate::support::alone();
    let out = out_dir("external-runs");
    let env = EnvUp::start(&out.join("services"));
    let runs = out.join("runs");
    let runs_s = runs.to_str().unwrap();

    // A built-in process fault on services dualcheck does not own: refused before anything starts.
    let o = env
        .command(&["run", "--impl", "outbox-poll", "--faults", "pg-kill", "--out", runs_s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pg-kill") && stderr.contains("--fault-cmd"), "{stderr}");
    assert!(!runs.exists(), "nothing started, no run directory");

    // Two runs side by side on the same services; the second with a password in
    // its URL and a Toxiproxy of its own (no --toxiproxy-url).
    let password = "Pw-7c1e9a0d";
    let pg_with_password =
        env.var("DUALCHECK_PG_URL")
            .replacen("postgres://postgres@", &format!("postgres://postgres:{password}@"), 1);
    assert!(pg_with_password.contains(password));
    let first = env
        .command(&[
            "run",
            "--impl",
            "outbox-poll",
            "--faults",
            "pg-partition,kafka-partition",
            "--duration",
            "5s",
            "--json",
            "--out",
            runs_s,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = env
        .command(&[
            "run",
            "--impl",
            "cdc-logical",
            "--faults",
            "pg-partition",
            "--duration",
            "5s",
            "--json",
            "--out",
            runs_s,
            "--pg-url",
            &pg_with_password,
        ])
        .env("DUALCHECK_TOXIPROXY_URL", "")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    let (code, v) = result_of("outbox-poll", &first);
    assert_eq!((code, v.result.valid), (0, true), "outbox-poll: {v:?}");
    let windows: Vec<&str> = v.result.faults.iter().map(|f| f.fault.as_str()).collect();
    assert!(
        windows.contains(&"kafka-partition") && windows.contains(&"pg-partition"),
        "network faults through env up's proxies: {v:?}"
    );
    let (code, v2) = result_of("cdc-logical", &second);
    assert_eq!((code, v2.result.valid), (0, true), "cdc-logical: {v2:?}");
    assert!(
        !v2.slots_dropped.is_empty(),
        "the CDC run's slot was its own and dropped: {v2:?}"
    );

    // The password is nowhere: not in any file of the run directory, not on the terminal.
    for o in [&first, &second] {
        for stream in [&o.stdout, &o.stderr] {
            assert!(
                !String::from_utf8_lossy(stream).contains(password),
                "the password on the terminal"
            );
        }
    }
    let files = walk(&v2.run_dir);
    assert!(files.len() > 5, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(password),
            "the password is in {}",
            f.display()
        );
    }

    // The local verdict of a lossy pattern: naive loses under a crash after commit.
    let o = env
        .command(&[
            "run",
            "--impl",
            "naive",
            "--faults",
            "crash-after-commit",
            "--duration",
            "5s",
            "--json",
            "--out",
            runs_s,
        ])
        .output()
        .unwrap();
    let (code, v) = result_of("naive", &o);
    assert_eq!((code, v.result.valid), (1, false), "naive: {v:?}");
    assert!(v.result.anomalies.lost > 0, "{v:?}");

    assert_eq!(
        env.leftovers(),
        Vec::<String>::new(),
        "what the runs left on the services"
    );

    // Ctrl-C in the middle of a run: its database, slot, publication and topic go too.
    let interrupted = env
        .command(&[
            "run",
            "--impl",
            "cdc-logical",
            "--duration",
            "60s",
            "--json",
            "--out",
            runs_s,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !env.leftovers().iter().any(|l| l.starts_with("slot ")) {
        assert!(std::time::Instant::now() < deadline, "the run never created its slot");
        std::thread::sleep(Duration::from_millis(300));
    }
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(interrupted.id() as i32, libc::SIGINT);
    }
    let o = interrupted.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(env.leftovers(), Vec::<String>::new(), "what the interrupted run left");
    env.down();
    assert_no_process_left(&out);
}

#[test]
fn a_two_shard_sweep_against_env_up_splits_the_runs_and_leaves_nothing() {
    let _guard = crate::support::alone();
    let out = out_dir("external-sweep");
    let env = EnvUp::start(&out.join("services"));
    let shards = out.join("shards");
    let mut rows = Vec::new();
    for shard in ["1/2", "2/2"] {
        let o = env
            .command(&[
                "sweep",
                "--impls",
                "naive,outbox-poll",
                "--faults",
                "crash-after-commit",
                "--seeds",
                "2",
                "--duration",
                "3s",
                "--json",
                "--shard",
                shard,
                "--out",
                shards.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let v: SweepOutcome = parse_output(&format!("shard {shard}"), &o);
        assert_eq!(o.status.code(), Some(0), "shard {shard}: every run as expected: {v:?}");
        rows.extend(v.rows);
    }
    let runs = |name: &str| {
        rows.iter()
            .filter(|r| r.implementation == name)
            .map(|r| r.runs)
            .sum::<u64>()
    };
    assert_eq!(
        (runs("naive"), runs("outbox-poll")),
        (2, 2),
        "the shards split the runs: {rows:?}"
    );
    for r in &rows {
        assert_eq!(r.as_expected, r.runs, "as with the local backend: {r:?}");
    }
    assert_eq!(
        env.leftovers(),
        Vec::<String>::new(),
        "what the sweeps left on the services"
    );
    env.down();
    assert_no_process_left(&out);
}

/// An `env up` started through a link of another name (as a user who calls
/// the binary `dc`) is still recognized: a second `env up` on its directory
/// is refused, and `env down` stops it and every service.
#[test]
fn env_up_under_another_name_is_still_found_by_env_down() {
    let _guard = crate::support::alone();
    // Nowhere in its command line the word `dualcheck` (`out_dir`'s path has it).
    let links = std::env::temp_dir().join(format!("dc-link-{}", std::process::id()));
    let out = links.join("env");
    std::fs::create_dir_all(&out).unwrap();
    let link = links.join("dc");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dualcheck"), &link).unwrap();
    let env = EnvUp::start_with(&link, &out);
    // Refused at once; one that is not would start services and stay up:
    // stopped after a while, and the test fails.
    let mut again = dualcheck()
        .args(["env", "up", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while again.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if again.try_wait().unwrap().is_none() {
        // SAFETY: plain syscall on the pid of a child of this test.
        unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    }
    let again = again.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(
        again.status.code(),
        Some(2),
        "a second env up was not refused: {stderr}"
    );
    assert!(stderr.contains("already up"), "{stderr}");
    env.down();
    std::fs::remove_dir_all(&links).ok();
}
