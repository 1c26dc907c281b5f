//! The agent in a staged guest: the fault window (start the agent and the guest-side
//! janitor, watch it, stop it on abort or overrun, collect its report) and the one-shot
//! subcommands (`preflight`, `cleanup`).

use std::time::{Duration, Instant};

use super::VmRun;
use crate::metrics::Phase;
use crate::orchestrate::abort::{ABORT_BUDGET, Abort};
use crate::orchestrate::error::{VmError, exit_meaning};
use crate::orchestrate::guest_dir::GuestDir;
use crate::orchestrate::launcher::{Launcher, WaitOutcome};
use crate::orchestrate::window::FaultWindow;
use crate::report::{AgentReport, VmStatus};
use crate::vcenter::VcError;

/// Largest agent report accepted.
const MAX_REPORT_BYTES: usize = 8 << 20;
/// Largest agent log read back.
const MAX_LOG_BYTES: usize = 4 << 20;
/// Lines of agent log quoted in an error.
const LOG_TAIL_LINES: usize = 20;
/// How often one agent is polled when the run has few VMs.
const POLL: Duration = Duration::from_millis(500);
/// The poll interval grows by this per VM of the run, so a run over many VMs asks vCenter
/// (ListProcessesInGuest) about 20 times a second at most, however many VMs it covers: 50 VMs
/// are polled every 2.5 s each. An agent's end is noticed at most one interval late.
const POLL_PER_VM: Duration = Duration::from_millis(50);

