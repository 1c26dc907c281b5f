//! The request unit (UNIT=request): TOXICITY percent of HTTP/1.x requests, on new and on
//! persistent connections (also those opened before the window), selected and counted by the
//! kernel, reset by the agent (sock_diag) RESET_TIMEOUT after each request's first byte, with
//! no request passing through the proxy. Callers here are pooled keep-alive callers
//! (tests/src/bin/pooled-caller.rs) and raw sockets for the edges.
use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use reset_tests::{
    bin,
    lab::{Lab, Netns, VM_V4, VM_V6},
    proc::{Agent, AgentRun, Service},
    require_root,
};
use serde_json::Value;

/// `reset-agent run --unit request ARGS`, active.
fn agent(lab: &Lab, args: &[&str]) -> Agent {
    let mut all = vec!["--unit", "request"];
    all.extend_from_slice(args);
    Agent::start(&lab.vm, &all)
}

/// `reset-agent run --unit request` at `toxicity` percent, each selected request reset
/// `reset_ms` after its first byte, for a `window_s` second window; active.
fn fault(lab: &Lab, toxicity: u32, reset_ms: u64, window_s: u64) -> Agent {
    agent(
        lab,
        &[
            "--toxicity",
            &toxicity.to_string(),
            "--reset-timeout",
            &reset_ms.to_string(),
            "--total-chaos-duration",
            &window_s.to_string(),
        ],
    )
}

/// The pooled caller in the caller namespace, to its end.
fn pooled(ns: &Netns, url: &str, args: &[&str]) -> Value {
    let out = ns
        .command(bin("pooled-caller"))
        .args(["--url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run pooled-caller");
    assert!(
        out.status.success(),
        "pooled-caller failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pooled-caller JSON")
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"))
}

/// The four counts that must agree: requests selected (kernel), resets issued (agent), resets
/// observed on the wire (kernel), and what the caller saw.
fn assert_counts_agree(run: &AgentRun, caller_resets: u64) {
    let r = run.report();
    for f in ["requests_selected", "resets_issued", "resets_observed"] {
        assert_eq!(u(r, f), caller_resets, "{f} vs the caller's resets: {r}");
    }
    assert_eq!(
        u(r, "proxy_accepted"),
        0,
        "no request passes through the proxy: {r}"
    );
    assert_eq!(r["unit"], "request", "{r}");
    assert_eq!(r["mode"], "kernel", "{r}");
    assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{r}");
}

/// Shown: a keep-alive caller (one persistent connection, reopened after an error) sends 1000
/// requests at TOXICITY 50, random: its resets are inside the 99.9% binomial interval, equal the
/// kernel's count, and no request passed through the proxy.
#[test]
fn keepalive_caller_sees_toxicity_percent_of_requests_reset() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 50, 10, 60);
    let out = pooled(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "1000"],
    );
    a.signal("TERM");
    let run = a.finish();
    let resets = u(&out, "resets");
    // 99.9%: mean 500, sd sqrt(1000 * 0.25) = 15.8, z = 3.29.
    assert!(
        (448..=552).contains(&resets),
        "{resets} resets of 1000: {out}"
    );
    assert_eq!(u(&out, "succeeded") + resets, 1000, "{out}");
    assert_eq!(
        u(&out, "bytes_before_reset"),
        0,
        "no byte of a reset answer: {out}"
    );
    let r = run.report();
    assert_eq!(u(r, "requests_seen"), 1000, "{r}");
    for f in ["requests_selected", "resets_issued", "resets_observed"] {
        assert_eq!(u(r, f), resets, "{f}: {r}");
    }
    assert_eq!(u(r, "proxy_accepted"), 0, "{r}");
}

/// Shown: exact selection at 30% over 1000 requests on 10 persistent connections resets
/// exactly 300; the caller, requests_selected, resets_issued and resets_observed agree.
#[test]
fn exact_selection_resets_exactly_thirty_percent_of_pooled_requests() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = agent(
        &lab,
        &[
            "--toxicity",
            "30",
            "--selection",
            "exact",
            "--reset-timeout",
            "10",
            "--total-chaos-duration",
            "60",
        ],
    );
    let out = pooled(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "1000", "--connections", "10"],
    );
    a.signal("TERM");
    let run = a.finish();
    assert_eq!(run.code(), Some(3), "stopped by SIGTERM: {}", run.stderr);
    assert_eq!(u(&out, "resets"), 300, "{out}");
    assert_eq!(u(run.report(), "requests_seen"), 1000);
    assert_counts_agree(&run, 300);
}

