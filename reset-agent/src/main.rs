//! reset-agent: the in-guest half of reset-peer.
//!
//! Owns everything that happens inside one Linux host: the nftables steering rule (`nft`), the
//! eBPF selector/observer (`ebpf`), the resetting proxy (`proxy`), the window lifecycle
//! (`lifecycle`) and the report. Must not: shell out to nft/tc/ip, talk to vCenter, or keep
//! anything on the host after it exits. Unsafe code lives only in `nft/ext.rs` (what nftnl's
//! extension traits need); aya owns the BPF syscalls.
//!
//! Exit codes: 0 window completed, 1 environment error, 2 usage error, 3 aborted by
//! SIGINT/SIGTERM (report still written), 4 deadline exceeded, 5 window completed but selected
//! flows never reached the proxy (lost flows; report written).
#![deny(unsafe_code)]

mod cleanup;
mod cli;
mod clock;
use reset_agent::config;
mod ebpf;
mod host;
mod instance;
mod lifecycle;
mod lost;
mod metrics;
mod nft;
mod preflight;
mod proxy;
mod report;
mod requests;
mod sockdiag;

use clap::Parser;
use cli::{Cli, Command, FaultArgs};
use config::{Config, ConfigError};

fn resolve(args: &FaultArgs) -> Result<Config, ConfigError> {
    let raw = args.raw();
    let raw = match &args.config {
        Some(path) => raw.or(config::read_file(path)?),
        None => raw,
    };
    Config::resolve(raw)
}

fn usage_error(err: &ConfigError) -> i32 {
    eprintln!("reset-agent: error: {err:#}");
    2
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RESET_AGENT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let code = match cli.command {
        Command::Run(args) => match resolve(&args.fault) {
            Err(e) => usage_error(&e),
            Ok(cfg) => match args
                .metrics_listen
                .as_deref()
                .map(str::parse::<std::net::SocketAddr>)
            {
                Some(Err(_)) => {
                    eprintln!(
                        "reset-agent: error: METRICS_LISTEN must be an address such as 127.0.0.1:9464, got {:?}",
                        args.metrics_listen.unwrap_or_default()
                    );
                    2
                }
                Some(Ok(addr)) => run(cfg, args.report, Some(addr)),
                None => run(cfg, args.report, None),
            },
        },
        Command::Preflight(args) => match resolve(&args) {
            Err(e) => usage_error(&e),
            Ok(cfg) => preflight::run(&cfg),
        },
        Command::Cleanup(args) => {
            let iface = args
                .network_interface
                .unwrap_or_else(|| config::DEFAULT_INTERFACE.into());
            cleanup::command(&iface)
        }
    };
    std::process::exit(code);
}

fn run(
    cfg: Config,
    report: Option<std::path::PathBuf>,
    metrics: Option<std::net::SocketAddr>,
) -> i32 {
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reset-agent: error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(lifecycle::run(cfg, report, metrics)) {
        Ok(outcome) => {
            print!("{}", outcome.report.summary());
            if outcome.report.aborted {
                3
            } else if outcome.report.flows_lost > 0 {
                eprintln!(
                    "reset-agent: error: {} selected flows never reached the proxy (see the report's errors)",
                    outcome.report.flows_lost
                );
                5
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("reset-agent: error: {e:#}");
            e.exit_code()
        }
    }
}

/// Held connections cost two descriptors each (caller + service). Lift the limit as far as the
/// kernel allows (root may raise the hard limit up to fs.nr_open, capped at 2^20), else the soft
/// limit to the hard one, so tens of thousands of held connections never hit EMFILE.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    const CAP: u64 = 1 << 20;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(hard);
    let want = nr_open.min(CAP);
    if want > hard && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return;
    }
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
