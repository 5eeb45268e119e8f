//! `dualcheck serve [DIR] [--port P]`: a local web page listing the runs,
//! sweeps, comparisons and zoos under DIR (loopback only), until Ctrl-C.

use super::Verdict;
use clap::Args;
use std::io::Write as _;
use std::path::PathBuf;

/// Arguments of `dualcheck serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The directory of runs: the `--out` of run, sweep, compare, zoo or bench.
    /// Lists its run directories (bench's runs among them) and its sweep, compare
    /// and zoo directories with their runs; not gate or merge directories, nor a
    /// shrink's runs (RUN_DIR/shrunk/).
    #[arg(default_value = "runs")]
    pub dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = dualcheck::serve::DEFAULT_PORT)]
    pub port: u16,
}

/// Runs `dualcheck serve`: exits 0 on Ctrl-C, 2 when it cannot listen (a port in use).
pub fn run(args: ServeArgs) -> Verdict {
    let rt = match super::runtime("serve") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    rt.block_on(async {
        let listener = match dualcheck::serve::bind(args.port).await {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                eprintln!(
                    "dualcheck serve: port {} on 127.0.0.1 is in use (another `dualcheck serve`?); choose another with --port",
                    args.port
                );
                return Verdict::Unusable;
            }
            Err(e) => {
                eprintln!("dualcheck serve: listening on 127.0.0.1:{}: {e}", args.port);
                return Verdict::Unusable;
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("dualcheck serve: {e}");
                return Verdict::Unusable;
            }
        };
        if !args.dir.is_dir() {
            eprintln!(
                "dualcheck serve: {} does not exist yet; the page says how to make runs",
                args.dir.display()
            );
        }
        println!("dualcheck serve: {} at http://{addr}/ (Ctrl-C stops)", args.dir.display());
        let _ = std::io::stdout().flush();
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match dualcheck::serve::serve(args.dir, listener, shutdown).await {
            Ok(()) => Verdict::Valid,
            Err(e) => {
                eprintln!("dualcheck serve: {e}");
                Verdict::Unusable
            }
        }
    })
}
