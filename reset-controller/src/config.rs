//! The validated run configuration: typed fields only; clap lives in `cli.rs`.

use std::path::PathBuf;
use std::time::Duration;

use crate::probe::{ProbeSettings, ProbeTarget, TargetError};
use crate::secret::Secret;
use crate::vcenter::{ConnectOptions, Reconnect};

/// Which direction the agent withholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Forward the request, withhold the response (default).
    Downstream,
    /// Withhold the request.
    Upstream,
}

/// How the agent picks flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    /// Per-flow random draw against TOXICITY.
    Random,
    /// Exactly floor(n * p) of n flows.
    Exact,
}

/// The agent's data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Kernel if it can load, else userspace.
    Auto,
    /// eBPF selection and observation.
    Kernel,
    /// Userspace selection.
    Userspace,
}

/// Whether VMs get the fault at once or one after another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sequence {
    /// All VMs at once.
    Parallel,
    /// One after another with CHAOS_INTERVAL between them.
    Serial,
}

/// The fault as each agent runs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultSettings {
    /// TARGET_SERVICE_PORT.
    pub target_service_port: u16,
    /// PROXY_PORT.
    pub proxy_port: u16,
    /// NETWORK_INTERFACE.
    pub network_interface: String,
    /// TOXICITY, percent (0..=100).
    pub toxicity: f64,
    /// RESET_TIMEOUT.
    #[serde(rename = "reset_timeout_ms", serialize_with = "as_millis")]
    pub reset_timeout: Duration,
    /// TOTAL_CHAOS_DURATION.
    #[serde(rename = "total_chaos_duration_s", serialize_with = "as_secs")]
    pub total_chaos_duration: Duration,
    /// Stream mode.
    pub stream: Stream,
    /// Selection mode.
    pub selection: Selection,
    /// Data path.
    pub mode: Mode,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// Where vCenter is and who we are there.
#[derive(Debug, Clone)]
pub struct VcenterSettings {
    /// URL and TLS policy.
    pub connect: ConnectOptions,
    /// GOVC_USERNAME.
    pub user: String,
    /// GOVC_PASSWORD.
    pub password: Secret,
    /// VC_RECONNECT_TIMEOUT: how long calls ride out vCenter going away.
    pub reconnect: Reconnect,
}

/// Which VMs and how to log in to their guests.
#[derive(Debug, Clone)]
pub struct Targets {
    /// VM_NAME, split on commas, in order, without duplicates.
    pub vms: Vec<String>,
    /// VM_USER_NAME.
    pub guest_user: String,
    /// VM_PASSWORD.
    pub guest_password: Secret,
    /// The reset-agent binary to upload.
    pub agent: PathBuf,
    /// GUEST_FILES_TTL: when the guest-side janitor removes an orphaned run's files.
    pub guest_files_ttl: Duration,
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
    /// The metrics endpoint, when METRICS_LISTEN is set.
    pub metrics: Option<MetricsSettings>,
}

/// Where and how long `/metrics` is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSettings {
    /// METRICS_LISTEN.
    pub listen: std::net::SocketAddr,
    /// METRICS_LINGER: how long to keep serving after the run ends.
    pub linger: Duration,
}

