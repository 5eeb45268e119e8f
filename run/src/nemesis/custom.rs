//! The custom family: faults the user defines as shell commands,
//! `--fault-cmd NAME=START_CMD[,STOP_CMD]` — for services dualcheck does not
//! own (`kubectl delete pod kafka-1`, `docker pause pg`, `systemctl kill
//! postgresql`). Each runs with `sh -c`: START_CMD when the fault starts,
//! STOP_CMD (if given) when it stops, at healing and on Ctrl-C while the
//! fault is active. A command that exits non-zero, or runs longer than
//! [`COMMAND_TIMEOUT`] (then it is killed), fails the start or the stop,
//! with the tail of its stderr; the nemesis records that in `nemesis_errors`.
//!
//! Each command gets the run's context in its environment ([`RunContext`]):
//! the run database's direct URL, the topic, the Kafka bootstrap, the
//! Toxiproxy API and its proxies, the implementation's process ids — so a
//! user's fault can aim at this run without looking it up.
//!
//! Definitions are process-wide ([`define`]): a name is interned once, so a
//! custom fault is a [`Fault::Custom`] like any other fault (`Copy`, in fault
//! lists, schedules and the history), and a replay defines the recorded ones
//! before reading the run's faults.

use super::Fault;
use crate::app_process::{AppProcess, Fleet};
use anyhow::{bail, Context, Result};
use record::fault::custom::{active, commands, count_active};
pub use record::fault::custom::{define, defined, definitions_of, lookup, CustomFault};
use services::Environment;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use workloads::FaultPhase;

/// What a custom fault's commands are told about the run they act on, as
/// environment variables (docs/faults.md#custom-faults-shell-commands).
pub(super) struct RunContext {
    env: Arc<Environment>,
    /// The implementation's processes (their ids are read when a command runs).
    fleet: Arc<Fleet>,
    topic: String,
    database_direct_url: String,
}

impl RunContext {
    /// The context of one run.
    pub(super) fn new(env: Arc<Environment>, fleet: Arc<Fleet>, topic: &str, database_direct_url: &str) -> Self {
        RunContext {
            env,
            fleet,
            topic: topic.to_string(),
            database_direct_url: database_direct_url.to_string(),
        }
    }

    /// The variables, read when a command runs (process ids change as
    /// processes are restarted). A process that is not running is `""`.
    pub(super) fn vars(&self) -> Vec<(&'static str, String)> {
        let pid = |p: &AppProcess| p.pid().map(|pid| pid.to_string()).unwrap_or_default();
        // Every instance's (`--replicas`), space-separated, the not running left out.
        let pids = |ps: &[Arc<AppProcess>]| {
            let v: Vec<String> = ps.iter().filter_map(|p| p.pid()).map(|p| p.to_string()).collect();
            v.join(" ")
        };
        vec![
            ("DUALCHECK_DATABASE_URL", self.database_direct_url.clone()),
            ("DUALCHECK_TOPIC", self.topic.clone()),
            ("DUALCHECK_KAFKA_BOOTSTRAP", self.env.kafka_direct_bootstrap.clone()),
            ("DUALCHECK_TOXIPROXY_URL", self.env.toxiproxy.url().to_string()),
            ("DUALCHECK_POSTGRES_PROXY", self.env.postgres_proxy.clone()),
            ("DUALCHECK_KAFKA_PROXIES", self.env.kafka_proxies.join(",")),
            ("DUALCHECK_APP_PID", pid(&self.fleet.services()[0])),
            (
                "DUALCHECK_RELAY_PID",
                self.fleet.relays().first().map(|r| pid(r)).unwrap_or_default(),
            ),
            ("DUALCHECK_APP_PIDS", pids(self.fleet.services())),
            ("DUALCHECK_RELAY_PIDS", pids(self.fleet.relays())),
        ]
    }
}

