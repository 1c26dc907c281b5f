//! Processes the tests run inside lab namespaces: the agent, the target service, callers.
//! Each long-lived one holds a [`Guard`] that kills its process on drop. Readiness is a line
//! the process prints, never a sleep.
use std::{
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::guard::{Guard, Pumped};
use crate::lab::Netns;

/// A reset-agent run inside a VM namespace.
pub struct Agent {
    child: Option<Guard>,
    stdout: Pumped,
    stderr: Pumped,
    pub report_path: PathBuf,
}

/// How an agent run ended.
#[derive(Debug)]
pub struct AgentRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub report: Option<Value>,
}

impl AgentRun {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn report(&self) -> &Value {
        self.report
            .as_ref()
            .unwrap_or_else(|| panic!("no report; stderr:\n{}", self.stderr))
    }
    pub fn u64(&self, field: &str) -> u64 {
        self.report()[field]
            .as_u64()
            .unwrap_or_else(|| panic!("report field {field} missing: {}", self.report()))
    }
}

impl Agent {
    /// Starts `reset-agent run ARGS --report <tmp>` in `vm`.
    pub fn spawn(vm: &Netns, args: &[&str]) -> Agent {
        Agent::spawn_exe(vm, &crate::bin("reset-agent"), args)
    }

    /// As [`Agent::spawn`], with another build of the agent (e.g. the dist artifact).
    pub fn spawn_exe(vm: &Netns, exe: &Path, args: &[&str]) -> Agent {
        Agent::spawn_with(vm, exe, &[], args)
    }

