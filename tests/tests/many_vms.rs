//! Many VMs at once: 50 network-namespace VMs in parallel through one vCenter (the simulator),
//! with the portable agent of `cargo xtask dist` (what the controller uploads by default).
//!
//! Shown: every agent's window overlaps every other's (all 50 ran at once), the injection time
//! is measured (the controller's first StartProgramInGuest to the last agent started, and to
//! the last agent's window open as its own report says), every report is collected with its
//! cleanup verified, every guest is clean (no table, tc program, agent or guest file), the
//! controller logged in once (one session for all VMs) and never had more than VC_CONCURRENCY
//! requests in flight at vCenter (vcsim's request log counts them).
//!
//! Load stays bounded: no traffic, a short window, 100 namespaces (a VM and its peer per lab)
//! named uniquely and removed on drop, and VC_CONCURRENCY at its default.
use std::time::{Duration, SystemTime};

use reset_tests::{
    bin_dir,
    ctl::{Controller, phase_ms},
    lab::Lab,
    require_root,
    sim::{TempDir, Vcsim},
};
use serde_json::Value;

const VMS: usize = 50;
/// The controller's default VC_CONCURRENCY.
const CONCURRENCY: u64 = 8;
/// The goal for all 50 agents to run, from the first one's start.
const GOAL: Duration = Duration::from_secs(3);

fn dist_agent() -> std::path::PathBuf {
    let exe = bin_dir()
        .parent()
        .expect("target dir")
        .join("dist/reset-agent");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo xtask dist` (cargo xtask test does)",
        exe.display()
    );
    exe
}

/// An RFC 3339 time of a report.
fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339_weak(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn secs(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[test]
fn fifty_vms_at_once_through_one_session() {
    if !require_root() {
        return;
    }
    let agent = dist_agent();
    let labs: Vec<Lab> = (0..VMS).map(|_| Lab::new()).collect();
    let names: Vec<String> = (1..=VMS).map(|i| format!("vm-{i:02}")).collect();
    let log_dir = TempDir::new("many-vms").unwrap();
    let requests = log_dir.path().join("requests.jsonl");
    let sim = names
        .iter()
        .zip(&labs)
        .fold(Vcsim::builder(), |b, (name, lab)| b.vm(name, lab))
        .arg("--request-log")
        .arg(requests.to_str().unwrap())
        .start();
    let vm_list = names.join(",");
    let out = Controller::spawn(sim.controller(&[
        "--output",
        "json",
        "run",
        "--vm-name",
        &vm_list,
        "--agent",
        agent.to_str().unwrap(),
        "--toxicity",
        "50",
        "--total-chaos-duration",
        "10",
    ]))
    .finish(Duration::from_secs(240));
    let v = out.report();
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);

    let rows = v["vms"].as_array().unwrap();
    assert_eq!(rows.len(), VMS);
    let run_start = time(&v["started_at"]);
    let (mut first_start, mut last_running, mut last_staged) = (u64::MAX, 0, 0);
    let mut windows = Vec::new();
    for row in rows {
        assert_eq!(row["status"], "ok", "{row}");
        let a = &row["agent_report"];
        assert_eq!(a["cleanup"]["verified"], true, "report collected: {row}");
        assert_eq!(row["guest_files_removed"], true, "{row}");
        first_start = first_start.min(phase_ms(row, "starting agent"));
        last_running = last_running.max(phase_ms(row, "agent running"));
        last_staged = last_staged.max(phase_ms(row, "staged"));
        windows.push((time(&a["started_at"]), time(&a["ended_at"])));
    }
    let last_open = windows.iter().map(|w| w.0).max().unwrap();
    let first_close = windows.iter().map(|w| w.1).min().unwrap();
    assert!(
        last_open < first_close,
        "every window overlaps every other: the last opened {:.2} s after the first closed",
        secs(first_close, last_open)
    );
    let first_start_at = run_start + Duration::from_millis(first_start);
    let started = (last_running - first_start) as f64 / 1000.0;
    let all_open = secs(first_start_at, last_open);
    let first_open = secs(first_start_at, windows.iter().map(|w| w.0).min().unwrap());
    eprintln!(
        "MEASURED ({VMS} VMs, VC_CONCURRENCY {CONCURRENCY}, 2 cores shared): staged {:.2} s into \
         the run; from the first StartProgramInGuest, every agent started (StartProgramInGuest \
         answered) after {started:.2} s, the first window open after {first_open:.2} s, every \
         window open after {all_open:.2} s; whole run {:.1} s (window 10 s). Goal: all {VMS} \
         running within {} s: {}",
        last_staged as f64 / 1000.0,
        out.took.as_secs_f64(),
        GOAL.as_secs(),
        if all_open <= GOAL.as_secs_f64() {
            "met"
        } else if started <= GOAL.as_secs_f64() {
            "met by the controller (every agent started), not by the agents' own start-up"
        } else {
            "NOT met"
        }
    );

    // One session for every VM, and never more than VC_CONCURRENCY requests at vCenter.
    let log = std::fs::read_to_string(&requests).unwrap();
    let entries: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logins = entries.iter().filter(|e| e["method"] == "Login").count();
    assert_eq!(logins, 1, "one vCenter session for all {VMS} VMs");
    let peak = entries
        .iter()
        .filter_map(|e| e["in_flight"].as_u64())
        .max()
        .unwrap();
    eprintln!(
        "vCenter answered {} requests, at most {peak} at once",
        entries.len()
    );
    assert!(
        peak <= CONCURRENCY,
        "{peak} requests in flight at once, VC_CONCURRENCY is {CONCURRENCY}"
    );
    assert!(
        peak >= CONCURRENCY / 2,
        "the VMs were driven in parallel, not one by one: peak {peak}"
    );

    for (name, lab) in names.iter().zip(&labs) {
        assert_eq!(lab.leftovers(), Vec::<String>::new(), "{name} is clean");
    }
    assert_eq!(
        sim.guest_files(),
        Vec::<std::path::PathBuf>::new(),
        "no guest file left"
    );
}
