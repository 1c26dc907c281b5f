//! End to end: reset-controller drives the real reset-agent in two namespace "VMs"
//! through the vCenter simulator (tests/vcsim, run as the `vcsim` binary), as a user
//! would: callers get resets at TOXICITY, both agents' reports are collected,
//! both guests are clean afterwards, serial timing holds, an abort mid-window exits
//! 130 with clean guests and partial reports, and no secret is visible in the
//! guests' processes.
use std::process::Command;
use std::time::{Duration, Instant};

use reset_tests::{
    bin,
    ctl::{
        GUEST_PASSWORD, VC_PASSWORD, Vcsim, assert_guest_clean, assert_no_secret_in_guest,
        injected, phase_ms, report, wait_bounded, wait_injected,
    },
    lab::Lab,
    proc::{Service, curl},
    require_root,
};

/// Shown 3, parallel: both VMs at once; TOXICITY 50 with exact selection resets
/// exactly half of each VM's new connections; reports collected; both guests clean.
#[test]
fn parallel_run_resets_at_toxicity_in_both_vms() {
    if !require_root() {
        return;
    }
    let (a, b) = (Lab::new(), Lab::new());
    let (_sa, _sb) = (
        Service::start(&a.vm, 80, None),
        Service::start(&b.vm, 80, None),
    );
    let sim = Vcsim::start(&[("vm-a", &a), ("vm-b", &b)]);
    let agent = bin("reset-agent");
    let child = sim
        .controller(&[
            "run",
            "--vm-name",
            "vm-a,vm-b",
            "--agent",
            agent.to_str().unwrap(),
            "--toxicity",
            "50",
            "--selection",
            "exact",
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "6",
        ])
        .spawn()
        .unwrap();
    wait_injected(&a, Duration::from_secs(20));
    wait_injected(&b, Duration::from_secs(5));
    assert_no_secret_in_guest(&a);
    assert_no_secret_in_guest(&b);
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
    let out = wait_bounded(child, Duration::from_secs(60));
    let v = report(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in v["vms"].as_array().unwrap() {
        let r = &row["agent_report"];
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(r["flows_seen"], n as u64, "{r}");
        assert_eq!(r["flows_selected"], (n / 2) as u64, "{r}");
        assert_eq!(r["resets_observed"], (n / 2) as u64, "{r}");
        assert_eq!(r["cleanup"]["verified"], true, "{r}");
        assert_eq!(row["guest_files_removed"], true);
    }
    assert_guest_clean(&a);
    assert_guest_clean(&b);
    let all = format!("{v}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !all.contains(VC_PASSWORD) && !all.contains(GUEST_PASSWORD),
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
    let (a, b) = (Lab::new(), Lab::new());
    let (_sa, _sb) = (
        Service::start(&a.vm, 80, None),
        Service::start(&b.vm, 80, None),
    );
    let sim = Vcsim::start(&[("vm-a", &a), ("vm-b", &b)]);
    let agent = bin("reset-agent");
    let child = sim
        .controller(&[
            "run",
            "--vm-name",
            "vm-a,vm-b",
            "--agent",
            agent.to_str().unwrap(),
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
        ])
        .spawn()
        .unwrap();
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
    let out = wait_bounded(child, Duration::from_secs(60));
    let v = report(&out);
    assert_eq!(out.status.code(), Some(0), "{v}");
    let (ra, rb) = (&v["vms"][0], &v["vms"][1]);
    let gap = phase_ms(rb, "starting agent") as i64 - phase_ms(ra, "agent exited") as i64;
    assert!(gap >= 2000, "CHAOS_INTERVAL between VMs: {gap} ms");
    assert!(
        ra["timings"]["agent_runtime_ms"].as_u64().unwrap() >= 3000,
        "{ra}"
    );
    assert_eq!(ra["agent_report"]["resets_observed"], 1);
    assert_eq!(rb["agent_report"]["resets_observed"], 1);
    assert_guest_clean(&a);
    assert_guest_clean(&b);
}

/// Shown 4, abort mid-window: exit 130 within 10 s, both guests clean, partial reports.
#[test]
fn abort_mid_window_leaves_clean_guests_and_partial_reports() {
    if !require_root() {
        return;
    }
    let (a, b) = (Lab::new(), Lab::new());
    let (_sa, _sb) = (
        Service::start(&a.vm, 80, None),
        Service::start(&b.vm, 80, None),
    );
    let sim = Vcsim::start(&[("vm-a", &a), ("vm-b", &b)]);
    let agent = bin("reset-agent");
    let child = sim
        .controller(&[
            "run",
            "--vm-name",
            "vm-a,vm-b",
            "--agent",
            agent.to_str().unwrap(),
            "--total-chaos-duration",
            "120",
        ])
        .spawn()
        .unwrap();
    wait_injected(&a, Duration::from_secs(20));
    wait_injected(&b, Duration::from_secs(5));
    let t = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(15));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "exit within 10 s: {:?}",
        t.elapsed()
    );
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = report(&out);
    assert_eq!(v["aborted"], true);
    for row in v["vms"].as_array().unwrap() {
        assert_eq!(row["status"], "aborted", "{row}");
        assert_eq!(
            row["agent_report"]["aborted"], true,
            "partial report: {row}"
        );
        assert_eq!(row["guest_files_removed"], true, "{row}");
    }
    assert_guest_clean(&a);
    assert_guest_clean(&b);
    let left: Vec<_> = std::fs::read_dir(sim.guest_tmp()).unwrap().collect();
    assert!(left.is_empty(), "guest files left: {left:?}");
}