/// The variables of the run whose custom fault started last: what the
/// stop commands get when they run on Ctrl-C.
fn last_vars() -> &'static Mutex<Vec<(&'static str, String)>> {
    static VARS: Mutex<Vec<(&'static str, String)>> = Mutex::new(Vec::new());
    &VARS
}

/// How long one command of a custom fault may run before it is killed and
/// counted as failed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a failed command's stderr its error quotes (the end of it).
const STDERR_TAIL: usize = 400;

/// Starts or stops a custom fault: runs its command. A fault without a stop
/// command has nothing to do when it stops.
/// `vars` go into the command's environment ([`RunContext::vars`]).
pub(super) async fn apply(fault: Fault, phase: FaultPhase, vars: &[(&'static str, String)]) -> Result<()> {
    let Fault::Custom(name) = fault else {
        bail!("{fault} is a {} fault, not a custom one", fault.family());
    };
    let def = commands(name)?;
    match phase {
        FaultPhase::Start => {
            *last_vars().lock().unwrap_or_else(|e| e.into_inner()) = vars.to_vec();
            services::process::register_interrupt_heal(heal_active_blocking);
            run(&def.start, vars)
                .await
                .with_context(|| format!("start command of {name}"))?;
            count_active(name, 1);
            Ok(())
        }
        FaultPhase::Stop => {
            count_active(name, -1);
            match &def.stop {
                Some(stop) => run(stop, vars).await.with_context(|| format!("stop command of {name}")),
                None => Ok(()),
            }
        }
    }
}

/// Runs `cmd` with `sh -c` and `vars` in its environment, in a process group
/// of its own (killed whole on a timeout); an error quotes the end of its stderr.
async fn run(cmd: &str, vars: &[(&'static str, String)]) -> Result<()> {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().with_context(|| format!("starting `sh -c {cmd}`"))?;
    let pid = child.id();
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.with_context(|| format!("waiting for `{cmd}`"))?;
            check_status(cmd, out.status, &out.stderr)
        }
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the group this command leads; no memory is shared.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            bail!("`{cmd}` timed out after {} s (killed)", COMMAND_TIMEOUT.as_secs())
        }
    }
}

fn check_status(cmd: &str, status: std::process::ExitStatus, stderr: &[u8]) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let tail = match text.char_indices().rev().nth(STDERR_TAIL) {
        Some((i, _)) => format!("...{}", &text[i..]),
        None => text.to_string(),
    };
    let status = match status.code() {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    if tail.is_empty() {
        bail!("`{cmd}` failed ({status}; nothing on stderr)")
    }
    bail!("`{cmd}` failed ({status}); stderr: {tail}")
}

/// On Ctrl-C: runs the stop command of every custom fault in effect (each
/// at most [`COMMAND_TIMEOUT`]), printing what fails.
pub fn heal_active_blocking() {
    for def in active() {
        let Some(stop) = def.stop else { continue };
        eprintln!("dualcheck: healing custom fault {}: {stop}", def.name);
        let vars = last_vars().lock().unwrap_or_else(|e| e.into_inner()).clone();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(&stop)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                eprintln!("dualcheck: healing custom fault {}: {e}", def.name);
                continue;
            }
        };
        let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if !status.success() => {
                    eprintln!(
                        "dualcheck: healing custom fault {}: `{stop}` failed ({status})",
                        def.name
                    );
                    break;
                }
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    eprintln!("dualcheck: healing custom fault {}: `{stop}` timed out", def.name);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_parse_or_say_what_is_wrong() {
        let d: CustomFault = "k-pause=kill -STOP 1,kill -CONT 1".parse().unwrap();
        assert_eq!(d.name, "k-pause");
        assert_eq!(d.start, "kill -STOP 1");
        assert_eq!(d.stop.as_deref(), Some("kill -CONT 1"));
        let d: CustomFault = "boom=kubectl delete pod a,b".parse().unwrap();
        assert_eq!(d.stop.as_deref(), Some("b"), "the first comma splits");
        let d: CustomFault = "once=true".parse().unwrap();
        assert_eq!(d.stop, None);
        for (bad, says) in [
            ("nothing", "no `=`"),
            ("=true", "the name"),
            ("Big=true", "the name"),
            ("a b=true", "the name"),
            ("x=", "START_CMD is empty"),
            ("x=,true", "START_CMD is empty"),
            ("x=true,", "STOP_CMD"),
        ] {
            let e = bad.parse::<CustomFault>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_name_taken_by_the_catalogue_or_defined_twice_is_refused() {
        for taken in ["pg-kill", "network", "custom", "none", "idle-window"] {
            let def: CustomFault = format!("{taken}=true").parse().unwrap();
            let e = define(&[def]).unwrap_err().to_string();
            assert!(e.contains(&format!("`{taken}`")) && e.contains("another name"), "{e}");
        }
        let a: CustomFault = "unit-twice=true".parse().unwrap();
        define(std::slice::from_ref(&a)).unwrap();
        define(&[a]).unwrap();
        let b: CustomFault = "unit-twice=false".parse().unwrap();
        assert!(define(&[b]).unwrap_err().to_string().contains("defined twice"));
    }

    #[test]
    fn a_defined_fault_is_a_fault_in_lists_and_schedules() {
        define(&["unit-list=true,true".parse().unwrap()]).unwrap();
        let f = Fault::from_name("unit-list").unwrap();
        assert_eq!(f, Fault::Custom("unit-list"));
        assert_eq!(f.family(), super::super::FaultFamily::Custom);
        assert!(Fault::parse_list("custom,pg-kill").unwrap().contains(&f));
        assert_eq!(serde_json::to_string(&f).unwrap(), "\"unit-list\"");
        assert_eq!(serde_json::from_str::<Fault>("\"unit-list\"").unwrap(), f);
        assert!(Fault::from_name("unit-undefined")
            .unwrap_err()
            .to_string()
            .contains("--fault-cmd"));
        assert_eq!(definitions_of(&[Fault::PgKill, f])[0].stop.as_deref(), Some("true"));
        use workloads::Nest;
        assert_eq!(f.shape(), workloads::FaultShape::Outage);
    }

    #[tokio::test]
    async fn a_failing_command_says_why_with_its_stderr() {
        define(&["unit-fails=echo started; echo it broke >&2; exit 3".parse().unwrap()]).unwrap();
        let e = apply(Fault::Custom("unit-fails"), FaultPhase::Start, &[])
            .await
            .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("exit status 3") && e.contains("it broke") && e.contains("unit-fails"),
            "{e}"
        );
        define(&["unit-ok=true".parse().unwrap()]).unwrap();
        apply(Fault::Custom("unit-ok"), FaultPhase::Start, &[]).await.unwrap();
        apply(Fault::Custom("unit-ok"), FaultPhase::Stop, &[]).await.unwrap();
    }

    #[tokio::test]
    async fn the_commands_get_the_runs_context_in_their_environment() {
        let cmd = r#"unit-context=test "$DUALCHECK_TOPIC" = orders_7,test "$DUALCHECK_APP_PID" = 42"#;
        define(&[cmd.parse().unwrap()]).unwrap();
        let vars = [
            ("DUALCHECK_TOPIC", "orders_7".to_string()),
            ("DUALCHECK_APP_PID", "42".to_string()),
        ];
        apply(Fault::Custom("unit-context"), FaultPhase::Start, &vars)
            .await
            .unwrap();
        apply(Fault::Custom("unit-context"), FaultPhase::Stop, &vars)
            .await
            .unwrap();
        let other = [("DUALCHECK_TOPIC", "orders_8".to_string())];
        assert!(apply(Fault::Custom("unit-context"), FaultPhase::Start, &other)
            .await
            .is_err());
    }
}
