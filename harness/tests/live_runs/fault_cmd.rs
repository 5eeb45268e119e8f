//! Custom faults (`--fault-cmd NAME=START_CMD[,STOP_CMD]`, issue 17 item 2)
//! on a real run: a fault whose commands SIGSTOP and SIGCONT a process this
//! test started is scheduled from the seed like a built-in one, recorded in
//! the history under its name, takes effect (the process is seen stopped)
//! and is healed (running afterwards); a fault whose command fails shows in
//! `nemesis_errors` with its stderr. Bad definitions exit 2 before anything starts.

use dualcheck::nemesis::custom::{self, CustomFault};
use dualcheck::nemesis::Fault;
use dualcheck::record::EnvironmentRecord;
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use workloads::{FaultPhase, Schedule, ScheduleConfig};

use crate::support::runs::run;

/// The state letter of `pid` in /proc (`T`: stopped).
fn state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_custom_fault_is_scheduled_recorded_and_healed_and_a_failing_one_is_reported() {
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = sleeper.id();
    // The start command also writes down the run's context it was given.
    let context = std::env::temp_dir().join(format!("dualcheck-fault-cmd-context-{}", std::process::id()));
    let freeze = format!(
        "freeze=kill -STOP {pid}; echo \"$DUALCHECK_TOPIC|$DUALCHECK_APP_PID|$DUALCHECK_DATABASE_URL|$DUALCHECK_TOXIPROXY_URL|$DUALCHECK_POSTGRES_PROXY\" > '{}',kill -CONT {pid}",
        context.display()
    );
    let broken = "broken=echo the cluster said no >&2; exit 7";
    // A seed whose schedule has both faults, found as the run will generate it.
    let defs: Vec<CustomFault> = [freeze.as_str(), broken].iter().map(|d| d.parse().unwrap()).collect();
    custom::define(&defs).unwrap();
    let faults = Fault::parse_list("freeze,broken").unwrap();
    let duration = Duration::from_secs(12);
    let seed = (0..100u64)
        .find(|&seed| {
            let s = Schedule::generate(&ScheduleConfig {
                seed,
                faults: faults.clone(),
                duration,
            });
            faults
                .iter()
                .all(|f| s.steps.iter().any(|st| st.fault == *f && st.phase == FaultPhase::Start))
        })
        .expect("a seed scheduling both faults");

    // Watch the sleeper while the run goes: it must be seen stopped.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen_stopped = false;
            while !done.load(Ordering::Relaxed) {
                seen_stopped |= state(pid) == "T";
                std::thread::sleep(Duration::from_millis(20));
            }
            seen_stopped
        })
    };
    let seed_arg = seed.to_string();
    let (code, v) = run(
        "fault-cmd",
        &[
            "--impl",
            "outbox-poll",
            "--duration",
            "12s",
            "--rate",
            "50",
            "--seed",
            &seed_arg,
            "--fault-cmd",
            &freeze,
            "--fault-cmd",
            broken,
            "--faults",
            "freeze,broken",
        ],
    );
    done.store(true, Ordering::Relaxed);
    let seen_stopped = watcher.join().unwrap();
    let after = state(pid);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();

    assert!(seen_stopped, "the start command never stopped the process");
    let told = std::fs::read_to_string(&context).expect("the start command wrote the run's context");
    let _ = std::fs::remove_file(&context);
    let told: Vec<&str> = told.trim().split('|').collect();
    assert!(told[0].starts_with("orders"), "DUALCHECK_TOPIC: {told:?}");
    assert!(told[1].parse::<u32>().is_ok(), "DUALCHECK_APP_PID: {told:?}");
    assert!(
        told[2].starts_with("postgres") && told[2].contains("/dualcheck"),
        "DUALCHECK_DATABASE_URL, the run's database: {told:?}"
    );
    assert!(
        told[3].starts_with("http://127.0.0.1:"),
        "DUALCHECK_TOXIPROXY_URL: {told:?}"
    );
    assert_eq!(told[4], "postgres", "DUALCHECK_POSTGRES_PROXY: {told:?}");
    assert_ne!(after, "T", "the stop command healed the process");
    assert_eq!(code, 0, "a paused bystander changes nothing: {v:?}");
    let errors: Vec<&str> = v.nemesis_errors.iter().map(String::as_str).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("broken") && e.contains("exit status 7") && e.contains("the cluster said no")),
        "the failing command, its status and its stderr: {errors:?}"
    );
    assert!(
        !errors.iter().any(|e| e.contains("freeze")),
        "freeze's commands worked: {errors:?}"
    );

    let run_dir = &v.run_dir;
    let history = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    // History lines stay JSON: the library reads them with its own parser
    // (`checkers::history`), and `HistoryLine` only serializes.
    let nemesis: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["type"] == "nemesis")
        .collect();
    let phases = |fault: &str| -> Vec<String> {
        nemesis
            .iter()
            .filter(|l| l["fault"] == fault)
            .map(|l| l["phase"].as_str().unwrap().to_string())
            .collect()
    };
    let freeze_phases = phases("freeze");
    assert!(!freeze_phases.is_empty(), "freeze recorded: {nemesis:?}");
    assert!(
        freeze_phases
            .chunks(2)
            .all(|w| w == ["start".to_string(), "stop".to_string()]),
        "freeze: start then stop, each window: {freeze_phases:?}"
    );
    let broken_phases = phases("broken");
    assert!(
        !broken_phases.is_empty() && broken_phases.iter().all(|p| p == "failed"),
        "broken: only failed starts: {broken_phases:?}"
    );

    // The results' options keep the commands, for a replay.
    let env: EnvironmentRecord =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("environment.json")).unwrap()).unwrap();
    let cmds = &env.config.expect("the configuration in environment.json").fault_cmds;
    let stop = format!("kill -CONT {pid}");
    assert!(
        cmds.iter()
            .any(|c| c.name == "freeze" && c.stop.as_deref() == Some(stop.as_str())),
        "{cmds:?}"
    );
}

