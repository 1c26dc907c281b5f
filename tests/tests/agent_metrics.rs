//! Privileged e2e: the agent's Prometheus endpoint serves parseable text whose counters match
//! the report (issue 4, "What must be shown" 2, agent side).
use std::time::{Duration, Instant};

use reset_tests::{
    lab::Lab,
    metrics::parse,
    proc::{Agent, caller, fetch},
    require_root,
};

#[test]
fn agent_metrics_match_the_report() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "50",
            "--selection",
            "exact",
            "--reset-timeout",
            "50",
            "--total-chaos-duration",
            "4",
            "--metrics-listen",
            "127.0.0.1:9464",
        ],
    );
    let out = caller(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "100", "--concurrency", "10"],
    );
    assert_eq!(out["resets"], 50, "{out}");
    // The kernel counters are copied into the metrics every 500 ms: poll, bounded.
    let start = Instant::now();
    let metrics = loop {
        let text = fetch(&lab.vm, "http://127.0.0.1:9464/metrics").unwrap();
        let m = parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        if m.sum("reset_peer_agent_flows_seen_total", &[]) == Some(100.0)
            && m.sum("reset_peer_agent_resets_observed_total", &[]) == Some(50.0)
        {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "metrics never caught up:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let run = agent.finish();
    for (metric, field) in [
        ("reset_peer_agent_flows_seen_total", "flows_seen"),
        ("reset_peer_agent_flows_selected_total", "flows_selected"),
        ("reset_peer_agent_resets_observed_total", "resets_observed"),
        ("reset_peer_agent_resets_issued_total", "resets_issued"),
        ("reset_peer_agent_proxy_accepted_total", "proxy_accepted"),
    ] {
        assert_eq!(
            metrics.sum(metric, &[]).map(|v| v as u64),
            Some(run.u64(field)),
            "{metric} vs {field}"
        );
    }
    let value = |name| metrics.sum(name, &[]);
    assert_eq!(value("reset_peer_agent_reset_delay_ms_count"), Some(50.0));
    assert_eq!(value("reset_peer_agent_window_open"), Some(1.0));
}
