//! Command-line parsing (clap): the only place that knows flags. Every flag also
//! reads the environment variable named in capitals. Passwords have no flag: they
//! come from GOVC_PASSWORD / VM_PASSWORD or from a file named by a flag.
//!
//! Exit codes of `run`: 0 every VM ok (and the probe, if any, passed); 1 a VM
//! failed, or the controller could not start (agent binary unreadable,
//! METRICS_LISTEN not bindable); 2 usage error (a flag or variable is malformed or
//! out of range); 3 every VM ok but the probe's verdict is fail; 130 aborted by
//! SIGINT/SIGTERM. When several apply, the first of 130, 1, 3 wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use reset_controller::config::{
    self, FaultSettings, MetricsSettings, Mode, RunConfig, Selection, Sequence, Stream, Targets,
    VcenterSettings,
};
use reset_controller::vcenter::{ConnectOptions, Reconnect};

/// Inject HTTP "connection reset by peer" faults into vSphere VMs through VMware
/// Tools guest operations.
#[derive(Debug, Parser)]
#[command(name = "reset-controller", version)]
pub struct Cli {
    /// Result format on stdout.
    #[arg(long, env = "OUTPUT", value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
    /// No progress lines on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Result format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table.
    Text,
    /// The JSON report.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the fault on the VMs.
    Run(RunArgs),
    /// Check everything short of injecting, including the agent's own preflight.
    Preflight(PreflightArgs),
    /// Run `reset-agent cleanup` in the VMs.
    Cleanup(CleanupArgs),
}

/// vCenter connection.
#[derive(Debug, Args)]
pub struct VcArgs {
    /// vCenter URL: https://HOST/sdk or HOST.
    #[arg(long, env = "GOVC_URL")]
    pub govc_url: String,
    /// vCenter user.
    #[arg(long, env = "GOVC_USERNAME")]
    pub govc_username: String,
    /// File holding the vCenter password (else GOVC_PASSWORD is read).
    #[arg(long, env = "GOVC_PASSWORD_FILE")]
    pub govc_password_file: Option<PathBuf>,
    /// Skip TLS certificate verification.
    #[arg(long, env = "GOVC_INSECURE", default_value = "true", action = ArgAction::Set, value_parser = BoolishValueParser::new())]
    pub govc_insecure: bool,
    /// PEM file of extra CA certificates (used when GOVC_INSECURE=false).
    #[arg(long, env = "GOVC_TLS_CA_CERTS")]
    pub govc_tls_ca_certs: Option<PathBuf>,
    /// Seconds one call keeps retrying (with backoff) when vCenter goes away after
    /// login, e.g. while it restarts; 0 disables retries.
    #[arg(long, env = "VC_RECONNECT_TIMEOUT", default_value_t = 300)]
    pub vc_reconnect_timeout: u64,
}

/// Target VMs and guest login.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Comma-separated VM names.
    #[arg(long, env = "VM_NAME")]
    pub vm_name: String,
    /// Guest user; not root means the agent runs through `sudo -n`.
    #[arg(long, env = "VM_USER_NAME", default_value = "root")]
    pub vm_user_name: String,
    /// File holding the guest password (else VM_PASSWORD is read).
    #[arg(long, env = "VM_PASSWORD_FILE")]
    pub vm_password_file: Option<PathBuf>,
    /// The reset-agent binary to upload [default: the portable agent of `cargo xtask dist`].
    #[arg(long, env = "AGENT")]
    pub agent: Option<PathBuf>,
    /// Seconds after the agent ends before a guest-side janitor deletes the run's guest
    /// files if this controller has not (because it was killed or lost vCenter).
    #[arg(long, env = "GUEST_FILES_TTL", default_value_t = 600)]
    pub guest_files_ttl: u64,
}

