//! End to end: `reset-controller run --probe-url ... --metrics-listen ...` against one
//! namespace VM through the vCenter simulator. The VM's service is reachable only from
//! the lab's caller namespace, so vcsim and the controller both run there (vcsim starts
//! guest programs with `ip netns exec <vm-ns>`, which works from any namespace).
//!
//! Shown: at TOXICITY 100 the probe counts resets as resets, equal to the resets the
//! kernel observed, its verdict fails against a 5% budget and the controller exits 3;
//! at TOXICITY 0 (probing over IPv6) the verdict passes and it exits 0; the metrics
//! endpoint, scraped with curl from the caller namespace while the controller lingers,
//! parses as Prometheus text and its counters equal the JSON report's.
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reset_tests::{bin, lab::Lab, proc::Service, require_root, sim::Vcsim};
use serde_json::Value;

const VC_PASSWORD: &str = "vc-Probe-Secret-71c";
const GUEST_PASSWORD: &str = "guest-Probe-Secret-2e9";
const METRICS_ADDR: &str = "127.0.0.1:9464";
/// Exit code of `run` when every VM is fine but the probe's verdict is fail.
const EXIT_PROBE_FAILED: i32 = 3;

/// The simulator, run inside the lab's caller namespace, serving the lab's VM as `vm`.
fn start_vcsim(vm: &str, lab: &Lab) -> Vcsim {
    let creds = reset_tests::sim::Credentials {
        guest: ("root", GUEST_PASSWORD),
        vcenter: ("admin", VC_PASSWORD),
    };
    Vcsim::start(Some(&lab.caller), &[(vm, &lab.vm)], &creds, "ctl-probe").expect("start vcsim")
}

/// A controller run inside the caller namespace, its stdout and stderr pumped.
struct Controller {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr_lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Controller {
    fn spawn(lab: &Lab, sim: &Vcsim, args: &[&str]) -> Controller {
        let mut child = lab
            .caller
            .command(bin("reset-controller"))
            .args(["--output", "json", "run", "--vm-name", "vm"])
            .arg("--agent")
            .arg(bin("reset-agent"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GOVC_URL", &sim.url)
            .env("GOVC_USERNAME", "admin")
            .env("GOVC_PASSWORD", VC_PASSWORD)
            .env("VM_USER_NAME", "root")
            .env("VM_PASSWORD", GUEST_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn reset-controller");
        let (out_tx, stdout) = mpsc::channel();
        let mut out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            let _ = out_tx.send(s);
        });
        let (err_tx, stderr_lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = err_tx.send(line);
            }
        });
        Controller {
            child,
            stdout,
            stderr_lines,
            stderr: Vec::new(),
        }
    }

    /// Wait (bounded) for a stderr line containing `needle`.
    fn wait_stderr(&mut self, needle: &str, limit: Duration) {
        let t = Instant::now();
        while t.elapsed() < limit {
            match self.stderr_lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.stderr.push(line);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.child.kill();
        panic!(
            "no stderr line with {needle:?} within {limit:?}:\n{}",
            self.stderr.join("\n")
        );
    }

    /// Wait (bounded) for exit; returns the exit code and the JSON on stdout.
    fn finish(mut self, limit: Duration) -> (i32, Value, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!("reset-controller did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = self
            .stdout
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default();
        self.stderr.extend(self.stderr_lines.try_iter());
        let stderr = self.stderr.join("\n");
        let v: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{e}: stdout {stdout:?}\nstderr:\n{stderr}"));
        (status.code().unwrap_or(-1), v, stderr)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Strictly parse Prometheus/OpenMetrics text: every line is a `# HELP|TYPE|UNIT|EOF`
/// comment or `name{labels} value`; returns `name{sorted labels}` -> value.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(c) = line.strip_prefix("# ") {
            let kw = c.split(' ').next().unwrap_or("");
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kw),
                "bad comment {line:?}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let ok_name = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        let key = match series.split_once('{') {
            None => {
                assert!(ok_name(series), "bad name in {line:?}");
                series.to_string()
            }
            Some((name, rest)) => {
                assert!(ok_name(name), "bad name in {line:?}");
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
                let mut labels: Vec<String> = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        assert!(ok_name(k), "bad label name in {line:?}");
                        format!("{k}={}", v.trim_end_matches('"'))
                    })
                    .collect();
                labels.sort();
                format!("{name}{{{}}}", labels.join(","))
            }
        };
        out.insert(key, value);
    }
    out
}

fn scrape(lab: &Lab) -> BTreeMap<String, f64> {
    let out = lab.caller.output(
        "curl",
        &[
            "-sS",
            "--fail",
            "--max-time",
            "5",
            &format!("http://{METRICS_ADDR}/metrics"),
        ],
    );
    assert!(
        out.status.success(),
        "scrape failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 exposition");
    assert!(text.ends_with("# EOF\n"), "{text}");
    parse_metrics(&text)
}

