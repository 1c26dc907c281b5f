//! Orchestration: log in once, find the VMs, stage every VM at once, then inject
//! in parallel or in series, collect, clean up, log out.
//!
//! Parallel: all staged VMs get the fault at once for TOTAL_CHAOS_DURATION.
//! Serial: one after another, each for TOTAL_CHAOS_DURATION, CHAOS_INTERVAL between
//! the end of one and the start of the next. RAMP_TIME is waited before the first
//! injection and after the last. One VM's failure never stops the others.
//!
//! The fault window (`window`) opens when the first agent starts and closes when the
//! last injection has ended; the probes run inside it (`probes`). Phases and the agents'
//! counters are recorded into the run's metrics as they happen.

pub mod abort;
pub mod error;
pub mod guest_dir;
pub mod launcher;
pub mod probes;
pub mod progress;
pub mod vm;
pub mod window;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::config::{RunConfig, Sequence, Targets, VcenterSettings};
use crate::metrics::Metrics;
use crate::report::{RunReport, VmReport, VmStatus};
use crate::vcenter::{Guest, GuestAuth, Session, VcError, inventory};
use abort::{ABORT_BUDGET, Abort};
use error::VmError;
use probes::Probes;
use progress::Progress;
use vm::VmRun;
use window::FaultWindow;

/// Extra time past the window (and its reset timeout) before an agent counts as hung: the
/// grace the agent itself allows before its own deadline (the settings contract's).
const GRACE: Duration = reset_common::settings::DEADLINE_GRACE;

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// A new run id: UTC start time to the second plus 16 random bits, e.g.
/// `20261123t224512-4f2a`; it names the run's guest directories.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let stamp: String = t
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(15)
        .collect::<String>()
        .to_ascii_lowercase();
    let random = std::hash::RandomState::new().build_hasher().finish() as u16;
    format!("{stamp}-{random:04x}")
}

/// Logged-in session plus one `VmRun` per name; VMs that cannot be looked up are
/// already failed.
struct Connected {
    session: Option<Session>,
    runs: Vec<(VmRun, Option<Guest>)>,
    login_at: Instant,
}

async fn connect(
    vc: &VcenterSettings,
    targets: &Targets,
    progress: &Progress,
    metrics: &Metrics,
) -> Connected {
    let mut runs: Vec<(VmRun, Option<Guest>)> = targets
        .vms
        .iter()
        .map(|n| (VmRun::new(n, progress.clone(), metrics.clone()), None))
        .collect();
    let login_at = Instant::now();
    for (r, _) in &mut runs {
        r.phase("logging in to vCenter");
    }
    let found = async {
        let s = Session::login_resilient(
            &vc.connect,
            &vc.user,
            &vc.password,
            vc.reconnect,
            vc.concurrency,
        )
        .await?;
        let managers = inventory::guest_managers(&s).await;
        let vms = inventory::find_vms(&s, &targets.vms).await;
        Ok::<_, VcError>((s, managers, vms))
    }
    .await;
    let (session, managers, vms) = match found {
        Ok((s, Ok(m), Ok(v))) => (s, m, v),
        Ok((s, Err(e), _)) | Ok((s, _, Err(e))) => {
            for (r, _) in &mut runs {
                r.fail(&VmError::from(e.clone()));
            }
            s.logout().await;
            return Connected {
                session: None,
                runs,
                login_at,
            };
        }
        Err(e) => {
            for (r, _) in &mut runs {
                r.fail(&VmError::from(e.clone()));
            }
            return Connected {
                session: None,
                runs,
                login_at,
            };
        }
    };
    let mut vms = vms;
    for (r, g) in &mut runs {
        match vms.remove(&r.report.vm) {
            Some(Ok(info)) => {
                let auth = GuestAuth {
                    user: targets.guest_user.clone(),
                    password: targets.guest_password.clone(),
                };
                *g = Some(Guest::new(session.clone(), managers.clone(), info, auth));
            }
            Some(Err(e)) => r.fail(&e.into()),
            None => r.fail(&VmError::from(VcError::VmNotFound {
                name: r.report.vm.clone(),
            })),
        }
    }
    Connected {
        session: Some(session),
        runs,
        login_at,
    }
}

