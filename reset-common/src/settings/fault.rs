//! The fault's tunables as typed ([`RawSettings`], also the agent's config-file schema) and
//! as checked ([`FaultSettings`]): the one resolver both binaries run, with the defaults, the
//! limits and the kernel's interface-name rule.

use core::time::Duration;
use std::borrow::ToOwned;
use std::string::{String, ToString};

use serde::{Deserialize, Serialize};

use super::{
    MAX_DURATION_S, MAX_RESET_TIMEOUT_MS, MODE, Mode, NETWORK_INTERFACE, PROXY_PORT, RAMP_TIME,
    RESET_TIMEOUT, SELECTION, STREAM, Selection, SettingError, Stream, TARGET_SERVICE_PORT,
    TOTAL_CHAOS_DURATION, TOXICITY, Toxicity, Tunable, UNIT, Unit as CountUnit,
};

/// Every fault tunable as typed (text), each optional: flags and environment, or the agent's
/// config file, whose schema this is (keys in snake_case; an unknown key is an error).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    #[serde(default, deserialize_with = "scalar")]
    pub target_service_port: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub proxy_port: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub network_interface: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub toxicity: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub reset_timeout: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub total_chaos_duration: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ramp_time: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub stream: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub selection: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub mode: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub unit: Option<String>,
}

/// Accepts a string, integer, float or boolean and keeps its text, so a file and the flags
/// share one parser (and one set of error messages).
fn scalar<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    Ok(Some(match Scalar::deserialize(d)? {
        Scalar::S(s) => s,
        Scalar::I(i) => i.to_string(),
        Scalar::F(f) => f.to_string(),
        Scalar::B(b) => b.to_string(),
    }))
}

impl RawSettings {
    /// Fills every field that is `None` here from `other` (flags over file over defaults).
    pub fn or(self, other: RawSettings) -> RawSettings {
        RawSettings {
            target_service_port: self.target_service_port.or(other.target_service_port),
            proxy_port: self.proxy_port.or(other.proxy_port),
            network_interface: self.network_interface.or(other.network_interface),
            toxicity: self.toxicity.or(other.toxicity),
            reset_timeout: self.reset_timeout.or(other.reset_timeout),
            total_chaos_duration: self.total_chaos_duration.or(other.total_chaos_duration),
            ramp_time: self.ramp_time.or(other.ramp_time),
            stream: self.stream.or(other.stream),
            selection: self.selection.or(other.selection),
            mode: self.mode.or(other.mode),
            unit: self.unit.or(other.unit),
        }
    }
}

/// The fault as every agent runs it, checked. RAMP_TIME is not part of it: the agent waits it
/// around its window ([`ramp_time`]), the controller around all of its VMs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSettings {
    /// TARGET_SERVICE_PORT.
    pub target_service_port: u16,
    /// PROXY_PORT (never equal to TARGET_SERVICE_PORT).
    pub proxy_port: u16,
    /// NETWORK_INTERFACE: a name the kernel could have.
    pub network_interface: String,
    /// TOXICITY.
    pub toxicity: Toxicity,
    /// RESET_TIMEOUT.
    #[serde(rename = "reset_timeout_ms", serialize_with = "as_millis")]
    pub reset_timeout: Duration,
    /// TOTAL_CHAOS_DURATION.
    #[serde(rename = "total_chaos_duration_s", serialize_with = "as_secs")]
    pub total_chaos_duration: Duration,
    /// STREAM.
    pub stream: Stream,
    /// SELECTION.
    pub selection: Selection,
    /// MODE.
    pub mode: Mode,
    /// UNIT.
    pub unit: CountUnit,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// The value given for `t`, else its default.
fn or_default(t: Tunable, v: &Option<String>) -> &str {
    v.as_deref().unwrap_or(t.default)
}

