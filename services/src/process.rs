//! Child processes owned by the harness: started in their own process group,
//! logged to a file, killed (SIGKILL) and restarted, paused (SIGSTOP) and
//! resumed (SIGCONT), and always ended.
//!
//! Three layers make sure no service outlives the harness:
//! 1. [`ManagedProcess`] kills its whole process group on `kill`, `shutdown` and `Drop`
//!    (so on normal exit, on error and on panic unwinding);
//! 2. every live group is registered; [`kill_all_registered`] (called by the
//!    Ctrl-C / SIGTERM handler, see [`install_signal_handler`]) kills them all;
//! 3. each child asks the kernel for `SIGKILL` when its parent dies
//!    (`prctl(PR_SET_PDEATHSIG)`), which covers a harness that is itself
//!    SIGKILLed. The kernel sends that signal when the *thread* that forked the
//!    child ends, so every child is forked by one dedicated spawner thread that
//!    lives as long as the process (test threads and tokio blocking threads come
//!    and go and would take the children with them).

use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::ffi::{CString, OsString};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What to run: program, arguments, environment, working directory, user and log file.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Short name used in errors and logs, e.g. `postgres` or `kafka-1`.
    pub name: String,
    /// Program to execute.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables (the harness's environment is inherited).
    pub env: Vec<(String, String)>,
    /// Working directory, if not the harness's.
    pub cwd: Option<PathBuf>,
    /// Run as this (uid, gid) (e.g. `postgres`, which refuses to run as root).
    pub user: Option<(u32, u32)>,
    /// File that receives stdout and stderr (appended to across restarts).
    pub log: PathBuf,
}

impl ProcessSpec {
    /// A spec for `program` logging to `log`, with no arguments.
    pub fn new(name: &str, program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            user: None,
            log: log.into(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Sets the user to run as.
    pub fn user(mut self, user: Option<(u32, u32)>) -> Self {
        self.user = user;
        self
    }

    fn command(&self) -> Result<Command> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening log file {} for {}", self.log.display(), self.name))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
        // std runs these hooks after setuid/setgid, which would otherwise clear the
        // parent-death signal.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("harness exited while starting a child"));
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks `cmd` on the long-lived spawner thread (see the module docs).
fn spawn_on_spawner_thread(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("dualcheck-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the dualcheck-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

fn registry() -> &'static Mutex<HashSet<i32>> {
    static LIVE: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(HashSet::new()))
}

/// SIGKILLs every process group this harness started and has not yet ended.
/// Safe to call from anywhere, any number of times.
pub fn kill_all_registered() {
    let groups: Vec<i32> = registry().lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
    for pgid in groups {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// What an interrupted command still has to say (e.g. a sweep's table of the
/// runs done so far), printed on stdout once the processes are killed.
/// A line for stderr says how far it got.
fn interrupt_summary() -> &'static Mutex<Option<(String, String)>> {
    static SUMMARY: OnceLock<Mutex<Option<(String, String)>>> = OnceLock::new();
    SUMMARY.get_or_init(|| Mutex::new(None))
}

/// Sets what to print if the command is interrupted from now on (replacing
/// what was set before): `stdout` (in the command's output format) and a `note` for stderr.
pub fn set_interrupt_summary(stdout: String, note: String) {
    *interrupt_summary().lock().unwrap_or_else(|e| e.into_inner()) = Some((stdout, note));
}

/// A clean-up that still has to run after an interrupt, once the processes are killed.
type Cleanup = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A registered clean-up with its key.
type Registered = (u64, Box<dyn FnOnce() -> Cleanup + Send>);

fn cleanups() -> &'static Mutex<Vec<Registered>> {
    static CLEANUPS: OnceLock<Mutex<Vec<Registered>>> = OnceLock::new();
    CLEANUPS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers `cleanup` to run if the command is interrupted (Ctrl-C, SIGTERM),
/// after every process the harness started is killed: e.g. dropping the
/// database and topic a run created on an external cluster. Returns a key for
/// [`unregister_interrupt_cleanup`], to call once the clean-up ran normally.
pub fn register_interrupt_cleanup<F, Fut>(cleanup: F) -> u64
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let key = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cleanups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, Box::new(move || Box::pin(cleanup()) as Cleanup)));
    key
}

/// Forgets the clean-up registered under `key` (it is no longer needed).
pub fn unregister_interrupt_cleanup(key: u64) {
    cleanups()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(k, _)| *k != key);
}