/// Stage every VM that has a guest, concurrently; returns the runs in order.
async fn stage_all(
    runs: Vec<(VmRun, Option<Guest>)>,
    agent: &Bytes,
    config: &str,
    run_id: &str,
) -> Vec<VmRun> {
    let mut set = JoinSet::new();
    let n = runs.len();
    for (i, (mut r, g)) in runs.into_iter().enumerate() {
        let agent = agent.clone();
        let config = config.to_string();
        let run_id = run_id.to_string();
        set.spawn(async move {
            if let Some(g) = g
                && let Err(e) = r.stage(g, agent, config, &run_id).await
            {
                r.fail(&e);
                r.remove().await;
            }
            (i, r)
        });
    }
    collect_ordered(set, n).await
}

async fn collect_ordered(mut set: JoinSet<(usize, VmRun)>, n: usize) -> Vec<VmRun> {
    let mut slots: Vec<Option<VmRun>> = (0..n).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        match res {
            Ok((i, r)) => slots[i] = Some(r),
            Err(e) => tracing::error!(error = %e, "a VM task panicked"),
        }
    }
    slots.into_iter().flatten().collect()
}

async fn inject_one(
    mut r: VmRun,
    cfg: &RunConfig,
    abort: &Abort,
    login_at: Instant,
    fault_window: &FaultWindow,
) -> VmRun {
    // Not staged, or staging failed after the guest directory was made (its files are
    // already removed): the row keeps its own error instead of "aborted before injection".
    if r.launcher().is_none() || r.report.error.is_some() {
        return r;
    }
    let window = cfg.fault.total_chaos_duration;
    let grace = GRACE + cfg.fault.reset_timeout;
    let ttl = cfg.targets.guest_files_ttl;
    r.set_interface(&cfg.fault.network_interface);
    r.set_run(cfg.agent_metrics, cfg.targets.vms.len());
    if let Err(e) = r
        .inject(window, grace, ttl, abort, login_at, fault_window)
        .await
    {
        r.fail(&e);
    }
    r.remove().await;
    r.record_end();
    r
}

/// Run the fault on every VM in `cfg`; returns the report (never fails as a whole).
/// Phases, agent counters and probe counts go to `metrics` as they happen.
pub async fn run(
    cfg: &RunConfig,
    agent: &Bytes,
    abort: &Abort,
    quiet: bool,
    metrics: &Metrics,
) -> RunReport {
    let started_at = now_rfc3339();
    let run_id = new_run_id();
    let progress = Progress::new(Instant::now(), &cfg.targets.vms, quiet);
    progress.line("*", &format!("run {run_id}"));
    let fault_window = FaultWindow::default();
    let probes = Probes::start(cfg, &fault_window, abort, metrics);
    let Connected {
        session,
        runs,
        login_at,
    } = connect(&cfg.vcenter, &cfg.targets, &progress, metrics).await;
    let config = crate::agent_config::render(&cfg.fault);
    let mut runs = stage_all(runs, agent, &config, &run_id).await;

    let ramp = cfg.ramp_time;
    let staged = runs.iter().any(|r| r.launcher().is_some());
    if staged && !ramp.is_zero() {
        progress.line(
            "*",
            &format!("ramp: waiting {} s before injection", ramp.as_secs()),
        );
        abort.sleep(ramp).await;
    }
    runs = match cfg.sequence {
        Sequence::Parallel => {
            let mut set = JoinSet::new();
            let n = runs.len();
            for (i, r) in runs.into_iter().enumerate() {
                let (cfg, abort, w) = (cfg.clone(), abort.clone(), fault_window.clone());
                set.spawn(async move { (i, inject_one(r, &cfg, &abort, login_at, &w).await) });
            }
            collect_ordered(set, n).await
        }
        Sequence::Serial => {
            let mut done = Vec::with_capacity(runs.len());
            let mut first = true;
            for r in runs {
                if r.launcher().is_some()
                    && !first
                    && !abort.is_set()
                    && !cfg.chaos_interval.is_zero()
                {
                    progress.line(
                        "*",
                        &format!("interval: waiting {} s", cfg.chaos_interval.as_secs()),
                    );
                    abort.sleep(cfg.chaos_interval).await;
                }
                first &= r.launcher().is_none();
                done.push(inject_one(r, cfg, abort, login_at, &fault_window).await);
            }
            done
        }
    };
    fault_window.close();
    let (probe, prom_probe) = probes.finish(&progress).await;
    for r in &runs {
        r.record_end();
    }
    if staged && !ramp.is_zero() && !abort.is_set() {
        progress.line(
            "*",
            &format!(
                "ramp: waiting {} s after the last injection",
                ramp.as_secs()
            ),
        );
        abort.sleep(ramp).await;
    }
    let vcenter = session.as_ref().map(Session::report);
    if let Some(s) = session {
        let _ = tokio::time::timeout(Duration::from_secs(3), s.logout()).await;
    }
    RunReport {
        run_id,
        started_at,
        ended_at: now_rfc3339(),
        sequence: cfg.sequence,
        aborted: abort.is_set(),
        settings: cfg.fault.clone(),
        ramp_time_s: ramp.as_secs(),
        chaos_interval_s: cfg.chaos_interval.as_secs(),
        vms: runs.into_iter().map(|r| r.report).collect(),
        probe,
        prom_probe,
        vcenter,
    }
}