/// The fault's tunables.
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Port of the service whose connections are reset.
    #[arg(long, env = "TARGET_SERVICE_PORT", default_value_t = 80)]
    pub target_service_port: u16,
    /// Port of the agent's proxy.
    #[arg(long, env = "PROXY_PORT", default_value_t = 8080)]
    pub proxy_port: u16,
    /// Guest interface the traffic arrives on.
    #[arg(long, env = "NETWORK_INTERFACE", default_value = "ens160")]
    pub network_interface: String,
    /// Percent of new connections reset (0-100, decimals allowed).
    #[arg(long, env = "TOXICITY", default_value_t = 100.0)]
    pub toxicity: f64,
    /// Milliseconds from the first request byte to the reset.
    #[arg(long, env = "RESET_TIMEOUT", default_value_t = 2000)]
    pub reset_timeout: u64,
    /// Seconds each VM gets the fault.
    #[arg(long, env = "TOTAL_CHAOS_DURATION", default_value_t = 30)]
    pub total_chaos_duration: u64,
    /// Withhold the response (downstream) or the request (upstream).
    #[arg(long, env = "STREAM", value_enum, default_value_t = StreamArg::Downstream)]
    pub stream: StreamArg,
    /// Random per-connection draw, or exactly floor(n*p).
    #[arg(long, env = "SELECTION", value_enum, default_value_t = SelectionArg::Random)]
    pub selection: SelectionArg,
    /// Agent data path.
    #[arg(long, env = "MODE", value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
}

/// `--stream`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StreamArg {
    /// Forward the request, withhold the response.
    Downstream,
    /// Withhold the request.
    Upstream,
}

/// `--selection`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SelectionArg {
    /// Per-connection random draw.
    Random,
    /// Exact proportion.
    Exact,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    /// Kernel when possible.
    Auto,
    /// eBPF only.
    Kernel,
    /// Userspace only.
    Userspace,
}

/// `--sequence`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SequenceArg {
    /// All VMs at once.
    Parallel,
    /// One after another.
    Serial,
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub vc: VcArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub fault: FaultArgs,
    /// Seconds waited before the first injection and after the last.
    #[arg(long, env = "RAMP_TIME", default_value_t = 0)]
    pub ramp_time: u64,
    /// Seconds between VMs in serial mode.
    #[arg(long, env = "CHAOS_INTERVAL", default_value_t = 10)]
    pub chaos_interval: u64,
    /// parallel or serial.
    #[arg(long, env = "SEQUENCE", value_enum, default_value_t = SequenceArg::Parallel)]
    pub sequence: SequenceArg,
    /// Write the JSON report here (mode 0600).
    #[arg(long, env = "REPORT")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The HTTP probe with an SLO verdict (`run` only).
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe this http:// URL (IPv4, [IPv6] or DNS name) during the fault window: a
    /// GET on a new connection every PROBE_INTERVAL; the verdict fails (exit code 3
    /// when every VM is fine) if more than PROBE_MAX_ERROR_PERCENT of attempts got
    /// a reset or another error. Statuses 200-399 count as success.
    #[arg(long, env = "PROBE_URL")]
    pub probe_url: Option<String>,
    /// Milliseconds between probe attempt starts (attempts may overlap).
    #[arg(long, env = "PROBE_INTERVAL", default_value_t = 1000)]
    pub probe_interval: u64,
    /// Milliseconds one probe attempt may take before it counts as an error.
    #[arg(long, env = "PROBE_TIMEOUT", default_value_t = 5000)]
    pub probe_timeout: u64,
    /// Highest percentage of failed probe attempts (resets + other errors) that
    /// still passes, 0-100.
    #[arg(long, env = "PROBE_MAX_ERROR_PERCENT", default_value_t = 5.0)]
    pub probe_max_error_percent: f64,
}

/// The Prometheus endpoint (`run` only).
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics during the
    /// run, e.g. 127.0.0.1:9464 or [::]:9464.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds to keep serving after the run ends (after the report is printed),
    /// so a scraper can read the final values; ignored without --metrics-listen.
    #[arg(long, env = "METRICS_LINGER", default_value_t = 0)]
    pub metrics_linger: u64,
}

/// `preflight`.
#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    pub vc: VcArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub fault: FaultArgs,
}

/// `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub vc: VcArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Guest interface whose leftover tc filters (kernels < 6.6) are removed.
    #[arg(long, env = "NETWORK_INTERFACE", default_value = "ens160")]
    pub network_interface: String,
}

impl VcArgs {
    /// Resolve, reading GOVC_PASSWORD from the environment or the file.
    pub fn resolve(&self) -> Result<VcenterSettings> {
        if let Err(e) = reset_controller::vcenter::client::sdk_url(&self.govc_url) {
            return Err(config::ConfigError::BadUrl(e.to_string()).into());
        }
        Ok(VcenterSettings {
            connect: ConnectOptions {
                url: self.govc_url.clone(),
                insecure: self.govc_insecure,
                ca_certs: self.govc_tls_ca_certs.clone(),
            },
            user: self.govc_username.clone(),
            password: config::read_secret("GOVC_PASSWORD", self.govc_password_file.as_deref())?,
            reconnect: Reconnect {
                budget: Duration::from_secs(self.vc_reconnect_timeout),
            },
        })
    }
}