/// Why a setting was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// VM_NAME is empty or has an empty item.
    #[error("VM_NAME {0:?} names no VM: give one or more comma-separated VM names")]
    NoVms(String),
    /// TOXICITY out of range.
    #[error("TOXICITY {0} is out of range: use a percentage from 0 to 100")]
    Toxicity(f64),
    /// A required value is missing.
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
    /// A tunable outside its range or malformed.
    #[error("{name} must be {expected}, got {value:?}: {fix}")]
    Invalid {
        /// The tunable.
        name: &'static str,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: &'static str,
        /// How to fix it.
        fix: &'static str,
    },
    /// GOVC_URL cannot be used.
    #[error("{0}")]
    BadUrl(String),
    /// PROXY_PORT equals TARGET_SERVICE_PORT.
    #[error("PROXY_PORT and TARGET_SERVICE_PORT are both {0}: choose another PROXY_PORT")]
    SamePorts(u16),
    /// The agent binary is missing.
    #[error(
        "reset-agent binary {0} not found: build it (cargo build -p reset-agent) or pass --agent PATH"
    )]
    NoAgent(String),
    /// No portable agent to upload by default.
    #[error("{0}")]
    NoPortableAgent(String),
    /// PROBE_URL is malformed.
    #[error(transparent)]
    ProbeUrl(#[from] TargetError),
    /// PROBE_MAX_ERROR_PERCENT out of range.
    #[error("PROBE_MAX_ERROR_PERCENT {0} is out of range: use a percentage from 0 to 100")]
    ProbeMaxErrorPercent(f64),
    /// PROBE_INTERVAL or PROBE_TIMEOUT is zero.
    #[error("{0} must be at least 1 ms")]
    ProbeZero(&'static str),
}

/// Check and type the probe settings (interval and timeout in ms).
pub fn probe_settings(
    url: &str,
    interval_ms: u64,
    timeout_ms: u64,
    max_error_percent: f64,
) -> Result<ProbeSettings, ConfigError> {
    let target = ProbeTarget::parse(url)?;
    if !(max_error_percent.is_finite() && (0.0..=100.0).contains(&max_error_percent)) {
        return Err(ConfigError::ProbeMaxErrorPercent(max_error_percent));
    }
    if interval_ms == 0 {
        return Err(ConfigError::ProbeZero("PROBE_INTERVAL"));
    }
    if timeout_ms == 0 {
        return Err(ConfigError::ProbeZero("PROBE_TIMEOUT"));
    }
    Ok(ProbeSettings {
        target,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        max_error_percent,
    })
}

/// Split VM_NAME on commas; trims, drops duplicates, rejects empty items.
pub fn parse_vm_names(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for part in raw.split(',') {
        let name = part.trim();
        if name.is_empty() {
            return Err(ConfigError::NoVms(raw.to_string()));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

/// Longest fault window and ramp accepted (as the agent: one week).
pub const MAX_DURATION_S: u64 = 7 * 24 * 3600;
/// Longest RESET_TIMEOUT accepted (as the agent: one hour).
pub const MAX_RESET_TIMEOUT_MS: u64 = 3_600_000;

/// Check a port: 1-65535.
pub fn check_port(name: &'static str, port: u16) -> Result<u16, ConfigError> {
    if port == 0 {
        return Err(ConfigError::Invalid {
            name,
            value: port.to_string(),
            expected: "a TCP port from 1 to 65535",
            fix: "give the port the service (or the proxy) listens on",
        });
    }
    Ok(port)
}

/// Check an interface name the way the kernel does (1-15 bytes, no '/', ':', whitespace or
/// NUL, not "." or "..").
pub fn check_interface(name: &str) -> Result<String, ConfigError> {
    if name.is_empty()
        || name.len() > 15
        || name.contains(|c: char| matches!(c, '/' | ':' | '\0') || c.is_whitespace())
        || name == "."
        || name == ".."
    {
        return Err(ConfigError::Invalid {
            name: "NETWORK_INTERFACE",
            value: name.to_string(),
            expected: "an interface name of 1-15 characters without '/', ':' or spaces",
            fix: "run `ip -br link` in the guest and pass one of its interfaces",
        });
    }
    Ok(name.to_string())
}

/// Check a whole number of seconds or milliseconds against `min..=max`.
pub fn check_range(
    name: &'static str,
    value: u64,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            expected,
            fix: "see `reset-controller run --help` for the accepted range",
        })
    }
}

/// Check a toxicity percentage.
pub fn check_toxicity(t: f64) -> Result<f64, ConfigError> {
    if t.is_finite() && (0.0..=100.0).contains(&t) {
        Ok(t)
    } else {
        Err(ConfigError::Toxicity(t))
    }
}

/// A secret from a file (first line, trailing newline removed), else from `env`.
pub fn read_secret(
    env: &'static str,
    file: Option<&std::path::Path>,
) -> Result<Secret, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::PasswordFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let line = text.lines().next().unwrap_or("");
        return Ok(Secret::new(line));
    }
    match std::env::var(env) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(ConfigError::Missing(env)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names() {
        assert_eq!(parse_vm_names("a, b,a").unwrap(), ["a", "b"]);
        assert!(parse_vm_names("").is_err());
        assert!(parse_vm_names("a,,b").is_err());
    }

    #[test]
    fn toxicity_bounds() {
        assert!(check_toxicity(0.0).is_ok());
        assert!(check_toxicity(12.5).is_ok());
        assert!(check_toxicity(100.0).is_ok());
        assert!(check_toxicity(100.1).is_err());
        assert!(check_toxicity(f64::NAN).is_err());
    }

    #[test]
    fn probe_bounds() {
        let p = probe_settings("http://[2001:db8::2]/health", 250, 5000, 5.0).unwrap();
        assert_eq!(p.interval, Duration::from_millis(250));
        assert_eq!(p.target.port, 80);
        assert!(matches!(
            probe_settings("https://h/", 1000, 5000, 5.0),
            Err(ConfigError::ProbeUrl(_))
        ));
        for bad in [-1.0, 100.5, f64::NAN] {
            assert!(matches!(
                probe_settings("http://h/", 1000, 5000, bad),
                Err(ConfigError::ProbeMaxErrorPercent(_))
            ));
        }
        assert!(probe_settings("http://h/", 0, 5000, 5.0).is_err());
        assert!(probe_settings("http://h/", 1000, 0, 5.0).is_err());
    }
}
