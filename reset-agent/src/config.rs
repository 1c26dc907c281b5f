//! The validated fault configuration. Raw values (flags/environment, then the config file,
//! then defaults) are merged and checked here; nothing downstream re-validates.
use std::{fmt, fs, io::Read, os::unix::fs::MetadataExt, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

/// Defaults, as documented in the README and the issue.
pub const DEFAULT_TARGET_PORT: u16 = 80;
pub const DEFAULT_PROXY_PORT: u16 = 8080;
pub const DEFAULT_INTERFACE: &str = "ens160";
pub const DEFAULT_TOXICITY: &str = "100";
pub const DEFAULT_RESET_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_DURATION_S: u64 = 30;
pub const DEFAULT_RAMP_S: u64 = 0;

/// Limits that keep a typo from becoming a day-long outage or a timer overflow.
const MAX_RESET_TIMEOUT_MS: u64 = 3_600_000;
const MAX_DURATION_S: u64 = 7 * 24 * 3600;
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Every tunable as typed (strings), each optional. Also the config file's schema.
#[derive(Debug, Default, Clone, Deserialize)]
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
}

/// Accepts a TOML string, integer or float and keeps its text, so the file and the flags share
/// one parser (and one set of error messages).
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
    /// Fills every field that is `None` here from `other`.
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
        }
    }
}

/// Why a configuration was refused. All of these are usage errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} must be {expected}, got {value:?}: {fix}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
        fix: &'static str,
    },
    #[error(
        "PROXY_PORT and TARGET_SERVICE_PORT are both {0}: the proxy must listen on another port; \
         choose a different PROXY_PORT"
    )]
    SamePorts(u16),
    #[error("cannot read config file {path}: {source}")]
    FileRead {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {path} is not valid: {message}; keys are the flags in snake_case, e.g. toxicity = 50"
    )]
    FileSyntax { path: String, message: String },
    #[error(
        "config file {path} is {why}: fix its ownership/mode (chmod 600, owned by the user running the agent)"
    )]
    FileUnsafe { path: String, why: &'static str },
    #[error("config file {path} is larger than 64 KiB; it holds a dozen keys")]
    FileTooLarge { path: String },
}

/// Toxicity in parts per million (0..=1_000_000): exact for every decimal with up to 4 places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Toxicity(u32);

impl Toxicity {
    pub fn ppm(self) -> u32 {
        self.0
    }
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }
    pub fn from_ppm(ppm: u32) -> Option<Self> {
        (ppm <= 1_000_000).then_some(Self(ppm))
    }

    /// Parses "30", "0.5", "99.9999". Rejects signs, exponents, NaN, more than 4 decimals and
    /// anything outside 0-100.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().strip_suffix('%').unwrap_or(s.trim());
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if frac.len() > 4 || int.len() > 3 {
            return None;
        }
        let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut frac_ppm = 0u32;
        for (i, b) in frac.bytes().enumerate() {
            frac_ppm += u32::from(b - b'0') * 10u32.pow(3 - i as u32);
        }
        Self::from_ppm(int.checked_mul(10_000)?.checked_add(frac_ppm)?)
    }
}

impl fmt::Display for Toxicity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = format!("{}.{:04}", self.0 / 10_000, self.0 % 10_000);
        f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Downstream,
    Upstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Random,
    Exact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeRequest {
    Auto,
    Kernel,
    Userspace,
}

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub target_port: u16,
    pub proxy_port: u16,
    pub interface: String,
    pub toxicity: Toxicity,
    pub reset_timeout: Duration,
    pub duration: Duration,
    pub ramp: Duration,
    pub stream: Stream,
    pub selection: Selection,
    pub mode: ModeRequest,
}

fn invalid(
    name: &'static str,
    value: &str,
    expected: &'static str,
    fix: &'static str,
) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        expected,
        fix,
    }
}

fn port(name: &'static str, v: &str) -> Result<u16, ConfigError> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(invalid(
            name,
            v,
            "a TCP port 1-65535",
            "pass a port number such as 8080",
        )),
    }
}

fn whole(
    name: &'static str,
    v: &str,
    unit: &'static str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let expected = match (min, unit) {
        (0, "ms") => "a whole number of milliseconds, 0 or more",
        (_, "ms") => "a whole number of milliseconds, 1 or more",
        (0, _) => "a whole number of seconds, 0 or more",
        _ => "a whole number of seconds, 1 or more",
    };
    let fix = "use digits only, e.g. 30 (no sign, unit or decimals); at most a week";
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(name, v, expected, fix)),
    }
}