/// What `preflight` or `cleanup` found on one VM.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandResult {
    /// The row (status, error, timings).
    pub report: VmReport,
    /// The agent subcommand's exit code, if it ran.
    pub exit_code: Option<i32>,
    /// Its output.
    pub output: String,
}

/// Stage the agent on every VM and run `reset-agent SUB [EXTRA...]` there, with
/// `--config <staged agent.toml>` when `config` is given (`preflight`), without
/// (`cleanup`); then remove the files.
pub async fn agent_command(
    vc: &VcenterSettings,
    targets: &Targets,
    config: Option<&str>,
    extra: &[String],
    agent: &Bytes,
    sub: &'static str,
    quiet: bool,
) -> Vec<CommandResult> {
    let progress = Progress::new(Instant::now(), &targets.vms, quiet);
    let Connected { session, runs, .. } =
        connect(vc, targets, &progress, &Metrics::default()).await;
    let runs = stage_all(runs, agent, config.unwrap_or(""), &new_run_id()).await;
    let with_config = config.is_some();
    let mut set = JoinSet::new();
    let n = runs.len();
    for (i, mut r) in runs.into_iter().enumerate() {
        let extra = extra.to_vec();
        set.spawn(async move {
            let mut out = (None, String::new());
            if r.launcher().is_some() {
                match r
                    .agent_command(sub, with_config, &extra, Duration::from_secs(120))
                    .await
                {
                    Ok((code, text)) => {
                        r.report.agent_exit_code = Some(code);
                        r.report.status = if code == 0 {
                            VmStatus::Ok
                        } else {
                            VmStatus::Failed
                        };
                        if code != 0 {
                            r.report.error = Some(format!(
                                "reset-agent {sub} exited with code {code} ({})",
                                error::exit_meaning(code)
                            ));
                        }
                        out = (Some(code), text);
                    }
                    Err(e) => r.fail(&e),
                }
                r.remove().await;
            }
            (
                i,
                CommandResult {
                    report: r.report,
                    exit_code: out.0,
                    output: out.1,
                },
            )
        });
    }
    let mut slots: Vec<Option<CommandResult>> = (0..n).map(|_| None).collect();
    while let Some(res) = set.join_next().await {
        if let Ok((i, c)) = res {
            slots[i] = Some(c);
        }
    }
    if let Some(s) = session {
        s.logout().await;
    }
    slots.into_iter().flatten().collect()
}

/// Deadline for the abort path, used by main as a backstop.
pub fn abort_budget() -> Duration {
    ABORT_BUDGET
}