fn metric(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no series {key} in {m:#?}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// Run the controller with the probe and metrics, scrape during the linger, and return
/// (exit code, report, scrape, stderr).
fn run_with_probe(
    lab: &Lab,
    toxicity: &str,
    probe_url: &str,
) -> (i32, Value, BTreeMap<String, f64>, String) {
    let sim = start_vcsim("vm", lab);
    let mut c = Controller::spawn(
        lab,
        &sim,
        &[
            "--toxicity",
            toxicity,
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "4",
            "--probe-url",
            probe_url,
            "--probe-interval",
            "100",
            "--probe-timeout",
            "3000",
            "--probe-max-error-percent",
            "5",
            "--metrics-listen",
            METRICS_ADDR,
            "--metrics-linger",
            "20",
        ],
    );
    c.wait_stderr("metrics: serving http://", Duration::from_secs(20));
    // Live: the endpoint answers (and parses) while the run goes on.
    scrape(lab);
    c.wait_stderr("serving final values", Duration::from_secs(60));
    let scraped = scrape(lab);
    // The linger is cut short by SIGTERM (the abort flag), the exit code stays the run's.
    let st = Command::new("kill")
        .args(["-TERM", &c.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, v, stderr) = c.finish(Duration::from_secs(15));
    eprintln!(
        "probe: {}\nagent: {}",
        v["probe"], v["vms"][0]["agent_report"]
    );
    (code, v, scraped, stderr)
}

/// The scrape's counters equal the JSON report's.
fn assert_metrics_match(m: &BTreeMap<String, f64>, v: &Value) {
    let a = &v["vms"][0]["agent_report"];
    for f in [
        "flows_seen",
        "flows_selected",
        "resets_issued",
        "resets_observed",
    ] {
        assert_eq!(
            metric(m, &format!("reset_peer_{f}_total{{vm=vm}}")),
            u(&a[f]) as f64,
            "{f}"
        );
    }
    assert_eq!(metric(m, "reset_peer_vm_phase{phase=done,vm=vm}"), 1.0);
    let p = &v["probe"];
    let url = p["url"].as_str().unwrap();
    for (series, field) in [
        ("attempts", "attempts"),
        ("ok", "ok"),
        ("resets", "resets"),
        ("other_errors", "other_errors"),
    ] {
        assert_eq!(
            metric(m, &format!("reset_peer_probe_{series}_total{{url={url}}}")),
            u(&p[field]) as f64,
            "probe {field}"
        );
    }
    assert_eq!(
        metric(
            m,
            &format!("reset_peer_probe_latency_ms_count{{url={url}}}")
        ),
        u(&p["attempts"]) as f64
    );
    let verdict = if p["verdict"] == "pass" { 1.0 } else { 0.0 };
    assert_eq!(
        metric(m, &format!("reset_peer_probe_verdict{{url={url}}}")),
        verdict
    );
    if let Some(p50) = a["reset_delay_ms"]["p50"].as_f64() {
        assert_eq!(
            metric(m, "reset_peer_reset_delay_ms{quantile=0.5,vm=vm}"),
            p50
        );
    }
}

#[test]
fn probe_fails_at_full_toxicity_and_resets_are_counted_as_resets() {
    if !require_root() {
        return;
    }
    let lab = Lab::new();
    let _svc = Service::start(&lab.vm, 80, None);
    let url = lab.url(false, 80, "/health");
    let (code, v, m, stderr) = run_with_probe(&lab, "100", &url);
    assert_eq!(code, EXIT_PROBE_FAILED, "{v}\n{stderr}");
    assert_eq!(v["vms"][0]["status"], "ok", "{v}");
    let p = &v["probe"];
    assert_eq!(p["url"], url.as_str());
    assert_eq!(p["verdict"], "fail", "{p}");
    assert_eq!(p["max_error_percent"], 5.0);
    let (attempts, ok, resets, other) = (
        u(&p["attempts"]),
        u(&p["ok"]),
        u(&p["resets"]),
        u(&p["other_errors"]),
    );
    assert!(attempts >= 20, "4 s at 100 ms: {p}");
    assert_eq!(ok + resets + other, attempts, "{p}");
    assert_eq!(other, 0, "resets are not other errors: {p}");
    assert!(resets * 2 >= attempts, "most attempts were reset: {p}");
    assert!(p["error_percent"].as_f64().unwrap() > 5.0, "{p}");
    let a = &v["vms"][0]["agent_report"];
    assert_eq!(
        resets,
        u(&a["resets_observed"]),
        "the probe (the only caller) saw every reset the kernel observed: {p}\n{a}"
    );
    let p99 = p["latency_ms"]["p99"].as_f64().unwrap();
    assert!(
        p99 >= 200.0,
        "a reset arrives RESET_TIMEOUT after the request: {p}"
    );
    assert_metrics_match(&m, &v);
}

#[test]
fn probe_passes_at_zero_toxicity_over_ipv6() {
    if !require_root() {
        return;
    }
    let lab = Lab::new();
    let _svc = Service::start(&lab.vm, 80, None);
    let url = lab.url(true, 80, "/health");
    let (code, v, m, stderr) = run_with_probe(&lab, "0", &url);
    assert_eq!(code, 0, "{v}\n{stderr}");
    let p = &v["probe"];
    assert_eq!(p["verdict"], "pass", "{p}");
    assert_eq!(p["error_percent"], 0.0, "{p}");
    assert!(u(&p["attempts"]) >= 20, "{p}");
    assert_eq!(u(&p["ok"]), u(&p["attempts"]), "{p}");
    assert_eq!(u(&p["resets"]), 0, "{p}");
    assert_eq!(u(&v["vms"][0]["agent_report"]["flows_selected"]), 0, "{v}");
    assert_metrics_match(&m, &v);
}
