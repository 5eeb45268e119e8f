//! `dualcheck app --impl NAME`: runs one built-in implementation as its own
//! process, speaking the black-box HTTP contract of docs/http-contract.md (the runner starts,
//! SIGKILLs and restarts it). The work lives in the `implementations` crate;
//! this module parses arguments, reads the environment and reports errors.

use super::Verdict;
use clap::Args;
use implementations::KnobDefault;

/// Arguments of `dualcheck app`.
#[derive(Args, Debug)]
pub struct AppArgs {
    /// Implementation to serve (see `dualcheck list`).
    #[arg(long = "impl", value_name = "NAME")]
    pub implementation: String,
}

/// Help text listing the environment variables an app process reads, one
/// line each: name, help, and what applies when it is unset.
pub fn knobs_help() -> String {
    render_knobs(implementations::KNOBS)
}

/// `knobs`, one line each, the help aligned after the longest name.
fn render_knobs(knobs: &[implementations::Knob]) -> String {
    let width = knobs.iter().map(|k| k.name.len()).max().unwrap_or(0);
    knobs
        .iter()
        .map(|k| {
            let unset = match k.default {
                KnobDefault::Required => "required".to_string(),
                KnobDefault::Optional => "optional".to_string(),
                KnobDefault::Value(v) => format!("default {v}"),
            };
            format!("  {:<width$}  {} ({unset})", k.name, k.help)
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

#[cfg(test)]
mod tests {
    use super::*;
    use implementations::Knob;

    #[test]
    fn knobs_say_required_optional_or_their_default() {
        let knobs = [
            Knob {
                name: "PORT",
                default: KnobDefault::Required,
                help: "HTTP port",
            },
            Knob {
                name: "DUALCHECK_BUG",
                default: KnobDefault::Optional,
                help: "a mutant",
            },
            Knob {
                name: "DUALCHECK_RELAYS",
                default: KnobDefault::Value("1"),
                help: "relay tasks",
            },
        ];
        assert_eq!(
            render_knobs(&knobs),
            "  PORT              HTTP port (required)\n\
             \x20 DUALCHECK_BUG     a mutant (optional)\n\
             \x20 DUALCHECK_RELAYS  relay tasks (default 1)"
        );
    }

    /// What `dualcheck list` prints of the real knobs: the optional ones are
    /// never called required.
    #[test]
    fn the_listed_knobs_mark_only_the_runners_as_required() {
        let help = knobs_help();
        let marked = |name: &str| {
            let line = help
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("{name} not listed:\n{help}"));
            line.rsplit_once('(')
                .map(|(_, m)| m.trim_end_matches(')').to_string())
                .unwrap()
        };
        assert_eq!(marked("DATABASE_URL"), "required");
        assert_eq!(marked("DUALCHECK_BUG"), "optional");
        assert_eq!(marked("DUALCHECK_DEBEZIUM_MAX_QUEUE"), "optional");
        assert_eq!(marked("DUALCHECK_CONNECT_LIBS"), "optional");
        assert_eq!(marked("DUALCHECK_RELAYS"), "default 1");
        assert_eq!(help.matches("(required)").count(), 4, "{help}");
    }
}
