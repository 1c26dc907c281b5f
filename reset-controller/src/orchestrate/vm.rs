//! One VM's pipeline: check, stage (fresh 0700 dir, agent 0755, config 0600),
//! start, watch, collect the report, remove the guest files. Every step records
//! its phase in the VM's report row.

use std::time::{Duration, Instant};

use super::abort::{ABORT_BUDGET, Abort};
use super::error::{VmError, exit_meaning};
use super::launcher::{Launcher, WaitOutcome};
use super::progress::Progress;
use super::window::FaultWindow;
use crate::metrics::{Metrics, Phase};
use crate::report::{AgentReport, VmReport, VmStatus};
use crate::vcenter::{Guest, VcError};

/// Largest agent report accepted.
const MAX_REPORT_BYTES: usize = 8 << 20;
/// Largest agent log read back.
const MAX_LOG_BYTES: usize = 4 << 20;
/// Lines of agent log quoted in an error.
const LOG_TAIL_LINES: usize = 20;
/// How often the agent is polled.
const POLL: Duration = Duration::from_millis(500);
/// Time the agent gets to stop after SIGTERM before TerminateProcessInGuest.
const STOP_GRACE: Duration = Duration::from_secs(4);
/// Time `reset-agent cleanup` gets on abort.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);
/// Guest directories are `<guest tmp>/reset-peer-<run id>-<random>`.
pub const DIR_PREFIX: &str = "reset-peer-";
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

/// Another run's agent found in the guest's process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherRun {
    /// Its run id (from its directory name).
    pub run: String,
    /// Its agent's pid.
    pub pid: i64,
    /// Its directory.
    pub dir: String,
    /// Who runs it.
    pub owner: String,
    /// When it started.
    pub started: String,
}

/// The first live `reset-agent run` of a reset-peer run directory in `procs`.
pub fn other_run(procs: &[crate::vcenter::ProcessInfo]) -> Option<OtherRun> {
    procs.iter().filter(|p| p.exited().is_none()).find_map(|p| {
        let words: Vec<&str> = p
            .cmd_line
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
            .collect();
        let agent = words.iter().position(|w| {
            w.strip_suffix("/reset-agent")
                .and_then(|dir| dir.rsplit('/').next())
                .is_some_and(|name| name.starts_with(DIR_PREFIX))
        })?;
        if words.get(agent + 1) != Some(&"run") {
            return None;
        }
        let dir = words[agent].trim_end_matches("/reset-agent");
        let name = dir.rsplit('/').next()?.strip_prefix(DIR_PREFIX)?;
        let run = name.rsplit_once('-').map_or(name, |(id, _random)| id);
        Some(OtherRun {
            run: run.to_string(),
            pid: p.pid,
            dir: dir.to_string(),
            owner: if p.owner.is_empty() {
                "?".into()
            } else {
                p.owner.clone()
            },
            started: p.start_time.clone().unwrap_or_else(|| "?".into()),
        })
    })
}

/// The files of one run in the guest.
#[derive(Debug, Clone)]
pub struct GuestDir {
    /// The directory (0700).
    pub dir: String,
    /// The agent binary (0755).
    pub agent: String,
    /// The agent config (0600).
    pub config: String,
    /// Where the agent writes its report.
    pub report: String,
    /// The agent's stdout+stderr.
    pub log: String,
}

impl GuestDir {
    fn new(dir: String) -> Self {
        let file = |n: &str| format!("{}/{n}", dir.trim_end_matches('/'));
        Self {
            agent: file("reset-agent"),
            config: file("agent.toml"),
            report: file("report.json"),
            log: file("agent.log"),
            dir,
        }
    }
}

/// One VM being driven.
#[derive(Debug)]
pub struct VmRun {
    /// The row for this VM.
    pub report: VmReport,
    launcher: Option<Launcher>,
    dir: Option<GuestDir>,
    /// The janitor's pid, terminated once the controller removed the files itself.
    janitor: Option<i64>,
    /// NETWORK_INTERFACE, for `reset-agent cleanup`.
    interface: String,
    progress: Progress,
    metrics: Metrics,
}

impl VmRun {
    /// A row for `name`, not yet bound to a guest.
    pub fn new(name: &str, progress: Progress, metrics: Metrics) -> Self {
        metrics.phase(name, Phase::Pending);
        Self {
            report: VmReport {
                vm: name.to_string(),
                status: VmStatus::Pending,
                ..VmReport::default()
            },
            launcher: None,
            dir: None,
            janitor: None,
            interface: String::new(),
            progress,
            metrics,
        }
    }

    fn metrics_phase(&self, phase: Phase) {
        self.metrics.phase(&self.report.vm, phase);
    }

    /// Record the row's status as the VM's final phase in the metrics.
    pub fn record_end(&self) {
        self.metrics_phase(match self.report.status {
            VmStatus::Ok => Phase::Done,
            VmStatus::Aborted => Phase::Aborted,
            VmStatus::Pending | VmStatus::Failed => Phase::Failed,
        });
    }

