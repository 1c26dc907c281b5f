//! End to end: the controller's Prometheus probe against a real Prometheus (Debian's package,
//! started here with its own config and data directory in a temporary folder) that scrapes
//! real targets.
//!
//! Shown:
//! - A retrying caller in the lab exports `reset_peer_caller_retries_total`; Prometheus
//!   scrapes it every second. At TOXICITY 0 the assertion "the callers retried"
//!   (`sum(increase(...[1m])) > 0`, evaluated continuously) fails at every evaluation: verdict
//!   fail, exit code 3. At TOXICITY 50 the same assertion, evaluated once at the end of the
//!   window, passes with the number of retries Prometheus saw: verdict pass, exit code 0.
//! - Each way an evaluation can give no value ends in verdict error, exit code 4, and a
//!   message that says what to fix, in the report and in the table: Prometheus unreachable, a
//!   query it refuses, an empty vector, several series (Prometheus scraping itself as two
//!   jobs; the stand-in agent on this host, so no root is needed for these).
use std::time::Duration;

use reset_tests::{
    bin,
    ctl::{Controller, Finished, run_args_at, run_bounded},
    fake_agent,
    lab::{Lab, VM_V4},
    metrics::parse,
    proc::{BackgroundCaller, fetch},
    prom::Prometheus,
    require_root,
    sim::{TempDir, Vcsim},
};
use serde_json::Value;

/// Exit code of `run` when every VM is fine but a probe's verdict is fail.
const EXIT_PROBE_FAILED: i32 = 3;
/// Exit code of `run` when every VM is fine but a probe could not be evaluated.
const EXIT_PROBE_ERROR: i32 = 4;
/// The caller's metrics endpoint, inside the lab's caller namespace.
const CALLER_METRICS: &str = "127.0.0.1:9101";
const RETRIES: &str = "sum(increase(reset_peer_caller_retries_total[1m]))";

fn prometheus_installed() -> bool {
    if Prometheus::installed() {
        return true;
    }
    panic!("Debian's prometheus package is not installed: run `cargo xtask setup`");
}

/// `run` on the lab VM `vm-a` with the real agent at `toxicity` for 4 s, with the Prometheus
/// probe `probe`; the report on stdout.
fn run_on_lab(sim: &Vcsim, toxicity: &str, probe: &[&str]) -> (Finished, Value) {
    let agent = bin("reset-agent");
    let args = run_args_at(agent.to_str().unwrap(), toxicity, "4", probe);
    let out = Controller::spawn(sim.controller(&args)).finish(Duration::from_secs(90));
    let v = out.report();
    eprintln!("prom_probe: {}", v["prom_probe"]);
    (out, v)
}

