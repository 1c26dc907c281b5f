//! The controller side of the lab: the one way tests run `reset-controller` (its command with
//! the accounts' secrets only in its environment, a running controller with its output
//! pumped, a bounded run), the common scenes (one or two lab VMs served by vcsim), and checks
//! on what a run left in a guest. Used by the controller, fault-tolerance and dist tests.
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::guard::{Guard, Pumped};
use crate::lab::Lab;
use crate::proc::Service;
use crate::sim::{Credentials, Vcsim};

/// `reset-controller` for the vCenter at `url`, logging in with `creds`, run inside the
/// namespace `inside` when given: an environment of PATH, GOVC_URL, GOVC_USERNAME,
/// GOVC_PASSWORD, VM_USER_NAME, VM_PASSWORD, RUST_LOG=info and UNIT=connection only (the
/// controller tests were written for the connection unit; a test of the request unit passes
/// `--unit request`, which wins); stdin closed, stdout and stderr piped.
pub fn command(url: &str, creds: &Credentials, inside: Option<&str>) -> Command {
    let mut c = match inside {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns])
                .arg(crate::bin("reset-controller"));
            c
        }
        None => Command::new(crate::bin("reset-controller")),
    };
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GOVC_URL", url)
        .env("GOVC_USERNAME", &creds.vc_user)
        .env("GOVC_PASSWORD", &creds.vc_password)
        .env("VM_USER_NAME", &creds.guest_user)
        .env("VM_PASSWORD", &creds.guest_password)
        .env("RUST_LOG", "info")
        .env("UNIT", "connection")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A running controller: killed on drop, stdout and stderr pumped.
pub struct Controller {
    child: Guard,
    stdout: Pumped,
    stderr: Pumped,
    started: Instant,
}

/// How a controller run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// From the start to the exit.
    pub took: Duration,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The JSON report on stdout (`--output json`).
    pub fn report(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", self.stdout, self.stderr))
    }
}

impl Controller {
    pub fn spawn(mut cmd: Command) -> Controller {
        let started = Instant::now();
        let mut child = Guard::spawn(&mut cmd, "reset-controller");
        let stdout = Pumped::new(child.stdout.take().expect("piped stdout"));
        let stderr = Pumped::new(child.stderr.take().expect("piped stderr"));
        Controller {
            child,
            stdout,
            stderr,
            started,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (`INT`, `TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }

    /// Waits (bounded) for a stderr line containing `needle`; fails with the stderr so far.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) {
        assert!(
            self.stderr.wait_for(needle, limit),
            "no stderr line with {needle:?} within {limit:?}:\n{}",
            self.stderr.text()
        );
    }

    /// Waits for the exit; kills it and fails after `limit`.
    pub fn finish(mut self, limit: Duration) -> Finished {
        let Some(status) = self.child.wait_within(limit) else {
            panic!(
                "reset-controller did not finish within {limit:?}:\n{}",
                self.stderr.text()
            );
        };
        Finished {
            status,
            took: self.started.elapsed(),
            stdout: self.stdout.finish(Duration::from_secs(5)),
            stderr: self.stderr.finish(Duration::from_secs(5)),
        }
    }
}

/// Runs `cmd` to its end, at most `limit`.
pub fn run_bounded(cmd: Command, limit: Duration) -> Finished {
    Controller::spawn(cmd).finish(limit)
}

/// The common one-VM scene: a lab whose VM runs the sample service on port 80, served by vcsim
/// as `vm-a`. Bind it as `let (lab, _svc, sim) = one_vm();` so it is torn down in reverse.
pub fn one_vm() -> (Lab, Service, Vcsim) {
    let (lab, svc) = Lab::with_service();
    let sim = Vcsim::serving(&[("vm-a", &lab)]);
    (lab, svc, sim)
}

/// Two such VMs, `vm-a` and `vm-b`, served by one vcsim.
pub fn two_vms() -> ((Lab, Service), (Lab, Service), Vcsim) {
    let (a, b) = (Lab::with_service(), Lab::with_service());
    let sim = Vcsim::serving(&[("vm-a", &a.0), ("vm-b", &b.0)]);
    (a, b, sim)
}

/// `run` on vm-a with `agent`: TOXICITY 100, RESET_TIMEOUT 200 ms, a `window`-second fault,
/// plus `extra` flags; the report as JSON on stdout.
pub fn run_args<'a>(agent: &'a str, window: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    run_args_at(agent, "100", window, extra)
}

/// [`run_args`] at another TOXICITY.
pub fn run_args_at<'a>(
    agent: &'a str,
    toxicity: &'a str,
    window: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "--output",
        "json",
        "run",
        "--vm-name",
        "vm-a",
        "--agent",
        agent,
        "--toxicity",
        toxicity,
        "--reset-timeout",
        "200",
        "--total-chaos-duration",
        window,
    ];
    v.extend_from_slice(extra);
    v
}

/// Starts the controller with `args` and waits until its agent's redirect is in `lab`.
pub fn start_injected(sim: &Vcsim, lab: &Lab, args: &[&str]) -> Controller {
    let c = Controller::spawn(sim.controller(args));
    wait_injected(lab, Duration::from_secs(20));
    c
}

pub fn injected(lab: &Lab) -> bool {
    lab.vm.nft_ruleset().contains("reset_peer")
}

/// Wait until the agent's redirect is in place in `lab` (readiness, not a sleep).
pub fn wait_injected(lab: &Lab, limit: Duration) {
    let t = Instant::now();
    while !injected(lab) {
        assert!(
            t.elapsed() < limit,
            "agent never injected in {}",
            lab.vm.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No process in the guest has a secret of `sim`'s accounts in its command line or
/// environment.
pub fn assert_no_secret_in_guest(lab: &Lab, sim: &Vcsim) {
    for pid in lab.vm.pids() {
        for f in ["cmdline", "environ"] {
            let data = std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let s = String::from_utf8_lossy(&data);
            assert!(
                !sim.credentials().leaked_in(&s),
                "secret in /proc/{pid}/{f}"
            );
        }
    }
}

/// Milliseconds into the run at which `row` (one VM of the report) reached the phase
/// starting with `prefix`.
pub fn phase_ms(row: &Value, prefix: &str) -> u64 {
    row["timings"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap_or("").starts_with(prefix))
        .and_then(|p| p[1].as_u64())
        .unwrap_or_else(|| panic!("no phase {prefix} in {row}"))
}
