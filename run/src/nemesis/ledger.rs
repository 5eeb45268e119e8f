//! What the history says about faults, and when: a fault's `start` line is
//! written only once the fault took effect, a start that failed is a `failed`
//! line of its own (no window, no `stop`), and process faults on one target
//! never overlap — a fault whose target another fault already holds waits
//! until that one stops (docs/faults.md, "Overlapping faults").
//!
//! The ledger keeps this bookkeeping apart from the means of injection (an
//! [`Injector`]), so it can be tested without services.

use super::Fault;
use crate::recorder::Recorder;
use anyhow::{anyhow, Context, Result};
use checkers::HistoryLine;
use std::collections::BTreeSet;
use std::sync::Mutex;
use workloads::FaultPhase;

/// What a process fault holds while it is in effect: two faults with the same
/// target never are in effect at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum Target {
    /// The PostgreSQL process (`pg-kill`, `pg-pause`).
    Postgres,
    /// Kafka broker 0 (`kafka-kill`, `kafka-pause`, and `kafka-leader`, whose
    /// leader may be broker 0).
    KafkaBroker0,
    /// The implementation process (`crash-after-commit`; `relay-kill` when the
    /// relay runs inside it).
    Application,
    /// The relay process of a pattern whose relay runs apart (`relay-kill`).
    Relay,
}

/// Applies faults; the ledger decides when, and records what happened.
pub(super) trait Injector {
    /// The target `fault` holds while in effect (`None`: it composes with every fault).
    fn target(&self, fault: Fault) -> Option<Target>;
    /// Starts or stops `fault`.
    async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()>;
}

#[derive(Default)]
struct State {
    /// In effect: started and not yet stopped.
    active: BTreeSet<Fault>,
    /// Scheduled to start, waiting for their target, in arrival order.
    waiting: Vec<Fault>,
}

