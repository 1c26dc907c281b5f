//! Privileged end-to-end tests of reset-agent (issue 2, "What must be shown"). Each test builds
//! its own lab namespaces and removes them on drop, also when it fails.
use std::time::{Duration, Instant};

use reset_tests::{
    lab::Lab,
    proc::{Agent, Service, agent_once, caller, curl},
    require_root,
};

const RST_TIMEOUT_MS: f64 = 300.0;

fn resets_timing(v6: bool, extra: &[&str]) {
    let (lab, _svc) = Lab::with_service();
    let mut args = vec![
        "--toxicity",
        "100",
        "--reset-timeout",
        "300",
        "--total-chaos-duration",
        "3",
    ];
    args.extend_from_slice(extra);
    let mut agent = Agent::start(&lab.vm, &args);
    let n = 5;
    let mut seen = 0;
    for _ in 0..n {
        let c = curl(&lab.caller, &lab.url(v6, 80, "/"));
        assert_eq!(c.exit, 56, "curl should fail with 56: {c:?}");
        assert!(c.stderr.contains("Connection reset by peer"), "{c:?}");
        assert!(
            c.time_ms >= RST_TIMEOUT_MS,
            "reset too early: {} ms",
            c.time_ms
        );
        assert!(
            c.time_ms <= RST_TIMEOUT_MS + 50.0,
            "reset too late: {} ms",
            c.time_ms
        );
        seen += 1;
    }
    let run = agent.finish();
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    for f in [
        "flows_seen",
        "flows_selected",
        "proxy_accepted",
        "resets_issued",
        "resets_observed",
    ] {
        assert_eq!(run.u64(f), seen, "{f}: {}", run.report());
    }
    assert_eq!(
        run.report()["errors"].as_array().map(Vec::len),
        Some(0),
        "{}",
        run.report()
    );
    assert!(
        run.stdout.contains("resets observed"),
        "human summary on stdout: {}",
        run.stdout
    );
    let d = &run.report()["reset_delay_ms"];
    assert!(
        d["p50"].as_f64().unwrap() >= RST_TIMEOUT_MS
            && d["max"].as_f64().unwrap() <= RST_TIMEOUT_MS + 50.0,
        "{d}"
    );
    assert_eq!(run.report()["cleanup"]["verified"], true);
    lab.assert_clean();
}

/// Shown 1: TOXICITY 100, RESET_TIMEOUT 300: exit 56 within [300, 350] ms; report == caller.
#[test]
fn full_toxicity_resets_every_connection_on_time() {
    if !require_root() {
        return;
    }
    resets_timing(false, &[]);
}

/// Shown 7: The same over IPv6.
#[test]
fn full_toxicity_over_ipv6() {
    if !require_root() {
        return;
    }
    resets_timing(true, &[]);
}

/// Shown 8a: Userspace mode passes test 1 and says its counts are not kernel-observed.
#[test]
fn userspace_mode_resets_on_time() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "100",
            "--reset-timeout",
            "300",
            "--total-chaos-duration",
            "2",
            "--mode",
            "userspace",
        ],
    );
    for _ in 0..3 {
        let c = curl(&lab.caller, &lab.url(false, 80, "/"));
        assert_eq!(c.exit, 56, "{c:?}");
        assert!(
            (RST_TIMEOUT_MS..=RST_TIMEOUT_MS + 50.0).contains(&c.time_ms),
            "{c:?}"
        );
    }
    let run = agent.finish();
    assert_eq!(run.report()["mode"], "userspace");
    assert_eq!(run.report()["counts_kernel_observed"], false);
    assert_eq!(run.u64("resets_issued"), 3);
    assert_eq!(run.u64("flows_selected"), 3);
    lab.assert_clean();
}

/// Shown 2: TOXICITY 0: every request succeeds, nothing selected, nothing reset.
#[test]
fn zero_toxicity_changes_nothing() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(&lab.vm, &["--toxicity", "0", "--total-chaos-duration", "2"]);
    let out = caller(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "200", "--concurrency", "4"],
    );
    assert_eq!(out["succeeded"], 200, "{out}");
    let run = agent.finish();
    assert_eq!(run.u64("flows_seen"), 200, "{}", run.report());
    assert_eq!(run.u64("flows_selected"), 0);
    assert_eq!(run.u64("resets_observed"), 0);
    assert_eq!(
        run.u64("proxy_accepted"),
        0,
        "unselected traffic must not touch the proxy"
    );
    lab.assert_clean();
}