#[test]
fn a_custom_fault_named_like_a_builtin_or_malformed_exits_2_before_anything_starts() {
    for (args, says) in [
        (
            vec!["--fault-cmd", "pg-kill=true", "--faults", "pg-kill"],
            "built-in fault",
        ),
        (vec!["--fault-cmd", "no-equals-sign"], "NAME=START_CMD"),
        (vec!["--faults", "undefined-thing"], "--fault-cmd"),
    ] {
        let out = std::env::temp_dir().join(format!("dualcheck-fault-cmd-bad-{}", std::process::id()));
        let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
            .args([
                "run",
                "--impl",
                "naive",
                "--duration",
                "1s",
                "--out",
                out.to_str().unwrap(),
            ])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?}: nothing started, no run directory");
    }
}

#[test]
fn ctrl_c_heals_a_custom_fault_in_effect() {
    let _guard = crate::support::alone();
    let mut sleeper = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = sleeper.id();
    let out = crate::support::runs::out_dir("fault-cmd-ctrl-c");
    // Frozen from 1 s to 25 s of a 30 s run: interrupted while in effect.
    let schedule = out.join("schedule.json");
    std::fs::write(
        &schedule,
        r#"{"events":[{"at":{"secs":1,"nanos":0},"fault":"hold","phase":"start"},{"at":{"secs":25,"nanos":0},"fault":"hold","phase":"stop"}]}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "run",
            "--impl",
            "outbox-poll",
            "--duration",
            "30s",
            "--rate",
            "20",
            "--json",
        ])
        .args(["--fault-cmd", &format!("hold=kill -STOP {pid},kill -CONT {pid}")])
        .args(["--faults", "hold", "--schedule", schedule.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "the fault never took effect");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was interrupted"
        );
        let started = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("history.jsonl"))
            .any(|h| {
                std::fs::read_to_string(h)
                    .unwrap_or_default()
                    .contains(r#""fault":"hold","phase":"start""#)
            });
        if started {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(state(pid), "T", "the fault is in effect");
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let after = state(pid);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert_eq!(status.code(), Some(130), "interrupted");
    assert_ne!(after, "T", "Ctrl-C ran the stop command");
    crate::support::runs::assert_no_process_left(&out);
}