impl TargetArgs {
    /// Resolve, reading VM_PASSWORD from the environment or the file.
    pub fn resolve(&self) -> Result<Targets> {
        let agent = match &self.agent {
            Some(p) => p.clone(),
            None => reset_controller::agent_binary::default_agent(
                &std::env::current_exe()
                    .context("cannot locate the controller's own executable; pass --agent PATH")?,
            )
            .map_err(|e| config::ConfigError::NoPortableAgent(e.to_string()))?,
        };
        if !agent.is_file() {
            return Err(config::ConfigError::NoAgent(agent.display().to_string()).into());
        }
        Ok(Targets {
            vms: config::parse_vm_names(&self.vm_name)?,
            guest_user: self.vm_user_name.clone(),
            guest_password: config::read_secret("VM_PASSWORD", self.vm_password_file.as_deref())?,
            agent,
            guest_files_ttl: Duration::from_secs(self.guest_files_ttl),
        })
    }
}

impl FaultArgs {
    /// Validate.
    pub fn resolve(&self) -> Result<FaultSettings> {
        let target = config::check_port("TARGET_SERVICE_PORT", self.target_service_port)?;
        let proxy = config::check_port("PROXY_PORT", self.proxy_port)?;
        if proxy == target {
            return Err(config::ConfigError::SamePorts(self.proxy_port).into());
        }
        let reset_ms = config::check_range(
            "RESET_TIMEOUT",
            self.reset_timeout,
            0,
            config::MAX_RESET_TIMEOUT_MS,
            "whole milliseconds from 0 to 3600000",
        )?;
        let window_s = config::check_range(
            "TOTAL_CHAOS_DURATION",
            self.total_chaos_duration,
            1,
            config::MAX_DURATION_S,
            "whole seconds from 1 to 604800",
        )?;
        Ok(FaultSettings {
            target_service_port: target,
            proxy_port: proxy,
            network_interface: config::check_interface(&self.network_interface)?,
            toxicity: config::check_toxicity(self.toxicity)?,
            reset_timeout: Duration::from_millis(reset_ms),
            total_chaos_duration: Duration::from_secs(window_s),
            stream: match self.stream {
                StreamArg::Downstream => Stream::Downstream,
                StreamArg::Upstream => Stream::Upstream,
            },
            selection: match self.selection {
                SelectionArg::Random => Selection::Random,
                SelectionArg::Exact => Selection::Exact,
            },
            mode: match self.mode {
                ModeArg::Auto => Mode::Auto,
                ModeArg::Kernel => Mode::Kernel,
                ModeArg::Userspace => Mode::Userspace,
            },
        })
    }
}

impl RunArgs {
    /// Resolve into a [`RunConfig`].
    pub fn resolve(&self) -> Result<RunConfig> {
        let ramp_s = config::check_range(
            "RAMP_TIME",
            self.ramp_time,
            0,
            config::MAX_DURATION_S,
            "whole seconds from 0 to 604800",
        )?;
        let interval_s = config::check_range(
            "CHAOS_INTERVAL",
            self.chaos_interval,
            0,
            config::MAX_DURATION_S,
            "whole seconds from 0 to 604800",
        )?;
        Ok(RunConfig {
            vcenter: self.vc.resolve()?,
            targets: self.targets.resolve()?,
            fault: self.fault.resolve()?,
            ramp_time: Duration::from_secs(ramp_s),
            chaos_interval: Duration::from_secs(interval_s),
            sequence: match self.sequence {
                SequenceArg::Parallel => Sequence::Parallel,
                SequenceArg::Serial => Sequence::Serial,
            },
            probe: match &self.probe.probe_url {
                Some(url) => Some(config::probe_settings(
                    url,
                    self.probe.probe_interval,
                    self.probe.probe_timeout,
                    self.probe.probe_max_error_percent,
                )?),
                None => None,
            },
            metrics: self.metrics.metrics_listen.map(|listen| MetricsSettings {
                listen,
                linger: Duration::from_secs(self.metrics.metrics_linger),
            }),
        })
    }
}

#[cfg(test)]
mod tests;
