//! The bench report: report.json (everything measured, with every repeated run) and report.md
//! (a table per figure, setups side by side).
use std::fmt::Write as _;

use serde::Serialize;

use super::{
    Params,
    delay::{DelayRow, ErrPct},
    held::{HELD_GOAL_MIB, HeldRow},
    precision::{PrecisionRow, REQUEST_PRECISION_N, RateRow, RequestPrecisionRow},
    setup::{Lifecycle, Median, median},
    stats::{Goal, Paired},
    throughput::{KeepaliveRow, OpenLoopRow, ThroughputRow},
};

#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kernel: String,
}

#[derive(Serialize)]
pub struct Report {
    pub quick: bool,
    pub started_at_unix: u64,
    pub duration_s: f64,
    pub machine: Machine,
    pub parameters: serde_json::Value,
    pub throughput: Vec<ThroughputRow>,
    pub open_loop: Vec<OpenLoopRow>,
    pub keepalive: Vec<KeepaliveRow>,
    pub reset_delay: Vec<DelayRow>,
    pub precision: Vec<PrecisionRow>,
    pub request_precision: Vec<RequestPrecisionRow>,
    pub max_rate: Vec<RateRow>,
    pub held: Vec<HeldRow>,
    pub lifecycle: Option<Lifecycle>,
    pub skipped: Vec<String>,
    pub plots: Vec<String>,
}

impl Report {
    pub fn new(p: &Params) -> Report {
        Report {
            quick: p.quick,
            started_at_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            duration_s: 0.0,
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, usize::from),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            },
            parameters: serde_json::json!({
                "wrk": {"threads": 1, "connections": p.wrk_conns, "seconds": p.wrk_secs},
                "pairs": p.pairs, "pinned": p.pin, "open_loop_seconds": p.open_loop_secs,
                "reset_timeout_ms": p.reset_timeout_ms,
                "delay_rates_per_s": p.delay_rates, "delay_seconds_per_rate": p.delay_secs,
                "precision_toxicity": p.precision_toxicity, "precision_flows": p.precision_flows,
                "precision_rate_per_s": p.precision_rate,
                "rate_steps_per_s": p.rate_steps, "rate_step_seconds": p.rate_secs,
                "held_connections": p.held, "held_open_rate_per_s": p.held_rate,
            }),
            throughput: Vec::new(),
            open_loop: Vec::new(),
            keepalive: Vec::new(),
            reset_delay: Vec::new(),
            precision: Vec::new(),
            request_precision: Vec::new(),
            max_rate: Vec::new(),
            held: Vec::new(),
            lifecycle: None,
            skipped: Vec::new(),
            plots: Vec::new(),
        }
    }
}

fn f(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "n/a".into()
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| f(v, digits))
}

fn err3(e: Option<&ErrPct>) -> String {
    e.map_or_else(
        || "n/a | n/a | n/a".into(),
        |e| format!("{} | {} | {}", f(e.p50, 2), f(e.p99, 2), f(e.max, 2)),
    )
}

/// "0.982 [0.975, 0.990] (IQR 0.978-0.987) >= 0.95: met".
fn paired_cell(p: &Paired) -> String {
    let goal = match p.goal {
        Some(Goal::AtLeast(g)) => format!(" >= {g}: **{:?}**", p.verdict).to_lowercase(),
        Some(Goal::AtMost(g)) => format!(" <= {g}: **{:?}**", p.verdict).to_lowercase(),
        None => String::new(),
    };
    format!(
        "{} [{}, {}] (IQR {}-{}){goal}",
        f(p.median, 3),
        f(p.ci95.0, 3),
        f(p.ci95.1, 3),
        f(p.q1, 3),
        f(p.q3, 3)
    )
}

