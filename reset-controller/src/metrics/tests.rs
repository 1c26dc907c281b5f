//! Rendering: the text parses back line by line, and the values are what was
//! recorded.

use std::time::Duration;

use reset_tests::metrics::{Exposition, parse};

use super::*;

/// The exposition, which must parse strictly and end with `# EOF`.
fn scrape(m: &Metrics) -> Exposition {
    let text = m.render();
    let e = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
    assert!(e.eof, "ends with # EOF:\n{text}");
    e
}

#[test]
fn renders_parseable_text_with_the_recorded_values() {
    let m = Metrics::new();
    m.phase("web-01", Phase::Staging);
    m.phase("web-01", Phase::Done);
    m.phase("db-01", Phase::Injecting);
    let report: serde_json::Value = serde_json::json!({
        "flows_seen": 200, "flows_selected": 100, "resets_issued": 100, "resets_observed": 99,
        "requests_seen": 300, "requests_selected": 150,
        "reset_delay_ms": {"p50": 2000.5, "p90": 2001.0, "p99": 2003.25, "max": 2004.0, "samples": 99}
    });
    m.agent_report("web-01", &AgentReport::from_value(&report).unwrap());
    let url = "http://198.18.0.2/health";
    m.started(url);
    m.attempt(url, Outcome::Ok, Duration::from_millis(3));
    m.attempt(url, Outcome::Reset, Duration::from_millis(2001));
    m.attempt(url, Outcome::Reset, Duration::from_millis(2002));
    m.attempt(url, Outcome::OtherError, Duration::from_secs(5));

    let text = m.render();
    let s = scrape(&m);
    let web = [("vm", "web-01")];
    assert_eq!(
        s.value("reset_peer_flows_seen_total", &web),
        Some(200.0),
        "{text}"
    );
    assert_eq!(
        s.value("reset_peer_flows_selected_total", &web),
        Some(100.0)
    );
    assert_eq!(s.value("reset_peer_requests_seen_total", &web), Some(300.0));
    assert_eq!(
        s.value("reset_peer_requests_selected_total", &web),
        Some(150.0)
    );
    assert_eq!(s.value("reset_peer_resets_issued_total", &web), Some(100.0));
    assert_eq!(
        s.value("reset_peer_resets_observed_total", &web),
        Some(99.0)
    );
    let q = |q| [("vm", "web-01"), ("quantile", q)];
    assert_eq!(
        s.value("reset_peer_reset_delay_ms", &q("0.5")),
        Some(2000.5)
    );
    assert_eq!(
        s.value("reset_peer_reset_delay_ms", &q("0.99")),
        Some(2003.25)
    );
    assert_eq!(s.value("reset_peer_reset_delay_ms", &q("1")), Some(2004.0));
    assert_eq!(s.value("reset_peer_reset_delay_samples", &web), Some(99.0));
    let ph = |vm, p| [("vm", vm), ("phase", p)];
    assert_eq!(
        s.value("reset_peer_vm_phase", &ph("web-01", "done")),
        Some(1.0)
    );
    assert_eq!(
        s.value("reset_peer_vm_phase", &ph("web-01", "staging")),
        Some(0.0)
    );
    assert_eq!(
        s.value("reset_peer_vm_phase", &ph("db-01", "injecting")),
        Some(1.0)
    );
    let in_phase = s.sum("reset_peer_vm_phase", &[("vm", "db-01")]);
    assert_eq!(in_phase, Some(1.0), "exactly one phase at a time");
    assert!(
        s.value("reset_peer_flows_seen_total", &[("vm", "db-01")])
            .is_none()
    );

    let u = [("url", url)];
    assert_eq!(s.value("reset_peer_probe_attempts_total", &u), Some(4.0));
    assert_eq!(s.value("reset_peer_probe_ok_total", &u), Some(1.0));
    assert_eq!(s.value("reset_peer_probe_resets_total", &u), Some(2.0));
    assert_eq!(
        s.value("reset_peer_probe_other_errors_total", &u),
        Some(1.0)
    );
    assert_eq!(s.value("reset_peer_probe_verdict", &u), Some(-1.0));
    assert_eq!(s.value("reset_peer_probe_latency_ms_count", &u), Some(4.0));
    let le = |b| [("url", url), ("le", b)];
    assert_eq!(
        s.value("reset_peer_probe_latency_ms_bucket", &le("4.0")),
        Some(1.0)
    );
    assert_eq!(
        s.value("reset_peer_probe_latency_ms_bucket", &le("4096.0")),
        Some(3.0)
    );
    assert_eq!(
        s.value("reset_peer_probe_latency_ms_bucket", &le("+Inf")),
        Some(4.0)
    );

    m.verdict(url, Verdict::Fail);
    assert_eq!(scrape(&m).value("reset_peer_probe_verdict", &u), Some(0.0));
    m.verdict(url, Verdict::Pass);
    assert_eq!(scrape(&m).value("reset_peer_probe_verdict", &u), Some(1.0));
}

#[test]
fn help_and_type_for_every_family() {
    let m = Metrics::new();
    assert_eq!(m.render(), "# EOF\n", "empty families are not rendered");
    m.phase("vm", Phase::Pending);
    let r = serde_json::json!({"flows_seen": 1, "reset_delay_ms": {"p50": 1.0}});
    m.agent_report("vm", &AgentReport::from_value(&r).unwrap());
    m.started("http://h/");
    let text = m.render();
    for family in [
        "flows_seen",
        "flows_selected",
        "resets_issued",
        "resets_observed",
        "reset_delay_ms",
        "vm_phase",
        "probe_attempts",
        "probe_resets",
        "probe_latency_ms",
        "probe_verdict",
    ] {
        assert!(
            text.contains(&format!("# HELP reset_peer_{family} ")),
            "{family}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE reset_peer_{family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(
        text.contains("not a histogram"),
        "the delay HELP says what it is"
    );
}

#[test]
fn the_prometheus_probe_live() {
    use crate::probe::prom::verdict::{EvalError, PromObserver};
    let m = Metrics::new();
    let q = "sum(increase(x_retries_total{job=\"caller\"}[30s]))";
    m.prom_started(q);
    let by = |result: &'static str| [("query", q), ("result", result)];
    let s = scrape(&m);
    assert_eq!(
        s.value("reset_peer_prom_probe_verdict", &[("query", q)]),
        Some(-1.0)
    );
    assert_eq!(
        s.value("reset_peer_prom_probe_evaluations_total", &by("held")),
        Some(0.0)
    );
    m.prom_evaluated(q, &Ok(3.5), true);
    m.prom_evaluated(q, &Ok(0.0), false);
    let empty = EvalError::EmptyVector { query: q.into() };
    m.prom_evaluated(q, &Err(empty), false);
    m.prom_verdict(q, Verdict::Error);
    let s = scrape(&m);
    for (result, n) in [("held", 1.0), ("not_held", 1.0), ("error", 1.0)] {
        assert_eq!(
            s.value("reset_peer_prom_probe_evaluations_total", &by(result)),
            Some(n),
            "{result}"
        );
    }
    assert_eq!(
        s.value("reset_peer_prom_probe_value", &[("query", q)]),
        Some(0.0)
    );
    assert_eq!(
        s.value("reset_peer_prom_probe_verdict", &[("query", q)]),
        Some(-2.0)
    );
}
