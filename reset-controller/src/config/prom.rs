//! The Prometheus probe's settings: PROM_PROBE_URL (Prometheus' base URL), the PromQL query,
//! the comparator and value its result is held to, the mode (every PROM_PROBE_INTERVAL during
//! the window, or once at its end) and the time one query may take. No I/O here.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Serialize, Serializer};

/// The path of Prometheus' instant-query API, below its base URL.
pub const QUERY_PATH: &str = "/api/v1/query";

/// The Prometheus probe as given. Every field the probe needs is optional here, so a
/// forgotten one is named by [`PromProbeSettings::resolve`] rather than by the flag parser.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromProbeInputs {
    /// PROM_PROBE_URL.
    pub url: Option<String>,
    /// PROM_PROBE_QUERY.
    pub query: Option<String>,
    /// PROM_PROBE_COMPARATOR.
    pub comparator: Option<String>,
    /// PROM_PROBE_VALUE.
    pub value: Option<f64>,
    /// PROM_PROBE_MODE.
    pub mode: PromMode,
    /// PROM_PROBE_INTERVAL, ms.
    pub interval_ms: u64,
    /// PROM_PROBE_TIMEOUT, ms.
    pub timeout_ms: u64,
}

/// When the query is evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromMode {
    /// When the window opens and every PROM_PROBE_INTERVAL until it closes; every evaluation
    /// must hold.
    #[default]
    Continuous,
    /// Once, when the window has closed (the last agent has ended).
    End,
}

impl PromMode {
    /// `continuous` or `end`, as the flag and the report spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PromMode::Continuous => "continuous",
            PromMode::End => "end",
        }
    }
}

/// How the query's value must compare to PROM_PROBE_VALUE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparator {
    /// Every comparator with its symbol and its word (the word needs no quoting in a shell).
    const ALL: [(Comparator, &'static str, &'static str); 6] = [
        (Comparator::Gt, ">", "gt"),
        (Comparator::Ge, ">=", "ge"),
        (Comparator::Lt, "<", "lt"),
        (Comparator::Le, "<=", "le"),
        (Comparator::Eq, "==", "eq"),
        (Comparator::Ne, "!=", "ne"),
    ];

    /// A symbol (`>=`) or a word (`ge`), blanks around it ignored.
    pub fn parse(s: &str) -> Option<Comparator> {
        let s = s.trim();
        Self::ALL
            .iter()
            .find(|(_, sym, word)| s == *sym || s.eq_ignore_ascii_case(word))
            .map(|(c, _, _)| *c)
    }

    /// The symbol, as reports and messages show it.
    pub fn symbol(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("?", |(_, sym, _)| sym)
    }

    /// Whether `value COMPARATOR threshold` holds, compared as 64-bit floats the way PromQL
    /// compares them (exactly; NaN holds for nothing but `!=`).
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparator::Gt => value > threshold,
            Comparator::Ge => value >= threshold,
            Comparator::Lt => value < threshold,
            Comparator::Le => value <= threshold,
            Comparator::Eq => value == threshold,
            Comparator::Ne => value != threshold,
        }
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

impl Serialize for Comparator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.symbol())
    }
}

/// The Prometheus probe as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PromProbeSettings {
    /// Prometheus' base URL, as reports show it (no trailing `/`).
    pub base: String,
    /// `<base>/api/v1/query`.
    pub query_url: Url,
    /// PROM_PROBE_QUERY.
    pub query: String,
    /// PROM_PROBE_COMPARATOR.
    pub comparator: Comparator,
    /// PROM_PROBE_VALUE.
    pub value: f64,
    /// PROM_PROBE_MODE.
    pub mode: PromMode,
    /// PROM_PROBE_INTERVAL: time between evaluation starts (continuous mode).
    pub interval: Duration,
    /// PROM_PROBE_TIMEOUT: bound of one query.
    pub timeout: Duration,
}

