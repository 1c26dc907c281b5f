//! The settings contract of reset-agent and reset-controller (feature `settings`): the fault's
//! tunables (environment names, config-file keys, flags, defaults), their limits, the stream,
//! selection and mode choices, the interface-name rule, TOXICITY parsing, and the deadline grace
//! the controller allows an agent. Both binaries parse and check every fault tunable here, so
//! they accept and refuse the same values with the same messages, and the controller renders
//! the agent's config file from values the agent's parser reads back.
//!
//! Must not: know clap, files or the environment (the binaries read those and hand the text
//! here), nor anything either binary does at run time. Controller-only settings (vCenter, VMs,
//! probe, metrics) and agent-only ones (report path, metrics address) stay with their binary.

mod choice;
mod fault;
mod toxicity;

use core::time::Duration;

pub use choice::{Mode, Selection, Stream, Unit};
pub use fault::{FaultSettings, RawSettings, interface_name_ok, network_interface, ramp_time};
pub use toxicity::Toxicity;

/// One fault tunable: the names it goes by and its documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunable {
    /// The environment variable, also the name every message uses (`TOXICITY`).
    pub env: &'static str,
    /// The agent config file key (`toxicity`); the flag is this with `-` for `_`.
    pub key: &'static str,
    /// The default, as a user would type it.
    pub default: &'static str,
}

impl Tunable {
    /// The command-line flag both binaries take (`--toxicity`).
    pub fn flag(&self) -> std::string::String {
        std::format!("--{}", self.key.replace('_', "-"))
    }
}

/// Service port whose new connections are reset.
pub const TARGET_SERVICE_PORT: Tunable =
    tunable("TARGET_SERVICE_PORT", "target_service_port", "80");
/// Local port of the agent's resetting proxy.
pub const PROXY_PORT: Tunable = tunable("PROXY_PORT", "proxy_port", "8080");
/// Guest interface the callers' traffic arrives on.
pub const NETWORK_INTERFACE: Tunable = tunable("NETWORK_INTERFACE", "network_interface", "ens160");
/// Percent of new connections (requests) reset.
pub const TOXICITY: Tunable = tunable("TOXICITY", "toxicity", "100");
/// Milliseconds from the first request byte to the reset.
pub const RESET_TIMEOUT: Tunable = tunable("RESET_TIMEOUT", "reset_timeout", "2000");
/// Seconds the fault is active.
pub const TOTAL_CHAOS_DURATION: Tunable =
    tunable("TOTAL_CHAOS_DURATION", "total_chaos_duration", "30");
/// Seconds waited before and after the window.
pub const RAMP_TIME: Tunable = tunable("RAMP_TIME", "ramp_time", "0");
/// Which direction is withheld.
pub const STREAM: Tunable = tunable("STREAM", "stream", "downstream");
/// How flows are picked.
pub const SELECTION: Tunable = tunable("SELECTION", "selection", "random");
/// The agent's data path.
pub const MODE: Tunable = tunable("MODE", "mode", "auto");
/// What TOXICITY is a share of: requests, or new connections.
pub const UNIT: Tunable = tunable("UNIT", "unit", "request");

/// Every fault tunable, in the order the agent's config file lists them.
pub const FAULT_TUNABLES: [Tunable; 11] = [
    TARGET_SERVICE_PORT,
    PROXY_PORT,
    NETWORK_INTERFACE,
    TOXICITY,
    RESET_TIMEOUT,
    TOTAL_CHAOS_DURATION,
    RAMP_TIME,
    STREAM,
    SELECTION,
    MODE,
    UNIT,
];

const fn tunable(env: &'static str, key: &'static str, default: &'static str) -> Tunable {
    Tunable { env, key, default }
}

/// Longest RESET_TIMEOUT accepted, ms (one hour): a typo must not hold connections for a day.
pub const MAX_RESET_TIMEOUT_MS: u64 = 3_600_000;
/// Longest TOTAL_CHAOS_DURATION and RAMP_TIME accepted, s (one week).
pub const MAX_DURATION_S: u64 = 7 * 24 * 3600;

/// What the agent adds to its window (duration, ramps, reset timeout, drain) before its own
/// deadline ends it; the controller waits as long past the window before it calls an agent
/// hung. One constant, so the controller never gives up on an agent that is still in time.
pub const DEADLINE_GRACE: Duration = Duration::from_secs(30);

/// Why a fault tunable was refused: a usage error, named after the tunable, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// A value outside its range or malformed.
    #[error("{name} must be {expected}, got {value:?}: {fix}")]
    Invalid {
        /// The tunable's environment name.
        name: &'static str,
        /// The value as given.
        value: std::string::String,
        /// What is accepted.
        expected: &'static str,
        /// How to fix it.
        fix: &'static str,
    },
    /// PROXY_PORT equals TARGET_SERVICE_PORT.
    #[error(
        "PROXY_PORT and TARGET_SERVICE_PORT are both {0}: the proxy must listen on another port; \
         choose a different PROXY_PORT"
    )]
    SamePorts(u16),
}

impl SettingError {
    /// A value of `name` that is not `expected`.
    pub fn invalid(
        name: &'static str,
        value: &str,
        expected: &'static str,
        fix: &'static str,
    ) -> SettingError {
        SettingError::Invalid {
            name,
            value: value.into(),
            expected,
            fix,
        }
    }
}

#[cfg(test)]
mod tests;