fn interrupt_heals() -> &'static Mutex<Vec<fn()>> {
    static HEALS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());
    &HEALS
}

/// Registers a heal that an interrupt runs first, before any process is
/// killed (once per function). The nemesis registers the stop commands of
/// the custom faults in effect here: the services sit below the nemesis and
/// never call it.
pub fn register_interrupt_heal(heal: fn()) {
    let mut heals = interrupt_heals().lock().unwrap_or_else(|e| e.into_inner());
    if !heals.iter().any(|h| std::ptr::fn_addr_eq(*h, heal)) {
        heals.push(heal);
    }
}

/// Resolves when the process receives SIGINT or SIGTERM (as the
/// implementations' own `runtime::interrupt::interrupted`; the services do
/// not depend on the implementations). Where SIGTERM cannot be listened for,
/// waits for SIGINT alone and says so in the log.
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops this process gracefully");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Installs (once) a tokio task that, on Ctrl-C (SIGINT) or SIGTERM, kills every
/// process group the harness started, runs the registered clean-ups
/// ([`register_interrupt_cleanup`], at most 30 s), prints the interrupt summary
/// if one was set, then exits with 130. Must be called inside a tokio runtime.
pub fn install_signal_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        tokio::spawn(async {
            interrupted().await;
            eprintln!("dualcheck: interrupted; killing every service this run started");
            for heal in interrupt_heals().lock().unwrap_or_else(|e| e.into_inner()).iter() {
                heal();
            }
            kill_all_registered();
            let pending: Vec<_> = cleanups().lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect();
            let all = run_cleanups(pending.into_iter().map(|(_, f)| f()).collect());
            if tokio::time::timeout(Duration::from_secs(30), all).await.is_err() {
                eprintln!("dualcheck: clean-up after the interrupt did not finish in 30 s");
            }
            if let Some((stdout, note)) = interrupt_summary().lock().unwrap_or_else(|e| e.into_inner()).take() {
                use std::io::Write;
                print!("{stdout}");
                std::io::stdout().flush().ok();
                eprintln!("dualcheck: {note}");
            }
            std::process::exit(130);
        });
    });
}

/// Runs every clean-up one after the other (few, and each is short).
async fn run_cleanups(all: Vec<Cleanup>) {
    for f in all {
        f.await;
    }
}

/// Process ids of the live (not zombie) processes in process group `pgid`, read from /proc.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| proc_stat(pid).is_some_and(|s| s.pgrp == pgid && s.running()))
        .collect()
}

/// Fields of `/proc/PID/stat` the harness reads.
struct ProcStat {
    state: String,
    ppid: i32,
    pgrp: i32,
    /// When it started, in clock ticks since boot (field 22).
    start: u64,
}

impl ProcStat {
    /// Neither a zombie nor dead.
    fn running(&self) -> bool {
        self.state != "Z" && self.state != "X"
    }
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command (which may hold spaces and parentheses): state is
    // field 3, ppid 4, pgrp 5, the start time 22.
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.to_string();
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    let start = f.nth(22 - 6)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        start,
    })
}

/// When `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it names one process — a pid reused by
/// a later process has a later start.
pub fn start_ticks(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|s| s.start)
}

/// True while `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|s| s.running())
}