/// `| setup | p99 ratio | p99 (direct) | p50 (direct) | answered | reset | other |`.
fn latency_row(
    s: &mut String,
    label: &str,
    ratio: &Paired,
    [p99, d99, p50, d50]: [&Median; 4],
    [answered, resets, other]: [u64; 3],
) {
    let _ = writeln!(
        s,
        "| {label} | {} | {} ({}) | {} ({}) | {answered} | {resets} | {other} |",
        paired_cell(ratio),
        f(p99.median, 3),
        f(d99.median, 3),
        f(p50.median, 3),
        f(d50.median, 3),
    );
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# reset-peer bench{}\n\n{} CPUs, kernel {}, {:.0} s. Every number below was measured in this run. Lab: \
         netns VM (ens160, 198.18.0.2) and caller joined by veth, target-service on :80; load generators run in \
         the caller namespace{}.\n",
        if r.quick { " (--quick)" } else { "" },
        r.machine.cpus,
        r.machine.kernel,
        r.duration_s,
        if r.parameters["pinned"] == true {
            "; wrk pinned to CPU 1, the service to CPU 0"
        } else {
            ""
        }
    );

    let _ = writeln!(
        s,
        "## Unselected traffic against direct (wrk, closed loop, successes only)\n\n\
         {} interleaved pairs per setup: a direct run and a run with the setup in place, back to back, the order \
         drawn at random per pair; wrk -t1 -c{} for {} s per run and load. The ratio is the median of the per-pair \
         ratios, [bootstrap 95% interval of that median] and (interquartile range); a goal is met only when the \
         whole interval clears it, and is inconclusive when the interval straddles it. Selected connections get a \
         1 ms RESET_TIMEOUT (toxy: abort delay) so they release wrk's slots at once. At TOXICITY 0 every flow \
         passes the fault path and none is selected: the pure per-flow overhead. `per unselected share` divides by \
         the measured unselected share.\n",
        r.parameters["pairs"], r.parameters["wrk"]["connections"], r.parameters["wrk"]["seconds"]
    );
    for load in ["close", "keepalive"] {
        let _ = writeln!(
            s,
            "### {}\n\n| setup | ratio to direct | per unselected share | ok req/s (direct) | p99 ms (direct) | selected % (agent) |\n|---|---|---|---|---|---|",
            if load == "close" {
                "One connection per request (`Connection: close`)"
            } else {
                "Keep-alive"
            }
        );
        for t in r.throughput.iter().filter(|t| t.load == load) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({}) | {} ({}) | {} |",
                t.label,
                paired_cell(&t.ratio),
                opt(t.ratio_per_unselected_share, 3),
                f(t.ok_per_s.median, 0),
                f(t.direct_ok_per_s.median, 0),
                f(t.p99_ms.median, 3),
                f(t.direct_p99_ms.median, 3),
                opt(t.achieved_percent, 2),
            );
        }
        s.push('\n');
    }

    if let Some(rate) = r.open_loop.first().map(|o| o.rate) {
        let _ = writeln!(
            s,
            "## Unselected latency at a fixed rate (open loop)\n\n\
             {rate:.0} new connections/s (a quarter of direct's closed-loop maximum), one GET each, {} interleaved pairs \
             of {} s runs. The p99 latency (connect -> complete response) of the answered, i.e. unselected, requests \
             against direct's p99 in the same pair.\n\n\
             | setup | p99 ratio to direct | p99 ms (direct) | p50 ms (direct) | answered | reset | other |\n|---|---|---|---|---|---|---|",
            r.parameters["pairs"], r.parameters["open_loop_seconds"]
        );
        for o in &r.open_loop {
            latency_row(
                &mut s,
                &o.label,
                &o.p99_ratio,
                [&o.p99_ms, &o.direct_p99_ms, &o.p50_ms, &o.direct_p50_ms],
                [o.answered, o.resets, o.failed_other],
            );
        }
        s.push('\n');
    }

    if let Some(k) = r.keepalive.first() {
        let _ = writeln!(
            s,
            "## Unselected requests on persistent connections at a steady pace (request unit)\n\n\
             The pooled keep-alive caller: {} persistent connections, each sending a request every {} ms after the \
             previous answer (about {} requests/s), reopened only after a reset; {} interleaved pairs of {} s runs, \
             RESET_TIMEOUT 1 ms. The p99 latency (first request byte -> whole answer) of the answered requests \
             against direct's in the same pair. At TOXICITY 50 every other request is reset in place and its \
             connection reopened; the answered ones pass the kernel programs only. HAProxy relays every byte of \
             every request.\n\n\
             | setup | p99 ratio to direct | p99 ms (direct) | p50 ms (direct) | answered | reset | other |\n|---|---|---|---|---|---|---|",
            k.connections,
            k.interval_ms,
            k.connections * 1000 / k.interval_ms.max(1),
            r.parameters["pairs"],
            r.parameters["open_loop_seconds"]
        );
        for o in &r.keepalive {
            latency_row(
                &mut s,
                &o.label,
                &o.p99_ratio,
                [&o.p99_ms, &o.direct_p99_ms, &o.p50_ms, &o.direct_p50_ms],
                [o.answered, o.resets, o.other],
            );
        }
        s.push('\n');
    }

    let _ = writeln!(
        s,
        "## Reset delay error (observed - RESET_TIMEOUT), ms\n\n\
         TOXICITY 100, RESET_TIMEOUT {} ms, paced new connections (open loop) each sending one GET; the request unit's \
         row is a pooled keep-alive caller at TOXICITY 50 (exact), so every other request on a persistent connection \
         is reset. `agent` is the \
         agent's report: kernel tc-egress timestamps on the wire in kernel mode, the proxy's own clock in userspace \
         mode. `caller` is first request byte -> ECONNRESET on the caller's clock (includes the caller's scheduling). \
         `closed` counts connections closed with FIN and no response (not a reset); `closed p50/p99` is their delay error.\n\n\
         | setup | rate/s (achieved) | resets | closed | other | agent source | agent p50 | agent p99 | agent max | caller p50 | caller p99 | caller max | closed p50 | closed p99 |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        r.parameters["reset_timeout_ms"]
    );
    for d in &r.reset_delay {
        let _ = writeln!(
            s,
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            d.setup,
            f(d.target_rate, 0),
            f(d.achieved_rate, 0),
            d.resets_seen_by_caller,
            d.closed_without_response,
            d.other_outcomes,
            d.agent_measured_by,
            err3(d.agent_measured.as_ref()),
            err3(d.caller_clock.as_ref()),
            opt(d.caller_clock_closed.as_ref().map(|e| e.p50), 2),
            opt(d.caller_clock_closed.as_ref().map(|e| e.p99), 2)
        );
    }
    s.push('\n');

    let _ = writeln!(
        s,
        "## Selection precision (kernel mode, connect-only flows)\n\n\
         | selection | TOXICITY | flows sent | flows_seen | flows_selected | proxy_accepted | achieved % | abs error (pp) | 1/N (pp) | kernel-userspace mismatch |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for p in &r.precision {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.selection,
            p.toxicity,
            p.flows_sent,
            p.flows_seen,
            p.flows_selected,
            p.proxy_accepted,
            f(p.achieved_percent, 4),
            f(p.abs_error_pp, 4),
            f(p.bound_pp, 4),
            p.kernel_userspace_mismatch
        );
    }
    s.push('\n');

    let _ = writeln!(
        s,
        "## Selection precision, request unit (kernel mode, pooled keep-alive caller)\n\n\
         {REQUEST_PRECISION_N} requests on 10 persistent connections (reopened after each reset), TOXICITY {}, \
         RESET_TIMEOUT 1 ms. Exact selection must select floor(n x TOXICITY) of the n requests the kernel saw \
         (error 0, within 1/N); random selection's distance from n x TOXICITY is given in standard deviations (z). \
         The caller's resets, the kernel's resets_observed and requests_selected should agree; proxy_accepted is \
         what passed through the proxy (0: no request does).\n\n\
         | selection | sent | requests_seen | requests_selected | absorbed | caller resets | resets_observed | proxy_accepted | achieved % | error (requests) | error (pp) | 1/N (pp) | z |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|",
        r.parameters["precision_toxicity"]
    );
    for p in &r.request_precision {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.selection,
            p.requests_sent,
            p.requests_seen,
            p.requests_selected,
            p.requests_absorbed,
            p.caller_resets,
            p.resets_observed,
            p.proxy_accepted,
            f(p.achieved_percent, 4),
            p.abs_error_requests,
            f(p.abs_error_pp, 4),
            f(p.bound_pp, 4),
            f(p.z, 2)
        );
    }
    s.push('\n');

    let best = r
        .max_rate
        .iter()
        .filter(|x| x.no_flow_lost)
        .map(|x| x.achieved_rate)
        .fold(f64::NAN, f64::max);
    let _ = writeln!(
        s,
        "## Highest new-connection rate with no flow lost from the accounting\n\n\
         Kernel mode, exact selection at 50%, paced connect-only flows; a step passes when flows_seen equals the \
         flows sent and flows_selected equals proxy_accepted. Highest passing achieved rate: **{} /s** (the \
         generator's own limit may be reached first: compare target and achieved).\n\n\
         | target /s | achieved /s | sent | connect failed | flows_seen | SYN retransmits | selected | proxy_accepted | no flow lost |\n\
         |---|---|---|---|---|---|---|---|---|",
        f(best, 0)
    );
    for x in &r.max_rate {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            f(x.target_rate, 0),
            f(x.achieved_rate, 0),
            x.flows_sent,
            x.connect_failed,
            x.flows_seen,
            x.syn_retransmits,
            x.flows_selected,
            x.proxy_accepted,
            x.no_flow_lost
        );
    }
    s.push('\n');

    let _ = writeln!(
        s,
        "## Agent memory and CPU with selected connections held\n\n\
         TOXICITY 100, RESET_TIMEOUT 600 s, connections opened at the given rate, each sends its request and is held; \
         sampled 1 s after the last one opened; then SIGTERM (abort resets them all). Goal: VmHWM <= {HELD_GOAL_MIB} MiB \
         with 10k held.\n\n\
         | mode | held (caller) | proxy_accepted | VmHWM before MiB | VmHWM held MiB | goal | CPU s while opening+holding | CPU s total | RSTs observed on abort | SIGTERM -> exit ms |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for h in &r.held {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            h.mode,
            h.held_by_caller,
            h.proxy_accepted,
            f(h.agent_vmhwm_before_kib as f64 / 1024.0, 1),
            f(h.agent_vmhwm_kib as f64 / 1024.0, 1),
            if (h.agent_vmhwm_kib as f64 / 1024.0) <= HELD_GOAL_MIB {
                "met"
            } else {
                "missed"
            },
            f(h.agent_cpu_s_during, 2),
            f(h.agent_cpu_s_total, 2),
            h.resets_observed_on_abort,
            opt(h.abort_ms, 0)
        );
    }
    s.push('\n');

    if let Some(l) = &r.lifecycle {
        let _ = writeln!(
            s,
            "## Time to install and remove the fault\n\n\
             Install: process spawn -> \"fault active\" (stale cleanup, eBPF load + attach, nftables table, proxy \
             listeners). Remove: SIGTERM -> process exit (window closed, table removed, programs detached, removal \
             verified, report written). Over {} agent runs of this bench; cleanup verified in every run: {}.\n\n\
             | mode | install median ms | install max ms | remove median ms | remove max ms | runs |\n|---|---|---|---|---|---|",
            l.runs, l.cleanup_verified_all
        );
        for (mode, i, rm) in [
            ("kernel", &l.kernel_install_ms, &l.kernel_remove_ms),
            ("userspace", &l.userspace_install_ms, &l.userspace_remove_ms),
        ] {
            let mx = |v: &Vec<f64>| v.iter().copied().fold(f64::NAN, f64::max);
            let _ = writeln!(
                s,
                "| {mode} | {} | {} | {} | {} | {} |",
                f(median(i.clone()).median, 1),
                f(mx(i), 1),
                f(median(rm.clone()).median, 1),
                f(mx(rm), 1),
                i.len()
            );
        }
        s.push('\n');
    }

    if !r.plots.is_empty() {
        let _ = writeln!(s, "## Plots\n");
        for p in &r.plots {
            let _ = writeln!(s, "![{p}]({p})");
        }
        s.push('\n');
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "## Not measured / problems\n");
        for k in &r.skipped {
            let _ = writeln!(s, "- {}", k.replace('\n', " "));
        }
    }
    s
}