/// The kernel's rule for a network device name (`dev_valid_name` in net/core/dev.c): 1 to
/// IFNAMSIZ-1 bytes, not `.` or `..`, and no `/`, `:`, NUL or C whitespace (which includes
/// vertical tab). A name the kernel could never have is a usage error here, not a missing
/// interface later.
fn interface_name_ok(name: &str) -> bool {
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

impl Config {
    /// Merges flags/environment over the config file over defaults, then validates.
    pub fn resolve(raw: RawSettings) -> Result<Config, ConfigError> {
        let get = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_owned());
        let target_port = match &raw.target_service_port {
            Some(v) => port("TARGET_SERVICE_PORT", v)?,
            None => DEFAULT_TARGET_PORT,
        };
        let proxy_port = match &raw.proxy_port {
            Some(v) => port("PROXY_PORT", v)?,
            None => DEFAULT_PROXY_PORT,
        };
        if target_port == proxy_port {
            return Err(ConfigError::SamePorts(proxy_port));
        }
        let interface = get(&raw.network_interface, DEFAULT_INTERFACE);
        if !interface_name_ok(&interface) {
            return Err(invalid(
                "NETWORK_INTERFACE",
                &interface,
                "an interface name: 1-15 bytes, no '/', ':' or whitespace",
                "list interfaces with `ip -br link` and pass one of them",
            ));
        }
        let tox_s = get(&raw.toxicity, DEFAULT_TOXICITY);
        let toxicity = Toxicity::parse(&tox_s).ok_or_else(|| {
            invalid(
                "TOXICITY",
                &tox_s,
                "a percentage from 0 to 100 (up to 4 decimals)",
                "e.g. TOXICITY=50 or TOXICITY=0.5",
            )
        })?;
        let reset_timeout = match &raw.reset_timeout {
            Some(v) => whole("RESET_TIMEOUT", v, "ms", 0, MAX_RESET_TIMEOUT_MS)?,
            None => DEFAULT_RESET_TIMEOUT_MS,
        };
        let duration = match &raw.total_chaos_duration {
            Some(v) => whole("TOTAL_CHAOS_DURATION", v, "s", 1, MAX_DURATION_S)?,
            None => DEFAULT_DURATION_S,
        };
        let ramp = match &raw.ramp_time {
            Some(v) => whole("RAMP_TIME", v, "s", 0, MAX_DURATION_S)?,
            None => DEFAULT_RAMP_S,
        };
        let stream_s = get(&raw.stream, "downstream");
        let stream = match stream_s.trim().to_ascii_lowercase().as_str() {
            "downstream" => Stream::Downstream,
            "upstream" => Stream::Upstream,
            _ => {
                return Err(invalid(
                    "STREAM",
                    &stream_s,
                    "downstream or upstream",
                    "pass --stream downstream",
                ));
            }
        };
        let sel_s = get(&raw.selection, "random");
        let selection = match sel_s.trim().to_ascii_lowercase().as_str() {
            "random" => Selection::Random,
            "exact" => Selection::Exact,
            _ => {
                return Err(invalid(
                    "SELECTION",
                    &sel_s,
                    "random or exact",
                    "pass --selection random",
                ));
            }
        };
        let mode_s = get(&raw.mode, "auto");
        let mode = match mode_s.trim().to_ascii_lowercase().as_str() {
            "auto" => ModeRequest::Auto,
            "kernel" => ModeRequest::Kernel,
            "userspace" => ModeRequest::Userspace,
            _ => {
                return Err(invalid(
                    "MODE",
                    &mode_s,
                    "auto, kernel or userspace",
                    "pass --mode auto",
                ));
            }
        };
        Ok(Config {
            target_port,
            proxy_port,
            interface,
            toxicity,
            reset_timeout: Duration::from_millis(reset_timeout),
            duration: Duration::from_secs(duration),
            ramp: Duration::from_secs(ramp),
            stream,
            selection,
            mode,
        })
    }
}

/// Reads a config file, refusing one that others could have written. The checks look at the
/// opened file itself, and at most 64 KiB are read even when the size is not known up front
/// (a pipe such as `--config <(...)`, a file still growing).
pub fn read_file(path: &Path) -> Result<RawSettings, ConfigError> {
    let shown = path.display().to_string();
    let read_error = |source| ConfigError::FileRead {
        path: shown.clone(),
        source,
    };
    let file = fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError::FileTooLarge { path: shown });
    }
    if meta.mode() & 0o002 != 0 {
        return Err(ConfigError::FileUnsafe {
            path: shown,
            why: "world-writable",
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(ConfigError::FileUnsafe {
            path: shown,
            why: "owned by another user",
        });
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::FileTooLarge { path: shown });
    }
    parse_file(&shown, &text)
}

