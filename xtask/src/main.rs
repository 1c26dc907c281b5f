//! Project automation (`cargo xtask ...`): the two README commands and their helpers.
//!
//! Owns: bootstrapping a fresh machine (`setup`), the whole test gate (`test`), the end-to-end
//! demonstration (`demo`), benchmarks (`bench`) and the agent artifact (`dist`). Must not:
//! contain product logic; it only builds, starts and checks the repo's own programs.
#![forbid(unsafe_code)]

mod setup;
mod sh;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what a fresh machine lacks (idempotent): Debian packages, the pinned nightly with
    /// rust-src, bpf-linker, clippy/rustfmt, pyvmomi.
    Setup,
    /// fmt check, clippy -D warnings, unit tests, privileged end-to-end tests (runs setup first).
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { args } => {
            setup::run()?;
            test::run(&args)
        }
    }
}