/// `root` and all its live descendants (by parent pid, from /proc). Needed
/// because some services move their children to new sessions (PostgreSQL
/// backends call `setsid()`), so a process-group signal misses them.
pub fn process_tree(root: i32) -> Vec<i32> {
    let mut parent = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some(s) = proc_stat(pid).filter(ProcStat::running) {
                    parent.push((pid, s.ppid));
                }
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.retain(|p| pid_alive(*p));
    out
}

/// One process named by pid and start time ([`start_ticks`]): signalled
/// only while that pid still names the same process.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Member {
    pid: i32,
    start: u64,
}

impl Member {
    /// `pid` as it is now, if it runs.
    fn of(pid: i32) -> Option<Member> {
        let s = proc_stat(pid).filter(ProcStat::running)?;
        Some(Member { pid, start: s.start })
    }

    /// True while the pid names this process and it is not a zombie.
    fn is_alive(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.start == self.start && s.running())
    }

    /// Sends `sig` if the pid still names this process.
    fn signal(&self, sig: libc::c_int) {
        if start_ticks(self.pid) == Some(self.start) {
            // SAFETY: plain syscall on a process this harness started.
            unsafe {
                libc::kill(self.pid, sig);
            }
        }
    }
}

/// After the leader of group `pgid` was reaped: SIGKILLs what is left of the
/// group (while one member lives its id cannot be reused) and drops it from
/// the registry, so no later signal can reach a process that reuses the id.
fn forget_group(pgid: i32) {
    // SAFETY: plain syscall, moments after the reap, on our own group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    registry().lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
}

struct Running {
    child: Child,
    pgid: i32,
}

/// A service process the harness owns (see the module docs).
pub struct ManagedProcess {
    spec: ProcessSpec,
    /// Variables set on top of the spec's at every start from now on ([`ManagedProcess::set_extra_env`]).
    extra_env: Mutex<Vec<(String, String)>>,
    running: Mutex<Option<Running>>,
    last_exit: Mutex<Option<ExitStatus>>,
}

impl ManagedProcess {
    /// Starts the process described by `spec`.
    pub fn start(spec: ProcessSpec) -> Result<Self> {
        let p = ManagedProcess {
            spec,
            extra_env: Mutex::new(Vec::new()),
            running: Mutex::new(None),
            last_exit: Mutex::new(None),
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&self) -> Result<()> {
        let mut cmd = self.spec.command()?;
        cmd.envs(self.extra_env.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
        let child = spawn_on_spawner_thread(cmd).with_context(|| {
            format!(
                "starting {} ({}): is it installed? run `bash ci/setup`",
                self.spec.name,
                self.spec.program.display()
            )
        })?;
        let pgid = child.id() as i32;
        registry().lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running { child, pgid });
        Ok(())
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The log file receiving the process's output.
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// Process id (= process group id) while started, `None` after a kill.
    pub fn pid(&self) -> Option<u32> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.child.id())
    }

    /// `Ok(())` while the process runs; an error naming the exit status and the
    /// log file once it has exited by itself.
    pub fn check_alive(&self) -> Result<()> {
        let mut guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = guard.as_mut() else {
            bail!("{} is not running (killed by the harness)", self.spec.name)
        };
        let Some(status) = r.child.try_wait()? else {
            return Ok(());
        };
        // Reaped: from now on its pid may name another process (pids wrap,
        // at 32768 on many machines), so the handle forgets it at once,
        // after ending what is left of its group.
        let pgid = r.pgid;
        *guard = None;
        forget_group(pgid);
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        bail!(
            "{} exited ({status}); read its log: {}",
            self.spec.name,
            self.spec.log.display()
        )
    }