impl FaultSettings {
    /// Checks every fault tunable of `raw` (ramp aside), a missing one taking its default.
    /// The first value refused is the error.
    pub fn resolve(raw: &RawSettings) -> Result<FaultSettings, SettingError> {
        let target_service_port = port(
            TARGET_SERVICE_PORT,
            or_default(TARGET_SERVICE_PORT, &raw.target_service_port),
        )?;
        let proxy_port = port(PROXY_PORT, or_default(PROXY_PORT, &raw.proxy_port))?;
        if target_service_port == proxy_port {
            return Err(SettingError::SamePorts(proxy_port));
        }
        let network_interface =
            network_interface(or_default(NETWORK_INTERFACE, &raw.network_interface))?;
        let toxicity = Toxicity::read(or_default(TOXICITY, &raw.toxicity))?;
        let reset_timeout = whole(
            RESET_TIMEOUT,
            or_default(RESET_TIMEOUT, &raw.reset_timeout),
            TimeUnit::Millis,
            0,
            MAX_RESET_TIMEOUT_MS,
        )?;
        let total_chaos_duration = whole(
            TOTAL_CHAOS_DURATION,
            or_default(TOTAL_CHAOS_DURATION, &raw.total_chaos_duration),
            TimeUnit::Secs,
            1,
            MAX_DURATION_S,
        )?;
        Ok(FaultSettings {
            target_service_port,
            proxy_port,
            network_interface,
            toxicity,
            reset_timeout: Duration::from_millis(reset_timeout),
            total_chaos_duration: Duration::from_secs(total_chaos_duration),
            stream: Stream::parse(or_default(STREAM, &raw.stream))?,
            selection: Selection::parse(or_default(SELECTION, &raw.selection))?,
            mode: Mode::parse(or_default(MODE, &raw.mode))?,
            unit: CountUnit::parse(or_default(UNIT, &raw.unit))?,
        })
    }
}

/// RAMP_TIME: whole seconds, 0 to a week; the default when not given.
pub fn ramp_time(text: Option<&str>) -> Result<Duration, SettingError> {
    let text = text.unwrap_or(RAMP_TIME.default);
    let s = whole(RAMP_TIME, text, TimeUnit::Secs, 0, MAX_DURATION_S)?;
    Ok(Duration::from_secs(s))
}

fn port(t: Tunable, text: &str) -> Result<u16, SettingError> {
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(SettingError::invalid(
            t.env,
            text,
            "a TCP port 1-65535",
            "pass a port number such as 8080",
        )),
    }
}

#[derive(Clone, Copy)]
enum TimeUnit {
    Millis,
    Secs,
}

/// A whole number of `unit` in `min..=max`: digits only, no sign, unit or decimals.
fn whole(t: Tunable, text: &str, unit: TimeUnit, min: u64, max: u64) -> Result<u64, SettingError> {
    let (expected, fix) = match (unit, min) {
        (TimeUnit::Millis, _) => (
            "a whole number of milliseconds, 0 or more",
            "use digits only, e.g. 2000 (no sign, unit or decimals); at most an hour",
        ),
        (TimeUnit::Secs, 0) => (
            "a whole number of seconds, 0 or more",
            "use digits only, e.g. 30 (no sign, unit or decimals); at most a week",
        ),
        (TimeUnit::Secs, _) => (
            "a whole number of seconds, 1 or more",
            "use digits only, e.g. 30 (no sign, unit or decimals); at most a week",
        ),
    };
    match text.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(SettingError::invalid(t.env, text, expected, fix)),
    }
}

/// The kernel's rule for a network device name (`dev_valid_name` in net/core/dev.c): 1 to
/// IFNAMSIZ-1 bytes, not `.` or `..`, and no `/`, `:`, NUL or C whitespace (which includes
/// vertical tab). Other bytes, non-ASCII ones included, are the kernel's to accept.
pub fn interface_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| {
            matches!(
                b,
                b'/' | b':' | b'\0' | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'
            )
        })
}

/// NETWORK_INTERFACE: a name the kernel could have (see [`interface_name_ok`]). A name that
/// could never exist is a usage error here, not a missing interface later.
pub fn network_interface(text: &str) -> Result<String, SettingError> {
    if interface_name_ok(text) {
        Ok(text.to_owned())
    } else {
        Err(SettingError::invalid(
            NETWORK_INTERFACE.env,
            text,
            "an interface name: 1-15 bytes, no '/', ':' or whitespace",
            "list interfaces with `ip -br link` and pass one of them",
        ))
    }
}
