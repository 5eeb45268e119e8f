//! `dualcheck merge DIR...`: one matrix from several sweeps (e.g. the shards
//! of one sweep run on several CI machines) and run directories; the work is
//! [`dualcheck::merge`]'s.

use super::Verdict;
use clap::Args;
use dualcheck::sweep::{html, markdown_table, text_table};
use std::path::PathBuf;

/// Arguments of `dualcheck merge`.
#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// Sweep directories (holding `sweep.json`), run directories, or
    /// directories holding either (e.g. the downloaded artifacts of CI shards).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where `merge.html` goes (a new directory under it).
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print the table as one JSON object (`{"rows": [...], "html": ...}`).
    #[arg(long)]
    pub json: bool,
    /// Print the table as Markdown.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
}

/// Runs `dualcheck merge`: exit 0 when every cell is as expected, 1 when some
/// cell is not, 2 when some run could not be carried out or read, or nothing
/// to merge was found.
pub fn run(args: MergeArgs) -> Verdict {
    let found = match dualcheck::merge::find(&args.dirs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dualcheck merge: {e:#}");
            return Verdict::Unusable;
        }
    };
    let rows = dualcheck::merge::merge(&found);
    let page = match dualcheck::run_dir::create_sweep_dir(&args.out, "merge") {
        Ok(dir) => dir.join("merge.html"),
        Err(e) => {
            eprintln!("dualcheck merge: {e:#}");
            return Verdict::Unusable;
        }
    };
    let title = format!(
        "dualcheck merge: {} sweep(s), {} run director(ies)",
        found.sweeps.len(),
        found.runs.len()
    );
    let dir = page.parent().map(PathBuf::from).unwrap_or_default();
    if let Err(e) = std::fs::write(&page, html(&rows, &dir, &title)) {
        eprintln!("dualcheck merge: writing {}: {e}", page.display());
        return Verdict::Unusable;
    }
    if args.json {
        println!("{}", serde_json::json!({ "rows": rows, "html": page }));
    } else {
        print!(
            "{}",
            if args.markdown {
                markdown_table(&rows)
            } else {
                text_table(&rows)
            }
        );
        println!("\n{}", page.display());
    }
    if rows.iter().any(|r| !r.errors.is_empty()) {
        Verdict::Unusable
    } else {
        Verdict::of(rows.iter().all(|r| r.all_as_expected()))
    }
}
