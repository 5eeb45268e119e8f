//! One campaign runner: what every command that carries out many runs on
//! services started once shares — `sweep`, `compare` and `zoo` (sweeps),
//! `shrink` and `bench`. A [`Campaign`] keeps one set of services per broker
//! count (started on first need, the previous set shut down when the count
//! changes), numbers its runs (each run's database, topic and slots are named
//! after its number), restores the services after each run
//! ([`crate::runner::run_on`]), keeps what Ctrl-C prints (the results so
//! far, [`Campaign::on_interrupt_print`]) and shuts the services down at the end. `run` is a
//! campaign of one whose services log into its own run directory
//! ([`crate::runner::run`]).

use crate::env::{BackendKind, EnvOptions, Environment};
use crate::runner::{RunConfig, RunOutcome};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the services may take to start.
const SERVICES_START_TIMEOUT: Duration = Duration::from_secs(90);

/// The services a campaign's runs share and the numbering of its runs.
pub struct Campaign {
    backend: BackendKind,
    /// Where each set of services keeps its data and logs
    /// (`services-N-brokers` under it).
    dir: PathBuf,
    services: Option<Arc<Environment>>,
    runs: u32,
    services_start_s: f64,
}

/// Services handed out by [`Campaign::services`].
pub struct Services {
    /// The running services.
    pub env: Arc<Environment>,
    /// Whether they were started by this call (a campaign may warm them up).
    pub fresh: bool,
}

impl Campaign {
    /// A campaign on `backend`'s services, keeping their data and logs under `dir`.
    pub fn new(backend: BackendKind, dir: &Path) -> Campaign {
        Campaign {
            backend,
            dir: dir.to_path_buf(),
            services: None,
            runs: 0,
            services_start_s: 0.0,
        }
    }

    /// The services for runs needing `brokers`: those running when they
    /// have as many, else new ones (the running ones shut down first).
    pub async fn services(&mut self, brokers: usize) -> Result<Services> {
        if let Some(env) = self.services.as_ref().filter(|e| e.brokers() == brokers) {
            return Ok(Services {
                env: env.clone(),
                fresh: false,
            });
        }
        if let Some(done) = self.services.take() {
            Environment::shut_down_shared(done).await;
        }
        let started = Instant::now();
        let env = Environment::start(EnvOptions {
            backend: self.backend.clone(),
            brokers,
            run_dir: self.dir.join(format!("services-{brokers}-brokers")),
            timeout: SERVICES_START_TIMEOUT,
        })
        .await
        .context("starting the services (run `dualcheck doctor` to diagnose)");
        self.services_start_s += started.elapsed().as_secs_f64();
        let env = Arc::new(env?);
        self.services = Some(env.clone());
        Ok(Services { env, fresh: true })
    }

    /// Carries out `cfg` as the campaign's next run, on services with the
    /// brokers it needs; the services are restored afterwards.
    pub async fn run(&mut self, cfg: &RunConfig) -> Result<RunOutcome> {
        let env = self.services(crate::runner::brokers_needed(cfg)).await?.env;
        self.runs += 1;
        crate::runner::run_on(cfg, &env, self.runs).await
    }

    /// Carries out `cfg` on the services running now without counting it as
    /// one of the campaign's runs (a warm-up): its database and topic are
    /// those of number 0.
    pub async fn run_unnumbered(&mut self, cfg: &RunConfig) -> Result<RunOutcome> {
        let env = self.services(crate::runner::brokers_needed(cfg)).await?.env;
        crate::runner::run_on(cfg, &env, 0).await
    }

    /// The runs carried out so far.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// Seconds spent starting services so far.
    pub fn services_start_s(&self) -> f64 {
        self.services_start_s
    }

    /// What Ctrl-C prints from now on, in place of what was set before:
    /// `stdout` in the command's output format (e.g. the table of the runs
    /// done so far) and a `note` for stderr saying how far the campaign got.
    /// Every campaign command keeps it current after each run.
    pub fn on_interrupt_print(&self, stdout: String, note: String) {
        crate::env::process::set_interrupt_summary(stdout, note);
    }

    /// Shuts the running services down.
    pub async fn finish(mut self) {
        if let Some(done) = self.services.take() {
            Environment::shut_down_shared(done).await;
        }
    }
}