/// Why the Prometheus probe's settings were refused (a usage error, exit code 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromProbeError {
    /// One of the four settings the probe needs is missing.
    #[error(
        "{0} is not set: the Prometheus probe needs PROM_PROBE_URL, PROM_PROBE_QUERY, \
         PROM_PROBE_COMPARATOR and PROM_PROBE_VALUE together (or none of them)"
    )]
    Missing(&'static str),
    /// PROM_PROBE_URL cannot be used.
    #[error(
        "PROM_PROBE_URL {url:?} cannot be used: {reason}; give Prometheus' base URL, e.g. \
         http://prometheus.monitoring:9090"
    )]
    Url {
        /// The URL as given (credentials hidden).
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// PROM_PROBE_QUERY is blank.
    #[error("PROM_PROBE_QUERY is empty: give a PromQL query whose result is one value")]
    EmptyQuery,
    /// PROM_PROBE_COMPARATOR is not one of the six.
    #[error(
        "PROM_PROBE_COMPARATOR {0:?} is not a comparator: use one of >, >=, <, <=, ==, != \
         (or gt, ge, lt, le, eq, ne)"
    )]
    Comparator(String),
    /// PROM_PROBE_VALUE is NaN or infinite.
    #[error("PROM_PROBE_VALUE {0} is not a finite number: give the number to compare with, e.g. 0")]
    Value(f64),
    /// PROM_PROBE_INTERVAL or PROM_PROBE_TIMEOUT is zero.
    #[error("{0} must be at least 1 ms")]
    Zero(&'static str),
}

impl PromProbeSettings {
    /// Check and type the probe's settings.
    pub fn resolve(i: &PromProbeInputs) -> Result<PromProbeSettings, PromProbeError> {
        let url = need(&i.url, "PROM_PROBE_URL")?;
        let query = need(&i.query, "PROM_PROBE_QUERY")?;
        let comparator = need(&i.comparator, "PROM_PROBE_COMPARATOR")?;
        let value = i.value.ok_or(PromProbeError::Missing("PROM_PROBE_VALUE"))?;
        let (base, query_url) = base_url(url)?;
        if query.trim().is_empty() {
            return Err(PromProbeError::EmptyQuery);
        }
        let comparator = Comparator::parse(comparator)
            .ok_or_else(|| PromProbeError::Comparator(comparator.to_string()))?;
        if !value.is_finite() {
            return Err(PromProbeError::Value(value));
        }
        if i.interval_ms == 0 {
            return Err(PromProbeError::Zero("PROM_PROBE_INTERVAL"));
        }
        if i.timeout_ms == 0 {
            return Err(PromProbeError::Zero("PROM_PROBE_TIMEOUT"));
        }
        Ok(PromProbeSettings {
            base,
            query_url,
            query: query.trim().to_string(),
            comparator,
            value,
            mode: i.mode,
            interval: Duration::from_millis(i.interval_ms),
            timeout: Duration::from_millis(i.timeout_ms),
        })
    }

    /// `QUERY COMPARATOR VALUE`, as messages and the table show the assertion.
    pub fn assertion(&self) -> String {
        format!("{} {} {}", self.query, self.comparator, self.value)
    }
}

/// A setting the probe cannot go without.
fn need<'a>(v: &'a Option<String>, name: &'static str) -> Result<&'a str, PromProbeError> {
    v.as_deref().ok_or(PromProbeError::Missing(name))
}

