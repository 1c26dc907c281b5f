//! Unselected traffic against direct, measured in interleaved pairs.
//!
//! Closed loop (wrk, successes only): for each setup, `pairs` pairs of runs, each pair a direct
//! run and a run with the setup in place, back to back in an order drawn at random; the figure
//! is the median of the per-pair ratios with its spread (see `stats`). Both loads, one
//! connection per request and keep-alive, are measured in each half of a pair.
//!
//! Open loop (the in-process generator at a fixed rate, half of direct's closed-loop maximum):
//! the p99 latency of unselected requests with the fault at TOXICITY 50 against direct's at the
//! same rate, again in pairs. On 2 cores a closed loop at TOXICITY 50 mostly measures CPU taken
//! by the selected connections' work; a fixed rate below saturation measures what an unselected
//! request pays.
use std::time::Duration;

use serde::Serialize;

use super::{
    load::{self, Kind, Plan},
    pooled,
    setup::{Bench, Median, Setup, median},
    stats::{self, Goal, Paired, Rng},
    wrk::{self, Wrk},
};

#[derive(Serialize)]
pub struct ThroughputRow {
    pub setup: Setup,
    pub label: String,
    /// "close" (one connection per request) or "keepalive".
    pub load: &'static str,
    /// Per-pair ok_per_s(setup) / ok_per_s(direct).
    pub ratio: Paired,
    pub ok_per_s: Median,
    pub direct_ok_per_s: Median,
    pub p99_ms: Median,
    pub direct_p99_ms: Median,
    /// Selected share the agent reported (flows_selected / flows_seen), kernel or userspace.
    pub achieved_percent: Option<f64>,
    /// ratio / (1 - selected share): throughput per unselected-flow share (close load only).
    pub ratio_per_unselected_share: Option<f64>,
}

/// The goal a setup's closed-loop ratio is held to: kernel mode at TOXICITY 0, either unit
/// (issue 14: 0.95 one connection per request, 0.97 keep-alive; issue 11: 0.97 keep-alive).
fn goal(s: &Setup, load: &str) -> Option<Goal> {
    match (s, load) {
        (
            Setup::Agent {
                mode: "kernel",
                toxicity,
                ..
            },
            "close",
        ) if *toxicity == 0.0 => Some(Goal::AtLeast(0.95)),
        (
            Setup::Agent {
                mode: "kernel",
                toxicity,
                ..
            },
            "keepalive",
        ) if *toxicity == 0.0 => Some(Goal::AtLeast(0.97)),
        _ => None,
    }
}

/// One half of a pair: both loads with whatever is in place.
fn both_loads(b: &Bench, url: &str) -> anyhow::Result<[Wrk; 2]> {
    let close = wrk::wrk(
        &b.lab.caller,
        url,
        b.p.wrk_conns,
        b.p.wrk_secs,
        true,
        b.p.pin,
    )?;
    let keep = wrk::wrk(
        &b.lab.caller,
        url,
        b.p.wrk_conns,
        b.p.wrk_secs,
        false,
        b.p.pin,
    )?;
    Ok([close, keep])
}