pub fn parse_file(path: &str, text: &str) -> Result<RawSettings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::FileSyntax {
        path: path.to_owned(),
        message: e.message().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawSettings)) -> RawSettings {
        let mut r = RawSettings::default();
        f(&mut r);
        r
    }

    #[test]
    fn toxicity_parses_decimals_exactly() {
        assert_eq!(Toxicity::parse("0.5").unwrap().ppm(), 5_000);
        assert_eq!(Toxicity::parse("30").unwrap().ppm(), 300_000);
        assert_eq!(Toxicity::parse("100").unwrap().ppm(), 1_000_000);
        assert_eq!(Toxicity::parse("99.9999").unwrap().ppm(), 999_999);
        assert_eq!(Toxicity::parse(".25").unwrap().ppm(), 2_500);
        assert_eq!(Toxicity::parse("50%").unwrap().ppm(), 500_000);
        for bad in [
            "101", "-1", "abc", "", ".", "1e2", "NaN", "100.0001", "0.00001", "+5", " 5 5",
        ] {
            assert!(Toxicity::parse(bad).is_none(), "{bad:?} should be refused");
        }
        assert_eq!(Toxicity::parse("0.5").unwrap().to_string(), "0.5");
        assert_eq!(Toxicity::parse("30").unwrap().to_string(), "30");
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = Config::resolve(RawSettings::default()).unwrap();
        assert_eq!((c.target_port, c.proxy_port), (80, 8080));
        assert_eq!(c.interface, "ens160");
        assert_eq!(c.toxicity.ppm(), 1_000_000);
        assert_eq!(c.reset_timeout, Duration::from_millis(2000));
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.ramp, Duration::ZERO);
        assert_eq!(
            (c.stream, c.selection, c.mode),
            (Stream::Downstream, Selection::Random, ModeRequest::Auto)
        );
    }

    #[test]
    fn bad_values_name_the_tunable_and_the_fix() {
        let cases: Vec<(RawSettings, &str)> = vec![
            (raw(|r| r.toxicity = Some("101".into())), "TOXICITY"),
            (raw(|r| r.toxicity = Some("-1".into())), "TOXICITY"),
            (raw(|r| r.toxicity = Some("abc".into())), "TOXICITY"),
            (
                raw(|r| r.reset_timeout = Some("-5".into())),
                "RESET_TIMEOUT",
            ),
            (
                raw(|r| r.total_chaos_duration = Some("0".into())),
                "TOTAL_CHAOS_DURATION",
            ),
            (raw(|r| r.proxy_port = Some("80".into())), "PROXY_PORT"),
            (raw(|r| r.proxy_port = Some("70000".into())), "PROXY_PORT"),
            (raw(|r| r.stream = Some("sideways".into())), "STREAM"),
            (
                raw(|r| r.network_interface = Some("a/b".into())),
                "NETWORK_INTERFACE",
            ),
            (
                raw(|r| r.network_interface = Some("eth0:1".into())),
                "NETWORK_INTERFACE",
            ),
            (
                raw(|r| r.network_interface = Some("eth\t0".into())),
                "NETWORK_INTERFACE",
            ),
        ];
        for (r, name) in cases {
            let msg = Config::resolve(r).unwrap_err().to_string();
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn config_file_keys_numbers_and_unknown_keys() {
        let r = parse_file(
            "x",
            "toxicity = 30\nreset_timeout = 300\nstream = \"upstream\"\n",
        )
        .unwrap();
        let c = Config::resolve(r).unwrap();
        assert_eq!(c.toxicity.ppm(), 300_000);
        assert_eq!(c.reset_timeout, Duration::from_millis(300));
        assert_eq!(c.stream, Stream::Upstream);
        assert!(
            parse_file("x", "toxic = 3")
                .unwrap_err()
                .to_string()
                .contains("toxic")
        );
        assert!(parse_file("x", "toxicity = ").is_err());
        assert_eq!(
            parse_file("x", "toxicity = 0.5")
                .unwrap()
                .toxicity
                .as_deref(),
            Some("0.5")
        );
    }

    /// Inputs the agent_config fuzz target found wrongly accepted, crashing or hanging: each
    /// must now be a usage error.
    #[test]
    fn fuzz_regressions_are_usage_errors() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/fuzz_regressions");
        let mut seen = 0;
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            let shown = path.display().to_string();
            let result = parse_file(&shown, &text).and_then(Config::resolve);
            assert!(result.is_err(), "{shown} was accepted: {result:?}");
            seen += 1;
        }
        assert!(seen > 0, "no inputs in {}", dir.display());
    }

    #[test]
    fn config_file_read_is_bounded() {
        let dir = std::env::temp_dir().join(format!("reset-agent-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        fs::write(&big, "#".repeat(MAX_CONFIG_BYTES as usize + 1)).unwrap();
        assert!(matches!(
            read_file(&big),
            Err(ConfigError::FileTooLarge { .. })
        ));
        // A pipe has no size up front: the read itself must stop.
        let fifo = dir.join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut f = fs::OpenOptions::new().write(true).open(fifo).unwrap();
                let chunk = vec![b'#'; 4096];
                // Ends with EPIPE once the reader has had enough and closed its end.
                while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
            })
        };
        assert!(matches!(
            read_file(&fifo),
            Err(ConfigError::FileTooLarge { .. })
        ));
        writer.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn flags_win_over_file() {
        let flags = raw(|r| r.toxicity = Some("10".into()));
        let file = raw(|r| {
            r.toxicity = Some("90".into());
            r.proxy_port = Some("9090".into());
        });
        let c = Config::resolve(flags.or(file)).unwrap();
        assert_eq!(c.toxicity.ppm(), 100_000);
        assert_eq!(c.proxy_port, 9090);
    }
}