/// How often each agent is polled in a run over `vms` VMs.
pub fn poll_interval(vms: usize) -> Duration {
    POLL.max(POLL_PER_VM * u32::try_from(vms).unwrap_or(u32::MAX))
}
/// Time the agent gets to stop after SIGTERM before TerminateProcessInGuest.
const STOP_GRACE: Duration = Duration::from_secs(4);
/// Time `reset-agent cleanup` gets on abort.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);
/// The guest-side janitor: waits for the agent (pid $0) to end, runs `reset-agent cleanup`
/// for interface $3 (which removes what a killed agent leaves on kernels < 5.12 / < 6.6, and
/// refuses while another run is active), then after $1 seconds deletes the run directory ($2).
/// Sleeps run in the background and are waited for, so SIGTERM ends it (and its sleep) at once.
const JANITOR: &str = concat!(
    r#"trap 'kill "$s" 2>/dev/null; exit 0' TERM; "#,
    r#"while [ -d "/proc/$0" ]; do sleep 1 & s=$!; wait "$s"; done; "#,
    r#""$2/reset-agent" cleanup --network-interface "$3" >/dev/null 2>&1; "#,
    r#"sleep "$1" & s=$!; wait "$s"; rm -rf -- "$2""#
);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl VmRun {
    /// Start the agent and watch it until it ends, the window plus `grace` passes,
    /// or abort; then collect its report. `login_at` times the injection; the
    /// agent's start opens `fault_window` (if it is not open yet).
    pub async fn inject(
        &mut self,
        window: Duration,
        grace: Duration,
        files_ttl: Duration,
        abort: &Abort,
        login_at: Instant,
        fault_window: &FaultWindow,
    ) -> Result<(), VmError> {
        let Some((l, d)) = self.staged() else {
            return Err(VmError::Aborted);
        };
        if abort.is_set() {
            return Err(VmError::Aborted);
        }
        self.phase("starting agent");
        let metrics = self.agent_metrics.map(|a| a.to_string());
        let mut args = vec!["run", "--config", &d.config, "--report", &d.report];
        if let Some(listen) = &metrics {
            args.extend(["--metrics-listen", listen.as_str()]);
        }
        let spec = l.spec(&d.agent, &args, Some(&d.log), true);
        let pid = l.start(&spec).await?;
        fault_window.open();
        self.metrics_phase(Phase::Injecting);
        let started = Instant::now();
        self.report.timings.login_to_running_ms = Some(millis(login_at.elapsed()));
        self.phase(&format!(
            "agent running (pid {pid}), window {} s",
            window.as_secs()
        ));
        self.start_janitor(&l, &d, pid, files_ttl).await;
        let poll = poll_interval(self.vms_in_run);
        let outcome = match l.wait(pid, window + grace, poll, abort).await {
            Ok(o) => o,
            Err(e @ (VcError::Unreachable { .. } | VcError::ConnectionLost { .. })) => {
                return Err(VmError::VcenterLost {
                    vm: self.report.vm.clone(),
                    dir: d.dir.clone(),
                    ttl_s: files_ttl.as_secs(),
                    source: e,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let code = match outcome {
            WaitOutcome::Exited(c) => Some(c),
            WaitOutcome::Vanished => return self.vanished(&l, &d, pid).await,
            WaitOutcome::Aborted => self.stop_on_abort(&l, &d, pid).await,
            WaitOutcome::TimedOut => return self.overran(&l, &d, pid, window + grace).await,
        };
        self.report.timings.agent_runtime_ms = Some(millis(started.elapsed()));
        self.exited(&l, &d, code, abort).await
    }

    /// VMware Tools forgets processes (e.g. when it restarts); the agent's report still
    /// says how it ended.
    async fn vanished(&mut self, l: &Launcher, d: &GuestDir, pid: i64) -> Result<(), VmError> {
        self.phase(&format!(
            "agent pid {pid} is no longer listed by VMware Tools (exit code unknown): reading its report"
        ));
        let collected = self.collect(l, d).await;
        let clean = self
            .report
            .agent_report
            .as_ref()
            .and_then(|r| r.pointer("/cleanup/verified"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        if collected.is_ok() && clean {
            self.report.status = VmStatus::Ok;
            self.phase("agent report says the window ended and cleanup was verified");
            return Ok(());
        }
        Err(VmError::AgentVanished {
            vm: self.report.vm.clone(),
            pid,
        })
    }

    /// Abort: stop the agent (bounded) and clean the guest; returns its exit code if known.
    async fn stop_on_abort(&mut self, l: &Launcher, d: &GuestDir, pid: i64) -> Option<i32> {
        self.report.status = VmStatus::Aborted;
        self.phase("aborting: stopping agent");
        let code = match tokio::time::timeout(ABORT_BUDGET, l.stop(pid, STOP_GRACE)).await {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => {
                tracing::warn!(vm = %self.report.vm, error = %e, "stopping the agent failed");
                None
            }
            Err(_) => None,
        };
        self.guest_cleanup(l, d).await;
        code
    }

    /// The agent outlived its window plus grace: stop it, clean up, keep what it reported.
    async fn overran(
        &mut self,
        l: &Launcher,
        d: &GuestDir,
        pid: i64,
        limit: Duration,
    ) -> Result<(), VmError> {
        self.phase("agent overran its window: stopping it");
        l.stop(pid, STOP_GRACE).await?;
        self.guest_cleanup(l, d).await;
        self.collect(l, d).await.ok();
        Err(VmError::AgentTimeout {
            vm: self.report.vm.clone(),
            secs: limit.as_secs(),
        })
    }

    /// The agent ended with `code` (`None`: killed): collect its report and judge the row.
    async fn exited(
        &mut self,
        l: &Launcher,
        d: &GuestDir,
        code: Option<i32>,
        abort: &Abort,
    ) -> Result<(), VmError> {
        self.report.agent_exit_code = code;
        self.phase(&format!(
            "agent exited ({})",
            code.map_or("killed".to_string(), |c| format!(
                "{c}: {}",
                exit_meaning(c)
            ))
        ));
        let collected = self.collect(l, d).await;
        match code {
            Some(0) => collected.map(|()| {
                self.report.status = VmStatus::Ok;
            }),
            Some(3) if abort.is_set() => collected,
            Some(c) => {
                // A killed or failed agent may leave a plain table or netlink filters behind on
                // kernels < 5.12 / < 6.6; cleanup removes them (and says so when there is none).
                self.guest_cleanup(l, d).await;
                Err(VmError::AgentFailed {
                    vm: self.report.vm.clone(),
                    code: c,
                    meaning: exit_meaning(c),
                    log_tail: self.log_tail(l, d).await,
                })
            }
            None => collected,
        }
    }

    /// Start the guest-side janitor that deletes the run directory `ttl` after the
    /// agent ends, in case this controller dies or loses vCenter before it can. A
    /// failure to start it is logged, not fatal: the controller still cleans up.
    async fn start_janitor(&mut self, l: &Launcher, d: &GuestDir, pid: i64, ttl: Duration) {
        let (pid_s, ttl_s) = (pid.to_string(), ttl.as_secs().to_string());
        let spec = l.spec(
            "/bin/sh",
            &["-c", JANITOR, &pid_s, &ttl_s, &d.dir, &self.interface],
            None,
            true,
        );
        match l.start(&spec).await {
            Ok(j) => self.janitor = Some(j),
            Err(e) => {
                tracing::warn!(vm = %self.report.vm, error = %e, "the guest-side janitor could not be started");
            }
        }
    }

    /// Run `reset-agent cleanup` in the guest (bounded).
    async fn guest_cleanup(&mut self, l: &Launcher, d: &GuestDir) {
        self.phase("running reset-agent cleanup in guest");
        let spec = l.spec(
            &d.agent,
            &["cleanup", "--network-interface", &self.interface],
            Some(&format!("{}/cleanup.log", d.dir)),
            true,
        );
        match tokio::time::timeout(
            CLEANUP_TIMEOUT + Duration::from_secs(2),
            l.run(&spec, CLEANUP_TIMEOUT),
        )
        .await
        {
            Ok(Ok(WaitOutcome::Exited(0))) => {}
            other => {
                tracing::warn!(vm = %self.report.vm, outcome = ?other, "reset-agent cleanup did not finish cleanly")
            }
        }
    }

    /// The agent ran as root through sudo: hand its files back to the guest user, so
    /// they can be downloaded and deleted.
    async fn hand_back(l: &Launcher, d: &GuestDir) -> Result<(), VcError> {
        if l.uses_sudo() {
            let user = l.guest().user().to_string();
            let spec = l.spec("/bin/chown", &["-R", &user, &d.dir], None, true);
            l.run(&spec, Duration::from_secs(10)).await?;
        }
        Ok(())
    }

    /// Download and parse the agent's report.
    async fn collect(&mut self, l: &Launcher, d: &GuestDir) -> Result<(), VmError> {
        self.metrics_phase(Phase::Collecting);
        self.phase("collecting report");
        Self::hand_back(l, d).await?;
        let bytes = l.guest().download(&d.report, MAX_REPORT_BYTES).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| VmError::BadReport {
                vm: self.report.vm.clone(),
                reason: e.to_string(),
            })?;
        if let Some(typed) = AgentReport::from_value(&v) {
            self.metrics.agent_report(&self.report.vm, &typed);
        }
        self.report.agent_report = Some(v);
        Ok(())
    }

    async fn log_tail(&self, l: &Launcher, d: &GuestDir) -> String {
        match l.guest().download(&d.log, MAX_LOG_BYTES).await {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                let lines: Vec<&str> = text.lines().collect();
                let start = lines.len().saturating_sub(LOG_TAIL_LINES);
                lines[start..].join("\n")
            }
            Err(e) => format!("(agent log unavailable: {e})"),
        }
    }

    /// Run `reset-agent SUB [--config <staged config>] [EXTRA...]` to completion and return
    /// (exit code, output).
    pub async fn agent_command(
        &mut self,
        sub: &str,
        with_config: bool,
        extra: &[String],
        timeout: Duration,
    ) -> Result<(i32, String), VmError> {
        let Some((l, d)) = self.staged() else {
            return Err(VmError::Aborted);
        };
        let log = format!("{}/{sub}.log", d.dir);
        let mut args = vec![sub];
        if with_config {
            args.extend(["--config", d.config.as_str()]);
        }
        args.extend(extra.iter().map(String::as_str));
        let spec = l.spec(&d.agent, &args, Some(&log), true);
        self.phase(&format!("running reset-agent {}", args.join(" ")));
        let code = match l.run(&spec, timeout).await? {
            WaitOutcome::Exited(c) => c,
            _ => -1,
        };
        Self::hand_back(&l, &d).await?;
        let out = l
            .guest()
            .download(&log, MAX_LOG_BYTES)
            .await
            .map_err(VmError::from)?;
        Ok((code, String::from_utf8_lossy(&out).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_vms_are_polled_less_often_each() {
        assert_eq!(poll_interval(1), POLL);
        assert_eq!(poll_interval(10), POLL);
        assert_eq!(poll_interval(50), Duration::from_millis(2500));
    }
}
