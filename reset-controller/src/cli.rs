//! Command-line parsing (clap): the only place that knows flags. Every flag also
//! reads the environment variable named in capitals. Passwords have no flag: they
//! come from GOVC_PASSWORD / VM_PASSWORD or from a file named by a flag. This file only
//! maps flags into the library's inputs (`config::RunInputs` and its parts); the library
//! resolves and checks them, the fault's tunables with the settings contract the agent uses,
//! whose defaults the flags below show.
//!
//! Exit codes of `run`: 0 every VM ok (and the probe, if any, passed); 1 a VM
//! failed, or the controller could not start (agent binary unreadable,
//! METRICS_LISTEN not bindable); 2 usage error (a flag or variable is malformed or
//! out of range); 3 every VM ok but a probe's verdict is fail; 4 every VM ok, no probe failed,
//! but a probe's verdict is error (the Prometheus probe could not be evaluated); 130 aborted by
//! SIGINT/SIGTERM. When several apply, the first of 130, 1, 3, 4 wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use reset_common::settings;
use reset_controller::config::{
    MetricsSettings, ProbeInputs, PromMode, PromProbeInputs, RawSettings, RunInputs, Sequence,
    TargetInputs, VcenterInputs,
};

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
// Parsed once per process: the size of a variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
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
    /// The most requests to vCenter (SOAP calls and guest file transfers) in flight at once,
    /// over all VMs, 1-64: one session serves every VM, and a shared vCenter is not flooded
    /// when a run covers many.
    #[arg(long, env = "VC_CONCURRENCY", default_value_t = 8)]
    pub vc_concurrency: u64,
}

/// Target VMs and guest login.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Comma-separated VM names.
    #[arg(long, env = "VM_NAME")]
    pub vm_name: String,
    /// Guest user (required: no default); not root means the agent runs through `sudo -n`.
    #[arg(long, env = "VM_USER_NAME")]
    pub vm_user_name: Option<String>,
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

/// The fault's tunables: text, read by the settings contract (as the agent reads them).
#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Port of the service whose requests (or new connections) are reset.
    #[arg(long, env = "TARGET_SERVICE_PORT", default_value = settings::TARGET_SERVICE_PORT.default, allow_hyphen_values = true)]
    pub target_service_port: String,
    /// Port of the agent's proxy.
    #[arg(long, env = "PROXY_PORT", default_value = settings::PROXY_PORT.default, allow_hyphen_values = true)]
    pub proxy_port: String,
    /// Guest interface the traffic arrives on.
    #[arg(long, env = "NETWORK_INTERFACE", default_value = settings::NETWORK_INTERFACE.default)]
    pub network_interface: String,
    /// Percent of requests (UNIT=request) or new connections (UNIT=connection) reset (0-100, up
    /// to 4 decimals; `50%` is read as 50).
    #[arg(long, env = "TOXICITY", default_value = settings::TOXICITY.default, allow_hyphen_values = true)]
    pub toxicity: String,
    /// Milliseconds from the first request byte to the reset.
    #[arg(long, env = "RESET_TIMEOUT", default_value = settings::RESET_TIMEOUT.default, allow_hyphen_values = true)]
    pub reset_timeout: String,
    /// Seconds each VM gets the fault.
    #[arg(long, env = "TOTAL_CHAOS_DURATION", default_value = settings::TOTAL_CHAOS_DURATION.default, allow_hyphen_values = true)]
    pub total_chaos_duration: String,
    /// downstream: withhold the response; upstream: withhold the request.
    #[arg(long, env = "STREAM", default_value = settings::STREAM.default)]
    pub stream: String,
    /// random: a draw per request (or connection); exact: exactly floor(n*p) of n.
    #[arg(long, env = "SELECTION", default_value = settings::SELECTION.default)]
    pub selection: String,
    /// Agent data path: auto, kernel or userspace.
    #[arg(long, env = "MODE", default_value = settings::MODE.default)]
    pub mode: String,
    /// What TOXICITY is a share of: request (HTTP/1.x requests, persistent connections too) or
    /// connection (new connections).
    #[arg(long, env = "UNIT", default_value = settings::UNIT.default)]
    pub unit: String,
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
    #[arg(long, env = "RAMP_TIME", default_value = settings::RAMP_TIME.default, allow_hyphen_values = true)]
    pub ramp_time: String,
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
    pub prom_probe: PromProbeArgs,
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

/// `--prom-probe-mode`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PromModeArg {
    /// When the window opens and every PROM_PROBE_INTERVAL until it closes; every
    /// evaluation must hold.
    Continuous,
    /// Once, when the window has closed.
    End,
}

