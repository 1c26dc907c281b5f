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
mod netlink;
mod nft;
mod preflight;
mod proxy;
mod report;
mod requests;
mod sockdiag;
mod status;

use std::time::Duration;

use clap::Parser;
use cli::{Cli, Command, FaultArgs};
use config::{Config, ConfigError};
use lifecycle::real::RealParts;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
};

fn resolve(args: &FaultArgs) -> Result<Config, ConfigError> {
    let raw = args.raw();
    let raw = match &args.config {
        Some(path) => raw.or(config::read_file(path)?),
        None => raw,
    };
    Config::resolve(raw)
}

/// NETWORK_INTERFACE of `status` and `cleanup`: the settings contract's rule, or exit code 2.
fn interface(arg: Option<String>) -> Result<String, i32> {
    let name = arg.unwrap_or_else(|| config::DEFAULT_INTERFACE.into());
    reset_common::settings::network_interface(&name).map_err(|e| {
        eprintln!("reset-agent: error: {e}");
        2
    })
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
                metrics_addr => run(lifecycle::Inputs {
                    host: host_facts(&args.assume),
                    cfg,
                    report_path: args.report,
                    metrics_addr: metrics_addr.and_then(Result::ok),
                }),
            },
        },
        Command::Preflight(args) => match resolve(&args.fault) {
            Err(e) => usage_error(&e),
            Ok(cfg) => preflight::run(&cfg, &host_facts(&args.assume)),
        },
        Command::Status(args) => match interface(args.network_interface) {
            Ok(iface) => status::command(&iface, args.json),
            Err(code) => code,
        },
        Command::Cleanup(args) => match interface(args.network_interface) {
            Ok(iface) => cleanup::command(&iface),
            Err(code) => code,
        },
    };
    std::process::exit(code);
}

fn host_facts(assume: &cli::AssumeArgs) -> host::HostFacts {
    host::HostFacts::read(
        assume.assume_kernel.as_deref(),
        assume.assume_no_sock_destroy,
    )
}

/// The longest a run may take: duration + ramps + reset timeout + drain + grace. At the
/// deadline the lifecycle stops the window (as on a signal) and removes everything; if even
/// that does not end the process, the backstop thread exits a few seconds later and the
/// kernel removes the owned table and the TCX links with it.
fn deadline(cfg: &Config) -> Duration {
    cfg.duration
        + cfg.ramp * 2
        + cfg.reset_timeout
        + Duration::from_secs(2)
        + reset_common::settings::DEADLINE_GRACE
}

/// Extra time the backstop gives the lifecycle's own teardown after the deadline.
const BACKSTOP_AFTER: Duration = Duration::from_secs(10);

/// Exit codes: 0 window completed, 1 environment error, 2 usage error, 3 stopped by
/// SIGINT/SIGTERM, 4 deadline, 5 lost flows.
fn run(inputs: lifecycle::Inputs) -> i32 {
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
    let limit = deadline(&inputs.cfg);
    if let Err(e) = spawn_backstop(limit + BACKSTOP_AFTER) {
        eprintln!("reset-agent: error: cannot start the deadline thread: {e}");
        return 1;
    }
    let result = rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        tokio::spawn(async move {
            let why = tokio::select! {
                _ = sigint.recv() => lifecycle::Stop::Signal,
                _ = sigterm.recv() => lifecycle::Stop::Signal,
                _ = tokio::time::sleep(limit) => {
                    tracing::warn!(seconds = limit.as_secs(), "deadline reached: ending the window");
                    lifecycle::Stop::Deadline
                }
            };
            let _ = stop_tx.send(Some(why));
            // Later signals change nothing: the run is already ending.
            std::future::pending::<()>().await;
        });
        Ok::<_, std::io::Error>(lifecycle::run(inputs, &RealParts, stop_rx, &TracingProgress).await)
    });
    match result {
        Err(e) => {
            eprintln!("reset-agent: error: setting up signal handlers failed: {e}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("reset-agent: error: {e:#}");
            e.exit_code()
        }
        Ok(Ok(outcome)) => {
            print!("{}", outcome.report.summary());
            match outcome.ending {
                lifecycle::Ending::Completed => 0,
                lifecycle::Ending::Stopped(lifecycle::Stop::Signal) => 3,
                lifecycle::Ending::Stopped(lifecycle::Stop::Deadline) => 4,
                lifecycle::Ending::LostFlows => {
                    eprintln!(
                        "reset-agent: error: {} selected flows never reached the proxy (see the report's errors)",
                        outcome.report.flows_lost
                    );
                    5
                }
            }
        }
    }
}

/// If the process is still alive `after` from now, it exits (code 4); the kernel then removes
/// the owned table and the TCX links.
fn spawn_backstop(after: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("deadline".into())
        .spawn(move || {
            std::thread::sleep(after);
            eprintln!(
                "reset-agent: deadline of {} s exceeded; exiting so the kernel removes the fault",
                after.as_secs()
            );
            std::process::exit(4);
        })
        .map(drop)
}

/// Progress on stderr through tracing.
struct TracingProgress;

impl lifecycle::Progress for TracingProgress {
    fn step(&self, what: &str) {
        tracing::info!("{what}");
    }
    fn tick(&self, c: &lifecycle::status::Counts, seconds_left: u64) {
        tracing::info!(
            seconds_left,
            flows_seen = c.flows_seen,
            flows_selected = c.flows_selected,
            requests_seen = c.requests_seen,
            requests_selected = c.requests_selected,
            resets_issued = c.resets_issued,
            resets_observed = c.resets_observed,
            held = c.held,
            "progress"
        );
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