    /// Record and print a phase.
    pub fn phase(&mut self, phase: &str) {
        self.progress.line(&self.report.vm, phase);
        let ms = u64::try_from(self.progress.t0().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.report.timings.phases.push((phase.to_string(), ms));
    }

    /// Mark the row failed with `err` (the first error wins).
    pub fn fail(&mut self, err: &VmError) {
        if self.report.error.is_none() {
            self.report.error = Some(err.to_string());
        }
        if self.report.status != VmStatus::Aborted {
            self.report.status = if matches!(err, VmError::Aborted) {
                VmStatus::Aborted
            } else {
                VmStatus::Failed
            };
        }
        self.phase(&format!("failed: {err}"));
    }

    /// The interface `reset-agent cleanup` checks for tc filters (NETWORK_INTERFACE).
    pub fn set_interface(&mut self, interface: &str) {
        self.interface = interface.to_string();
    }

    /// The launcher, once staged.
    pub fn launcher(&self) -> Option<&Launcher> {
        self.launcher.as_ref()
    }

    /// Check the VM, validate guest credentials and sudo, refuse if another run is
    /// active, create the run directory and upload the agent and its config.
    pub async fn stage(
        &mut self,
        guest: Guest,
        agent: bytes::Bytes,
        config: String,
        run_id: &str,
    ) -> Result<(), VmError> {
        self.metrics_phase(Phase::Staging);
        self.phase("checking power state and VMware Tools");
        guest.vm().check_ready()?;
        self.phase("validating guest credentials");
        guest.validate_credentials().await?;
        let launcher = Launcher::new(guest);
        if launcher.uses_sudo() {
            self.phase("checking sudo -n");
            let user = launcher.guest().user().to_string();
            let vm = self.report.vm.clone();
            match launcher.sudo_works().await {
                Ok(None) => {}
                Ok(Some(127)) | Err(VcError::FileNotFound { .. }) => {
                    return Err(VmError::SudoMissing { user, vm });
                }
                Ok(Some(code)) => return Err(VmError::SudoRefused { user, vm, code }),
                Err(e) => return Err(e.into()),
            }
        }
        self.phase("checking for another reset-peer run");
        let g = launcher.guest().clone();
        if let Some(o) = other_run(&g.processes().await?) {
            return Err(VmError::AlreadyRunning {
                vm: self.report.vm.clone(),
                run: o.run,
                pid: o.pid,
                started: o.started,
                owner: o.owner,
                dir: o.dir,
            });
        }
        self.phase("creating guest directory");
        let dir = GuestDir::new(g.create_temp_dir(&format!("{DIR_PREFIX}{run_id}-")).await?);
        self.report.guest_dir = Some(dir.dir.clone());
        self.dir = Some(dir.clone());
        self.launcher = Some(launcher);
        g.chmod(&dir.dir, 0o700).await?;
        self.phase("uploading agent");
        g.upload(&dir.agent, agent, 0o755).await?;
        if !config.is_empty() {
            g.upload(&dir.config, config.into_bytes().into(), 0o600)
                .await?;
        }
        self.phase("staged");
        Ok(())
    }

    fn staged(&self) -> Option<(Launcher, GuestDir)> {
        Some((self.launcher.clone()?, self.dir.clone()?))
    }

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
        let spec = l.spec(
            &d.agent,
            &["run", "--config", &d.config, "--report", &d.report],
            Some(&d.log),
            true,
        );
        let pid = l.start(&spec).await?;
        fault_window.open();
        self.metrics_phase(Phase::Injecting);
        let started = Instant::now();
        self.report.timings.login_to_running_ms =
            Some(u64::try_from(login_at.elapsed().as_millis()).unwrap_or(u64::MAX));
        self.phase(&format!(
            "agent running (pid {pid}), window {} s",
            window.as_secs()
        ));
        self.start_janitor(&l, &d, pid, files_ttl).await;
        let outcome = match l.wait(pid, window + grace, POLL, abort).await {
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
            WaitOutcome::Vanished => {
                // VMware Tools forgets processes (e.g. when it restarts); the agent's
                // report still says how it ended.
                self.phase(&format!(
                    "agent pid {pid} is no longer listed by VMware Tools (exit code unknown): reading its report"
                ));
                let collected = self.collect(&l, &d).await;
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
                return Err(VmError::AgentVanished {
                    vm: self.report.vm.clone(),
                    pid,
                });
            }
            WaitOutcome::Aborted => {
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
                self.guest_cleanup(&l, &d).await;
                code
            }
            WaitOutcome::TimedOut => {
                self.phase("agent overran its window: stopping it");
                l.stop(pid, STOP_GRACE).await?;
                self.guest_cleanup(&l, &d).await;
                self.collect(&l, &d).await.ok();
                return Err(VmError::AgentTimeout {
                    vm: self.report.vm.clone(),
                    secs: (window + grace).as_secs(),
                });
            }
        };
        self.report.timings.agent_runtime_ms =
            Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        self.report.agent_exit_code = code;
        self.phase(&format!(
            "agent exited ({})",
            code.map_or("killed".to_string(), |c| format!(
                "{c}: {}",
                exit_meaning(c)
            ))
        ));
        let collected = self.collect(&l, &d).await;
        match code {
            Some(0) => collected.map(|()| {
                self.report.status = VmStatus::Ok;
            }),
            Some(3) if abort.is_set() => collected,
            Some(c) => {
                // A killed or failed agent may leave a plain table or netlink filters behind on
                // kernels < 5.12 / < 6.6; cleanup removes them (and says so when there is none).
                self.guest_cleanup(&l, &d).await;
                Err(VmError::AgentFailed {
                    vm: self.report.vm.clone(),
                    code: c,
                    meaning: exit_meaning(c),
                    log_tail: self.log_tail(&l, &d).await,
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

    /// Download and parse the agent's report.
    async fn collect(&mut self, l: &Launcher, d: &GuestDir) -> Result<(), VmError> {
        self.metrics_phase(Phase::Collecting);
        self.phase("collecting report");
        if l.uses_sudo() {
            // The agent ran as root: hand its files back to the guest user.
            let user = l.guest().user().to_string();
            let spec = l.spec("/bin/chown", &["-R", &user, &d.dir], None, true);
            l.run(&spec, Duration::from_secs(10)).await?;
        }
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
        if l.uses_sudo() {
            let user = l.guest().user().to_string();
            l.run(
                &l.spec("/bin/chown", &["-R", &user, &d.dir], None, true),
                Duration::from_secs(10),
            )
            .await?;
        }
        let out = l
            .guest()
            .download(&log, MAX_LOG_BYTES)
            .await
            .map_err(VmError::from)?;
        Ok((code, String::from_utf8_lossy(&out).into_owned()))
    }

    /// Delete the run directory (bounded); records whether it is gone.
    pub async fn remove(&mut self) {
        let Some((l, d)) = self.staged() else { return };
        self.metrics_phase(Phase::Cleaning);
        self.phase("removing guest files");
        let r = tokio::time::timeout(Duration::from_secs(10), l.guest().delete_dir(&d.dir)).await;
        match r {
            Ok(Ok(())) | Ok(Err(VcError::FileNotFound { .. })) => {
                self.report.guest_files_removed = true;
                self.dir = None;
                self.phase("guest files removed");
                if let Some(j) = self.janitor.take() {
                    match l.stop(j, Duration::from_secs(2)).await {
                        Ok(_) | Err(VcError::GuestProcessNotFound { .. }) => {}
                        Err(e) => {
                            tracing::warn!(vm = %self.report.vm, error = %e, "stopping the guest-side janitor failed")
                        }
                    }
                }
            }
            Ok(Err(e)) => self.fail(&VmError::from(e)),
            Err(_) => self.phase("removing guest files timed out"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcenter::ProcessInfo;

    fn proc(pid: i64, cmd: &str, ended: bool) -> ProcessInfo {
        ProcessInfo {
            pid,
            cmd_line: cmd.into(),
            owner: "root".into(),
            start_time: Some("2026-11-23T22:45:12Z".into()),
            end_time: ended.then(|| "2026-11-23T22:46:12Z".into()),
            exit_code: None,
        }
    }

    #[test]
    fn finds_a_live_agent_run_and_its_run_id() {
        let procs = [
            proc(1, "/sbin/init", false),
            // An earlier run that ended, and a cleanup that is not a run.
            proc(
                7,
                "\"/bin/sh\" -c 'exec ...' /tmp/reset-peer-20261123t214500-0001-abc/reset-agent run --config x",
                true,
            ),
            proc(
                8,
                "\"/tmp/reset-peer-20261123t220000-0002-def/reset-agent\" cleanup",
                false,
            ),
            proc(
                42,
                "\"/bin/sh\" -c 'exec \"$0\" \"$@\" >/tmp/reset-peer-20261123t224512-4f2a-x1y2z3/agent.log 2>&1 </dev/null' /tmp/reset-peer-20261123t224512-4f2a-x1y2z3/reset-agent run --config /tmp/reset-peer-20261123t224512-4f2a-x1y2z3/agent.toml",
                false,
            ),
        ];
        let o = other_run(&procs).unwrap();
        assert_eq!(o.run, "20261123t224512-4f2a");
        assert_eq!(o.pid, 42);
        assert_eq!(o.dir, "/tmp/reset-peer-20261123t224512-4f2a-x1y2z3");
        assert_eq!(o.started, "2026-11-23T22:45:12Z");
        assert!(other_run(&procs[..3]).is_none());
        // A user's own program that merely mentions the name is not a run.
        assert!(other_run(&[proc(9, "vim /tmp/notes/reset-agent run", false)]).is_none());
    }

    #[test]
    fn run_ids_name_directories_and_parse_back() {
        let id = super::super::new_run_id();
        assert_eq!(id.len(), "20261123t224512-4f2a".len(), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let cmd = format!("/tmp/{DIR_PREFIX}{id}-Q9x/reset-agent run");
        assert_eq!(other_run(&[proc(3, &cmd, false)]).unwrap().run, id);
    }
}