/// The Prometheus probe with a verdict (`run` only). Its four settings URL, query,
/// comparator and value go together.
#[derive(Debug, Args)]
pub struct PromProbeArgs {
    /// Prometheus' base URL (http:// or https://, e.g. http://prometheus.monitoring:9090):
    /// the probe evaluates PROM_PROBE_QUERY there (/api/v1/query) and holds its value to
    /// PROM_PROBE_COMPARATOR PROM_PROBE_VALUE; the verdict is fail (exit code 3 when every VM
    /// is fine) when it does not hold, error (exit code 4) when it cannot be evaluated.
    #[arg(long, env = "PROM_PROBE_URL")]
    pub prom_probe_url: Option<String>,
    /// PromQL query whose result is one value (one series or a scalar), e.g.
    /// sum(increase(app_retries_total[30s])).
    #[arg(long, env = "PROM_PROBE_QUERY")]
    pub prom_probe_query: Option<String>,
    /// How the value must compare to PROM_PROBE_VALUE: >, >=, <, <=, ==, != (or gt, ge, lt,
    /// le, eq, ne).
    #[arg(long, env = "PROM_PROBE_COMPARATOR")]
    pub prom_probe_comparator: Option<String>,
    /// The number the query's value is compared to.
    #[arg(long, env = "PROM_PROBE_VALUE", allow_hyphen_values = true)]
    pub prom_probe_value: Option<f64>,
    /// When the query is evaluated.
    #[arg(long, env = "PROM_PROBE_MODE", value_enum, default_value_t = PromModeArg::Continuous)]
    pub prom_probe_mode: PromModeArg,
    /// Milliseconds between evaluations in continuous mode.
    #[arg(long, env = "PROM_PROBE_INTERVAL", default_value_t = 5000)]
    pub prom_probe_interval: u64,
    /// Milliseconds one query may take before the evaluation is an error.
    #[arg(long, env = "PROM_PROBE_TIMEOUT", default_value_t = 5000)]
    pub prom_probe_timeout: u64,
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
    /// Have each agent serve its Prometheus metrics at http://ADDR/metrics inside its guest
    /// during its window (`reset-agent run --metrics-listen`), e.g. 0.0.0.0:9464.
    #[arg(long, env = "AGENT_METRICS_LISTEN")]
    pub agent_metrics_listen: Option<SocketAddr>,
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
    #[arg(long, env = "NETWORK_INTERFACE", default_value = settings::NETWORK_INTERFACE.default)]
    pub network_interface: String,
}

impl VcArgs {
    /// The vCenter settings as given.
    pub fn inputs(&self) -> VcenterInputs {
        VcenterInputs {
            url: self.govc_url.clone(),
            user: self.govc_username.clone(),
            password_file: self.govc_password_file.clone(),
            insecure: self.govc_insecure,
            ca_certs: self.govc_tls_ca_certs.clone(),
            reconnect_timeout_s: self.vc_reconnect_timeout,
            concurrency: self.vc_concurrency,
        }
    }
}

impl TargetArgs {
    /// The VMs and guest login as given.
    pub fn inputs(&self) -> TargetInputs {
        TargetInputs {
            vm_names: self.vm_name.clone(),
            user: self.vm_user_name.clone(),
            password_file: self.vm_password_file.clone(),
            agent: self.agent.clone(),
            guest_files_ttl_s: self.guest_files_ttl,
        }
    }
}

impl FaultArgs {
    /// The fault's tunables as typed (RAMP_TIME is `run`'s).
    pub fn raw(&self) -> RawSettings {
        RawSettings {
            target_service_port: Some(self.target_service_port.clone()),
            proxy_port: Some(self.proxy_port.clone()),
            network_interface: Some(self.network_interface.clone()),
            toxicity: Some(self.toxicity.clone()),
            reset_timeout: Some(self.reset_timeout.clone()),
            total_chaos_duration: Some(self.total_chaos_duration.clone()),
            ramp_time: None,
            stream: Some(self.stream.clone()),
            selection: Some(self.selection.clone()),
            mode: Some(self.mode.clone()),
            unit: Some(self.unit.clone()),
        }
    }
}

impl RunArgs {
    /// Everything `run` was given, for [`reset_controller::config::RunConfig::resolve`].
    pub fn inputs(&self) -> RunInputs {
        RunInputs {
            vcenter: self.vc.inputs(),
            targets: self.targets.inputs(),
            fault: RawSettings {
                ramp_time: Some(self.ramp_time.clone()),
                ..self.fault.raw()
            },
            chaos_interval_s: self.chaos_interval,
            sequence: match self.sequence {
                SequenceArg::Parallel => Sequence::Parallel,
                SequenceArg::Serial => Sequence::Serial,
            },
            probe: self.probe.probe_url.as_ref().map(|url| ProbeInputs {
                url: url.clone(),
                interval_ms: self.probe.probe_interval,
                timeout_ms: self.probe.probe_timeout,
                max_error_percent: self.probe.probe_max_error_percent,
            }),
            prom_probe: self.prom_probe.inputs(),
            metrics: self.metrics.metrics_listen.map(|listen| MetricsSettings {
                listen,
                linger: std::time::Duration::from_secs(self.metrics.metrics_linger),
            }),
            agent_metrics: self.metrics.agent_metrics_listen,
        }
    }
}

impl PromProbeArgs {
    /// The Prometheus probe as given, when any of its four settings is (the library names a
    /// missing one).
    pub fn inputs(&self) -> Option<PromProbeInputs> {
        let given = self.prom_probe_url.is_some()
            || self.prom_probe_query.is_some()
            || self.prom_probe_comparator.is_some()
            || self.prom_probe_value.is_some();
        given.then(|| PromProbeInputs {
            url: self.prom_probe_url.clone(),
            query: self.prom_probe_query.clone(),
            comparator: self.prom_probe_comparator.clone(),
            value: self.prom_probe_value,
            mode: match self.prom_probe_mode {
                PromModeArg::Continuous => PromMode::Continuous,
                PromModeArg::End => PromMode::End,
            },
            interval_ms: self.prom_probe_interval,
            timeout_ms: self.prom_probe_timeout,
        })
    }
}

#[cfg(test)]
mod tests;
