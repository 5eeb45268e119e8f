//! Phase 2, workload: one task per worker submits its share of the seeded ops
//! and records each invocation and completion (and, with reads on, the read
//! back of each acknowledged write); a progress line shows the counters.

use super::start::Running;
use super::RunConfig;
use crate::app_process::{Fleet, Reply};
use crate::nemesis::Nemesis;
use crate::observer::ObserverStats;
use crate::recorder::Recorder;
use checkers::HistoryLine;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use workloads::{Op, WorkerStream};

/// Live counters for the progress line.
#[derive(Default)]
pub(super) struct Counters {
    ok: AtomicU64,
    fail: AtomicU64,
    info: AtomicU64,
}

/// The running workers.
pub(super) struct Workers {
    /// Their live counters.
    pub counters: Arc<Counters>,
    /// Ops acknowledged (`ok`) so far: the drain waits for each to be delivered.
    pub acked: Arc<Mutex<HashSet<u64>>>,
    invoked: Arc<Mutex<HashSet<u64>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Waits for every worker to end; returns the ops they invoked.
    pub async fn join(self) -> HashSet<u64> {
        for w in self.tasks {
            let _ = w.await;
        }
        std::mem::take(&mut *self.invoked.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Starts the workers; each stops at `deadline` and submits nothing during
/// the idle window (`--idle-window`; ops in flight at its start finish).
pub(super) fn spawn_workers(cfg: &RunConfig, running: &Running, deadline: Instant) -> Workers {
    let workload_start = deadline.checked_sub(cfg.duration).unwrap_or(deadline);
    let idle = cfg
        .workload
        .idle_span(cfg.duration)
        .map(|(from, until)| (workload_start + from, workload_start + until));
    let counters = Arc::new(Counters::default());
    let invoked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    // A service that cannot be asked to roll back gets no aborts.
    let mut workload = cfg.workload.clone();
    if cfg.template.request.as_ref().is_some_and(|r| !r.can_roll_back()) {
        workload.abort_fraction = 0.0;
    }
    let paced_from = Instant::now();
    let tasks = (0..workload.workers())
        .map(|w| {
            let worker = Worker {
                process: w as u64,
                fleet: running.fleet.clone(),
                recorder: running.recorder.clone(),
                counters: counters.clone(),
                invoked: invoked.clone(),
                acked: acked.clone(),
                interval: cfg.workload.worker_interval(),
                idle,
                deadline,
                op_timeout: cfg.op_timeout,
                reads: cfg.reads,
            };
            // Staggered: one op every 1/rate s across the workers, not a
            // burst of one op per worker every interval.
            let first_at = paced_from + cfg.workload.worker_offset(w).unwrap_or_default();
            tokio::spawn(worker.run(workload.worker(w), first_at))
        })
        .collect();
    Workers {
        counters,
        acked,
        invoked,
        tasks,
    }
}

/// One worker task: submits its stream's ops one at a time, paced, and
/// records each in the history.
struct Worker {
    /// The worker's number, the history's `process`.
    process: u64,
    /// The instances: each op goes to one ([`Fleet::for_write`]).
    fleet: Arc<Fleet>,
    recorder: Arc<Recorder>,
    counters: Arc<Counters>,
    invoked: Arc<Mutex<HashSet<u64>>>,
    acked: Arc<Mutex<HashSet<u64>>>,
    /// Time between this worker's ops (`None`: as fast as answers come).
    interval: Option<Duration>,
    /// The idle window (from, until), if any.
    idle: Option<(Instant, Instant)>,
    deadline: Instant,
    op_timeout: Duration,
    reads: bool,
}

impl Worker {
    /// Submits the ops of `stream` until it ends or the deadline comes; the
    /// first op is due at `next_at`.
    async fn run(self, stream: WorkerStream, mut next_at: Instant) {
        for op in stream {
            if !self.pace(&mut next_at).await {
                break;
            }
            self.submit(&op).await;
        }
    }

    /// Waits until the next op is due (`next_at` with pacing, and not in the
    /// idle window), and moves `next_at` on. False when the deadline came.
    async fn pace(&self, next_at: &mut Instant) -> bool {
        let deadline = self.deadline;
        if Instant::now() >= deadline {
            return false;
        }
        if let Some(iv) = self.interval {
            // Not past the deadline: the run's workload ends on time.
            tokio::time::sleep_until((*next_at).min(deadline).into()).await;
            *next_at = (*next_at).max(Instant::now() - iv) + iv;
            if Instant::now() >= deadline {
                return false;
            }
        }
        if let Some((from, until)) = self.idle {
            let now = Instant::now();
            if now >= from && now < until {
                self.sit_out_idle(until, next_at).await;
                if Instant::now() >= deadline {
                    return false;
                }
            }
        }
        true
    }

    /// Sleeps until the idle window ends at `until`, then until this worker's
    /// next slot.
    async fn sit_out_idle(&self, until: Instant, next_at: &mut Instant) {
        tokio::time::sleep_until(until.into()).await;
        // Pacing resumes from the window's end in each worker's
        // own phase, without a burst.
        if let Some(iv) = self.interval.filter(|iv| !iv.is_zero()) {
            // The first slot of this worker's schedule after the window.
            let mut slot = next_at.checked_sub(iv).unwrap_or(*next_at);
            while slot < until {
                slot += iv;
            }
            tokio::time::sleep_until(slot.min(self.deadline).into()).await;
            *next_at = slot + iv;
        } else {
            *next_at = (*next_at).max(Instant::now());
        }
    }

    /// Submits one op, recording its invocation and completion (and, with
    /// reads on, the read back of an acknowledged write).
    async fn submit(&self, op: &Op) {
        let recorder = &self.recorder;
        self.invoked.lock().unwrap_or_else(|e| e.into_inner()).insert(op.op);
        recorder.record(&HistoryLine::Invoke {
            op: op.op,
            process: self.process,
            key: op.key.clone(),
            seq: op.seq,
            time: recorder.now(),
            events: invoke_events(op),
        });
        let app = self.fleet.for_write(op.op);
        let reply = app.submit(op, self.op_timeout).await;
        let event = self.completion(op, reply, recorder.now());
        let acked = matches!(event, HistoryLine::Ok { .. });
        recorder.record(&event);
        if acked {
            self.acked.lock().unwrap_or_else(|e| e.into_inner()).insert(op.op);
        }
        if acked && self.reads {
            self.read_back(op).await;
        }
        if matches!(event, HistoryLine::Fail { .. } | HistoryLine::Info { .. }) && !app.is_alive() {
            // The application is down (a kill fault): do not spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The history line of `op`'s `reply` at `time`, counted for the progress line.
    fn completion(&self, op: &Op, reply: Reply, time: i64) -> HistoryLine {
        let (op, process) = (op.op, self.process);
        match reply {
            Reply::Ok => {
                self.counters.ok.fetch_add(1, Ordering::Relaxed);
                HistoryLine::Ok { op, process, time }
            }
            Reply::Fail(error) => {
                self.counters.fail.fetch_add(1, Ordering::Relaxed);
                HistoryLine::Fail {
                    op,
                    process,
                    time,
                    error,
                }
            }
            Reply::Info(error) => {
                self.counters.info.fetch_add(1, Ordering::Relaxed);
                HistoryLine::Info {
                    op,
                    process,
                    time,
                    error,
                }
            }
        }
    }

    /// Reads `op`'s key back (read your write). A failed or timed-out read
    /// is not recorded: nothing was seen.
    async fn read_back(&self, op: &Op) {
        let invoke_time = self.recorder.now();
        if let Ok(seq) = self.fleet.for_read(op.op).read(&op.key, self.op_timeout).await {
            self.recorder.record(&HistoryLine::Read {
                key: op.key.clone(),
                seq,
                invoke_time,
                time: self.recorder.now(),
            });
        }
    }
}

/// The progress line on stderr (hidden unless asked for) and the task that
/// refreshes it; dropping it stops the refresh.
pub(super) struct Progress {
    bar: indicatif::ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    /// Shows the counters, the deliveries and the active faults four times a second.
    pub fn start(show: bool, counters: Arc<Counters>, nemesis: Arc<Nemesis>, stats: Arc<ObserverStats>) -> Progress {
        let bar = progress_bar(show);
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    let faults: Vec<&str> = nemesis.active().iter().map(|f| f.name()).collect();
                    bar.set_message(format!(
                        "ok {}  fail {}  info {}  delivered {}  faults [{}]",
                        counters.ok.load(Ordering::Relaxed),
                        counters.fail.load(Ordering::Relaxed),
                        counters.info.load(Ordering::Relaxed),
                        stats.deliveries.load(Ordering::Relaxed),
                        faults.join(",")
                    ));
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        Progress { bar, ticker }
    }

    /// Names the phase the run is in (`healing`, `draining`).
    pub fn set_phase(&self, phase: &'static str) {
        self.bar.set_prefix(phase);
    }

    /// Stops the refresh and clears the line.
    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn progress_bar(show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    pb.set_prefix("running");
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The `events` field of an op's `invoke` line: none for one event, a count
/// when all its events are on its own key, else each event's key and seq.
fn invoke_events(op: &Op) -> Option<checkers::history::OpEvents> {
    use checkers::history::{EventPlace, OpEvents};
    if !op.is_multi_event() {
        return None;
    }
    Some(if op.events.iter().all(|e| e.key == op.key) {
        OpEvents::Count(op.events.len() as u32)
    } else {
        OpEvents::Each(
            op.events
                .iter()
                .map(|e| EventPlace {
                    key: e.key.clone(),
                    seq: e.seq,
                })
                .collect(),
        )
    })
}