#[test]
fn the_probe_fails_and_passes_on_the_callers_retries() {
    if !require_root() || !prometheus_installed() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let _caller = BackgroundCaller::start(
        &lab.caller,
        &format!("http://{VM_V4}/"),
        &[
            "--requests",
            "100000",
            "--duration-s",
            "120",
            "--retries",
            "6",
            "--backoff-ms",
            "50",
            "--concurrency",
            "2",
            "--interval-ms",
            "50",
            "--metrics-listen",
            CALLER_METRICS,
        ],
    );
    let prom = Prometheus::builder()
        .scrape("caller", &[CALLER_METRICS])
        .inside(&lab.caller)
        .start();
    // increase() needs two samples of the counter: until then the query is an empty vector.
    prom.wait_value(RETRIES, Duration::from_secs(20), |v| v == 0.0)
        .unwrap_or_else(|e| panic!("{e}"));
    let sim = Vcsim::builder()
        .vm("vm-a", &lab)
        .inside(&lab.caller)
        .start();

    // No reset, no retry: "the callers retried" does not hold at any evaluation.
    let (out, v) = run_on_lab(
        &sim,
        "0",
        &[
            "--prom-probe-url",
            &prom.url,
            "--prom-probe-query",
            RETRIES,
            "--prom-probe-comparator",
            ">",
            "--prom-probe-value",
            "0",
            "--prom-probe-interval",
            "500",
        ],
    );
    assert_eq!(out.code(), Some(EXIT_PROBE_FAILED), "{v}\n{}", out.stderr);
    assert_eq!(v["vms"][0]["status"], "ok", "{v}");
    let p = &v["prom_probe"];
    assert_eq!(
        (&p["verdict"], &p["mode"], &p["comparator"]),
        (&"fail".into(), &"continuous".into(), &">".into()),
        "{p}"
    );
    let evaluations = p["evaluations"].as_u64().unwrap();
    assert!(evaluations >= 4, "every 500 ms through a 4 s window: {p}");
    assert_eq!(p["not_held"].as_u64(), Some(evaluations), "{p}");
    assert_eq!(
        (p["errors"].as_u64(), p["last_value"].as_f64()),
        (Some(0), Some(0.0)),
        "{p}"
    );
    assert_eq!(p["url"], prom.url.as_str());

    // Half the connections reset: the caller retries, Prometheus counts it, the probe passes.
    let (out, v) = run_on_lab(
        &sim,
        "50",
        &[
            "--prom-probe-url",
            &prom.url,
            "--prom-probe-query",
            RETRIES,
            "--prom-probe-comparator",
            "gt",
            "--prom-probe-value",
            "0",
            "--prom-probe-mode",
            "end",
        ],
    );
    assert_eq!(out.code(), Some(0), "{v}\n{}", out.stderr);
    let p = &v["prom_probe"];
    assert_eq!(
        (&p["verdict"], &p["mode"]),
        (&"pass".into(), &"end".into()),
        "{p}"
    );
    assert_eq!(
        (p["evaluations"].as_u64(), p["held"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    let retries = p["last_value"].as_f64().unwrap();
    assert!(retries > 0.0, "{p}");
    let a = &v["vms"][0]["agent_report"];
    assert!(a["resets_observed"].as_u64().unwrap() > 0, "{a}");
    let text = fetch(&lab.caller, &format!("http://{CALLER_METRICS}/metrics")).unwrap();
    let made = parse(&text)
        .unwrap()
        .value("reset_peer_caller_retries_total", &[])
        .unwrap();
    assert!(
        made >= retries.floor(),
        "Prometheus saw no more retries than the caller made ({made}): {p}"
    );
    lab.assert_clean();
}

/// A free port on 127.0.0.1 (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn every_evaluation_that_gives_no_value_is_an_error_that_says_why() {
    if !prometheus_installed() {
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    // Two jobs on one real target (Prometheus' own /metrics): `up` has two series.
    let prom = Prometheus::builder()
        .listen(&listen)
        .scrape("self", &[&listen])
        .scrape("self-again", &[&listen])
        .start();
    for job in ["self", "self-again"] {
        prom.wait_scraped(job, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let sim = Vcsim::builder().host_vm("web-01").start();
    let dir = TempDir::new("prom-probe-errors").unwrap();
    let gone = format!("http://127.0.0.1:{}", free_port());
    for (url, query, kind, says) in [
        (gone.as_str(), "sum(up)", "unreachable", "is unreachable"),
        (
            prom.url.as_str(),
            "sum(rate(up[1m])",
            "bad_query",
            "parse error",
        ),
        (
            prom.url.as_str(),
            "up{job=\"no-such-job\"}",
            "empty_vector",
            "returned an empty vector",
        ),
        (
            prom.url.as_str(),
            "up",
            "several_series",
            "returned 2 series",
        ),
    ] {
        let report = dir.path().join(format!("{kind}.json"));
        let agent = fake_agent();
        let out = run_bounded(
            sim.controller(&[
                "run",
                "--vm-name",
                "web-01",
                "--agent",
                agent.to_str().unwrap(),
                "--total-chaos-duration",
                "1",
                "--report",
                report.to_str().unwrap(),
                "--prom-probe-url",
                url,
                "--prom-probe-query",
                query,
                "--prom-probe-comparator",
                ">",
                "--prom-probe-value",
                "0",
                "--prom-probe-mode",
                "end",
            ]),
            Duration::from_secs(30),
        );
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let p = &v["prom_probe"];
        eprintln!("{kind}: {p}");
        assert_eq!(
            out.code(),
            Some(EXIT_PROBE_ERROR),
            "{kind}: {}{}",
            out.stdout,
            out.stderr
        );
        assert_eq!(v["vms"][0]["status"], "ok", "{kind}: {v}");
        assert_eq!(
            (&p["verdict"], p["errors"].as_u64()),
            (&"error".into(), Some(1)),
            "{p}"
        );
        let e = &p["error"];
        assert_eq!(e["kind"], kind, "{p}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(says), "{kind}: {message}");
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("prometheus probe "))
            .unwrap_or_else(|| panic!("no probe line in the table:\n{}", out.stdout));
        assert!(
            line.contains(": ERROR (1 evaluation: 0 held, 0 did not, 1 error; ")
                && line.contains(message),
            "{line}"
        );
    }
    // The several-series message names them, so the user sees what to aggregate.
    let several: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("several_series.json")).unwrap(),
    )
    .unwrap();
    let m = several["prom_probe"]["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("job=\"self\"") && m.contains("job=\"self-again\"") && m.contains("sum(...)"),
        "{m}"
    );
    assert!(
        prom.log().is_empty() || !prom.log().contains("level=error"),
        "{}",
        prom.log()
    );
}