/// Shown: connections a pool opened before the window get their requests reset in it.
#[test]
fn connections_opened_before_the_window_are_reset_in_it() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut caller = lab
        .caller
        .command(bin("pooled-caller"))
        .args([
            "--url",
            &lab.url(false, 80, "/"),
            "--connections",
            "5",
            "--requests",
            "5",
        ])
        .arg("--warmup")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pooled-caller");
    // Wait for the warm pool ({"warm": 5} on stderr), then open the window.
    let mut err = caller.stderr.take().expect("stderr");
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("\"warm\"") {
        assert_eq!(err.read(&mut byte).expect("read"), 1, "caller ended early");
        seen.push(byte[0]);
    }
    let mut a = fault(&lab, 100, 50, 30);
    caller
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let out = caller.wait_with_output().expect("caller ends");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    a.signal("TERM");
    let run = a.finish();
    assert_eq!(
        u(&v, "warm_resets"),
        5,
        "every pre-window connection reset: {v}"
    );
    assert_eq!(u(run.report(), "resets_observed"), 5, "{}", run.report());
}

/// Shown: the delay from a request's first byte to its RST, both stamped by the kernel, has
/// its p99 within 2 ms of RESET_TIMEOUT at about 200 selected requests per second.
#[test]
fn reset_delay_p99_within_two_ms_at_200_requests_per_second() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 100, 50, 60);
    // 10 connections, each reset 50 ms into every request and reopened: ~200 requests/s.
    let out = pooled(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &[
            "--connections",
            "10",
            "--requests",
            "100000",
            "--duration-s",
            "3",
        ],
    );
    a.signal("TERM");
    let run = a.finish();
    let rate = u(&out, "resets") as f64 / out["elapsed_s"].as_f64().unwrap();
    assert!(rate >= 150.0, "{rate} selected requests/s: {out}");
    let d = &run.report()["reset_delay_ms"];
    println!("{rate:.0} resets/s; kernel delay {d}");
    assert!(d["samples"].as_u64().unwrap() >= 400, "{d}");
    assert!(d["p50"].as_f64().unwrap() >= 50.0, "never early: {d}");
    assert!(d["p99"].as_f64().unwrap() <= 52.0, "p99 within 2 ms: {d}");
}

/// One request on a raw keep-alive connection: (first byte -> outcome, response bytes, reset?).
fn raw_request(s: &mut TcpStream, path: &str) -> (Duration, usize, bool) {
    let t = Instant::now();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write");
    read_answer(s, t)
}

fn read_answer(s: &mut TcpStream, t: Instant) -> (Duration, usize, bool) {
    read_answers(s, t, 1)
}

/// Reads until `n` answers arrived whole (pipelined answers may share one read), the
/// connection closed, or a reset: (elapsed, bytes, reset?).
fn read_answers(s: &mut TcpStream, t: Instant, n: usize) -> (Duration, usize, bool) {
    const BODY: &str = "hello from the target service";
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (t.elapsed(), got.len(), false),
            Ok(k) => {
                got.extend_from_slice(&buf[..k]);
                if String::from_utf8_lossy(&got).matches(BODY).count() >= n {
                    return (t.elapsed(), got.len(), false);
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return (t.elapsed(), got.len(), true);
            }
            Err(e) => panic!("read: {e} after {} bytes", got.len()),
        }
    }
}

/// Runs `f` with a TCP connection to the VM's port 80 opened from the caller namespace.
fn in_caller<T: Send>(lab: &Lab, v6: bool, f: impl FnOnce(TcpStream) -> T + Send) -> T {
    let ns = lab.caller.name().to_owned();
    std::thread::scope(|sc| {
        sc.spawn(move || {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let addr: SocketAddr = if v6 {
                format!("[{VM_V6}]:80")
            } else {
                format!("{VM_V4}:80")
            }
            .parse()
            .unwrap();
            let s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            f(s)
        })
        .join()
        .expect("caller thread")
    })
}

