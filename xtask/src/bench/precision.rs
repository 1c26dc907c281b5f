//! Selection precision over N flows, and the highest new-connection rate at which the
//! kernel's accounting still loses no flow.
use std::time::Duration;

use serde::Serialize;

use super::{
    agent::AgentArgs,
    load::{self, Kind, Plan},
    pooled,
    setup::Bench,
};

#[derive(Serialize)]
pub struct PrecisionRow {
    pub mode: &'static str,
    pub selection: &'static str,
    pub toxicity: f64,
    pub flows_sent: u64,
    pub flows_seen: u64,
    pub flows_selected: u64,
    pub proxy_accepted: u64,
    pub achieved_percent: f64,
    /// |achieved - TOXICITY| in percentage points.
    pub abs_error_pp: f64,
    /// 1/N in percentage points (the exact-selection bound).
    pub bound_pp: f64,
    /// |flows_selected (kernel) - proxy_accepted (userspace)|.
    pub kernel_userspace_mismatch: u64,
    pub counts_kernel_observed: bool,
}

/// Selection precision over N flows (connect-only, so only the SYN matters).
pub fn precision(b: &mut Bench) -> anyhow::Result<Vec<PrecisionRow>> {
    let mut rows = Vec::new();
    let tox = b.p.precision_toxicity;
    for selection in ["random", "exact"] {
        for &n in &b.p.precision_flows {
            eprintln!("bench: precision: {selection} over {n} flows");
            let agent = b.agent(&AgentArgs {
                unit: "connection",
                mode: "kernel",
                toxicity: tox,
                reset_timeout_ms: 1,
                selection,
            })?;
            let out = load::run(
                b.lab.caller.name(),
                Plan {
                    addr: Bench::addr(80),
                    kind: Kind::ConnectOnly,
                    rate: b.p.precision_rate,
                    count: n,
                    max_duration: Duration::from_secs_f64(
                        n as f64 / b.p.precision_rate * 3.0 + 5.0,
                    ),
                    max_inflight: 1024,
                    timeout: Duration::from_secs(5),
                },
            );
            // Let the proxy accept what is still queued before the window is closed.
            std::thread::sleep(Duration::from_millis(300));
            let r = b.stop_agent(agent, "kernel")?;
            let out = out?;
            let u = |k: &str| r[k].as_u64().unwrap_or(0);
            let achieved = r["achieved_percent"].as_f64().unwrap_or(f64::NAN);
            rows.push(PrecisionRow {
                mode: "kernel",
                selection,
                toxicity: tox,
                flows_sent: out.attempted,
                flows_seen: u("flows_seen"),
                flows_selected: u("flows_selected"),
                proxy_accepted: u("proxy_accepted"),
                achieved_percent: achieved,
                abs_error_pp: (achieved - tox).abs(),
                bound_pp: 100.0 / n as f64,
                kernel_userspace_mismatch: u("flows_selected").abs_diff(u("proxy_accepted")),
                counts_kernel_observed: r["counts_kernel_observed"].as_bool().unwrap_or(false),
            });
        }
    }
    Ok(rows)
}

/// Requests per request-unit precision run, on `REQUEST_PRECISION_CONNS` persistent
/// connections.
pub const REQUEST_PRECISION_N: u64 = 10_000;
const REQUEST_PRECISION_CONNS: u64 = 10;

#[derive(Serialize)]
pub struct RequestPrecisionRow {
    pub selection: &'static str,
    pub toxicity: f64,
    /// Requests the pooled caller sent, and what it saw.
    pub requests_sent: u64,
    pub caller_resets: u64,
    pub caller_other: u64,
    /// The kernel's counts.
    pub requests_seen: u64,
    pub requests_selected: u64,
    pub requests_absorbed: u64,
    pub resets_observed: u64,
    /// What the proxy accepted: unselected requests never pass through it (0 expected).
    pub proxy_accepted: u64,
    pub achieved_percent: f64,
    /// |requests_selected - floor(n * TOXICITY)| (exact: 0 expected).
    pub abs_error_requests: u64,
    /// 1/N in percentage points (the exact-selection bound) and the error in percentage points.
    pub bound_pp: f64,
    pub abs_error_pp: f64,
    /// (selected - n p) / sqrt(n p (1 - p)): random selection's distance from its expectation in
    /// standard deviations.
    pub z: f64,
}

