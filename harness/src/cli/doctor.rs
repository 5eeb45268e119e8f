//! `dualcheck doctor` (is this machine ready, and do the real services
//! behave? The self-test is [`dualcheck::doctor`]) and `dualcheck setup` (runs `ci/setup`).

use super::Verdict;
use dualcheck::doctor::DoctorOutcome;
use std::path::PathBuf;

/// Arguments of `dualcheck doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Number of Kafka brokers to start: 1, or 3 to check the three-broker cluster a run under
    /// `kafka-leader` uses (topics replicated three times; broker 0 is killed and restarted).
    #[arg(long, default_value_t = 1)]
    pub brokers: usize,
    /// Keep the run directory (logs) after a successful run.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `dualcheck setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// Only what dualcheck's runs need (PostgreSQL, Kafka, Kafka Connect with Debezium,
    /// Toxiproxy, libfaketime): for a CI job gating a service. Leaves out the tools only
    /// dualcheck's own test suite uses (`ci/setup --services`).
    #[arg(long)]
    pub services: bool,
}

/// Runs the doctor: all passed, a check failed, or not set up.
pub fn run(args: DoctorArgs) -> Verdict {
    let rt = match super::runtime("doctor") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    match rt.block_on(dualcheck::doctor::self_test(args.brokers, args.keep)) {
        DoctorOutcome::AllPassed => Verdict::Valid,
        DoctorOutcome::ChecksFailed => Verdict::Invalid,
        DoctorOutcome::NotSetUp => Verdict::Unusable,
    }
}

/// Runs `ci/setup` from the source tree (found next to the binary's crate or in
/// the current directory): it succeeded, it failed, or it cannot be found or run.
pub fn setup(args: SetupArgs) -> Verdict {
    let candidates = [
        PathBuf::from("ci/setup"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/setup"),
    ];
    let Some(script) = candidates.iter().find(|p| p.exists()) else {
        eprintln!(
            "dualcheck setup: ci/setup not found (looked in {}); run it from a checkout of dualcheck: `bash ci/setup`",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Verdict::Unusable;
    };
    let flags: &[&str] = if args.services { &["--services"] } else { &[] };
    let shown: Vec<String> = std::iter::once(script.display().to_string())
        .chain(flags.iter().map(|f| f.to_string()))
        .collect();
    println!("running bash {}", shown.join(" "));
    match std::process::Command::new("bash").arg(script).args(flags).status() {
        Ok(s) if s.success() => Verdict::Valid,
        Ok(s) => {
            eprintln!("dualcheck setup: {} failed ({s})", script.display());
            Verdict::Invalid
        }
        Err(e) => {
            eprintln!("dualcheck setup: cannot run bash: {e}");
            Verdict::Unusable
        }
    }
}
