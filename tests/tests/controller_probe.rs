//! End to end: `reset-controller run --probe-url ... --metrics-listen ...` against one
//! namespace VM through the vCenter simulator. The VM's service is reachable only from
//! the lab's caller namespace, so vcsim and the controller both run there (vcsim starts
//! guest programs with `ip netns exec <vm-ns>`, which works from any namespace).
//!
//! Shown: at TOXICITY 100 the probe counts resets as resets, equal to the resets the
//! kernel observed, its verdict fails against a 5% budget and the controller exits 3;
//! at TOXICITY 0 (probing over IPv6) the verdict passes and it exits 0; the metrics
//! endpoint, scraped with curl from the caller namespace while the controller lingers,
//! parses as Prometheus text and its counters equal the JSON report's.
use std::time::Duration;

use reset_tests::{
    bin,
    ctl::{Controller, Finished},
    lab::Lab,
    metrics::{Exposition, parse},
    proc::fetch,
    require_root,
    sim::Vcsim,
};
use serde_json::Value;

const METRICS_ADDR: &str = "127.0.0.1:9464";
/// Exit code of `run` when every VM is fine but the probe's verdict is fail.
const EXIT_PROBE_FAILED: i32 = 3;

fn scrape(lab: &Lab) -> Exposition {
    let text = fetch(&lab.caller, &format!("http://{METRICS_ADDR}/metrics"))
        .unwrap_or_else(|e| panic!("scrape failed: {e}"));
    let m = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert!(m.eof, "{text}");
    m
}

fn metric(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.value(name, labels)
        .unwrap_or_else(|| panic!("no series {name}{labels:?} in {m:#?}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Run the controller with the probe and metrics, scrape during the linger, and return
/// (exit code, report, scrape, stderr).
fn run_with_probe(lab: &Lab, toxicity: &str, probe_url: &str) -> (Finished, Value, Exposition) {
    let sim = Vcsim::builder().vm("vm", lab).inside(&lab.caller).start();
    let agent = bin("reset-agent");
    let c = Controller::spawn(sim.controller(&[
        "--output",
        "json",
        "run",
        "--vm-name",
        "vm",
        "--agent",
        agent.to_str().unwrap(),
        "--toxicity",
        toxicity,
        "--reset-timeout",
        "200",
        "--total-chaos-duration",
        "4",
        "--probe-url",
        probe_url,
        "--probe-interval",
        "100",
        "--probe-timeout",
        "3000",
        "--probe-max-error-percent",
        "5",
        "--metrics-listen",
        METRICS_ADDR,
        "--metrics-linger",
        "20",
    ]));
    c.wait_stderr("metrics: serving http://", Duration::from_secs(20));
    // Live: the endpoint answers (and parses) while the run goes on.
    scrape(lab);
    c.wait_stderr("serving final values", Duration::from_secs(60));
    let scraped = scrape(lab);
    // The linger is cut short by SIGTERM (the abort flag), the exit code stays the run's.
    c.signal("TERM");
    let out = c.finish(Duration::from_secs(15));
    let v = out.report();
    eprintln!(
        "probe: {}\nagent: {}",
        v["probe"], v["vms"][0]["agent_report"]
    );
    (out, v, scraped)
}

/// The scrape's counters equal the JSON report's.
fn assert_metrics_match(m: &Exposition, v: &Value) {
    let a = &v["vms"][0]["agent_report"];
    let vm = [("vm", "vm")];
    for f in [
        "flows_seen",
        "flows_selected",
        "resets_issued",
        "resets_observed",
    ] {
        assert_eq!(
            metric(m, &format!("reset_peer_{f}_total"), &vm),
            u(&a[f]) as f64,
            "{f}"
        );
    }
    assert_eq!(
        metric(m, "reset_peer_vm_phase", &[("phase", "done"), ("vm", "vm")]),
        1.0
    );
    let p = &v["probe"];
    let url = [("url", p["url"].as_str().unwrap())];
    for (series, field) in [
        ("attempts", "attempts"),
        ("ok", "ok"),
        ("resets", "resets"),
        ("other_errors", "other_errors"),
    ] {
        assert_eq!(
            metric(m, &format!("reset_peer_probe_{series}_total"), &url),
            u(&p[field]) as f64,
            "probe {field}"
        );
    }
    assert_eq!(
        metric(m, "reset_peer_probe_latency_ms_count", &url),
        u(&p["attempts"]) as f64
    );
    let verdict = if p["verdict"] == "pass" { 1.0 } else { 0.0 };
    assert_eq!(metric(m, "reset_peer_probe_verdict", &url), verdict);
    if let Some(p50) = a["reset_delay_ms"]["p50"].as_f64() {
        assert_eq!(
            metric(
                m,
                "reset_peer_reset_delay_ms",
                &[("quantile", "0.5"), ("vm", "vm")]
            ),
            p50
        );
    }
}

#[test]
fn probe_fails_at_full_toxicity_and_resets_are_counted_as_resets() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let url = lab.url(false, 80, "/health");
    let (out, v, m) = run_with_probe(&lab, "100", &url);
    assert_eq!(out.code(), Some(EXIT_PROBE_FAILED), "{v}\n{}", out.stderr);
    assert_eq!(v["vms"][0]["status"], "ok", "{v}");
    let p = &v["probe"];
    assert_eq!(p["url"], url.as_str());
    assert_eq!(p["verdict"], "fail", "{p}");
    assert_eq!(p["max_error_percent"], 5.0);
    let (attempts, ok, resets, other) = (
        u(&p["attempts"]),
        u(&p["ok"]),
        u(&p["resets"]),
        u(&p["other_errors"]),
    );
    assert!(attempts >= 20, "4 s at 100 ms: {p}");
    assert_eq!(ok + resets + other, attempts, "{p}");
    assert_eq!(other, 0, "resets are not other errors: {p}");
    assert!(resets * 2 >= attempts, "most attempts were reset: {p}");
    assert!(p["error_percent"].as_f64().unwrap() > 5.0, "{p}");
    let a = &v["vms"][0]["agent_report"];
    assert_eq!(
        resets,
        u(&a["resets_observed"]),
        "the probe (the only caller) saw every reset the kernel observed: {p}\n{a}"
    );
    let p99 = p["latency_ms"]["p99"].as_f64().unwrap();
    assert!(
        p99 >= 200.0,
        "a reset arrives RESET_TIMEOUT after the request: {p}"
    );
    assert_metrics_match(&m, &v);
}

#[test]
fn probe_passes_at_zero_toxicity_over_ipv6() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let url = lab.url(true, 80, "/health");
    let (out, v, m) = run_with_probe(&lab, "0", &url);
    assert_eq!(out.code(), Some(0), "{v}\n{}", out.stderr);
    let p = &v["probe"];
    assert_eq!(p["verdict"], "pass", "{p}");
    assert_eq!(p["error_percent"], 0.0, "{p}");
    assert!(u(&p["attempts"]) >= 20, "{p}");
    assert_eq!(u(&p["ok"]), u(&p["attempts"]), "{p}");
    assert_eq!(u(&p["resets"]), 0, "{p}");
    assert_eq!(u(&v["vms"][0]["agent_report"]["flows_selected"]), 0, "{v}");
    assert_metrics_match(&m, &v);
}