/// Request unit (kernel mode): selection over 10k requests of a pooled keep-alive caller.
pub fn request_precision(b: &mut Bench) -> anyhow::Result<Vec<RequestPrecisionRow>> {
    let mut rows = Vec::new();
    let tox = b.p.precision_toxicity;
    let n = REQUEST_PRECISION_N;
    for selection in ["random", "exact"] {
        eprintln!(
            "bench: precision: {selection} over {n} requests on {REQUEST_PRECISION_CONNS} keep-alive connections"
        );
        let agent = b.agent(&AgentArgs {
            unit: "request",
            mode: "kernel",
            toxicity: tox,
            reset_timeout_ms: 1,
            selection,
        })?;
        let out = pooled::run(
            b,
            "http://198.18.0.2:80/",
            &[
                "--connections".into(),
                REQUEST_PRECISION_CONNS.to_string(),
                "--requests".into(),
                n.to_string(),
                "--duration-s".into(),
                "120".into(),
            ],
        );
        let r = b.stop_agent(agent, "kernel")?;
        let out = out?;
        let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
        let seen = u(&r, "requests_seen");
        let selected = u(&r, "requests_selected");
        let p = tox / 100.0;
        let expected = (seen as f64 * p).floor();
        let achieved = r["achieved_percent"].as_f64().unwrap_or(f64::NAN);
        rows.push(RequestPrecisionRow {
            selection,
            toxicity: tox,
            requests_sent: u(&out, "requests"),
            caller_resets: u(&out, "resets"),
            caller_other: u(&out, "other_errors") + u(&out, "closed"),
            requests_seen: seen,
            requests_selected: selected,
            requests_absorbed: u(&r, "requests_absorbed"),
            resets_observed: u(&r, "resets_observed"),
            proxy_accepted: u(&r, "proxy_accepted"),
            achieved_percent: achieved,
            abs_error_requests: (selected as f64 - expected).abs() as u64,
            bound_pp: 100.0 / n as f64,
            abs_error_pp: (achieved - tox).abs(),
            z: (selected as f64 - seen as f64 * p) / (seen as f64 * p * (1.0 - p)).sqrt(),
        });
    }
    Ok(rows)
}

#[derive(Serialize)]
pub struct RateRow {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub flows_sent: u64,
    pub connect_failed: u64,
    pub flows_seen: u64,
    pub syn_retransmits: u64,
    pub flows_selected: u64,
    pub proxy_accepted: u64,
    /// flows_seen == flows_sent and flows_selected == proxy_accepted.
    pub no_flow_lost: bool,
}

/// Ascending new-connection rates (kernel mode, exact 50%): where does accounting lose a flow?
pub fn max_rate(b: &mut Bench) -> anyhow::Result<Vec<RateRow>> {
    let mut rows = Vec::new();
    let mut failures = 0;
    for &rate in &b.p.rate_steps {
        eprintln!("bench: accounting at {rate} new connections/s");
        let agent = b.agent(&AgentArgs {
            unit: "connection",
            mode: "kernel",
            toxicity: 50.0,
            reset_timeout_ms: 1,
            selection: "exact",
        })?;
        let out = load::run(
            b.lab.caller.name(),
            Plan {
                addr: Bench::addr(80),
                kind: Kind::ConnectOnly,
                rate,
                count: (rate * b.p.rate_secs) as u64,
                max_duration: Duration::from_secs_f64(b.p.rate_secs * 2.0),
                max_inflight: 4096,
                timeout: Duration::from_secs(5),
            },
        );
        std::thread::sleep(Duration::from_millis(300));
        let r = b.stop_agent(agent, "kernel")?;
        let out = out?;
        let u = |k: &str| r[k].as_u64().unwrap_or(0);
        let ok = u("flows_seen") == out.attempted && u("flows_selected") == u("proxy_accepted");
        rows.push(RateRow {
            target_rate: rate,
            achieved_rate: out.attempted as f64 / out.elapsed.as_secs_f64().max(1e-9),
            flows_sent: out.attempted,
            connect_failed: out.connect_failed,
            flows_seen: u("flows_seen"),
            syn_retransmits: u("syn_retransmits"),
            flows_selected: u("flows_selected"),
            proxy_accepted: u("proxy_accepted"),
            no_flow_lost: ok,
        });
        failures = if ok { 0 } else { failures + 1 };
        if failures >= 2 {
            break;
        }
    }
    Ok(rows)
}