/// Shown: `downstream` lets the service see the request and withholds every byte of its
/// answer; `upstream` withholds the request: the service never sees it.
#[test]
fn stream_modes_on_a_persistent_connection() {
    if !require_root() {
        return;
    }
    for stream in ["downstream", "upstream"] {
        let lab = Lab::new();
        let log = std::env::temp_dir().join(format!("{}-svc.log", lab.vm.name()));
        let svc = Service::start(&lab.vm, 80, Some(&log));
        let mut a = agent(
            &lab,
            &[
                "--toxicity",
                "50",
                "--selection",
                "exact",
                "--reset-timeout",
                "200",
                "--stream",
                stream,
                "--total-chaos-duration",
                "30",
            ],
        );
        // Exact 50%: the first request passes, the second is selected.
        let (first, second) = in_caller(&lab, false, |mut s| {
            let first = raw_request(&mut s, "/first");
            let second = raw_request(&mut s, "/second");
            (first, second)
        });
        a.signal("TERM");
        let run = a.finish();
        assert!(
            !first.2 && first.1 > 0,
            "{stream}: the first request is answered"
        );
        assert!(second.2, "{stream}: the second is reset: {second:?}");
        assert_eq!(second.1, 0, "{stream}: no byte of its answer");
        assert!(
            second.0 >= Duration::from_millis(200),
            "{stream}: {second:?}"
        );
        let seen = svc.seen();
        assert!(seen.contains(&"/first".to_owned()), "{seen:?}");
        assert_eq!(
            seen.contains(&"/second".to_owned()),
            stream == "downstream",
            "{stream}: the service saw {seen:?}"
        );
        let r = run.report();
        assert_eq!(u(r, "requests_seen"), 2, "{r}");
        assert_eq!(u(r, "requests_selected"), 1, "{r}");
        assert_eq!(u(r, "resets_observed"), 1, "{r}");
        // The caller retransmits a request the upstream mode dropped: not a second request.
        assert_eq!(u(r, "requests_absorbed"), 0, "{stream}: {r}");
        lab.assert_clean();
        drop(svc);
        let _ = std::fs::remove_file(&log);
    }
}

/// Edges: pipelined requests in one segment are one turn; a request split over segments is
/// counted once; a request sent while its connection's reset is pending shares that reset.
#[test]
fn pipelined_split_and_pending_requests() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = agent(&lab, &["--toxicity", "0", "--total-chaos-duration", "30"]);
    in_caller(&lab, false, |mut s| {
        // Two requests in one write: one turn, answered twice.
        s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (_, _, reset) = read_answers(&mut s, Instant::now(), 2);
        assert!(!reset);
        // One request in two segments.
        s.write_all(b"GET /c HTTP/1.1\r\nHo").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"st: x\r\n\r\n").unwrap();
        let (_, _, reset) = read_answer(&mut s, Instant::now());
        assert!(!reset);
    });
    a.signal("TERM");
    let run = a.finish();
    assert_eq!(u(run.report(), "requests_seen"), 2, "{}", run.report());

    let mut a = fault(&lab, 100, 300, 30);
    let (t, bytes, reset) = in_caller(&lab, false, |mut s| {
        let t = Instant::now();
        s.write_all(b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Sent before the answer (which is withheld): shares the pending reset.
        s.write_all(b"GET /e HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_answer(&mut s, t)
    });
    assert!(
        reset && bytes == 0 && t >= Duration::from_millis(300),
        "{t:?} {bytes} {reset}"
    );
    a.signal("TERM");
    let run = a.finish();
    let r = run.report();
    assert_eq!(u(r, "requests_selected"), 1, "{r}");
    assert_eq!(u(r, "requests_absorbed"), 1, "{r}");
    assert_eq!(u(r, "resets_observed"), 1, "{r}");
}

/// Edge: the service closes the connection itself while the reset is pending (it answers
/// `Connection: close` and sends FIN): the answer and the FIN are withheld, and the caller
/// still gets one effective reset. The tc drop is a local drop to the service's TCP, so its
/// send pointer stays at the withheld data and its RST already carries the caller's next
/// expected sequence number; the program moves an RST only when it does not
/// (`resets_rewritten`), which this path does not need.
#[test]
fn the_service_closing_first_still_gives_one_reset() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 100, 300, 30);
    let (t, bytes, reset) = in_caller(&lab, false, |mut s| {
        let t = Instant::now();
        s.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_answer(&mut s, t)
    });
    a.signal("TERM");
    let run = a.finish();
    assert!(reset, "the caller saw a reset, not the FIN");
    assert_eq!(bytes, 0);
    assert!(t >= Duration::from_millis(300), "{t:?}");
    let r = run.report();
    assert_eq!(u(r, "resets_observed"), 1, "{r}");
    assert!(
        u(r, "withheld_segments") >= 1,
        "the answer was held back: {r}"
    );
}

