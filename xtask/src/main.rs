//! Project automation (`cargo xtask ...`): the two README commands and their helpers.
//!
//! Owns: bootstrapping a fresh machine (`setup`), the whole test gate (`test`), the end-to-end
//! demonstration (`demo`), benchmarks (`bench`), the agent artifact (`dist`), the controller's
//! OCI image (`image`), the dependency policy (`deny`) and bounded fuzzing (`fuzz`). Must not:
//! contain product logic; it only builds, starts and checks the repo's own programs.
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod deny;
mod dist;
mod fuzz;
mod image;
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
    /// Performance and precision side by side with peers (HAProxy, toxy); writes target/bench/.
    Bench {
        /// A shorter run for checks (shorter wrk and open-loop runs, fewer sizes).
        #[arg(long)]
        quick: bool,
        /// Pin wrk to CPU 1 and the service to CPU 0 (the agent and the kernel float).
        #[arg(long)]
        pin: bool,
    },
    /// Install what a fresh machine lacks (idempotent): Debian packages, the pinned nightly with
    /// rust-src, bpf-linker, clippy/rustfmt, zig + cargo-zigbuild, cargo-deny, pyvmomi,
    /// kubernetes-validate, the musl target.
    Setup {
        /// Also build bpf-linker from nothing into a scratch prefix and link the eBPF object
        /// with it (CI runs this every time, so the install branch cannot rot unseen).
        #[arg(long)]
        prove_fresh: bool,
    },
    /// Run the whole fault end to end on a local vCenter simulator and a netns VM.
    Demo(demo::DemoArgs),
    /// Dependency policy (xtask/deny.toml): licenses, bans, sources, then RustSec advisories
    /// (set RESET_PEER_ADVISORY_DB=/path/to/advisory-db where github.com is unreachable).
    Deny,
    /// Run the libFuzzer targets in tests/fuzz (pinned nightly) for a bounded time each.
    Fuzz(fuzz::FuzzArgs),
    /// The agent for guests (glibc >= 2.28, the guest's libnftnl/libmnl): <target dir>/dist/reset-agent.
    Dist,
    /// An OCI image of the controller (static, musl) with the agent inside, no base image:
    /// <target dir>/image/oci (layout) and <target dir>/image/reset-controller-VERSION.oci.tar.
    Image,
    /// fmt check, clippy -D warnings, unit tests, privileged end-to-end tests (runs setup first).
    Test {
        /// Extra arguments passed to `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

/// Errors are printed as one message chain (`{err:#}`), never as a backtrace: RUST_BACKTRACE is
/// set on these machines, and anyhow would otherwise print one at the user.
fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let what = cli.cmd.name();
    match dispatch(cli.cmd) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo xtask {what}: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl Cmd {
    fn name(&self) -> &'static str {
        match self {
            Cmd::Bench { .. } => "bench",
            Cmd::Setup { .. } => "setup",
            Cmd::Demo(_) => "demo",
            Cmd::Deny => "deny",
            Cmd::Fuzz(_) => "fuzz",
            Cmd::Dist => "dist",
            Cmd::Image => "image",
            Cmd::Test { .. } => "test",
        }
    }
}

fn dispatch(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Bench { quick, pin } => {
            setup::run()?;
            bench::run(quick, pin)
        }
        Cmd::Setup { prove_fresh } => {
            setup::run()?;
            if prove_fresh {
                setup::prove_fresh()?;
            }
            Ok(())
        }
        Cmd::Deny => deny::run(),
        Cmd::Fuzz(args) => {
            setup::run()?;
            fuzz::run(&args)
        }
        Cmd::Dist => {
            setup::run()?;
            dist::run().map(drop)
        }
        Cmd::Image => {
            setup::run()?;
            image::run().map(drop)
        }
        Cmd::Demo(args) => {
            if !args.no_build {
                setup::run()?;
            }
            demo::run(&args)
        }
        Cmd::Test { args } => {
            setup::run()?;
            test::run(&args)
        }
    }
}