    /// How the process last ended (by itself, as [`check_alive`](Self::check_alive)
    /// found, or by [`kill`](Self::kill)); `None` while it never has.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// SIGKILLs the whole process group and waits (up to 10 s) until no member is left.
    pub fn kill(&self) -> Result<()> {
        let taken = self.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut r) = taken else { return Ok(()) };
        // Each member named by pid and start time: the group's processes die
        // and are reaped meanwhile, and a pid reused by a later process (even
        // a thread of this harness) must never be signalled.
        let mut members: Vec<Member> = process_tree(r.pgid).into_iter().filter_map(Member::of).collect();
        members.extend(group_members(r.pgid).into_iter().filter_map(Member::of));
        members.sort_unstable();
        members.dedup();
        // SAFETY: plain syscall on the group this handle leads and has not
        // reaped. SIGCONT too so stopped processes die promptly.
        unsafe {
            libc::kill(-r.pgid, libc::SIGKILL);
        }
        for m in &members {
            m.signal(libc::SIGKILL);
            m.signal(libc::SIGCONT);
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(-r.pgid, libc::SIGCONT);
        }
        let status = r
            .child
            .wait()
            .with_context(|| format!("waiting for {} to die", self.spec.name))?;
        *self.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Members that left the group (PostgreSQL backends call setsid())
            // and members still in it (the group lives while one does, so
            // its id is not reused meanwhile).
            members.retain(Member::is_alive);
            members.extend(group_members(r.pgid).into_iter().filter_map(Member::of));
            members.sort_unstable();
            members.dedup();
            if members.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let left: Vec<i32> = members.iter().map(|m| m.pid).collect();
                bail!(
                    "{}: processes {left:?} of group {} survived SIGKILL for 10 s",
                    self.spec.name,
                    r.pgid
                );
            }
            for m in &members {
                m.signal(libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        registry().lock().unwrap_or_else(|e| e.into_inner()).remove(&r.pgid);
        Ok(())
    }

    /// Asks the process to end (SIGTERM to its group) and waits up to
    /// `timeout` for it to exit by itself: true if it did (its status is then
    /// [`last_exit`](Self::last_exit)), false if it still runs (or was not
    /// running) — [`kill`](Self::kill) it then.
    pub fn terminate(&self, timeout: Duration) -> Result<bool> {
        self.signal_group(libc::SIGTERM, "terminate")?;
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
                let Some(r) = guard.as_mut() else { return Ok(false) };
                if let Some(status) = r.child.try_wait()? {
                    *self.last_exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    let pgid = r.pgid;
                    *guard = None;
                    forget_group(pgid);
                    return Ok(true);
                }
            }
            if Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets variables on top of the spec's for every later start (an empty
    /// list: the spec's alone again). The running process keeps its own.
    pub fn set_extra_env(&self, env: Vec<(String, String)>) {
        *self.extra_env.lock().unwrap_or_else(|e| e.into_inner()) = env;
    }

    /// Starts the process again with the same spec (after [`kill`](Self::kill); kills first if running).
    pub fn restart(&self) -> Result<()> {
        self.kill()?;
        self.spawn()
    }

    fn signal_group(&self, sig: libc::c_int, what: &str) -> Result<()> {
        let guard = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let Some(r) = guard.as_ref() else {
            bail!("cannot {what} {}: it is not running", self.spec.name)
        };
        // SAFETY: plain syscall.
        if unsafe { libc::kill(-r.pgid, sig) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("{what} {} (process group {})", self.spec.name, r.pgid));
        }
        // Children that left the group (e.g. PostgreSQL backends, which call setsid()).
        for p in process_tree(r.pgid) {
            // SAFETY: plain syscall.
            unsafe {
                libc::kill(p, sig);
            }
        }
        Ok(())
    }

    /// Freezes every process of the group (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) -> Result<()> {
        self.signal_group(libc::SIGSTOP, "pause")
    }

    /// Resumes a paused group (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal_group(libc::SIGCONT, "resume")
    }

    /// Every live process of this service: its tree (by parent pid) and its group.
    pub fn all_pids(&self) -> Vec<i32> {
        let Some(pgid) = self.pgid() else {
            return Vec::new();
        };
        let mut pids = process_tree(pgid);
        pids.extend(group_members(pgid));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// The process group id while running.
    pub fn pgid(&self) -> Option<i32> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.pgid)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!("dualcheck: {e:#}");
        }
    }
}

