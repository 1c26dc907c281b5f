//! End to end: reset-controller drives the real reset-agent in two namespace "VMs"
//! through the vCenter simulator (tests/vcsim, run as the `vcsim` binary), as a user
//! would: callers get resets at TOXICITY, both agents' reports are collected,
//! both guests are clean afterwards, serial timing holds, an abort mid-window exits
//! 130 with clean guests and partial reports, and no secret is visible in the
//! guests' processes.
use std::time::{Duration, Instant};

use reset_tests::{
    bin,
    ctl::{Controller, assert_no_secret_in_guest, injected, phase_ms, two_vms, wait_injected},
    proc::curl,
    require_root,
    sim::Vcsim,
};

/// `run` on both VMs with the real agent and `extra` flags, the report as JSON on stdout.
fn run_on_both(sim: &Vcsim, extra: &[&str]) -> Controller {
    let agent = bin("reset-agent");
    let mut args = vec![
        "--output",
        "json",
        "run",
        "--vm-name",
        "vm-a,vm-b",
        "--agent",
        agent.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Controller::spawn(sim.controller(&args))
}

/// Shown 3, parallel: both VMs at once; TOXICITY 50 with exact selection resets
/// exactly half of each VM's new connections; reports collected; both guests clean.
#[test]
fn parallel_run_resets_at_toxicity_in_both_vms() {
    if !require_root() {
        return;
    }
    let ((a, _sa), (b, _sb), sim) = two_vms();
    let child = run_on_both(
        &sim,
        &[
            "--toxicity",
            "50",
            "--selection",
            "exact",
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "6",
        ],
    );
    wait_injected(&a, Duration::from_secs(20));
    wait_injected(&b, Duration::from_secs(5));
    assert_no_secret_in_guest(&a, &sim);
    assert_no_secret_in_guest(&b, &sim);
    let n = 6;
    for lab in [&a, &b] {
        let codes: Vec<i32> = (0..n)
            .map(|_| curl(&lab.caller, &lab.url(false, 80, "/")).exit)
            .collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 56).count(),
            n / 2,
            "half reset (exit 56): {codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == 0).count(),
            n / 2,
            "half served: {codes:?}"
        );
    }
    let out = child.finish(Duration::from_secs(60));
    let v = out.report();
    assert_eq!(out.code(), Some(0), "{v}\n{}", out.stderr);
    for row in v["vms"].as_array().unwrap() {
        let r = &row["agent_report"];
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(r["flows_seen"], n as u64, "{r}");
        assert_eq!(r["flows_selected"], (n / 2) as u64, "{r}");
        assert_eq!(r["resets_observed"], (n / 2) as u64, "{r}");
        assert_eq!(r["cleanup"]["verified"], true, "{r}");
        assert_eq!(row["guest_files_removed"], true);
    }
    a.assert_clean();
    b.assert_clean();
    let all = format!("{v}{}", out.stderr);
    assert!(
        !sim.credentials().leaked_in(&all),
        "secret in report or logs"
    );
}

/// Shown 3, serial: one VM after the other with CHAOS_INTERVAL between them; while
/// the first is injected the second is not.
#[test]
fn serial_run_injects_one_vm_after_the_other() {
    if !require_root() {
        return;
    }
    let ((a, _sa), (b, _sb), sim) = two_vms();
    let child = run_on_both(
        &sim,
        &[
            "--sequence",
            "serial",
            "--toxicity",
            "100",
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "3",
            "--chaos-interval",
            "2",
        ],
    );
    wait_injected(&a, Duration::from_secs(20));
    assert!(!injected(&b), "serial: vm-b must wait for vm-a");
    assert_eq!(curl(&a.caller, &a.url(false, 80, "/")).exit, 56);
    assert_eq!(
        curl(&b.caller, &b.url(false, 80, "/")).exit,
        0,
        "vm-b not yet injected"
    );
    wait_injected(&b, Duration::from_secs(20));
    assert!(!injected(&a), "vm-a's window ended before vm-b's began");
    assert_eq!(curl(&b.caller, &b.url(false, 80, "/")).exit, 56);
    let out = child.finish(Duration::from_secs(60));
    let v = out.report();
    assert_eq!(out.code(), Some(0), "{v}");
    let (ra, rb) = (&v["vms"][0], &v["vms"][1]);
    let gap = phase_ms(rb, "starting agent") as i64 - phase_ms(ra, "agent exited") as i64;
    assert!(gap >= 2000, "CHAOS_INTERVAL between VMs: {gap} ms");
    assert!(
        ra["timings"]["agent_runtime_ms"].as_u64().unwrap() >= 3000,
        "{ra}"
    );
    assert_eq!(ra["agent_report"]["resets_observed"], 1);
    assert_eq!(rb["agent_report"]["resets_observed"], 1);
    a.assert_clean();
    b.assert_clean();
}

/// Shown 4, abort mid-window: exit 130 within 10 s, both guests clean, partial reports.
#[test]
fn abort_mid_window_leaves_clean_guests_and_partial_reports() {
    if !require_root() {
        return;
    }
    let ((a, _sa), (b, _sb), sim) = two_vms();
    let child = run_on_both(&sim, &["--total-chaos-duration", "120"]);
    wait_injected(&a, Duration::from_secs(20));
    wait_injected(&b, Duration::from_secs(5));
    let t = Instant::now();
    child.signal("INT");
    let out = child.finish(Duration::from_secs(15));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "exit within 10 s: {:?}",
        t.elapsed()
    );
    assert_eq!(out.code(), Some(130), "{}", out.stderr);
    let v = out.report();
    assert_eq!(v["aborted"], true);
    for row in v["vms"].as_array().unwrap() {
        assert_eq!(row["status"], "aborted", "{row}");
        assert_eq!(
            row["agent_report"]["aborted"], true,
            "partial report: {row}"
        );
        assert_eq!(row["guest_files_removed"], true, "{row}");
    }
    a.assert_clean();
    b.assert_clean();
    assert_eq!(
        sim.guest_files(),
        Vec::<std::path::PathBuf>::new(),
        "guest files left"
    );
}