fn thirty_percent(extra: &[&str]) -> (u64, serde_json::Value) {
    let (lab, _svc) = Lab::with_service();
    let mut args = vec![
        "--toxicity",
        "30",
        "--reset-timeout",
        "50",
        "--total-chaos-duration",
        "6",
    ];
    args.extend_from_slice(extra);
    let mut agent = Agent::start(&lab.vm, &args);
    let out = caller(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "1000", "--concurrency", "40"],
    );
    assert_eq!(out["requests"], 1000, "{out}");
    assert_eq!(out["other_errors"], 0, "{out}");
    let resets = out["resets"].as_u64().unwrap();
    let run = agent.finish();
    let r = run.report().clone();
    assert_eq!(run.u64("flows_seen"), 1000, "{r}");
    assert_eq!(run.u64("resets_observed"), resets, "kernel vs caller: {r}");
    assert_eq!(run.u64("resets_issued"), resets, "{r}");
    assert_eq!(run.u64("flows_selected"), resets, "{r}");
    lab.assert_clean();
    (resets, r)
}

/// Shown 3a: Exact selection: exactly 300 of 1000, and every count agrees.
#[test]
fn exact_selection_resets_exactly_thirty_percent() {
    if !require_root() {
        return;
    }
    let (resets, _) = thirty_percent(&["--selection", "exact"]);
    assert_eq!(resets, 300);
}

/// Shown 3b: Random selection: inside the 99.9% binomial interval (n=1000, p=0.3: 300 +- 47.7).
#[test]
fn random_selection_is_inside_the_binomial_interval() {
    if !require_root() {
        return;
    }
    let (resets, _) = thirty_percent(&["--selection", "random"]);
    let (n, p) = (1000.0f64, 0.3f64);
    let half = 3.2905 * (n * p * (1.0 - p)).sqrt();
    assert!(
        (resets as f64 - n * p).abs() <= half,
        "{resets} outside 300 +- {half:.1}"
    );
}

/// Shown 8b: Userspace mode, exact selection: test 3 holds with userspace counts.
#[test]
fn userspace_exact_selection() {
    if !require_root() {
        return;
    }
    let (resets, r) = thirty_percent(&["--selection", "exact", "--mode", "userspace"]);
    assert_eq!(resets, 300);
    assert_eq!(r["counts_kernel_observed"], false);
}

/// Shown 4a: After the window, and 4b after SIGTERM mid-window: clean, and the report says aborted.
#[test]
fn sigterm_mid_window_cleans_up_and_reports_aborted() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "100",
            "--reset-timeout",
            "5000",
            "--total-chaos-duration",
            "60",
        ],
    );
    assert!(
        lab.vm.nft_ruleset().contains("reset_peer"),
        "table present during the window"
    );
    // A connection held by the proxy gets its reset at once on abort.
    let caller_ns = lab.caller.name().to_owned();
    let url = lab.url(false, 80, "/");
    let held = std::thread::spawn(move || {
        let o = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &caller_ns,
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                &url,
            ])
            .output()
            .unwrap();
        o.status.code()
    });
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    agent.signal("TERM");
    let mut agent = agent;
    let run = agent.finish_within(Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "abort took {:?}",
        t0.elapsed()
    );
    assert_eq!(run.code(), Some(3), "{}", run.stderr);
    assert_eq!(run.report()["aborted"], true);
    assert_eq!(
        held.join().unwrap(),
        Some(56),
        "the held caller is reset on abort"
    );
    assert_eq!(
        run.report()["cleanup"]["verified"],
        true,
        "{}",
        run.report()
    );
    lab.assert_clean();
}