/// Prometheus' base URL (as shown) and its query endpoint. A URL given with the API path
/// (`.../api/v1/query`) is taken for its base.
fn base_url(raw: &str) -> Result<(String, Url), PromProbeError> {
    let bad = |reason| PromProbeError::Url {
        url: hide_userinfo(raw),
        reason,
    };
    let mut url = Url::parse(raw.trim()).map_err(|_| bad("it is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not supported"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix(QUERY_PATH).unwrap_or(path).to_string();
    url.set_path(&path);
    let base = url.as_str().trim_end_matches('/').to_string();
    url.set_path(&format!("{path}{QUERY_PATH}"));
    Ok((base, url))
}

/// `scheme://***@host...` for a URL with credentials, so a message never shows them.
fn hide_userinfo(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> PromProbeInputs {
        PromProbeInputs {
            url: Some("http://198.18.0.1:9090".into()),
            query: Some("sum(increase(reset_peer_caller_retries_total[30s]))".into()),
            comparator: Some(">".into()),
            value: Some(0.0),
            mode: PromMode::End,
            interval_ms: 1000,
            timeout_ms: 5000,
        }
    }

    #[test]
    fn resolves_the_query_endpoint_below_the_base() {
        let s = PromProbeSettings::resolve(&inputs()).unwrap();
        assert_eq!(s.base, "http://198.18.0.1:9090");
        assert_eq!(s.query_url.as_str(), "http://198.18.0.1:9090/api/v1/query");
        assert_eq!(
            s.assertion(),
            "sum(increase(reset_peer_caller_retries_total[30s])) > 0"
        );
        for (given, base, endpoint) in [
            (
                "https://prom.example/prometheus/",
                "https://prom.example/prometheus",
                "https://prom.example/prometheus/api/v1/query",
            ),
            (
                "http://[2001:db8::1]:9090/api/v1/query",
                "http://[2001:db8::1]:9090",
                "http://[2001:db8::1]:9090/api/v1/query",
            ),
        ] {
            let s = PromProbeSettings::resolve(&PromProbeInputs {
                url: Some(given.into()),
                ..inputs()
            })
            .unwrap();
            assert_eq!((s.base.as_str(), s.query_url.as_str()), (base, endpoint));
        }
    }

    #[test]
    fn comparators_by_symbol_or_word() {
        for (text, c) in [
            (">", Comparator::Gt),
            (" >= ", Comparator::Ge),
            ("lt", Comparator::Lt),
            ("LE", Comparator::Le),
            ("==", Comparator::Eq),
            ("ne", Comparator::Ne),
        ] {
            assert_eq!(Comparator::parse(text), Some(c), "{text}");
            assert_eq!(Comparator::parse(c.symbol()), Some(c));
        }
        assert_eq!(Comparator::parse("="), None);
        assert_eq!(Comparator::parse("=>"), None);
        assert!(Comparator::Gt.holds(1.0, 0.0) && !Comparator::Gt.holds(0.0, 0.0));
        assert!(Comparator::Ge.holds(0.0, 0.0) && Comparator::Le.holds(0.0, 0.0));
        assert!(Comparator::Lt.holds(-1.0, 0.0) && !Comparator::Lt.holds(0.0, 0.0));
        assert!(Comparator::Eq.holds(2.5, 2.5) && Comparator::Ne.holds(2.5, 2.0));
        assert!(Comparator::Ne.holds(f64::NAN, 0.0) && !Comparator::Eq.holds(f64::NAN, 0.0));
        assert_eq!(serde_json::to_value(Comparator::Ge).unwrap(), ">=");
    }

    #[test]
    fn refuses_what_it_cannot_evaluate() {
        let refused = |f: fn(&mut PromProbeInputs)| {
            let mut i = inputs();
            f(&mut i);
            PromProbeSettings::resolve(&i).unwrap_err()
        };
        assert_eq!(
            refused(|i| i.query = None),
            PromProbeError::Missing("PROM_PROBE_QUERY")
        );
        assert_eq!(
            refused(|i| i.url = None),
            PromProbeError::Missing("PROM_PROBE_URL")
        );
        assert_eq!(
            refused(|i| i.value = None),
            PromProbeError::Missing("PROM_PROBE_VALUE")
        );
        assert_eq!(
            refused(|i| i.comparator = Some("=".into())),
            PromProbeError::Comparator("=".into())
        );
        assert!(matches!(
            refused(|i| i.value = Some(f64::NAN)),
            PromProbeError::Value(_)
        ));
        assert_eq!(
            refused(|i| i.query = Some("  ".into())),
            PromProbeError::EmptyQuery
        );
        assert_eq!(
            refused(|i| i.interval_ms = 0),
            PromProbeError::Zero("PROM_PROBE_INTERVAL")
        );
        assert_eq!(
            refused(|i| i.timeout_ms = 0),
            PromProbeError::Zero("PROM_PROBE_TIMEOUT")
        );
        for url in [
            "prometheus:9090",
            "ftp://h/",
            "http://u:secret@h:9090",
            "http://h:9090/?x=1",
        ] {
            let e = PromProbeSettings::resolve(&PromProbeInputs {
                url: Some(url.into()),
                ..inputs()
            })
            .unwrap_err();
            assert!(matches!(e, PromProbeError::Url { .. }), "{url}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