/// Edge: IPv6 callers are selected and reset the same way.
#[test]
fn ipv6_requests_are_reset() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 100, 100, 30);
    let out = pooled(&lab.caller, &lab.url(true, 80, "/"), &["--requests", "20"]);
    a.signal("TERM");
    let run = a.finish();
    assert_eq!(u(&out, "resets"), 20, "{out}");
    assert_eq!(u(run.report(), "resets_observed"), 20, "{}", run.report());
}

/// Edge: TLS (or any non-HTTP/1 first payload) is not parsed as requests: the flow is counted
/// as opaque and selected once, as a whole, like the connection unit.
#[test]
fn non_http_flows_are_opaque_and_selected_whole() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 100, 200, 30);
    let (t, _, reset) = in_caller(&lab, false, |mut s| {
        let t = Instant::now();
        // A TLS ClientHello record header and a few bytes.
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0])
            .unwrap();
        read_answer(&mut s, t)
    });
    a.signal("TERM");
    let run = a.finish();
    assert!(reset && t >= Duration::from_millis(200), "{t:?} {reset}");
    let r = run.report();
    assert_eq!(u(r, "flows_opaque"), 1, "{r}");
    assert_eq!(u(r, "requests_selected"), 1, "{r}");
    assert_eq!(u(r, "resets_observed"), 1, "{r}");
}

/// Edge: a request selected just before the window ends is still reset on time after it.
#[test]
fn pending_resets_are_carried_out_after_the_window() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut a = fault(&lab, 100, 1500, 1);
    let (t, _, reset) = in_caller(&lab, false, |mut s| raw_request(&mut s, "/late"));
    let run = a.finish();
    assert_eq!(run.code(), Some(0), "{}", run.stderr);
    assert!(reset && t >= Duration::from_millis(1500), "{t:?} {reset}");
    assert_eq!(u(run.report(), "resets_observed"), 1, "{}", run.report());
    assert_eq!(run.report()["cleanup"]["verified"], true);
    lab.assert_clean();
}

/// Shown: on a kernel that cannot destroy sockets (assumed here with
/// --assume-no-sock-destroy), preflight says so and the agent falls back to userspace mode,
/// where the proxy relays every connection and selects per request.
#[test]
fn without_sock_destroy_the_request_unit_runs_in_userspace() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let out = lab
        .vm
        .command(bin("reset-agent"))
        .args(["preflight", "--unit", "request", "--assume-no-sock-destroy"])
        .output()
        .expect("preflight");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("WARN  sock_destroy"), "{text}");
    assert!(
        text.contains("path: mode userspace") && text.contains("unit request"),
        "{text}"
    );
    let mut a = Agent::spawn_with(
        &lab.vm,
        &bin("reset-agent"),
        &[("RESET_AGENT_ASSUME_NO_SOCK_DESTROY", "true")],
        &[
            "--unit",
            "request",
            "--toxicity",
            "50",
            "--selection",
            "exact",
            "--reset-timeout",
            "10",
            "--total-chaos-duration",
            "30",
        ],
    );
    a.wait_active();
    let v = pooled(
        &lab.caller,
        &lab.url(false, 80, "/"),
        &["--requests", "100", "--connections", "2"],
    );
    a.signal("TERM");
    let run = a.finish();
    let r = run.report();
    assert_eq!(u(&v, "resets"), 50, "{v}");
    assert_eq!(r["mode"], "userspace", "{r}");
    assert!(
        r["mode_reason"]
            .as_str()
            .unwrap_or("")
            .contains("assume-no-sock-destroy"),
        "{r}"
    );
    assert_eq!(u(r, "requests_seen"), 100, "{r}");
    assert_eq!(u(r, "requests_selected"), 50, "{r}");
    assert_eq!(u(r, "resets_issued"), 50, "{r}");
}
