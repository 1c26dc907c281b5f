//! The controller's orchestration against the simulator with a stand-in agent
//! (tests/fixtures/fake-agent.sh, same CLI contract; the simulator's VMs run it on this
//! host, so no root is needed): staging modes, parallel and serial timing, ramp, abort,
//! report collection, cleanup, and secrets.

use std::time::Duration;

use reset_tests::{
    ctl::{Controller, run_bounded},
    fake_agent,
    sim::{TempDir, Vcsim},
};
use serde_json::Value;

fn run_json(
    sim: &Vcsim,
    vms: &str,
    args: &[&str],
    limit: Duration,
) -> (i32, Value, String, Duration) {
    let agent = fake_agent();
    let mut all = vec![
        "--output",
        "json",
        "run",
        "--vm-name",
        vms,
        "--agent",
        agent.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = run_bounded(sim.controller(&all), limit);
    let v = out.report();
    (out.code().unwrap_or(-1), v, out.stderr, out.took)
}

fn agent_ms(v: &Value, i: usize, field: &str) -> i64 {
    v["vms"][i]["agent_report"][field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {}", v["vms"][i]))
}

#[test]
fn parallel_run_collects_every_report_and_removes_guest_files() {
    let sim = Vcsim::builder().host_vm("web-01").host_vm("web-02").start();
    let (code, v, err, _) = run_json(
        &sim,
        "web-01,web-02",
        &[
            "--total-chaos-duration",
            "2",
            "--toxicity",
            "37.5",
            "--stream",
            "upstream",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{v}\n{err}");
    for i in 0..2 {
        let row = &v["vms"][i];
        assert_eq!(row["status"], "ok", "{row}");
        assert_eq!(row["agent_exit_code"], 0);
        assert_eq!(row["agent_report"]["resets_observed"], 5);
        assert_eq!(
            row["agent_report"]["extra_field"]["x"], 1,
            "extra fields are kept"
        );
        assert_eq!(row["guest_files_removed"], true);
        assert!(
            row["timings"]["login_to_running_ms"].as_u64().unwrap() < 5000,
            "{row}"
        );
    }
    // Both windows overlap: started within a second of each other.
    assert!(
        (agent_ms(&v, 0, "started_ms") - agent_ms(&v, 1, "started_ms")).abs() < 1000,
        "{v}"
    );
    // Progress went to stderr, one line per phase per VM.
    assert!(
        err.contains("web-01 [") && err.contains("agent running"),
        "{err}"
    );
    // Guest side: the run dir was 0700, agent 0755, config 0600, and it is gone.
    let probes: Vec<String> = sim
        .guest_tmp
        .entries()
        .into_iter()
        .filter(|e| e.ends_with(".dirmode"))
        .collect();
    assert_eq!(probes.len(), 2, "{:?}", sim.guest_tmp.entries());
    for p in probes {
        let base = sim.guest_tmp.path().join(p.trim_end_matches(".dirmode"));
        let read = |ext: &str| {
            std::fs::read_to_string(format!("{}.{ext}", base.display()))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(read("dirmode"), "700");
        assert_eq!(read("agentmode"), "755");
        assert_eq!(read("cfgmode"), "600");
        let config = read("config");
        assert!(
            config.contains("toxicity = 37.5") && config.contains("stream = \"upstream\""),
            "{config}"
        );
        assert!(config.contains("total_chaos_duration = 2"), "{config}");
    }
    assert!(
        sim.guest_tmp
            .entries()
            .iter()
            .all(|e| e.starts_with("probe-")),
        "guest dirs removed: {:?}",
        sim.guest_tmp.entries()
    );
}

#[test]
fn serial_run_waits_ramp_and_interval() {
    let sim = Vcsim::builder().host_vm("a-01").host_vm("b-01").start();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (code, v, err, took) = run_json(
        &sim,
        "a-01,b-01",
        &[
            "--sequence",
            "serial",
            "--total-chaos-duration",
            "1",
            "--chaos-interval",
            "2",
            "--ramp-time",
            "1",
        ],
        Duration::from_secs(40),
    );
    assert_eq!(code, 0, "{v}\n{err}");
    let (a_start, a_end) = (agent_ms(&v, 0, "started_ms"), agent_ms(&v, 0, "ended_ms"));
    let (b_start, b_end) = (agent_ms(&v, 1, "started_ms"), agent_ms(&v, 1, "ended_ms"));
    assert!(
        a_start - t0 >= 1000,
        "ramp before the first injection: {}",
        a_start - t0
    );
    assert!(a_end <= b_start, "one after another");
    assert!(
        b_start - a_end >= 2000,
        "CHAOS_INTERVAL between VMs: {}",
        b_start - a_end
    );
    assert!(
        b_start - a_end < 4000,
        "no more than interval + overhead: {}",
        b_start - a_end
    );
    assert!(b_end - b_start >= 1000);
    // ramp 1 + 1 + interval 2 + 1 + ramp 1 = 6 s at least.
    assert!(took >= Duration::from_secs(6), "{took:?}");
    assert!(
        err.contains("interval: waiting 2 s") && err.contains("ramp: waiting 1 s after"),
        "{err}"
    );
}

#[test]
fn sigint_mid_window_stops_agents_cleans_up_and_exits_130() {
    let sim = Vcsim::builder().host_vm("web-01").host_vm("web-02").start();
    let agent = fake_agent();
    let report = TempDir::new("report").unwrap();
    let report_path = report.path().join("r.json");
    let c = Controller::spawn(sim.controller(&[
        "run",
        "--vm-name",
        "web-01,web-02",
        "--agent",
        agent.to_str().unwrap(),
        "--total-chaos-duration",
        "60",
        "--report",
        report_path.to_str().unwrap(),
    ]));
    // Readiness: both agents have written their probes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim
        .guest_tmp
        .entries()
        .iter()
        .filter(|e| e.ends_with(".cmdline"))
        .count()
        < 2
    {
        assert!(std::time::Instant::now() < deadline, "agents never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = std::time::Instant::now();
    c.signal("INT");
    // Exit within 10 s of SIGINT.
    let out = c.finish(Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(out.code(), Some(130), "{}", out.stderr);
    let stdout = &out.stdout;
    assert!(
        stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("web-01  aborted"),
        "table still printed: {stdout}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&report_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(v["aborted"], true);
    for i in 0..2 {
        let row = &v["vms"][i];
        assert_eq!(
            row["agent_exit_code"], 3,
            "agent got SIGTERM and wrote its report: {row}"
        );
        assert_eq!(
            row["agent_report"]["aborted"], true,
            "partial report collected: {row}"
        );
        assert_eq!(row["guest_files_removed"], true, "{row}");
    }
    let cleanups = std::fs::read_to_string(sim.guest_tmp.path().join("cleanup-calls")).unwrap();
    assert_eq!(
        cleanups.lines().count(),
        2,
        "reset-agent cleanup ran in each guest"
    );
}

#[test]
fn secrets_never_reach_the_guest_program_logs_or_report() {
    let sim = Vcsim::builder().host_vm("web-01").start();
    let report = TempDir::new("report").unwrap();
    let report_path = report.path().join("r.json");
    let (code, v, err, _) = run_json(
        &sim,
        "web-01",
        &[
            "--total-chaos-duration",
            "1",
            "--report",
            report_path.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{err}");
    let mut seen = vec![
        err,
        v.to_string(),
        std::fs::read_to_string(&report_path).unwrap(),
    ];
    for e in sim.guest_tmp.entries() {
        seen.push(std::fs::read_to_string(sim.guest_tmp.path().join(&e)).unwrap_or_default());
    }
    let environ = sim
        .guest_tmp
        .entries()
        .into_iter()
        .find(|e| e.ends_with(".environ"))
        .expect("probe");
    let env = std::fs::read_to_string(sim.guest_tmp.path().join(environ)).unwrap();
    assert!(
        !env.contains("VM_PASSWORD") && !env.contains("GOVC"),
        "guest environment is only PATH: {env}"
    );
    for s in &seen {
        assert!(!sim.credentials().leaked_in(s), "secret leaked: {s}");
    }
}

#[test]
fn preflight_and_cleanup_run_the_agent_in_each_guest() {
    let sim = Vcsim::builder().host_vm("web-01").host_vm("web-02").start();
    let agent = fake_agent();
    for (cmd, expect) in [
        ("preflight", "check kernel: ok"),
        ("cleanup", "cleanup: nothing to remove"),
    ] {
        let c = sim.controller(&[
            cmd,
            "--vm-name",
            "web-01,web-02",
            "--agent",
            agent.to_str().unwrap(),
        ]);
        let out = run_bounded(c, Duration::from_secs(30));
        let stdout = &out.stdout;
        assert_eq!(out.code(), Some(0), "{stdout}{}", out.stderr);
        assert!(
            stdout.contains(&format!("== web-01 {cmd}: ok"))
                && stdout.contains(&format!("== web-02 {cmd}: ok")),
            "{stdout}"
        );
        assert_eq!(stdout.matches(expect).count(), 2, "{stdout}");
    }
    let left: Vec<String> = sim
        .guest_tmp
        .entries()
        .into_iter()
        .filter(|e| e.starts_with("reset-peer-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