pub fn throughput(b: &mut Bench, setups: &[Setup]) -> anyhow::Result<Vec<ThroughputRow>> {
    let mut rng = Rng::new(0x7265_7365_7470);
    let direct_url = "http://198.18.0.2:80/";
    // Warm-up (discarded): first connections pay for ARP, page faults, caches.
    let _ = both_loads(b, direct_url);
    let mut rows = Vec::new();
    for s in setups {
        eprintln!("bench: throughput: {} ({} pairs)", s.label(), b.p.pairs);
        let url = format!("http://198.18.0.2:{}/", s.port());
        let mut direct: Vec<[Wrk; 2]> = Vec::new();
        let mut fault: Vec<[Wrk; 2]> = Vec::new();
        let mut achieved = Vec::new();
        for _ in 0..b.p.pairs {
            let fault_first = rng.coin();
            if !fault_first {
                direct.push(both_loads(b, direct_url)?);
            }
            // A 1 ms RESET_TIMEOUT (toxy: abort delay) so selected connections do not hold
            // wrk's slots: wrk then counts the successful (unselected) responses only.
            let running = b.start(s, 1)?;
            let _ = wrk::wrk(&b.lab.caller, &url, b.p.wrk_conns, 0.3, true, b.p.pin);
            let got = both_loads(b, &url);
            let report = b.stop(running, s)?;
            fault.push(got?);
            achieved.extend(report.and_then(|r| r["achieved_percent"].as_f64()));
            if fault_first {
                direct.push(both_loads(b, direct_url)?);
            }
        }
        let achieved_percent = (!achieved.is_empty()).then(|| stats::median_of(&achieved));
        for (i, load) in ["close", "keepalive"].into_iter().enumerate() {
            let ratios: Vec<f64> = fault
                .iter()
                .zip(&direct)
                .map(|(f, d)| f[i].ok_per_s / d[i].ok_per_s)
                .collect();
            let ratio = stats::paired(ratios, goal(s, load), &mut rng);
            let share = match s {
                Setup::Haproxy => Some(0.0),
                Setup::Agent { .. } => achieved_percent,
                Setup::Toxy { toxicity } => Some(*toxicity),
            };
            rows.push(ThroughputRow {
                setup: s.clone(),
                label: s.label(),
                load,
                ratio_per_unselected_share: share
                    .filter(|p| *p < 100.0 && load == "close")
                    .map(|p| ratio.median / (1.0 - p / 100.0)),
                ratio,
                ok_per_s: median(fault.iter().map(|w| w[i].ok_per_s).collect()),
                direct_ok_per_s: median(direct.iter().map(|w| w[i].ok_per_s).collect()),
                p99_ms: median(fault.iter().map(|w| w[i].p99_ms).collect()),
                direct_p99_ms: median(direct.iter().map(|w| w[i].p99_ms).collect()),
                achieved_percent,
            });
        }
    }
    Ok(rows)
}

/// `pairs` pairs of `run` against direct (port 80) and against `s` in place (its port, a 1 ms
/// RESET_TIMEOUT), the order within each pair drawn at random: (direct halves, setup halves).
fn in_pairs<T>(
    b: &mut Bench,
    s: &Setup,
    rng: &mut Rng,
    run: impl Fn(&Bench, u16) -> anyhow::Result<T>,
) -> anyhow::Result<(Vec<T>, Vec<T>)> {
    let (mut direct, mut fault) = (Vec::new(), Vec::new());
    for _ in 0..b.p.pairs {
        let fault_first = rng.coin();
        if !fault_first {
            direct.push(run(b, 80)?);
        }
        let running = b.start(s, 1)?;
        let got = run(b, s.port());
        b.stop(running, s)?;
        fault.push(got?);
        if fault_first {
            direct.push(run(b, 80)?);
        }
    }
    Ok((direct, fault))
}

#[derive(Serialize)]
pub struct OpenLoopRow {
    pub setup: Setup,
    pub label: String,
    /// New connections (requests) per second, both halves of every pair.
    pub rate: f64,
    /// Per-pair p99(setup, unselected requests) / p99(direct).
    pub p99_ratio: Paired,
    pub p99_ms: Median,
    pub direct_p99_ms: Median,
    pub p50_ms: Median,
    pub direct_p50_ms: Median,
    /// Unselected (answered) and selected (reset) requests of the setup's runs.
    pub answered: u64,
    pub resets: u64,
    pub failed_other: u64,
}

/// Latency percentile (ms) of the answered requests of one run.
fn ok_pct(out: &load::Outcome, p: f64) -> f64 {
    let mut v = out.ok_us.clone();
    v.sort_unstable();
    load::pct(&v, p).map_or(f64::NAN, |us| us as f64 / 1000.0)
}

pub fn open_loop(b: &mut Bench, setups: &[Setup], rate: f64) -> anyhow::Result<Vec<OpenLoopRow>> {
    let mut rng = Rng::new(0x6f70_656e);
    let run = |b: &Bench, port: u16| {
        load::run(
            b.lab.caller.name(),
            Plan {
                addr: Bench::addr(port),
                kind: Kind::Request,
                rate,
                count: (rate * b.p.open_loop_secs) as u64,
                max_duration: Duration::from_secs_f64(b.p.open_loop_secs * 1.5 + 1.0),
                max_inflight: 4096,
                timeout: Duration::from_secs(5),
            },
        )
    };
    let mut rows = Vec::new();
    for s in setups {
        eprintln!(
            "bench: open loop at {rate:.0}/s: {} ({} pairs)",
            s.label(),
            b.p.pairs
        );
        let (direct, fault) = in_pairs(b, s, &mut rng, run)?;
        let ratios = fault
            .iter()
            .zip(&direct)
            .map(|(f, d)| ok_pct(f, 0.99) / ok_pct(d, 0.99))
            .collect();
        let goal = matches!(s, Setup::Agent { mode: "kernel", toxicity, .. } if *toxicity == 50.0)
            .then_some(Goal::AtMost(1.1));
        rows.push(OpenLoopRow {
            setup: s.clone(),
            label: s.label(),
            rate,
            p99_ratio: stats::paired(ratios, goal, &mut rng),
            p99_ms: median(fault.iter().map(|o| ok_pct(o, 0.99)).collect()),
            direct_p99_ms: median(direct.iter().map(|o| ok_pct(o, 0.99)).collect()),
            p50_ms: median(fault.iter().map(|o| ok_pct(o, 0.5)).collect()),
            direct_p50_ms: median(direct.iter().map(|o| ok_pct(o, 0.5)).collect()),
            answered: fault.iter().map(|o| o.ok).sum(),
            resets: fault.iter().map(|o| o.resets).sum(),
            failed_other: fault.iter().map(|o| o.other + o.connect_failed).sum(),
        });
    }
    Ok(rows)
}

