//! A reset-agent run inside the bench's VM namespace, with its install and remove times, its
//! report, and its CPU and memory as /proc reports them.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use reset_tests::lab::Netns;
use serde_json::Value;

use super::procs::{Bg, Paths};

/// reset-agent settings for one run.
#[derive(Clone, Debug)]
pub struct AgentArgs {
    pub mode: &'static str,
    /// "request" or "connection".
    pub unit: &'static str,
    pub toxicity: f64,
    pub reset_timeout_ms: u64,
    pub selection: &'static str,
}

/// A reset-agent run with its timings and report.
pub struct Agent {
    bg: Bg,
    report_path: PathBuf,
}

/// What one agent run measured about itself.
pub struct AgentEnd {
    pub report: Option<Value>,
    /// spawn -> "fault active".
    pub install: Duration,
    /// SIGTERM -> exit.
    pub remove: Option<Duration>,
    pub output: String,
}

impl Agent {
    pub fn start(vm: &Netns, paths: &Paths, a: &AgentArgs, tag: &str) -> anyhow::Result<Agent> {
        let report_path = paths.out.join(format!("tmp/agent-{tag}.json"));
        let _ = std::fs::remove_file(&report_path);
        let args: Vec<String> = [
            "run",
            "--toxicity",
            &a.toxicity.to_string(),
            "--reset-timeout",
            &a.reset_timeout_ms.to_string(),
            "--total-chaos-duration",
            "900",
            "--selection",
            a.selection,
            "--mode",
            a.mode,
            "--unit",
            a.unit,
            "--stream",
            "downstream",
            "--proxy-port",
            "8080",
            "--target-service-port",
            "80",
            "--network-interface",
            "ens160",
            "--report",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([report_path.to_string_lossy().into_owned()])
        .collect();
        let bg = Bg::start(
            vm,
            &paths.bin.join("reset-agent"),
            &args,
            &[("RESET_AGENT_LOG", "info")],
            "fault active",
            Duration::from_secs(30),
        )?;
        Ok(Agent { bg, report_path })
    }

    pub fn pid(&self) -> Option<u32> {
        self.bg.pid()
    }

    /// Aborts the window (SIGTERM: held connections are reset at once) and reads the report.
    pub fn stop(mut self) -> AgentEnd {
        let install = self
            .bg
            .ready_at
            .map(|r| r - self.bg.spawned_at)
            .unwrap_or_default();
        let sent = Instant::now();
        let remove = self.bg.terminate(Duration::from_secs(30)).map(|t| t - sent);
        std::thread::sleep(Duration::from_millis(30));
        let report = std::fs::read_to_string(&self.report_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let _ = std::fs::remove_file(&self.report_path);
        AgentEnd {
            report,
            install,
            remove,
            output: self.bg.output(),
        }
    }
}

/// utime+stime (seconds) and VmHWM (KiB) of a process.
pub fn cpu_and_hwm(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime 11, stime 12 (man 5 proc: 14, 15).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = crate::sh::output(std::process::Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks as f64 / hz, hwm))
}
