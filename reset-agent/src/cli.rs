//! Command-line surface of the agent. Only this file knows clap; it produces `RawSettings`
//! (every value optional, as typed by the user) which `config` merges and validates.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::RawSettings;

#[derive(Parser, Debug)]
#[command(
    name = "reset-agent",
    version,
    about = "reset-peer's in-guest agent: resets a share of the requests to a service",
    long_about = "For TOTAL_CHAOS_DURATION seconds, resets (RST) TOXICITY percent of the HTTP \
                  requests to TARGET_SERVICE_PORT (arriving on NETWORK_INTERFACE) RESET_TIMEOUT \
                  ms after each starts, on new and persistent connections alike (UNIT=request; \
                  UNIT=connection: a share of new connections, through a local proxy), then \
                  removes everything. Every flag also reads the environment variable named in \
                  capitals."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inject the fault for one window and write the report.
    Run(RunArgs),
    /// Check that this host can run the fault; prints every check with the fix.
    Preflight(PreflightArgs),
    /// Whether a fault is active in this network namespace: since when, its rule, live counts.
    Status(StatusArgs),
    /// Remove anything a previous run could have left behind (idempotent).
    Cleanup(CleanupArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub fault: FaultArgs,
    /// Write the JSON report here at the end (also on abort).
    #[arg(long, env = "REPORT", value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9464), path /metrics.
    #[arg(long, env = "METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub assume: AssumeArgs,
}

/// Testing overrides (hidden from --help, documented in README "Older kernels"): take the
/// fallback paths of an older or smaller kernel on this one.
#[derive(Args, Debug, Default)]
pub struct AssumeArgs {
    /// Use the features of kernel X.Y (lower than the running one).
    #[arg(
        long,
        env = "RESET_AGENT_ASSUME_KERNEL",
        value_name = "X.Y",
        hide = true
    )]
    pub assume_kernel: Option<String>,
    /// Behave as on a kernel without CONFIG_INET_DIAG_DESTROY.
    #[arg(long, env = "RESET_AGENT_ASSUME_NO_SOCK_DESTROY", hide = true)]
    pub assume_no_sock_destroy: bool,
}

#[derive(Args, Debug)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub fault: FaultArgs,
    #[command(flatten)]
    pub assume: AssumeArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print the status as JSON (one object) instead of text.
    #[arg(long)]
    pub json: bool,
    /// With no run active: the interface to check for programs left by one [default: ens160].
    #[arg(long, env = "NETWORK_INTERFACE")]
    pub network_interface: Option<String>,
}

#[derive(Args, Debug)]
pub struct CleanupArgs {
    /// Interface whose tc filters to check [default: ens160].
    #[arg(long, env = "NETWORK_INTERFACE")]
    pub network_interface: Option<String>,
}

/// The fault tunables. No clap defaults here: a value left out falls back to the config file,
/// then to the settings contract's default (`reset_common::settings`), which the bracketed
/// defaults below state (the README check holds them to it).
#[derive(Args, Debug)]
pub struct FaultArgs {
    /// Service port whose requests (or new connections) are reset [default: 80].
    #[arg(long, env = "TARGET_SERVICE_PORT", allow_hyphen_values = true)]
    pub target_service_port: Option<String>,
    /// Local port of the resetting proxy [default: 8080].
    #[arg(long, env = "PROXY_PORT", allow_hyphen_values = true)]
    pub proxy_port: Option<String>,
    /// Interface the callers' traffic arrives on [default: ens160].
    #[arg(long, env = "NETWORK_INTERFACE")]
    pub network_interface: Option<String>,
    /// Percent of requests (UNIT=request) or new connections (UNIT=connection) to reset, 0-100,
    /// decimals allowed [default: 100].
    #[arg(long, env = "TOXICITY", allow_hyphen_values = true)]
    pub toxicity: Option<String>,
    /// Milliseconds from the first request byte to the reset [default: 2000].
    #[arg(long, env = "RESET_TIMEOUT", allow_hyphen_values = true)]
    pub reset_timeout: Option<String>,
    /// Seconds the fault is active [default: 30].
    #[arg(long, env = "TOTAL_CHAOS_DURATION", allow_hyphen_values = true)]
    pub total_chaos_duration: Option<String>,
    /// Seconds to wait before and after the window [default: 0].
    #[arg(long, env = "RAMP_TIME", allow_hyphen_values = true)]
    pub ramp_time: Option<String>,
    /// downstream: forward the request, withhold the response; upstream: withhold the request
    /// [default: downstream].
    #[arg(long, env = "STREAM")]
    pub stream: Option<String>,
    /// random: each request (or flow) with probability TOXICITY; exact: exactly floor(n*TOXICITY)
    /// of n [default: random].
    #[arg(long, env = "SELECTION")]
    pub selection: Option<String>,
    /// auto: kernel when eBPF loads, else userspace [default: auto].
    #[arg(long, env = "MODE")]
    pub mode: Option<String>,
    /// request: TOXICITY is a share of HTTP/1.x requests, on new and persistent connections;
    /// connection: a share of new connections [default: request].
    #[arg(long, env = "UNIT")]
    pub unit: Option<String>,
    /// A TOML file with the same keys in snake_case (flags and environment win over it).
    #[arg(long, env = "CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl FaultArgs {
    pub fn raw(&self) -> RawSettings {
        RawSettings {
            target_service_port: self.target_service_port.clone(),
            proxy_port: self.proxy_port.clone(),
            network_interface: self.network_interface.clone(),
            toxicity: self.toxicity.clone(),
            reset_timeout: self.reset_timeout.clone(),
            total_chaos_duration: self.total_chaos_duration.clone(),
            ramp_time: self.ramp_time.clone(),
            stream: self.stream.clone(),
            selection: self.selection.clone(),
            mode: self.mode.clone(),
            unit: self.unit.clone(),
        }
    }
}