/// Runs `program args` to completion (as `user` if given) with output to `log`;
/// fails with the log's tail when the exit status is not 0.
pub fn run_to_completion(spec: &ProcessSpec, timeout: Duration) -> Result<()> {
    let mut child = spawn_on_spawner_thread(spec.command()?)
        .with_context(|| format!("running {} ({})", spec.name, spec.program.display()))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!(
                "{} failed ({status}); last lines of {}:\n{}",
                spec.name,
                spec.log.display(),
                tail(&spec.log, 15)
            );
        }
        if Instant::now() > deadline {
            // SAFETY: plain syscall.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.wait();
            bail!(
                "{} did not finish within {timeout:?}; see {}",
                spec.name,
                spec.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a log file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// (uid, gid) of a system user, e.g. `postgres`.
pub fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let cname = CString::new(name)?;
    // SAFETY: getpwnam returns a pointer to static storage or null; read immediately.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        bail!("user '{name}' does not exist (Debian's postgresql package creates it: run `bash ci/setup`)");
    }
    // SAFETY: non-null pointer from getpwnam.
    unsafe { Ok(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// True when the harness runs as root.
pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str) -> ManagedProcess {
        let log = std::env::temp_dir().join(format!("dualcheck-process-test-{}-{name}.log", std::process::id()));
        let mut spec = ProcessSpec::new(name, "/bin/sh", log);
        spec.args = vec!["-c".into(), script.into()];
        ManagedProcess::start(spec).unwrap()
    }

    /// The pid of the first `sleep 300` whose process group is `pgid`.
    fn sleeper_in(pgid: i32) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = group_members(pgid)
                .into_iter()
                .find(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.starts_with("sleep")));
            if let Some(p) = found {
                return p;
            }
            assert!(Instant::now() < deadline, "no sleep in group {pgid}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_process_that_exits_by_itself_is_forgotten_with_what_is_left_of_its_group() {
        // The leader exits; a child it left in its group runs on.
        let p = sh("leaves-a-child", "sleep 300 & sleep 0.3; exit 3");
        let pgid = p.pgid().unwrap();
        let child = sleeper_in(pgid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.check_alive().is_ok() {
            assert!(Instant::now() < deadline, "the leader never exited");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(p.last_exit().and_then(|s| s.code()), Some(3));
        // Reaped: the handle keeps no pid that a later process could reuse...
        assert_eq!(p.pid(), None);
        assert!(p.all_pids().is_empty());
        // ...and the child it left was ended with it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pid_alive(child) {
            assert!(Instant::now() < deadline, "the leader's child {child} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!registry().lock().unwrap().contains(&pgid));
        p.kill().unwrap();
    }

    #[test]
    fn a_member_is_signalled_only_while_its_pid_names_the_same_process() {
        let p = sh("target", "exec sleep 300");
        let pid = p.pid().unwrap() as i32;
        let same = Member::of(pid).unwrap();
        // The fields as /proc says them: its own group, our child, and the
        // start time awk reads as field 22 (no parentheses in `sleep`).
        let s = proc_stat(pid).unwrap();
        assert_eq!((s.pgrp, s.ppid), (pid, std::process::id() as i32));
        let awk = std::process::Command::new("awk")
            .args(["{print $22}", &format!("/proc/{pid}/stat")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&awk.stdout).trim(), same.start.to_string());
        // The same pid with another start time: a later process reusing it.
        let reused = Member {
            pid,
            start: same.start + 1,
        };
        assert!(!reused.is_alive());
        reused.signal(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
        assert!(p.check_alive().is_ok(), "a stale member was signalled");
        assert!(same.is_alive());
        p.kill().unwrap();
        assert!(!same.is_alive());
        assert!(p.check_alive().is_err());
    }
}
