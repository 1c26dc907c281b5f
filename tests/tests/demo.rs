//! Issue 4, shown 1: `cargo xtask demo --duration 10 --json` end to end, checked as a user
//! would: the naive and the pooled callers' resets within the binomial bounds of TOXICITY
//! (the pooled caller on keep-alive connections opened before the fault), the retrying
//! caller >= 99% successful, kernel counters == callers' observed resets, a probe verdict,
//! the Prometheus probe's verdict pass (issue 13: a real Prometheus scraped the agent, the
//! controller and the retrying caller), cleanup verified, and no namespace or process (vcsim,
//! Prometheus, agent, caller) left behind.
use std::process::Command;

use reset_tests::{bin, require_root};
use serde_json::Value;

#[test]
fn demo_runs_end_to_end_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    // --no-build: `cargo xtask test` built every binary before running the tests.
    let child = Command::new(bin("xtask"))
        .args(["demo", "--duration", "10", "--json", "--no-build"])
        .output()
        .expect("run xtask demo");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "demo failed:\n{stderr}");
    let v: Value = serde_json::from_slice(&child.stdout)
        .unwrap_or_else(|e| panic!("demo JSON: {e}\n{stderr}"));
    let b = &v["naive_binomial_999"];
    assert!(
        b["n"].as_u64().unwrap() >= 50,
        "too few naive requests: {b}"
    );
    assert_eq!(
        b["within"], true,
        "naive resets outside the 99.9% interval: {b}"
    );
    assert_eq!(v["naive"]["other_errors"], 0, "{}", v["naive"]);
    // Issue 11: the pooled caller (keep-alive connections opened before the fault, reopened
    // after each reset) sees TOXICITY percent of its requests reset, counted per request by the
    // kernel, and no byte of a reset request's answer.
    assert_eq!(v["kernel"]["unit"], "request", "{}", v["kernel"]);
    let p = &v["pooled_binomial_999"];
    assert!(
        p["n"].as_u64().unwrap() >= 50,
        "too few pooled requests: {p}"
    );
    assert_eq!(
        p["within"], true,
        "pooled resets outside the 99.9% interval: {p}"
    );
    assert_eq!(v["pooled"]["bytes_before_reset"], 0, "{}", v["pooled"]);
    assert_eq!(v["pooled"]["other_errors"], 0, "{}", v["pooled"]);
    assert_eq!(v["kernel"]["flows_selected"], 0, "{}", v["kernel"]);
    assert_eq!(
        v["kernel"]["requests_selected"], v["kernel"]["resets_observed"],
        "{}",
        v["kernel"]
    );
    assert!(
        v["retrying_success_percent"].as_f64().unwrap() >= 99.0,
        "{}",
        v["retrying"]
    );
    let kernel = v["kernel"]["resets_observed"].as_u64().unwrap();
    assert!(kernel > 0);
    assert_eq!(
        kernel,
        v["callers_observed_resets"].as_u64().unwrap(),
        "kernel vs callers"
    );
    assert!(v["probe"]["verdict"].is_string(), "{}", v["probe"]);
    // The Prometheus probe: Prometheus scraped the retrying caller's retries counter, and the
    // assertion "it retried during the window" held at the end of the window.
    let prom = &v["prom_probe"];
    assert_eq!(prom["verdict"], "pass", "{prom}");
    assert_eq!(
        (&prom["mode"], &prom["comparator"]),
        (&"end".into(), &">".into()),
        "{prom}"
    );
    assert!(prom["last_value"].as_f64().unwrap() > 0.0, "{prom}");
    assert_eq!(
        v["prometheus"]["all_scraped"], true,
        "Prometheus scraped the agent, the controller and the retrying caller: {}",
        v["prometheus"]
    );
    assert_eq!(v["metrics_agree"], true);
    assert_eq!(v["cleanup"]["agent_verified"], true);
    assert_eq!(v["cleanup"]["lab_clean"], true, "{}", v["cleanup"]);
    // Nothing left: the demo's namespaces carry its pid; no agent, vcsim or caller process.
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    let demo_pid_tag = format!("-{}-", v["demo_pid"].as_u64().unwrap_or(0));
    assert!(
        !netns.lines().any(|l| l.contains(&demo_pid_tag)),
        "namespaces left: {netns}"
    );
    // Every process the demo starts names its namespace or its temp dir on the command line.
    let pid = v["demo_pid"].as_u64().unwrap();
    let marks = [
        format!("rpvm-{pid}-"),
        format!("rpcl-{pid}-"),
        format!("reset-peer-demo-{pid}"),
    ];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(
            !marks.iter().any(|m| cmdline.contains(m)),
            "left running: {cmdline}"
        );
    }
}
