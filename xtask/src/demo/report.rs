//! The demo's verdicts and output: the controller's table, the callers' outcome, the probes'
//! verdicts (HTTP and Prometheus), the kernel's counters beside what the callers saw, the
//! metrics checks and the cleanup verdict. Pure: it judges what the run collected, it runs
//! nothing.
use std::fmt::Write as _;

use reset_common::settings::Toxicity;
use reset_tests::metrics;
use serde_json::{Value, json};

pub struct Inputs<'a> {
    pub toxicity: &'a str,
    pub duration: u64,
    pub naive: &'a Value,
    pub retrying: &'a Value,
    pub pooled: &'a Value,
    pub report: &'a Value,
    pub controller_table: &'a str,
    pub controller_exit: Option<i32>,
    pub metrics: &'a str,
    /// (Prometheus job, scraped at least once during the run).
    pub scraped: &'a [(String, bool)],
    pub lab_clean: Result<(), String>,
}

pub struct Outcome {
    pub ok: bool,
    pub text: String,
    pub json: Value,
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// 99.9% normal-approximation binomial interval for n trials at probability p.
pub fn binomial_999(n: u64, p: f64) -> (f64, f64) {
    let mean = n as f64 * p;
    let half = 3.2905 * (n as f64 * p * (1.0 - p)).sqrt();
    (mean - half, mean + half)
}

/// A caller's latency percentiles: `latency_ms` (caller), or its answered requests' `ok_ms`
/// (pooled caller).
fn latency(c: &Value) -> &Value {
    if c["latency_ms"].is_object() {
        &c["latency_ms"]
    } else {
        &c["ok_ms"]
    }
}

/// The controller's counter `name` for `vm` on its metrics endpoint, if the exposition
/// parses and has it.
fn vm_counter(exposition: &str, name: &str, vm: &str) -> Option<u64> {
    let m = metrics::parse(exposition).ok()?;
    m.sum(name, &[("vm", vm)]).map(|v| v as u64)
}

/// What the demo found, in numbers and verdicts.
struct Verdicts {
    p: f64,
    naive_n: u64,
    naive_resets: u64,
    interval: (f64, f64),
    naive_ok: bool,
    /// The pooled caller: requests that reached the service or were reset, its resets, the
    /// interval and whether they fall inside it.
    pooled_n: u64,
    pooled_resets: u64,
    pooled_interval: (f64, f64),
    pooled_ok: bool,
    retry_success: f64,
    callers_resets: u64,
    kernel_resets: u64,
    counts_agree: bool,
    metrics_agree: bool,
    prom_pass: bool,
    all_scraped: bool,
    cleanup_verified: bool,
    lab_ok: bool,
    ok: bool,
}

fn judge(i: &Inputs<'_>) -> Verdicts {
    let vm = &i.report["vms"][0];
    let agent = &vm["agent_report"];
    let probe = &i.report["probe"];
    let p = Toxicity::parse(i.toxicity).map_or(0.0, |t| t.percent()) / 100.0;
    let naive_n = u(&i.naive["requests"]);
    let naive_resets = u(&i.naive["resets"]);
    let (lo, hi) = binomial_999(naive_n, p);
    let naive_ok = (lo..=hi).contains(&(naive_resets as f64));
    let pooled_resets = u(&i.pooled["resets"]);
    let pooled_n = u(&i.pooled["succeeded"]) + pooled_resets;
    let pooled_interval = binomial_999(pooled_n, p);
    let pooled_ok = pooled_n > 0
        && (pooled_interval.0..=pooled_interval.1).contains(&(pooled_resets as f64))
        && u(&i.pooled["bytes_before_reset"]) == 0;
    let retry_success = i.retrying["success_percent"].as_f64().unwrap_or(0.0);
    let callers_resets =
        naive_resets + u(&i.retrying["resets"]) + u(&probe["resets"]) + pooled_resets;
    let kernel_resets = u(&agent["resets_observed"]);
    let counts_agree =
        kernel_resets == callers_resets && u(&agent["resets_issued"]) == kernel_resets;
    let vm_name = vm["vm"].as_str().unwrap_or("");
    let metric = |name: &str| vm_counter(i.metrics, name, vm_name);
    let metrics_agree = metric("reset_peer_resets_observed_total") == Some(kernel_resets)
        && metric("reset_peer_flows_seen_total") == Some(u(&agent["flows_seen"]));
    let cleanup_verified = agent["cleanup"]["verified"].as_bool().unwrap_or(false);
    let lab_ok = i.lab_clean.is_ok();
    let verdict_present = probe["verdict"].is_string();
    // The retrying caller retried through the resets: Prometheus saw it, the probe passes.
    let prom_pass = i.report["prom_probe"]["verdict"] == "pass";
    let all_scraped = !i.scraped.is_empty() && i.scraped.iter().all(|(_, ok)| *ok);
    let ok = naive_ok
        && pooled_ok
        && retry_success >= 99.0
        && counts_agree
        && cleanup_verified
        && lab_ok
        && verdict_present
        && metrics_agree
        && prom_pass
        && all_scraped;
    Verdicts {
        p,
        naive_n,
        naive_resets,
        interval: (lo, hi),
        naive_ok,
        pooled_n,
        pooled_resets,
        pooled_interval,
        pooled_ok,
        retry_success,
        callers_resets,
        kernel_resets,
        counts_agree,
        metrics_agree,
        prom_pass,
        all_scraped,
        cleanup_verified,
        lab_ok,
        ok,
    }
}

pub fn build(i: Inputs<'_>) -> Outcome {
    let v = judge(&i);
    Outcome {
        ok: v.ok,
        text: text(&i, &v),
        json: to_json(&i, &v),
    }
}

fn to_json(i: &Inputs<'_>, v: &Verdicts) -> Value {
    let agent = &i.report["vms"][0]["agent_report"];
    let (lo, hi) = v.interval;
    json!({
        "ok": v.ok,
        "demo_pid": std::process::id(),
        "toxicity_percent": v.p * 100.0,
        "duration_s": i.duration,
        "controller_exit_code": i.controller_exit,
        "naive": i.naive,
        "retrying": i.retrying,
        "pooled": i.pooled,
        "probe": i.report["probe"],
        "prom_probe": i.report["prom_probe"],
        "prometheus": {
            "scraped": i.scraped.iter().map(|(job, ok)| (job.clone(), Value::Bool(*ok))).collect::<serde_json::Map<_, _>>(),
            "all_scraped": v.all_scraped,
            "probe_pass": v.prom_pass,
        },
        "kernel": {
            "unit": agent["unit"],
            "requests_seen": agent["requests_seen"], "requests_selected": agent["requests_selected"],
            "flows_seen": agent["flows_seen"], "flows_selected": agent["flows_selected"],
            "resets_observed": agent["resets_observed"], "resets_issued": agent["resets_issued"],
            "reset_delay_ms": agent["reset_delay_ms"], "mode": agent["mode"],
        },
        "callers_observed_resets": v.callers_resets,
        "counts_agree": v.counts_agree,
        "naive_binomial_999": {"n": v.naive_n, "low": lo, "high": hi, "resets": v.naive_resets, "within": v.naive_ok},
        "pooled_binomial_999": {"n": v.pooled_n, "low": v.pooled_interval.0, "high": v.pooled_interval.1,
            "resets": v.pooled_resets, "within": v.pooled_ok},
        "retrying_success_percent": v.retry_success,
        "metrics_agree": v.metrics_agree,
        "cleanup": {"agent_verified": v.cleanup_verified, "lab_clean": v.lab_ok, "problem": i.lab_clean.clone().err()},
        "controller_report": i.report,
    })
}

/// The text a user reads: the controller's table, the callers, kernel vs callers, verdict.
fn text(i: &Inputs<'_>, v: &Verdicts) -> String {
    let agent = &i.report["vms"][0]["agent_report"];
    let probe = &i.report["probe"];
    let (lo, hi) = v.interval;
    let (p, naive_n, naive_resets) = (v.p, v.naive_n, v.naive_resets);
    let (callers_resets, kernel_resets) = (v.callers_resets, v.kernel_resets);
    let (retry_success, cleanup_verified) = (v.retry_success, v.cleanup_verified);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n== reset-controller report ==\n{}",
        i.controller_table.trim_end()
    );
    let _ = writeln!(
        t,
        "\n== what the callers saw (window {} s, TOXICITY {}%) ==",
        i.duration,
        p * 100.0
    );
    let _ = writeln!(
        t,
        "{:<10} {:>9} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "caller", "requests", "resets", "other", "success%", "p50 ms", "p99 ms"
    );
    for (name, c) in [
        ("naive", i.naive),
        ("retrying", i.retrying),
        ("pooled", i.pooled),
    ] {
        let _ = writeln!(
            t,
            "{:<10} {:>9} {:>8} {:>7} {:>9.2} {:>9.1} {:>9.1}",
            name,
            u(&c["requests"]),
            u(&c["resets"]),
            u(&c["other_errors"]),
            c["success_percent"].as_f64().unwrap_or(0.0),
            latency(c)["p50"].as_f64().unwrap_or(0.0),
            latency(c)["p99"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(
        t,
        "probe      {:>9} {:>8} {:>7}   verdict: {}",
        u(&probe["attempts"]),
        u(&probe["resets"]),
        u(&probe["other_errors"]),
        probe["verdict"].as_str().unwrap_or("missing")
    );
    let prom = &i.report["prom_probe"];
    let _ = writeln!(
        t,
        "prometheus {:>8}   verdict: {}  ({} {} {} at the end of the window: value {})",
        "",
        prom["verdict"].as_str().unwrap_or("missing"),
        prom["query"].as_str().unwrap_or("?"),
        prom["comparator"].as_str().unwrap_or("?"),
        prom["value"].as_f64().unwrap_or(f64::NAN),
        prom["last_value"]
            .as_f64()
            .map_or_else(|| "none".to_string(), |v| format!("{v:.1}")),
    );
    let _ = writeln!(t, "\n== kernel vs callers ==");
    let _ = if agent["unit"] == "request" {
        writeln!(
            t,
            "kernel: requests seen {}, selected {}, RSTs on the wire {}, resets issued {} (sockets destroyed), proxy accepted {}",
            u(&agent["requests_seen"]),
            u(&agent["requests_selected"]),
            kernel_resets,
            u(&agent["resets_issued"]),
            u(&agent["proxy_accepted"])
        )
    } else {
        writeln!(
            t,
            "kernel: flows seen {}, selected {}, RSTs on the wire {}, proxy resets issued {}",
            u(&agent["flows_seen"]),
            u(&agent["flows_selected"]),
            kernel_resets,
            u(&agent["resets_issued"])
        )
    };
    let _ = writeln!(
        t,
        "callers: resets seen {callers_resets} (naive {naive_resets} + retrying {} + probe {} + pooled {})  -> {}",
        u(&i.retrying["resets"]),
        u(&probe["resets"]),
        v.pooled_resets,
        if v.counts_agree { "agree" } else { "MISMATCH" }
    );
    let _ = writeln!(
        t,
        "naive resets {naive_resets} of {naive_n}: 99.9% binomial interval [{lo:.0}, {hi:.0}] -> {}",
        if v.naive_ok { "inside" } else { "OUTSIDE" }
    );
    let (plo, phi) = v.pooled_interval;
    let _ = writeln!(
        t,
        "pooled resets {} of {} on keep-alive connections ({} on the connections opened before the fault): 99.9% binomial interval [{plo:.0}, {phi:.0}] -> {}",
        v.pooled_resets,
        v.pooled_n,
        u(&i.pooled["warm_resets"]),
        if v.pooled_ok { "inside" } else { "OUTSIDE" }
    );
    let _ = writeln!(
        t,
        "retrying caller success {retry_success:.2}% (>= 99% expected: it retries through the resets, paying in latency)"
    );
    let _ = writeln!(
        t,
        "metrics endpoint agrees with the report: {}",
        if v.metrics_agree { "yes" } else { "NO" }
    );
    let scraped: Vec<String> = i
        .scraped
        .iter()
        .map(|(job, ok)| format!("{job} {}", if *ok { "yes" } else { "NO" }))
        .collect();
    let _ = writeln!(t, "prometheus scraped: {}", scraped.join(", "));
    let _ = writeln!(
        t,
        "cleanup: agent verified {cleanup_verified}; VM checked by the demo: {}",
        match &i.lab_clean {
            Ok(()) => "no table, no tc programs, no agent process".to_owned(),
            Err(e) => format!("NOT CLEAN: {e}"),
        }
    );
    let _ = writeln!(t, "\ndemo verdict: {}", if v.ok { "PASS" } else { "FAIL" });
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_interval_is_centered_and_wide_enough() {
        let (lo, hi) = binomial_999(1000, 0.3);
        assert!(
            (lo - 252.3).abs() < 0.5 && (hi - 347.7).abs() < 0.5,
            "{lo} {hi}"
        );
        assert_eq!(binomial_999(100, 1.0), (100.0, 100.0));
    }

    #[test]
    fn vm_counters_pick_labelled_samples() {
        let text = "# HELP x y\nreset_peer_resets_observed_total{vm=\"web-01\"} 7\nreset_peer_resets_observed_total{vm=\"db\"} 3\n";
        let c = |vm| vm_counter(text, "reset_peer_resets_observed_total", vm);
        assert_eq!((c("web-01"), c("db"), c("x")), (Some(7), Some(3), None));
        assert_eq!(vm_counter("not metrics", "x", "web-01"), None);
    }
}
