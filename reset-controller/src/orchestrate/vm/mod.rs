//! One VM's pipeline: check, stage (fresh 0700 dir, agent 0755, config 0600), start,
//! watch, collect the report, remove the guest files. Every step records its phase in
//! the VM's report row and the run's metrics. This file holds the row and the staging and
//! removal of the guest files; `agent` runs the agent in a staged guest.

mod agent;

use std::time::Duration;

use super::error::VmError;
use super::guest_dir::{DIR_PREFIX, GuestDir, other_run};
use super::launcher::Launcher;
use super::progress::Progress;
use crate::metrics::{Metrics, Phase};
use crate::report::{VmReport, VmStatus};
use crate::vcenter::{Guest, VcError};

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
    /// AGENT_METRICS_LISTEN, passed to `reset-agent run` as `--metrics-listen`.
    agent_metrics: Option<std::net::SocketAddr>,
    /// How many VMs the run covers (the agent poll interval grows with it).
    vms_in_run: usize,
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
            agent_metrics: None,
            vms_in_run: 1,
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

    /// Where the agent serves its metrics in the guest (AGENT_METRICS_LISTEN), if anywhere,
    /// and how many VMs the run covers (how often the agent is polled).
    pub fn set_run(&mut self, agent_metrics: Option<std::net::SocketAddr>, vms: usize) {
        self.agent_metrics = agent_metrics;
        self.vms_in_run = vms.max(1);
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
