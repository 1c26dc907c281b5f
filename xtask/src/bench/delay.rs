//! Reset delay error at paced selected-connection rates (TOXICITY 100): the agent's own
//! measurement (kernel timestamps in kernel mode) beside the caller's clock.
use std::time::Duration;

use serde::Serialize;

use super::{
    load::{self, Kind, Plan},
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
