//! pyvmomi conformance (issue 12): every SOAP request the controller sends during full runs
//! against vcsim — a run through a vCenter whose transfers go to an ESXi host, with paged
//! inventory results, aborted runs (SIGTERM mid-window, with an agent that stops and one that
//! must be terminated), `preflight` and `cleanup`, and a
//! preflight against a standalone ESXi host — is read by pyvmomi (VMware's SDK) into the
//! method's declared parameters: types, order, the `_this` type, required fields
//! (tests/py/conformance.py). Unknown or misordered elements fail it, and so does a method
//! the controller can call that these runs did not exercise.
//! Fails (never skips) when python3 or pyvmomi is missing: `cargo xtask setup` installs them.

mod vcenter_sim;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reset_tests::ctl::{Controller, run_bounded};
use reset_tests::fake_agent;
use vcenter_sim::*;

const LIMIT: Duration = Duration::from_secs(60);

/// Methods the client can encode but the controller never calls (kept for the client's API).
const NOT_CALLED: &[(&str, &str)] = &[
    ("MakeDirectoryInGuest", ".make_dir("),
    ("DeleteFileInGuest", ".delete_file("),
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// The vim25 methods reset-controller/src/vcenter encodes: the string literal after each
/// `Request::new(` or `guest_request(`.
fn methods_in_source() -> BTreeSet<String> {
    let dir = root().join("reset-controller/src/vcenter");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for call in ["Request::new(", "guest_request("] {
            for (i, _) in src.match_indices(call) {
                let rest = src[i + call.len()..].trim_start();
                if let Some(lit) = rest.strip_prefix('"') {
                    let name = &lit[..lit.find('"').unwrap()];
                    out.insert(name.to_string());
                }
            }
        }
    }
    assert!(out.len() >= 15, "parsed too few methods: {out:?}");
    out
}

/// Source of the controller outside the SOAP client.
fn controller_source() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("vcenter") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut s = String::new();
    walk(&root().join("reset-controller/src"), &mut s);
    s
}

fn ok(sim: &Sim, args: &[String]) {
    let out = run_bounded(sim.controller(args), LIMIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Files in the guest tmp dir whose name ends with `suffix`.
fn count(sim: &Sim, suffix: &str) -> usize {
    sim.vcsim
        .guest_tmp
        .entries()
        .iter()
        .filter(|name| name.ends_with(suffix))
        .count()
}

/// A run with `agent` stopped by SIGTERM once the agent marked its start with a new file
/// ending in `started`: the abort path (stop the agent, `reset-agent cleanup`, report).
fn aborted_run(sim: &Sim, agent: &Path, started: &str) {
    let agent = agent.display().to_string();
    let args = strings(&[
        "run",
        "--vm-name",
        VM,
        "--total-chaos-duration",
        "30",
        "--agent",
        &agent,
    ]);
    let before = count(sim, started);
    let controller = Controller::spawn(sim.controller(&args));
    let t0 = Instant::now();
    while count(sim, started) == before {
        assert!(t0.elapsed() < LIMIT, "the agent never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    controller.signal("TERM");
    let out = controller.finish(LIMIT);
    assert_eq!(out.status.code(), Some(130), "{}", out.stderr);
    let v = out.report();
    assert_eq!(v["vms"][0]["status"], "aborted", "{v}");
}

/// Runs pyvmomi over the logs; returns the methods it validated.
fn pyvmomi_reads(logs: &[&Path]) -> BTreeSet<String> {
    let out = Command::new("python3")
        .arg(root().join("tests/py/conformance.py"))
        .args(["--self-test", "--json"])
        .args(logs)
        .output()
        .expect("python3 is required (cargo xtask setup installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'pyVmomi'"),
        "pyvmomi is not installed: pip install pyvmomi (cargo xtask setup does)"
    );
    assert!(out.status.success(), "pyvmomi refused requests:\n{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("pyvmomi read {summary}");
    assert_eq!(summary["problems"], 0);
    summary["methods"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn pyvmomi_reads_every_request_of_full_runs_and_the_abort_path() {
    // Through a vCenter: transfers to its ESXi host, inventory pages of one object.
    let vc = Sim::start(
        "conf-vc",
        &["--esx-host", "--page-size", "1", "--vm", "db-01"],
    );
    ok(&vc, &run_args(&[]));
    // The agent stops on SIGTERM; then one that ignores it and must be terminated.
    aborted_run(&vc, &fake_agent(), ".environ");
    let stubborn =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vcenter_sim/stubborn-agent.sh");
    aborted_run(&vc, &stubborn, ".started");
    let agent = fake_agent().display().to_string();
    ok(
        &vc,
        &strings(&["preflight", "--vm-name", VM, "--agent", &agent]),
    );
    ok(
        &vc,
        &strings(&["cleanup", "--vm-name", VM, "--agent", &agent]),
    );
    // A standalone ESXi host: its licenses are read before any guest operation.
    let esx = Sim::start("conf-esx", &["--product", "esxi-8.0.3"]);
    ok(
        &esx,
        &strings(&["preflight", "--vm-name", VM, "--agent", &agent]),
    );

    let seen = pyvmomi_reads(&[vc.log(), esx.log()]);
    let defined = methods_in_source();
    let src = controller_source();
    for (method, call) in NOT_CALLED {
        assert!(
            defined.contains(*method),
            "{method} is gone: drop it from NOT_CALLED"
        );
        assert!(
            !src.contains(call),
            "the controller now calls {method} ({call}): exercise it in these runs and drop it from NOT_CALLED"
        );
    }
    let called: BTreeSet<String> = defined
        .into_iter()
        .filter(|m| !NOT_CALLED.iter().any(|(n, _)| n == m))
        .collect();
    let missed: Vec<&String> = called.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "methods the controller calls that these runs never sent: {missed:?}"
    );
    eprintln!(
        "pyvmomi read every request; methods covered: {}",
        called.iter().cloned().collect::<Vec<_>>().join(", ")
    );
}
