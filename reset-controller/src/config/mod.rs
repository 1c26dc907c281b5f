//! The run configuration: settings as given ([`RunInputs`], which cli.rs maps clap's flags and
//! environment into) resolved into typed, checked values ([`RunConfig`]) with typed errors.
//! The fault's tunables are the settings contract's (`reset_common::settings`, shared with
//! the agent), so both binaries accept and refuse the same values.
//!
//! Must not: know clap, or import any runtime module (orchestrate, probe, metrics, report):
//! settings flow one way, from here to them.

pub mod probe;
pub mod prom;
pub mod vsphere;

use std::net::SocketAddr;
use std::time::Duration;

use reset_common::settings::{self, SettingError};
pub use reset_common::settings::{
    FaultSettings, Mode, RawSettings, Selection, Stream, Toxicity, Unit, network_interface,
};

use crate::vcenter::VcError;
pub use probe::{ProbeInputs, ProbeSettings, ProbeTarget, TargetError};
pub use prom::{Comparator, PromMode, PromProbeError, PromProbeInputs, PromProbeSettings};
pub use vsphere::{SECRET_VARS, TargetInputs, Targets, VcenterInputs, VcenterSettings};

/// Whether VMs get the fault at once or one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sequence {
    /// All VMs at once.
    Parallel,
    /// One after another with CHAOS_INTERVAL between them.
    Serial,
}

/// Where and how long `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// METRICS_LISTEN.
    pub listen: SocketAddr,
    /// METRICS_LINGER: how long to keep serving after the run ends.
    pub linger: Duration,
}

/// `run`'s settings as given: text where the settings contract reads it (the fault), typed
/// where the flag parser already did.
#[derive(Debug, Clone)]
pub struct RunInputs {
    /// vCenter.
    pub vcenter: VcenterInputs,
    /// VMs and guest login.
    pub targets: TargetInputs,
    /// The fault's tunables, RAMP_TIME included.
    pub fault: RawSettings,
    /// CHAOS_INTERVAL, s.
    pub chaos_interval_s: u64,
    /// SEQUENCE.
    pub sequence: Sequence,
    /// The probe, when PROBE_URL is set.
    pub probe: Option<ProbeInputs>,
    /// The Prometheus probe, when any of its settings is given.
    pub prom_probe: Option<PromProbeInputs>,
    /// The metrics endpoint, when METRICS_LISTEN is set.
    pub metrics: Option<MetricsSettings>,
    /// AGENT_METRICS_LISTEN: where each agent serves its metrics in its guest.
    pub agent_metrics: Option<SocketAddr>,
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// vCenter.
    pub vcenter: VcenterSettings,
    /// VMs and guest credentials.
    pub targets: Targets,
    /// The fault.
    pub fault: FaultSettings,
    /// RAMP_TIME, waited before the first injection and after the last.
    pub ramp_time: Duration,
    /// CHAOS_INTERVAL, between VMs in serial mode.
    pub chaos_interval: Duration,
    /// SEQUENCE.
    pub sequence: Sequence,
    /// The HTTP probe, when PROBE_URL is set.
    pub probe: Option<ProbeSettings>,
    /// The Prometheus probe, when PROM_PROBE_URL and its companions are set.
    pub prom_probe: Option<PromProbeSettings>,
    /// The metrics endpoint, when METRICS_LISTEN is set.
    pub metrics: Option<MetricsSettings>,
    /// AGENT_METRICS_LISTEN: each agent serves its Prometheus metrics there, in its guest,
    /// during its window.
    pub agent_metrics: Option<SocketAddr>,
}

impl RunConfig {
    /// Check every setting (the fault's by the settings contract) and read the secrets; the
    /// first setting refused is the error. Nothing is contacted.
    pub fn resolve(i: &RunInputs) -> Result<RunConfig, ConfigError> {
        let fault = FaultSettings::resolve(&i.fault)?;
        let ramp_time = settings::ramp_time(i.fault.ramp_time.as_deref())?;
        let interval_s = check_range(
            "CHAOS_INTERVAL",
            i.chaos_interval_s,
            0,
            settings::MAX_DURATION_S,
            "whole seconds from 0 to 604800",
        )?;
        Ok(RunConfig {
            vcenter: VcenterSettings::resolve(&i.vcenter)?,
            targets: Targets::resolve(&i.targets)?,
            fault,
            ramp_time,
            chaos_interval: Duration::from_secs(interval_s),
            sequence: i.sequence,
            probe: i.probe.as_ref().map(ProbeSettings::resolve).transpose()?,
            prom_probe: i
                .prom_probe
                .as_ref()
                .map(PromProbeSettings::resolve)
                .transpose()?,
            metrics: i.metrics,
            agent_metrics: i.agent_metrics,
        })
    }
}

/// Why a setting was rejected. Every variant is a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A fault tunable or another range-checked setting is malformed or out of range.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// VM_NAME is empty or has an empty item.
    #[error("VM_NAME {0:?} names no VM: give one or more comma-separated VM names")]
    NoVms(String),
    /// VM_USER_NAME is not set (it used to default to root).
    #[error(
        "VM_USER_NAME is not set: set it (or --vm-user-name) to the guest user to log in as, \
         e.g. VM_USER_NAME=root; a user other than root runs the agent through `sudo -n`"
    )]
    NoGuestUser,
    /// A secret is missing.
    #[error("{0} is not set: export it (secrets are read only from the environment or a file)")]
    Missing(&'static str),
    /// A password file could not be read.
    #[error("cannot read password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// GOVC_URL cannot be used.
    #[error(transparent)]
    GovcUrl(VcError),
    /// The agent binary is missing.
    #[error(
        "reset-agent binary {0} not found: build it (cargo build -p reset-agent) or pass --agent PATH"
    )]
    NoAgent(String),
    /// No portable agent to upload by default (see `agent_binary`).
    #[error(transparent)]
    NoPortableAgent(#[from] crate::agent_binary::AgentBinaryError),
    /// The default agent path (beside this program) cannot be found.
    #[error("cannot locate the controller's own executable ({0}): pass --agent PATH")]
    NoOwnPath(#[source] std::io::Error),
    /// PROBE_URL is malformed.
    #[error(transparent)]
    ProbeUrl(#[from] TargetError),
    /// PROBE_MAX_ERROR_PERCENT out of range.
    #[error("PROBE_MAX_ERROR_PERCENT {0} is out of range: use a percentage from 0 to 100")]
    ProbeMaxErrorPercent(f64),
    /// PROBE_INTERVAL or PROBE_TIMEOUT is zero.
    #[error("{0} must be at least 1 ms")]
    ProbeZero(&'static str),
    /// A Prometheus probe setting is missing or malformed.
    #[error(transparent)]
    PromProbe(#[from] PromProbeError),
}

/// Check a whole number of seconds or milliseconds against `min..=max`.
pub fn check_range(
    name: &'static str,
    value: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, SettingError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(SettingError::invalid(
            name,
            &value.to_string(),
            expected,
            "see `reset-controller run --help` for the accepted range",
        ))
    }
}

#[cfg(test)]
mod tests;