/// The nemesis's record of which faults are in effect and which wait.
#[derive(Default)]
pub(super) struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Faults in effect now.
    pub(super) fn active(&self) -> Vec<Fault> {
        self.lock().active.iter().copied().collect()
    }

    /// Starts `fault` now, or, when its target is held, once the holder stops.
    /// An error is a start that failed (already recorded as `failed`).
    pub(super) async fn start<I: Injector>(&self, injector: &I, recorder: &Recorder, fault: Fault) -> Result<()> {
        {
            let mut st = self.lock();
            if st.active.contains(&fault) || st.waiting.contains(&fault) {
                return Ok(());
            }
            if let Some(target) = injector.target(fault) {
                let held = st
                    .active
                    .iter()
                    .chain(st.waiting.iter())
                    .any(|&f| injector.target(f) == Some(target));
                if held {
                    tracing::info!("{fault} waits: {target} is held by another fault");
                    st.waiting.push(fault);
                    return Ok(());
                }
            }
        }
        self.take_effect(injector, recorder, fault).await
    }

    /// Applies `fault`; records `start` when it took effect, else `failed`.
    async fn take_effect<I: Injector>(&self, injector: &I, recorder: &Recorder, fault: Fault) -> Result<()> {
        // Counted as active from now on, so healing undoes it even if this task
        // is cut off mid-way (the nemesis gets 5 s after the workload).
        self.lock().active.insert(fault);
        match injector.apply(fault, FaultPhase::Start).await {
            Ok(()) => {
                record(recorder, fault, checkers::FaultPhase::Start, None);
                Ok(())
            }
            Err(e) => {
                self.lock().active.remove(&fault);
                let e = e.context(format!("starting fault {fault}"));
                record(recorder, fault, checkers::FaultPhase::Failed, Some(format!("{e:#}")));
                if fault.family() == super::FaultFamily::Network {
                    // A toxic or a proxy may have taken effect on some links: undo them,
                    // so nothing acts that the history does not show.
                    if let Err(undo) = injector.apply(fault, FaultPhase::Stop).await {
                        tracing::debug!("undoing the failed start of {fault}: {undo:#}");
                    }
                }
                Err(e)
            }
        }
    }

    /// Stops `fault`: heals it if it is in effect (then starts a fault waiting
    /// for its target), records `failed` if it was still waiting, and does
    /// nothing if its start failed.
    pub(super) async fn stop<I: Injector>(&self, injector: &I, recorder: &Recorder, fault: Fault) -> Result<()> {
        let target = injector.target(fault);
        let holder = {
            let mut st = self.lock();
            if let Some(pos) = st.waiting.iter().position(|&f| f == fault) {
                st.waiting.remove(pos);
                let holder = st.active.iter().copied().find(|&f| injector.target(f) == target);
                Some(holder)
            } else if !st.active.contains(&fault) {
                return Ok(());
            } else {
                None
            }
        };
        if let Some(holder) = holder {
            let why = format!(
                "never took effect: {} was held by {} for its whole window",
                target.map_or("its target".to_string(), |t| t.to_string()),
                holder.map_or("another fault", Fault::name)
            );
            record(recorder, fault, checkers::FaultPhase::Failed, Some(why));
            return Ok(());
        }
        let healed = injector
            .apply(fault, FaultPhase::Stop)
            .await
            .with_context(|| format!("healing fault {fault}"));
        self.lock().active.remove(&fault);
        record(recorder, fault, checkers::FaultPhase::Stop, None);
        let next = target.and_then(|t| {
            let mut st = self.lock();
            let pos = st.waiting.iter().position(|&f| injector.target(f) == Some(t))?;
            Some(st.waiting.remove(pos))
        });
        let started = match next {
            Some(next) => self.take_effect(injector, recorder, next).await,
            None => Ok(()),
        };
        match (healed, started) {
            (Ok(()), r) | (r, Ok(())) => r,
            (Err(a), Err(b)) => Err(anyhow!("{a:#}; {b:#}")),
        }
    }

    /// Healing begins: every fault still waiting never took effect (recorded as
    /// `failed`), every fault in effect is stopped. Returns the first error
    /// after trying all.
    pub(super) async fn stop_all<I: Injector>(&self, injector: &I, recorder: &Recorder) -> Result<()> {
        let waiting = std::mem::take(&mut self.lock().waiting);
        for fault in waiting {
            record(
                recorder,
                fault,
                checkers::FaultPhase::Failed,
                Some("never took effect: its target was still held by another fault when healing began".into()),
            );
        }
        let mut first_error = None;
        for fault in self.active() {
            if let Err(e) = self.stop(injector, recorder, fault).await {
                tracing::warn!("{e:#}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Writes one `nemesis` line.
fn record(recorder: &Recorder, fault: Fault, phase: checkers::FaultPhase, error: Option<String>) {
    recorder.record(&HistoryLine::Nemesis {
        fault: fault.name().into(),
        phase,
        time: recorder.now(),
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkers::{CheckOptions, FaultPhase as Phase, ParsedLine};

    /// Injects nothing; fails the starts it is told to, and logs every call.
    #[derive(Default)]
    struct Fake {
        fail_start: Vec<Fault>,
        calls: Mutex<Vec<(Fault, FaultPhase)>>,
    }

    impl Injector for Fake {
        fn target(&self, fault: Fault) -> Option<Target> {
            match fault {
                Fault::PgKill | Fault::PgPause => Some(Target::Postgres),
                _ => None,
            }
        }
        async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
            self.calls.lock().unwrap().push((fault, phase));
            if phase == FaultPhase::Start && self.fail_start.contains(&fault) {
                anyhow::bail!("HTTP 409 Conflict: toxic already exists");
            }
            Ok(())
        }
    }

    fn recorder(name: &str) -> (Recorder, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dualcheck-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        (Recorder::create(&path).unwrap(), path)
    }

    /// (fault, phase, error) of every nemesis line, in file order.
    fn nemesis_lines(path: &std::path::Path) -> Vec<(String, Phase, Option<String>)> {
        let mut out = Vec::new();
        checkers::reader::read_file(path, |_, line| {
            if let ParsedLine::Nemesis {
                fault, phase, error, ..
            } = line
            {
                out.push((fault.into_owned(), phase, error.map(|e| e.into_owned())));
            }
            Ok(())
        })
        .unwrap();
        out
    }

    #[tokio::test]
    async fn a_failed_start_is_a_failed_line_and_no_window() {
        let fake = Fake {
            fail_start: vec![Fault::KafkaReset],
            ..Fake::default()
        };
        let (rec, path) = recorder("failed.jsonl");
        let ledger = Ledger::default();
        ledger.start(&fake, &rec, Fault::KafkaLatency).await.unwrap();
        let e = ledger.start(&fake, &rec, Fault::KafkaReset).await.unwrap_err();
        assert!(format!("{e:#}").contains("starting fault kafka-reset"), "{e:#}");
        assert_eq!(ledger.active(), [Fault::KafkaLatency]);
        // Its scheduled stop heals nothing and writes nothing.
        ledger.stop(&fake, &rec, Fault::KafkaReset).await.unwrap();
        ledger.stop(&fake, &rec, Fault::KafkaLatency).await.unwrap();
        let lines = nemesis_lines(&path);
        assert_eq!(
            lines.iter().map(|(f, p, _)| (f.as_str(), *p)).collect::<Vec<_>>(),
            [
                ("kafka-latency", Phase::Start),
                ("kafka-reset", Phase::Failed),
                ("kafka-latency", Phase::Stop)
            ]
        );
        assert!(lines[1].2.as_deref().unwrap().contains("409 Conflict"), "{lines:?}");
        // The failed network start was undone; its stop was never applied again.
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls
                .iter()
                .filter(|c| **c == (Fault::KafkaReset, FaultPhase::Stop))
                .count(),
            1,
            "{calls:?}"
        );
        rec.end(true);
        let r = checkers::check_file(&path, CheckOptions::default()).unwrap();
        assert_eq!(r.faults.len(), 1, "{:?}", r.faults);
        assert_eq!(r.faults[0].fault, "kafka-latency");
        assert_eq!(r.failed_faults.len(), 1);
        assert_eq!(r.failed_faults[0].fault, "kafka-reset");
    }

    #[tokio::test]
    async fn a_pause_inside_a_kill_waits_for_the_restart() {
        let fake = Fake::default();
        let (rec, path) = recorder("deferred.jsonl");
        let ledger = Ledger::default();
        ledger.start(&fake, &rec, Fault::PgKill).await.unwrap();
        ledger.start(&fake, &rec, Fault::PgPause).await.unwrap();
        assert_eq!(ledger.active(), [Fault::PgKill], "the pause waits");
        ledger.stop(&fake, &rec, Fault::PgKill).await.unwrap();
        assert_eq!(
            ledger.active(),
            [Fault::PgPause],
            "it took effect once postgres was back"
        );
        ledger.stop(&fake, &rec, Fault::PgPause).await.unwrap();
        assert_eq!(
            *fake.calls.lock().unwrap(),
            [
                (Fault::PgKill, FaultPhase::Start),
                (Fault::PgKill, FaultPhase::Stop),
                (Fault::PgPause, FaultPhase::Start),
                (Fault::PgPause, FaultPhase::Stop),
            ]
        );
        let phases: Vec<(String, Phase)> = nemesis_lines(&path).into_iter().map(|(f, p, _)| (f, p)).collect();
        assert_eq!(
            phases,
            [
                ("pg-kill".to_string(), Phase::Start),
                ("pg-kill".to_string(), Phase::Stop),
                ("pg-pause".to_string(), Phase::Start),
                ("pg-pause".to_string(), Phase::Stop),
            ]
        );
    }

    #[tokio::test]
    async fn a_pause_whose_window_ends_inside_the_kill_never_takes_effect() {
        let fake = Fake::default();
        let (rec, path) = recorder("never.jsonl");
        let ledger = Ledger::default();
        ledger.start(&fake, &rec, Fault::PgKill).await.unwrap();
        ledger.start(&fake, &rec, Fault::PgPause).await.unwrap();
        ledger.start(&fake, &rec, Fault::KafkaLatency).await.unwrap();
        ledger.stop(&fake, &rec, Fault::PgPause).await.unwrap();
        ledger.stop_all(&fake, &rec).await.unwrap();
        let lines = nemesis_lines(&path);
        let pause: Vec<_> = lines.iter().filter(|l| l.0 == "pg-pause").collect();
        assert_eq!(pause.len(), 1, "{lines:?}");
        assert_eq!(pause[0].1, Phase::Failed);
        assert!(pause[0].2.as_deref().unwrap().contains("held by pg-kill"), "{lines:?}");
        assert!(!fake.calls.lock().unwrap().iter().any(|c| c.0 == Fault::PgPause));
        assert!(ledger.active().is_empty());

        // Healing with a fault still waiting: it never took effect either.
        ledger.start(&fake, &rec, Fault::PgKill).await.unwrap();
        ledger.start(&fake, &rec, Fault::PgPause).await.unwrap();
        ledger.stop_all(&fake, &rec).await.unwrap();
        let lines = nemesis_lines(&path);
        assert_eq!(lines.last().unwrap().0, "pg-kill");
        assert_eq!(lines.last().unwrap().1, Phase::Stop);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.0 == "pg-pause" && l.1 == Phase::Failed)
                .count(),
            2,
            "{lines:?}"
        );
        assert!(!fake.calls.lock().unwrap().iter().any(|c| c.0 == Fault::PgPause));
    }
}
