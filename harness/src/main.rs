//! `dualcheck`: the command line. Argument parsing and printing live in
//! [`cli`] (one module per subcommand); the work is done by the `harness` library.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::Cli::parse().run()
}
