//! The HTTP probe's settings: PROBE_URL parsed once (`http://HOST[:PORT][/PATH][?QUERY]`,
//! HOST being an IPv4 address, a bracketed IPv6 address or a DNS name), the interval, the
//! timeout and the error budget. No I/O here.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::ConfigError;

/// The probe as given (PROBE_INTERVAL and PROBE_TIMEOUT in ms).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInputs {
    /// PROBE_URL.
    pub url: String,
    /// PROBE_INTERVAL, ms.
    pub interval_ms: u64,
    /// PROBE_TIMEOUT, ms.
    pub timeout_ms: u64,
    /// PROBE_MAX_ERROR_PERCENT.
    pub max_error_percent: f64,
}

/// The probe as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// PROBE_URL.
    pub target: ProbeTarget,
    /// PROBE_INTERVAL: time between attempt starts.
    pub interval: Duration,
    /// PROBE_TIMEOUT: bound of one attempt.
    pub timeout: Duration,
    /// PROBE_MAX_ERROR_PERCENT.
    pub max_error_percent: f64,
}

impl ProbeSettings {
    /// Check and type the probe settings.
    pub fn resolve(i: &ProbeInputs) -> Result<ProbeSettings, ConfigError> {
        let target = ProbeTarget::parse(&i.url)?;
        let max = i.max_error_percent;
        if !(max.is_finite() && (0.0..=100.0).contains(&max)) {
            return Err(ConfigError::ProbeMaxErrorPercent(max));
        }
        if i.interval_ms == 0 {
            return Err(ConfigError::ProbeZero("PROBE_INTERVAL"));
        }
        if i.timeout_ms == 0 {
            return Err(ConfigError::ProbeZero("PROBE_TIMEOUT"));
        }
        Ok(ProbeSettings {
            target,
            interval: Duration::from_millis(i.interval_ms),
            timeout: Duration::from_millis(i.timeout_ms),
            max_error_percent: max,
        })
    }
}

/// Why PROBE_URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Not `http://`.
    #[error(
        "PROBE_URL {0:?} is not an http:// URL: the probe speaks plain HTTP/1.1 (https is not supported); give e.g. http://10.0.0.5:80/health"
    )]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error(
        "PROBE_URL {0:?} carries credentials: the probe sends no authentication, remove the user@ part"
    )]
    Userinfo(String),
    /// The host part is empty or malformed.
    #[error(
        "PROBE_URL {0:?} has no valid host: use an IPv4 address, [IPv6] in brackets or a DNS name"
    )]
    Host(String),
    /// The port is not a number from 1 to 65535.
    #[error("PROBE_URL {0:?} has an invalid port: use a number from 1 to 65535")]
    Port(String),
    /// Control characters or spaces would corrupt the request line.
    #[error("PROBE_URL {0:?} contains spaces or control characters: percent-encode them (%20)")]
    Unsafe(String),
}

/// Where the probe connects and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    /// DNS name or literal address (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when the URL has none).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The URL as given (for reports and labels).
    pub url: String,
}

impl ProbeTarget {
    /// Parse and check a probe URL.
    pub fn parse(url: &str) -> Result<Self, TargetError> {
        let bad = |f: fn(String) -> TargetError| f(url.to_string());
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(TargetError::Unsafe));
        }
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            _ => return Err(bad(TargetError::Scheme)),
        };
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.contains('@') {
            return Err(bad(TargetError::Userinfo));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad(TargetError::Host))?;
            addr.parse::<Ipv6Addr>()
                .map_err(|_| bad(TargetError::Host))?;
            let port = if after.is_empty() {
                None
            } else {
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad(TargetError::Port))?,
                )
            };
            (addr, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || (!host.contains(':')
                && !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(bad(TargetError::Host));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(bad(TargetError::Port)),
            },
        };
        Ok(Self {
            host: host.to_string(),
            port,
            path,
            url: url.to_string(),
        })
    }

    /// The literal address, when the host is one (no DNS needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// The `Host:` header value (brackets around IPv6, port when not 80).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The request bytes: one GET on a connection the server should close after.
    pub fn request(&self) -> String {
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: reset-controller-probe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.host_header(),
            env!("CARGO_PKG_VERSION"),
        )
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_v6_and_names() {
        let t = ProbeTarget::parse("http://198.18.0.2/health").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("198.18.0.2", 80, "/health")
        );
        assert_eq!(t.host_header(), "198.18.0.2");
        assert!(t.ip().is_some());
        let t = ProbeTarget::parse("http://[2001:db8::2]:8081").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("2001:db8::2", 8081, "/")
        );
        assert_eq!(t.host_header(), "[2001:db8::2]:8081");
        let t = ProbeTarget::parse("HTTP://web-01.example:8080?x=1#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("web-01.example", 8080, "/?x=1")
        );
        assert!(t.ip().is_none());
        let req = t.request();
        assert!(
            req.starts_with("GET /?x=1 HTTP/1.1\r\nHost: web-01.example:8080\r\n"),
            "{req}"
        );
        assert!(req.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn rejects_what_it_cannot_probe() {
        let err = |u: &str| ProbeTarget::parse(u).unwrap_err();
        assert!(matches!(err("https://h/"), TargetError::Scheme(_)));
        assert!(matches!(err("h:80/"), TargetError::Scheme(_)));
        assert!(matches!(err("http://u:p@h/"), TargetError::Userinfo(_)));
        assert!(matches!(err("http:///x"), TargetError::Host(_)));
        assert!(matches!(err("http://[::1/"), TargetError::Host(_)));
        assert!(matches!(err("http://[zz]/"), TargetError::Host(_)));
        assert!(matches!(err("http://[::1]x/"), TargetError::Port(_)));
        assert!(matches!(err("http://h:0/"), TargetError::Port(_)));
        assert!(matches!(err("http://h:70000/"), TargetError::Port(_)));
        assert!(matches!(err("http://h/a b"), TargetError::Unsafe(_)));
        assert!(matches!(err("http://h/\r\nX: y"), TargetError::Unsafe(_)));
        assert!(err("https://h/").to_string().contains("http://"));
    }

    fn inputs(url: &str, interval_ms: u64, timeout_ms: u64, max: f64) -> ProbeInputs {
        ProbeInputs {
            url: url.into(),
            interval_ms,
            timeout_ms,
            max_error_percent: max,
        }
    }

    #[test]
    fn probe_bounds() {
        let p =
            ProbeSettings::resolve(&inputs("http://[2001:db8::2]/health", 250, 5000, 5.0)).unwrap();
        assert_eq!(p.interval, Duration::from_millis(250));
        assert_eq!(p.target.port, 80);
        assert!(matches!(
            ProbeSettings::resolve(&inputs("https://h/", 1000, 5000, 5.0)),
            Err(ConfigError::ProbeUrl(_))
        ));
        for bad in [-1.0, 100.5, f64::NAN] {
            assert!(matches!(
                ProbeSettings::resolve(&inputs("http://h/", 1000, 5000, bad)),
                Err(ConfigError::ProbeMaxErrorPercent(_))
            ));
        }
        assert!(ProbeSettings::resolve(&inputs("http://h/", 0, 5000, 5.0)).is_err());
        assert!(ProbeSettings::resolve(&inputs("http://h/", 1000, 0, 5.0)).is_err());
    }
}
