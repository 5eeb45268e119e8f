//! `dualcheck app --impl NAME`: runs one built-in implementation as its own
//! process, speaking the black-box HTTP contract of docs/http-contract.md (the runner starts,
//! SIGKILLs and restarts it). The work lives in the `implementations` crate;
//! this module parses arguments, reads the environment and reports errors.

use super::Verdict;
use clap::Args;

/// Arguments of `dualcheck app`.
#[derive(Args, Debug)]
pub struct AppArgs {
    /// Implementation to serve (see `dualcheck list`).
    #[arg(long = "impl", value_name = "NAME")]
    pub implementation: String,
}

/// Help text listing the environment variables an app process reads.
pub fn knobs_help() -> String {
    implementations::KNOBS
        .iter()
        .map(|k| {
            let d = if k.default.is_empty() {
                "required".to_string()
            } else {
                format!("default {}", k.default)
            };
            format!("  {:<30} {} ({d})", k.name, k.help)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the app until it is killed; `Unusable` on a usage or start-up error.
pub fn run(args: AppArgs) -> Verdict {
    let info = match implementations::lookup(&args.implementation) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("dualcheck app: {e}");
            return Verdict::Unusable;
        }
    };
    let config = match implementations::AppConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dualcheck app: {e:#}\nenvironment variables:\n{}", knobs_help());
            return Verdict::Unusable;
        }
    };
    let rt = match super::runtime("app") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    match rt.block_on(implementations::serve(info, config)) {
        Ok(()) => Verdict::Valid,
        Err(e) => {
            eprintln!("dualcheck app --impl {}: {e:#}", info.name);
            Verdict::Unusable
        }
    }
}
