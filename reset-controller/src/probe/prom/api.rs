//! One evaluation through Prometheus' HTTP API: `GET <base>/api/v1/query?query=Q` (an instant
//! query at the server's now), bounded by PROM_PROBE_TIMEOUT and a reply size, decoded into
//! the one value the probe compares or the [`EvalError`] that says why there is none.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::verdict::EvalError;
use crate::config::PromProbeSettings;

/// Largest answer read (a query over many series answers with all of them).
const MAX_REPLY: usize = 4 << 20;
/// Longest time to open a connection, within PROM_PROBE_TIMEOUT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Series named in the several-series message.
const SERIES_SHOWN: usize = 5;

/// Evaluates one query against one Prometheus.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: Url,
    base: String,
    query: String,
    timeout: Duration,
}

impl Client {
    /// A client for `s`; no request is made.
    pub fn new(s: &PromProbeSettings) -> Result<Client, EvalError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(s.timeout))
            .timeout(s.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!(
                "reset-controller-prom-probe/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| EvalError::Unreachable {
                url: s.base.clone(),
                reason: format!("cannot set up an HTTP client: {}", chain(&e)),
            })?;
        let mut url = s.query_url.clone();
        url.query_pairs_mut().append_pair("query", &s.query);
        Ok(Client {
            http,
            url,
            base: s.base.clone(),
            query: s.query.clone(),
            timeout: s.timeout,
        })
    }

    /// Run the query once: its value, or why there is none.
    pub async fn evaluate(&self) -> Result<f64, EvalError> {
        let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                EvalError::Timeout {
                    url: self.base.clone(),
                    ms,
                }
            } else {
                EvalError::Unreachable {
                    url: self.base.clone(),
                    reason: chain(&e.without_url()),
                }
            }
        };
        let mut resp = self
            .http
            .get(self.url.clone())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_REPLY {
                return Err(EvalError::NotPrometheus {
                    url: self.base.clone(),
                    reason: format!("the answer is larger than {} MiB", MAX_REPLY >> 20),
                });
            }
            body.extend_from_slice(&chunk);
        }
        decode(status, &body, &self.query, &self.base)
    }
}

/// An error and its sources, joined (`error sending request: connection refused`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

/// Decode an answer of `/api/v1/query` (HTTP `status`, `body`) for `query` asked of `base`.
pub fn decode(status: u16, body: &[u8], query: &str, base: &str) -> Result<f64, EvalError> {
    let q = || query.to_string();
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&status) => {
            return Err(EvalError::Http {
                url: base.to_string(),
                status,
                detail: excerpt(body),
            });
        }
        Err(e) => {
            return Err(EvalError::NotPrometheus {
                url: base.to_string(),
                reason: format!("it is not JSON: {e}"),
            });
        }
    };
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    match v["status"].as_str() {
        Some("success") => {}
        Some("error") if v["errorType"] == "bad_data" => {
            return Err(EvalError::BadQuery {
                query: q(),
                message: text(&v["error"]),
            });
        }
        Some("error") => {
            return Err(EvalError::Failed {
                query: q(),
                error_type: text(&v["errorType"]),
                message: text(&v["error"]),
            });
        }
        _ if !(200..300).contains(&status) => {
            return Err(EvalError::Http {
                url: base.to_string(),
                status,
                detail: excerpt(body),
            });
        }
        _ => {
            return Err(EvalError::NotPrometheus {
                url: base.to_string(),
                reason: "it has no \"status\" of success or error".into(),
            });
        }
    }
    let data = &v["data"];
    let not_prometheus = |reason: &str| EvalError::NotPrometheus {
        url: base.to_string(),
        reason: reason.to_string(),
    };
    let raw = match data["resultType"].as_str() {
        Some("vector") => {
            let result = data["result"]
                .as_array()
                .ok_or_else(|| not_prometheus("a vector without a result list"))?;
            match result.as_slice() {
                [] => return Err(EvalError::EmptyVector { query: q() }),
                [one] => &one["value"][1],
                several => {
                    return Err(EvalError::SeveralSeries {
                        query: q(),
                        count: several.len(),
                        series: several
                            .iter()
                            .take(SERIES_SHOWN)
                            .map(|s| labels(&s["metric"]))
                            .collect(),
                    });
                }
            }
        }
        Some("scalar") => &data["result"][1],
        Some("matrix") => return Err(EvalError::RangeVector { query: q() }),
        Some("string") => return Err(EvalError::NotANumber { query: q() }),
        _ => return Err(not_prometheus("no known resultType")),
    };
    let value = raw
        .as_str()
        .and_then(sample_value)
        .ok_or_else(|| not_prometheus("a sample value that is not a number"))?;
    if value.is_nan() {
        return Err(EvalError::NaN { query: q() });
    }
    Ok(value)
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`.
fn sample_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

/// A series' labels as `{name="value",...}` (sorted, as the API gives them).
fn labels(metric: &Value) -> String {
    let pairs: Vec<String> = metric
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    format!("{{{}}}", pairs.join(","))
}

/// The start of a body, on one line, for a message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = line.chars().take(120).collect();
    if cut.len() < line.len() {
        cut.push_str("...");
    }
    if cut.is_empty() {
        "empty body".into()
    } else {
        cut
    }
}

#[cfg(test)]
mod tests;
