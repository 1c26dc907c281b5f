//! The demo's controller run: `reset-controller run` against vcsim inside the caller
//! namespace (settings in its environment, as an operator would export them), with the HTTP
//! probe and the Prometheus probe (did the callers retry?), its stderr relayed with a prefix,
//! and its life followed: the fault active in the VM, the report written, the metrics linger
//! cut short.
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::ExitStatus,
    sync::atomic::{AtomicBool, Ordering},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reset_tests::{bin, guard::Guard, lab::Lab, prom::Prometheus, sim::Vcsim};
use serde_json::Value;

use super::{AGENT_METRICS_LISTEN, DemoArgs, METRICS, VM, VM_V4};

/// The Prometheus probe's assertion: the retrying caller retried during the window.
pub const RETRIES_QUERY: &str =
    "sum(increase(reset_peer_caller_retries_total{job=\"retrying-caller\"}[30s]))";

/// A running `reset-controller run`, killed on drop.
pub struct Run {
    child: Guard,
    stdout: Option<JoinHandle<String>>,
}

impl Run {
    pub fn start(
        vcsim: &Vcsim,
        prometheus: &Prometheus,
        args: &DemoArgs,
        report: &Path,
    ) -> anyhow::Result<Run> {
        let duration = args.duration.to_string();
        let agent = bin("reset-agent");
        let report = report.display().to_string();
        let mut cmd = vcsim.controller(&[
            "run",
            "--agent",
            &agent.display().to_string(),
            "--report",
            &report,
            "--probe-url",
            &format!("http://{VM_V4}/health"),
            "--probe-interval",
            "250",
            "--probe-max-error-percent",
            "5",
            "--metrics-listen",
            METRICS,
            "--metrics-linger",
            "30",
        ]);
        cmd.env_remove("RUST_LOG")
            .env("GOVC_INSECURE", "true")
            .env("VM_NAME", VM)
            // The product's default unit; the test harness's controller command defaults its
            // runs to the connection unit, the demo shows what users get.
            .env("UNIT", "request")
            .env("TOXICITY", &args.toxicity)
            .env("TOTAL_CHAOS_DURATION", &duration)
            .env("RESET_TIMEOUT", "2000")
            .env("AGENT_METRICS_LISTEN", AGENT_METRICS_LISTEN)
            .env("PROM_PROBE_URL", &prometheus.url)
            .env("PROM_PROBE_QUERY", RETRIES_QUERY)
            .env("PROM_PROBE_COMPARATOR", ">")
            .env("PROM_PROBE_VALUE", "0")
            .env("PROM_PROBE_MODE", "end");
        eprintln!(
            "demo: reset-controller run: TOXICITY {}% of requests, RESET_TIMEOUT 2000 ms, TOTAL_CHAOS_DURATION {} s on {VM}",
            args.toxicity.trim_end_matches('%'),
            args.duration
        );
        let mut child = Guard::try_spawn(&mut cmd, "reset-controller")?;
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [controller] {line}");
            }
        });
        let mut stdout = child.stdout.take().expect("piped stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        Ok(Run {
            child,
            stdout: Some(stdout),
        })
    }

    /// Waits until the fault is active: the agent's table exists in the VM, then its window
    /// is open in the kernel, so every caller connection counts inside the window.
    pub fn wait_active(&mut self, lab: &Lab, interrupted: &AtomicBool) -> anyhow::Result<Instant> {
        let t0 = Instant::now();
        while !lab.vm.nft_ruleset().contains("reset_peer") {
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted before the fault started");
            }
            if let Some(st) = self.child.try_wait()? {
                bail!(
                    "reset-controller exited ({st}) before the fault started: {}",
                    self.stdout()
                );
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the fault did not start within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        while !window_open(lab) {
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("the fault window did not open within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "demo: fault active after {:.1} s; starting callers",
            t0.elapsed().as_secs_f64()
        );
        Ok(Instant::now())
    }

    /// Waits for the controller's report file (written when the run ends), bounded.
    pub fn wait_report(&mut self, path: &Path, interrupted: &AtomicBool) -> anyhow::Result<Value> {
        let t0 = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                return Ok(v);
            }
            if interrupted.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            if let Some(st) = self.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(200));
                return std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .with_context(|| format!("reset-controller exited ({st}) without a report"));
            }
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("no controller report within 120 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ctrl-C: the controller aborts (terminates the agent, cleans the guest) and exits.
    pub fn abort(&mut self) {
        self.child.try_signal("INT");
        let _ = self.child.wait();
    }

    /// Ends the metrics linger (SIGTERM) and returns the exit code and the table it printed.
    pub fn stop(mut self) -> anyhow::Result<(Option<i32>, String)> {
        self.child.try_signal("TERM");
        let status: ExitStatus = self.child.wait()?;
        Ok((status.code(), self.stdout()))
    }

    /// What it printed on stdout (once it has exited).
    fn stdout(&mut self) -> String {
        self.stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

/// Whether the agent's window is open: its CONTROL map holds state 1 (kernel mode), or, in
/// userspace mode (no map), its table exists.
fn window_open(lab: &Lab) -> bool {
    let out = lab
        .vm
        .output("bpftool", &["-j", "map", "dump", "name", "CONTROL"]);
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(entries)) if !entries.is_empty() => {
            entries[0]["value"][0].as_str() == Some("0x01")
        }
        _ => lab.vm.nft_ruleset().contains("reset_peer"),
    }
}
