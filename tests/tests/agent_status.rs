//! `reset-agent status` before, during and after a window, and after a killed run left a
//! table and tc filters behind (old-kernel paths, where the kernel does not remove them).
use std::time::Duration;

use reset_tests::{
    lab::Lab,
    proc::{Agent, agent_once, curl},
    require_root,
};
use serde_json::Value;

/// `reset-agent status ARGS`: (exit code, stdout, stderr).
fn status(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    let out = agent_once(&lab.vm, &all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_json(lab: &Lab) -> Value {
    let (code, out, err) = status(lab, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}"))
}

#[test]
fn status_before_during_and_after_a_window() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let (code, out, _) = status(&lab, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no fault is active"), "{out}");
    assert!(out.contains("table inet reset_peer: absent"), "{out}");
    assert!(out.contains("tc programs on ens160: none of ours"), "{out}");

    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--unit",
            "request",
            "--toxicity",
            "100",
            "--reset-timeout",
            "100",
            "--total-chaos-duration",
            "30",
        ],
    );
    let c = curl(&lab.caller, &lab.url(false, 80, "/"));
    assert_eq!(c.exit, 56, "reset: {c:?}");
    // The counts are refreshed every 500 ms.
    std::thread::sleep(Duration::from_millis(700));
    let s = status_json(&lab);
    assert_eq!(s["active"], true, "{s}");
    assert_eq!(s["phase"], "window", "{s}");
    assert_eq!(s["unit"], "request", "{s}");
    assert_eq!(s["mode"], "kernel", "{s}");
    assert_eq!(s["pid"].as_u64(), Some(u64::from(agent.pid())), "{s}");
    assert_eq!(s["table"], "inet reset_peer", "{s}");
    let rule = s["rule"].as_str().unwrap_or_default();
    assert!(rule.contains("tcp dport 80 tproxy to :8080"), "{s}");
    let left = s["seconds_left"].as_u64().expect("seconds_left");
    assert!((20..=30).contains(&left), "{s}");
    for field in ["requests_seen", "requests_selected", "resets_observed"] {
        assert_eq!(s["counts"][field], 1, "{field}: {s}");
    }
    assert!(s["counts_at"].is_string(), "{s}");
    let (code, out, _) = status(&lab, &[]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "fault active: pid",
        "100% of requests to :80 on ens160, reset 100 ms after the first request byte",
        "rule             meta mark",
        "requests seen 1 selected 1",
    ] {
        assert!(out.contains(line), "{line:?} in:\n{out}");
    }
    // A name no interface can have is a usage error, whatever the state.
    let (code, _, err) = status(&lab, &["--network-interface", "a/b"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("NETWORK_INTERFACE"), "{err}");

    agent.signal("TERM");
    let run = agent.finish();
    assert_eq!(run.code(), Some(3), "{run:?}");
    let (code, out, _) = status(&lab, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no fault is active"), "{out}");
    assert!(out.contains("table inet reset_peer: absent"), "{out}");
    let s = status_json(&lab);
    assert_eq!(s["active"], false, "{s}");
    lab.assert_clean();
}

/// A run killed on a kernel without owner tables and TCX (forced with --assume-kernel) leaves
/// its table and tc filters: status says so (exit 1) and names the fix; after `reset-agent
/// cleanup` it is clean again.
#[test]
fn status_names_what_a_killed_run_left() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(
        &lab.vm,
        &["--assume-kernel", "5.4", "--total-chaos-duration", "30"],
    );
    agent.signal("KILL");
    let _ = agent.finish_within(Duration::from_secs(5));
    let (code, out, _) = status(&lab, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("table inet reset_peer: PRESENT (left by a run: run `reset-agent cleanup`)"),
        "{out}"
    );
    assert!(
        out.contains("tc programs on ens160: PRESENT (run `reset-agent cleanup`)"),
        "{out}"
    );
    let s = {
        let (_, out, _) = status(&lab, &["--json"]);
        serde_json::from_str::<Value>(&out).expect("json")
    };
    assert_eq!(
        (&s["active"], &s["table_left"], &s["programs_left"]),
        (&false.into(), &true.into(), &true.into()),
        "{s}"
    );
    let out = agent_once(&lab.vm, &["cleanup"]);
    assert!(out.status.success(), "{out:?}");
    let (code, out, _) = status(&lab, &[]);
    assert_eq!(code, 0, "{out}");
    lab.assert_clean();
}