    /// As [`Agent::spawn_exe`], with extra environment variables. Agents here run the
    /// connection unit (UNIT=connection) unless the test asks otherwise (`--unit request`, or
    /// UNIT in `env`): the e2e tests written for it stay as they are, and the request unit's
    /// tests say so.
    pub fn spawn_with(vm: &Netns, exe: &Path, env: &[(&str, &str)], args: &[&str]) -> Agent {
        let report_path = std::env::temp_dir().join(format!("{}-report.json", vm.name()));
        let _ = std::fs::remove_file(&report_path);
        let mut child = Guard::spawn(
            vm.command(exe)
                .env("UNIT", "connection")
                .envs(env.iter().copied())
                .arg("run")
                .args(args)
                .arg("--report")
                .arg(&report_path)
                .env("RESET_AGENT_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "reset-agent",
        );
        let stdout = Pumped::new(child.stdout.take().expect("stdout"));
        let stderr = Pumped::new(child.stderr.take().expect("stderr"));
        Agent {
            child: Some(child),
            stdout,
            stderr,
            report_path,
        }
    }

    /// Starts the agent and waits until its fault is active.
    pub fn start(vm: &Netns, args: &[&str]) -> Agent {
        let mut a = Agent::spawn(vm, args);
        a.wait_active();
        a
    }

    pub fn wait_active(&mut self) {
        if !self
            .stderr
            .wait_for("fault active", Duration::from_secs(20))
        {
            let run = self.finish_within(Duration::from_secs(1));
            panic!("agent did not become active: {run:?}");
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal to the agent (the `ip netns exec` wrapper execs, so the pid is the agent's).
    pub fn signal(&self, sig: &str) {
        self.child.as_ref().expect("running").signal(sig);
    }

    /// Waits for exit (killing it after `limit`) and collects output and report.
    pub fn finish_within(&mut self, limit: Duration) -> AgentRun {
        let mut child = self.child.take().expect("not finished yet");
        let status = child.wait_or_kill(limit);
        let report = std::fs::read_to_string(&self.report_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let _ = std::fs::remove_file(&self.report_path);
        AgentRun {
            status,
            stdout: self.stdout.finish(Duration::from_secs(2)),
            stderr: self.stderr.finish(Duration::from_secs(2)),
            report,
        }
    }

    pub fn finish(&mut self) -> AgentRun {
        self.finish_within(Duration::from_secs(60))
    }
}

/// Runs `reset-agent ARGS` to completion in `vm` (for bad-input and cleanup tests).
pub fn agent_once(vm: &Netns, args: &[&str]) -> std::process::Output {
    vm.command(crate::bin("reset-agent"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run reset-agent")
}

/// The sample HTTP service (tests/src/bin/target-service.rs) inside a namespace.
pub struct Service {
    child: Option<Guard>,
    pub log: Option<PathBuf>,
}

impl Service {
    pub fn start(ns: &Netns, port: u16, log: Option<&Path>) -> Service {
        let mut cmd = ns.command(crate::bin("target-service"));
        cmd.args(["--port", &port.to_string()]);
        if let Some(l) = log {
            cmd.arg("--log").arg(l);
        }
        let mut child = Guard::spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            "target-service",
        );
        let stdout = Pumped::new(child.stdout.take().expect("stdout"));
        assert!(
            stdout.wait_for("listening", Duration::from_secs(10)),
            "target-service did not start"
        );
        Service {
            child: Some(child),
            log: log.map(Path::to_path_buf),
        }
    }

    /// Request paths the service has seen.
    pub fn seen(&self) -> Vec<String> {
        let Some(l) = &self.log else {
            return Vec::new();
        };
        std::fs::read_to_string(l)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        drop(self.child.take());
        if let Some(l) = &self.log {
            let _ = std::fs::remove_file(l);
        }
    }
}

/// What curl saw.
#[derive(Debug, Clone)]
pub struct Curl {
    pub exit: i32,
    pub http_code: String,
    pub time_ms: f64,
    pub stderr: String,
}

/// One curl request from `ns` (`-sS`, so the error text is kept).
pub fn curl(ns: &Netns, url: &str) -> Curl {
    curl_with(ns, url, &[])
}

/// As [`curl`], with extra curl options (a later `--max-time` wins over the default 10 s).
pub fn curl_with(ns: &Netns, url: &str, extra: &[&str]) -> Curl {
    let mut args = vec![
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "10",
        "-w",
        "%{http_code} %{time_total}",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = ns.output("curl", &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    let http_code = it.next().unwrap_or("").to_owned();
    let time_ms = it
        .next()
        .and_then(|t| t.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
        * 1000.0;
    Curl {
        exit: out.status.code().unwrap_or(-1),
        http_code,
        time_ms,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The body of a GET of `url` from `ns` (curl `-sS --fail`, 5 s at most); the error is
/// curl's message.
pub fn fetch(ns: &Netns, url: &str) -> Result<String, String> {
    let out = ns.output("curl", &["-sS", "--fail", "--max-time", "5", url]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs the caller binary (tests/src/bin/caller.rs) in `ns` and returns its JSON summary.
pub fn caller(ns: &Netns, url: &str, args: &[&str]) -> Value {
    let out = ns
        .command(crate::bin("caller"))
        .args(["--url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run caller");
    assert!(
        out.status.success(),
        "caller failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("caller JSON")
}

/// A caller (tests/src/bin/caller.rs) running in the background in `ns`, killed on drop.
pub struct BackgroundCaller {
    _child: Guard,
    _stderr: Pumped,
}

impl BackgroundCaller {
    /// Starts the caller in `ns` against `url` with `args`; with `--metrics-listen` among them,
    /// waits until its metrics endpoint is up.
    pub fn start(ns: &Netns, url: &str, args: &[&str]) -> BackgroundCaller {
        let mut child = Guard::spawn(
            ns.command(crate::bin("caller"))
                .args(["--url", url])
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "caller",
        );
        let stderr = Pumped::new(child.stderr.take().expect("stderr"));
        if args.contains(&"--metrics-listen") {
            assert!(
                stderr.wait_for("metrics: serving", Duration::from_secs(10)),
                "the caller's metrics endpoint did not come up: {}",
                stderr.text()
            );
        }
        BackgroundCaller {
            _child: child,
            _stderr: stderr,
        }
    }
}