/// Persistent connections of the keep-alive open loop, and each one's pause between requests:
/// about 16 x 1000 / 4 = 4000 requests/s, a small share of direct's keep-alive maximum.
const KEEPALIVE_CONNS: u32 = 16;
const KEEPALIVE_INTERVAL_MS: u32 = 4;

#[derive(Serialize)]
pub struct KeepaliveRow {
    pub setup: Setup,
    pub label: String,
    pub connections: u32,
    pub interval_ms: u32,
    /// Per-pair p99(setup, answered requests) / p99(direct).
    pub p99_ratio: Paired,
    pub p99_ms: Median,
    pub direct_p99_ms: Median,
    pub p50_ms: Median,
    pub direct_p50_ms: Median,
    /// Answered (unselected) and reset (selected) requests of the setup's runs.
    pub answered: u64,
    pub resets: u64,
    pub other: u64,
}

/// Unselected requests on persistent connections at a steady pace (the pooled caller): their
/// latency with the fault in place against direct's, in interleaved pairs. In the request unit
/// at TOXICITY 50 every other request is reset and its connection reopened; the answered ones
/// should not notice.
pub fn keepalive_open_loop(b: &mut Bench, setups: &[Setup]) -> anyhow::Result<Vec<KeepaliveRow>> {
    let mut rng = Rng::new(0x6b65_6570);
    let run = |b: &Bench, port: u16| {
        pooled::run(
            b,
            &format!("http://198.18.0.2:{port}/"),
            &[
                "--connections".into(),
                KEEPALIVE_CONNS.to_string(),
                "--interval-ms".into(),
                KEEPALIVE_INTERVAL_MS.to_string(),
                "--requests".into(),
                "10000000".into(),
                "--duration-s".into(),
                b.p.open_loop_secs.to_string(),
                "--timeout-ms".into(),
                "5000".into(),
            ],
        )
    };
    let ms = |v: &serde_json::Value, k: &str| v["ok_ms"][k].as_f64().unwrap_or(f64::NAN);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let mut rows = Vec::new();
    for s in setups {
        eprintln!(
            "bench: keep-alive at ~{}/s: {} ({} pairs)",
            KEEPALIVE_CONNS * 1000 / KEEPALIVE_INTERVAL_MS,
            s.label(),
            b.p.pairs
        );
        let (direct, fault) = in_pairs(b, s, &mut rng, run)?;
        let ratios = fault
            .iter()
            .zip(&direct)
            .map(|(f, d)| ms(f, "p99") / ms(d, "p99"))
            .collect();
        let goal = matches!(s, Setup::Agent { mode: "kernel", .. }).then_some(Goal::AtMost(1.1));
        rows.push(KeepaliveRow {
            setup: s.clone(),
            label: s.label(),
            connections: KEEPALIVE_CONNS,
            interval_ms: KEEPALIVE_INTERVAL_MS,
            p99_ratio: stats::paired(ratios, goal, &mut rng),
            p99_ms: median(fault.iter().map(|o| ms(o, "p99")).collect()),
            direct_p99_ms: median(direct.iter().map(|o| ms(o, "p99")).collect()),
            p50_ms: median(fault.iter().map(|o| ms(o, "p50")).collect()),
            direct_p50_ms: median(direct.iter().map(|o| ms(o, "p50")).collect()),
            answered: fault.iter().map(|o| n(o, "succeeded")).sum(),
            resets: fault.iter().map(|o| n(o, "resets")).sum(),
            other: fault
                .iter()
                .map(|o| n(o, "other_errors") + n(o, "closed"))
                .sum(),
        });
    }
    Ok(rows)
}