/// Shown 5: kill -9 mid-window: within 1 s no table remains and new connections succeed.
#[test]
fn sigkill_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let agent = Agent::start(
        &lab.vm,
        &["--toxicity", "100", "--total-chaos-duration", "60"],
    );
    assert!(lab.vm.nft_ruleset().contains("reset_peer"));
    let t0 = Instant::now();
    agent.signal("KILL");
    let mut agent = agent;
    let _ = agent.finish_within(Duration::from_secs(2));
    loop {
        let gone = !lab.vm.nft_ruleset().contains("reset_peer")
            && !lab.vm.bpf_attachments("ens160").contains("reset_");
        if gone {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "table or programs still present 1 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    lab.assert_clean();
}

/// Shown 6: upstream: the service never sees a selected request; downstream: it does, and the
/// caller is still reset.
#[test]
fn stream_modes_decide_what_the_service_sees() {
    if !require_root() {
        return;
    }
    for (stream, service_sees) in [("upstream", false), ("downstream", true)] {
        let lab = Lab::new();
        let log = std::env::temp_dir().join(format!("{}-svc.log", lab.vm.name()));
        let svc = Service::start(&lab.vm, 80, Some(&log));
        let mut agent = Agent::start(
            &lab.vm,
            &[
                "--toxicity",
                "100",
                "--reset-timeout",
                "200",
                "--total-chaos-duration",
                "2",
                "--stream",
                stream,
            ],
        );
        let c = curl(
            &lab.caller,
            &lab.url(false, 80, &format!("/selected-{stream}")),
        );
        assert_eq!(c.exit, 56, "{stream}: {c:?}");
        let run = agent.finish();
        assert_eq!(run.u64("resets_observed"), 1);
        let seen = svc
            .seen()
            .iter()
            .any(|p| p == &format!("/selected-{stream}"));
        assert_eq!(seen, service_sees, "{stream}: service log {:?}", svc.seen());
    }
}

/// Shown 9: Bad input: message, exit code, nothing installed.
#[test]
fn bad_input_is_refused_with_a_clear_message() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["--toxicity", "101"], 2, "TOXICITY"),
        (&["--toxicity", "-1"], 2, "TOXICITY"),
        (&["--toxicity", "abc"], 2, "TOXICITY"),
        (&["--reset-timeout", "-5"], 2, "RESET_TIMEOUT"),
        (&["--total-chaos-duration", "0"], 2, "TOTAL_CHAOS_DURATION"),
        (&["--proxy-port", "80"], 2, "choose a different PROXY_PORT"),
        (&["--network-interface", "eth9"], 1, "does not exist"),
        (&["--stream", "sideways"], 2, "STREAM"),
    ];
    for (args, code, needle) in cases {
        let mut full = vec!["run", "--total-chaos-duration", "5"];
        full.extend_from_slice(args);
        let out = agent_once(&lab.vm, &full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !lab.vm.nft_ruleset().contains("reset_peer"),
            "{args:?} left a table"
        );
    }
    // Port in use: names the holder.
    let _blocker = Service::start(&lab.vm, 8080, None);
    let out = agent_once(&lab.vm, &["run", "--total-chaos-duration", "5"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already in use") && err.contains("target-service"),
        "{err}"
    );
    // Not enough privilege.
    let out = lab
        .vm
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(reset_tests::bin("reset-agent"))
        .args(["run", "--proxy-port", "8081", "--total-chaos-duration", "5"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    lab.assert_clean();
}

/// A second run while one is active fails and names the first.
#[test]
fn second_run_is_refused() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut first = Agent::start(&lab.vm, &["--total-chaos-duration", "3"]);
    let out = agent_once(
        &lab.vm,
        &["run", "--proxy-port", "8081", "--total-chaos-duration", "3"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another reset-agent run is active")
            && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    let run = first.finish();
    assert_eq!(run.code(), Some(0));
}

/// cleanup and preflight: idempotent, say what they did.
#[test]
fn cleanup_and_preflight_report_their_checks() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let out = agent_once(&lab.vm, &["cleanup"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to clean up"));
    let out = agent_once(&lab.vm, &["preflight"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for check in [
        "kernel",
        "cap_net_admin",
        "interface",
        "proxy_port",
        "nftables",
        "bpf",
    ] {
        assert!(text.contains(check), "{check} missing:\n{text}");
    }
    assert!(text.contains("path: mode kernel"), "{text}");
    let out = agent_once(&lab.vm, &["preflight", "--network-interface", "nope0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  interface"));
}

/// Shown 4a: A connection selected just before the window closes still gets its reset on schedule
/// after the window (the drain keeps NAT alive), and then everything is removed.
#[test]
fn held_connection_is_reset_after_the_window_ends() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(
        &lab.vm,
        &[
            "--toxicity",
            "100",
            "--reset-timeout",
            "1500",
            "--total-chaos-duration",
            "2",
        ],
    );
    std::thread::sleep(Duration::from_millis(1200));
    let c = curl(&lab.caller, &lab.url(false, 80, "/"));
    assert_eq!(c.exit, 56, "{c:?}");
    assert!((1500.0..=1550.0).contains(&c.time_ms), "{c:?}");
    let run = agent.finish();
    assert_eq!(run.code(), Some(0));
    assert_eq!(run.u64("resets_observed"), 1, "{}", run.report());
    assert_eq!(run.report()["cleanup"]["verified"], true);
    lab.assert_clean();
}

/// Only redirected flows reach the proxy: a direct connection to PROXY_PORT is refused, and
/// the agent refuses to run from a world-writable directory.
#[test]
fn proxy_refuses_direct_connections_and_unsafe_paths() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = Agent::start(&lab.vm, &["--toxicity", "0", "--total-chaos-duration", "2"]);
    let c = curl(&lab.caller, &lab.url(false, 8080, "/"));
    assert_ne!(
        c.exit, 0,
        "a direct connection to the proxy must fail: {c:?}"
    );
    assert_ne!(c.http_code, "200");
    let run = agent.finish();
    assert_eq!(run.u64("proxy_refused_direct"), 1, "{}", run.report());
    assert_eq!(run.u64("proxy_accepted"), 0);

    let dir = std::env::temp_dir().join(format!("{}-ww", lab.vm.name()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let exe = dir.join("reset-agent");
    std::fs::copy(reset_tests::bin("reset-agent"), &exe).unwrap();
    let out = lab
        .vm
        .command(&exe)
        .args(["run", "--total-chaos-duration", "2"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("writable by every user"), "{err}");
    assert!(!lab.vm.nft_ruleset().contains("reset_peer"));
}
