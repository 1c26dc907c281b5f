//! Reset delay error at paced selected-connection rates (TOXICITY 100): the agent's own
//! measurement (kernel timestamps in kernel mode) beside the caller's clock.
use std::time::Duration;

use serde::Serialize;

use super::{
    agent::AgentArgs,
    load::{self, Kind, Plan},
    pooled,
    setup::{Bench, Setup},
};

/// Error percentiles (observed - RESET_TIMEOUT), ms.
#[derive(Clone, Debug, Serialize)]
pub struct ErrPct {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

#[derive(Serialize)]
pub struct DelayRow {
    pub setup: String,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub reset_timeout_ms: u64,
    pub resets_seen_by_caller: u64,
    pub other_outcomes: u64,
    /// From the agent's report: kernel (tc egress timestamps) in kernel mode, the proxy's
    /// clock in userspace mode. None for toxy.
    pub agent_measured: Option<ErrPct>,
    pub agent_measured_by: &'static str,
    pub caller_clock: Option<ErrPct>,
    /// Connections closed with no response (FIN, not RST), and that delay's error.
    pub closed_without_response: u64,
    pub caller_clock_closed: Option<ErrPct>,
    /// Caller-clock errors (ms), sorted, for the CDF plot.
    #[serde(skip)]
    pub caller_errors_ms: Vec<f64>,
}

/// Reset delay error at paced selected-connection rates (TOXICITY 100).
pub fn reset_delay(b: &mut Bench, setups: &[Setup]) -> anyhow::Result<Vec<DelayRow>> {
    let mut rows = Vec::new();
    let t = b.p.reset_timeout_ms;
    for s in setups {
        for &rate in &b.p.delay_rates {
            eprintln!("bench: reset delay: {} at {rate}/s", s.label());
            let running = b.start(s, t)?;
            let count = (rate * b.p.delay_secs).round() as u64;
            let out = load::run(
                b.lab.caller.name(),
                Plan {
                    addr: Bench::addr(s.port()),
                    kind: Kind::Request,
                    rate,
                    count,
                    max_duration: Duration::from_secs_f64(b.p.delay_secs * 1.5 + 1.0),
                    max_inflight: 20_000,
                    timeout: Duration::from_millis(t + 5000),
                },
            );
            let report = b.stop(running, s)?;
            let out = out?;
            // The CDF shows resets; a peer that closes instead (FIN) is plotted from its closes.
            let samples = if out.reset_after_us.is_empty() {
                &out.closed_after_us
            } else {
                &out.reset_after_us
            };
            let mut errs: Vec<f64> = samples
                .iter()
                .map(|us| *us as f64 / 1000.0 - t as f64)
                .collect();
            errs.sort_by(f64::total_cmp);
            let caller_clock = err_pct(&out.reset_after_us, t);
            let caller_clock_closed = err_pct(&out.closed_after_us, t);
            let (agent_measured, by) = match &report {
                Some(r) => {
                    let d = &r["reset_delay_ms"];
                    let kernel = r["counts_kernel_observed"].as_bool().unwrap_or(false);
                    let samples = d["samples"].as_u64().unwrap_or(0);
                    (
                        (samples > 0).then(|| ErrPct {
                            p50: d["p50"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            p99: d["p99"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            max: d["max"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            samples,
                        }),
                        if kernel {
                            "kernel (tc egress, on the wire)"
                        } else {
                            "proxy clock (userspace mode)"
                        },
                    )
                }
                None => (None, "n/a (not reset-peer)"),
            };
            rows.push(DelayRow {
                setup: s.series(),
                target_rate: rate,
                achieved_rate: out.attempted as f64 / out.elapsed.as_secs_f64().max(1e-9),
                reset_timeout_ms: t,
                resets_seen_by_caller: out.resets,
                other_outcomes: out.other - out.closed_after_us.len() as u64
                    + out.ok
                    + out.connect_failed,
                closed_without_response: out.closed_after_us.len() as u64,
                caller_clock_closed,
                agent_measured,
                agent_measured_by: by,
                caller_clock,
                caller_errors_ms: errs,
            });
        }
    }
    Ok(rows)
}

/// Persistent connections the request unit's delay is measured on: each alternates an answered
/// request and a reset one (exact 50%), about 1000 / RESET_TIMEOUT selected requests per second
/// per connection.
const REQUEST_DELAY_CONNS: u64 = 20;

/// Request unit (kernel mode): the delay of resets on persistent connections, a pooled
/// keep-alive caller at TOXICITY 50 (exact), about 200 selected requests/s at 100 ms.
pub fn request_delay(b: &mut Bench) -> anyhow::Result<Vec<DelayRow>> {
    let t = b.p.reset_timeout_ms;
    let target = REQUEST_DELAY_CONNS as f64 * 1000.0 / t as f64;
    eprintln!(
        "bench: reset delay: reset-peer kernel request, pooled keep-alive, ~{target:.0} selected/s"
    );
    let agent = b.agent(&AgentArgs {
        mode: "kernel",
        unit: "request",
        toxicity: 50.0,
        reset_timeout_ms: t,
        selection: "exact",
    })?;
    let out = pooled::run(
        b,
        "http://198.18.0.2:80/",
        &[
            "--connections".into(),
            REQUEST_DELAY_CONNS.to_string(),
            "--requests".into(),
            "1000000".into(),
            "--duration-s".into(),
            b.p.delay_secs.to_string(),
            "--timeout-ms".into(),
            (t + 5000).to_string(),
        ],
    );
    let r = b.stop_agent(agent, "kernel")?;
    let out = out?;
    let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let resets = u(&out, "resets");
    let caller = &out["reset_after_ms"];
    let d = &r["reset_delay_ms"];
    let minus = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN) - t as f64;
    Ok(vec![DelayRow {
        setup: format!(
            "reset-peer kernel request (pooled keep-alive, {REQUEST_DELAY_CONNS} connections)"
        ),
        target_rate: target,
        achieved_rate: resets as f64 / out["elapsed_s"].as_f64().unwrap_or(f64::NAN),
        reset_timeout_ms: t,
        resets_seen_by_caller: resets,
        other_outcomes: u(&out, "other_errors"),
        agent_measured: (u(d, "samples") > 0).then(|| ErrPct {
            p50: minus(d, "p50"),
            p99: minus(d, "p99"),
            max: minus(d, "max"),
            samples: u(d, "samples"),
        }),
        agent_measured_by: "kernel (tc ingress first byte, tc egress RST)",
        caller_clock: (resets > 0).then(|| ErrPct {
            p50: minus(caller, "p50"),
            p99: minus(caller, "p99"),
            max: minus(caller, "max"),
            samples: resets,
        }),
        closed_without_response: u(&out, "closed"),
        caller_clock_closed: None,
        caller_errors_ms: Vec::new(),
    }])
}

/// Percentiles of `us` (microseconds) minus `t` ms, in ms.
fn err_pct(us: &[u64], t: u64) -> Option<ErrPct> {
    let mut sorted = us.to_vec();
    sorted.sort_unstable();
    let e = |p| load::pct(&sorted, p).map(|v| v as f64 / 1000.0 - t as f64);
    Some(ErrPct {
        p50: e(0.5)?,
        p99: e(0.99)?,
        max: e(1.0)?,
        samples: sorted.len() as u64,
    })
}
