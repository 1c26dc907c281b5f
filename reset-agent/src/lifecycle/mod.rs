//! One fault window, as steps: check, lock, ramp, install (observer, steering rule, data path),
//! window, drain, teardown, verify, ramp, report. Its inputs are values: the config, the host's
//! facts, a stop signal (main turns SIGINT/SIGTERM and the deadline into it), a progress sink,
//! and the `Parts` that install and remove things (real ones in main, fakes in the tests).
//!
//! The teardown order is the agent's most important invariant, on every exit path (window
//! end, a stop during the ramp or the window or the drain, an error at any step): stop
//! selecting (close the eBPF window; in userspace mode stop steering), let held connections and
//! pending requests reach their reset (at once on a stop), end the data path, remove the table,
//! read the kernel's counters, detach the programs, verify. Whatever was installed before an
//! error is removed in that same order.
mod data_path;
mod error;
mod fill;
mod parts;
pub mod real;
pub mod status;
#[cfg(test)]
mod tests;

use std::{path::PathBuf, time::Duration};

use tokio::{sync::watch, time::Instant};
use tracing::{info, warn};

use crate::{
    config::{Config, ModeRequest, Unit},
    host::HostFacts,
    lost::LostFlows,
    metrics::Metrics,
    nft::{RedirectSpec, Steering},
    report::{Report, now_rfc3339},
};
pub use error::RunError;
pub use parts::Parts;
use parts::{DataPath, Observe, Steer};
use status::Counts;

/// Longest wait for held connections after the window, beyond RESET_TIMEOUT.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Why a window ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM.
    Signal,
    /// The agent's own deadline (duration + ramps + reset timeout + grace).
    Deadline,
}

/// How a run ended (main maps it to an exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    Stopped(Stop),
    /// Completed, but selected flows never reached the proxy.
    LostFlows,
}

/// Where progress goes (tracing in the binary; a recorder in tests).
pub trait Progress: Send + Sync {
    /// A step of the window began or ended.
    fn step(&self, what: &str);
    /// Every few seconds of the window.
    fn tick(&self, counts: &Counts, seconds_left: u64);
}

/// What one run needs.
pub struct Inputs {
    pub cfg: Config,
    pub host: HostFacts,
    pub report_path: Option<PathBuf>,
    pub metrics_addr: Option<std::net::SocketAddr>,
}

pub struct Outcome {
    pub report: Report,
    pub ending: Ending,
}

/// Waits until `stop` says the run must end.
async fn stopped(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(s) = *stop.borrow_and_update() {
            return s;
        }
        if stop.changed().await.is_err() {
            // Nobody can stop us any more: run to the end.
            std::future::pending::<()>().await;
        }
    }
}

/// What is installed, in install order; torn down in reverse by `teardown`.
#[derive(Default)]
struct Installed {
    observer: Option<Box<dyn Observe>>,
    steer: Option<Box<dyn Steer>>,
    data: Option<Box<dyn DataPath>>,
}

/// Runs one fault window. Returns the report (also written to the report path).
pub async fn run(
    inputs: Inputs,
    parts: &dyn Parts,
    mut stop: watch::Receiver<Option<Stop>>,
    progress: &dyn Progress,
) -> Result<Outcome, RunError> {
    let Inputs {
        cfg,
        host,
        report_path,
        metrics_addr,
    } = inputs;
    parts.check(&cfg, &host)?;
    let status = status::Shared::default();
    fill::initial_status(&status, &cfg);
    let _lock = parts.lock(&cfg, status.clone())?;
    let stale = parts.remove_stale(&cfg);
    if !stale.is_empty() {
        warn!(removed = ?stale, "removed leftovers of an earlier run");
    }
    let listeners = parts.bind(&cfg)?;
    let metrics = match metrics_addr {
        Some(addr) => Some(
            crate::metrics::start(addr, cfg.target_port, cfg.reset_timeout)
                .await
                .map_err(|source| RunError::MetricsListen { addr, source })?,
        ),
        None => None,
    };
    let mut report = Report::new(&cfg);

    // Ramp before the window: nothing installed yet.
    if let Some(s) = ramp_before(&cfg, &status, &mut stop, progress).await {
        fill::stopped_before_install(&mut report, parts.verify(&cfg));
        return Ok(finish(report, report_path.as_deref(), Ending::Stopped(s)));
    }

    status::update(&status, |s| s.phase = "installing".into());
    let mut installed = Installed::default();
    let installing = install(
        &cfg,
        &host,
        parts,
        listeners,
        metrics.as_ref().map(|m| m.0.clone()),
        &mut installed,
        &mut report,
    );
    if let Err(e) = installing {
        teardown(&cfg, parts, installed, &mut report, progress).await;
        return Err(e);
    }
    let rule = installed.steer.as_ref().expect("installed").rule_text();
    fill::installed_status(&status, &report, rule);

    // The window.
    set_window(&mut installed, true, &mut report);
    report.started_at = now_rfc3339();
    progress.step("fault active");
    status::update(&status, |s| {
        s.phase = "window".into();
        s.window_opened_at = Some(report.started_at.clone());
    });
    let stopped_by = window(&cfg, &installed, &metrics, &status, &mut stop, progress).await;

    // 1. Stop selecting.
    stop_selecting(&mut installed, &mut report);
    progress.step("window closed: nothing new is selected");
    status::update(&status, |s| s.phase = "draining".into());

    // 2. Let held connections and pending requests reach their reset (at once on a stop).
    let stopped_by = match stopped_by {
        Some(s) => {
            installed.data.as_ref().inspect(|d| d.abort());
            Some(s)
        }
        None => drain(&cfg, installed.data.as_deref(), &mut stop).await,
    };
    report.aborted = stopped_by.is_some();

    // 3. Teardown, in order; the report's counts are read on the way.
    status::update(&status, |s| s.phase = "removing".into());
    teardown(&cfg, parts, installed, &mut report, progress).await;
    if let Some((m, server)) = &metrics {
        fill::final_metrics(m, &report);
        if stopped_by.is_some() || cfg.ramp.is_zero() {
            server.abort();
        }
    }
    status::update(&status, |s| s.phase = "done".into());

    // Ramp after the window (skipped on a stop). Final metrics stay scrapeable meanwhile.
    if stopped_by.is_none() && !cfg.ramp.is_zero() {
        progress.step("ramp after the window");
        let _ = tokio::time::timeout(cfg.ramp, stopped(&mut stop)).await;
    }
    let ending = match stopped_by {
        Some(s) => Ending::Stopped(s),
        None => Ending::Completed,
    };
    Ok(finish(report, report_path.as_deref(), ending))
}

/// RAMP_TIME before the window; a stop during it ends the run (nothing is installed yet).
async fn ramp_before(
    cfg: &Config,
    status: &status::Shared,
    stop: &mut watch::Receiver<Option<Stop>>,
    progress: &dyn Progress,
) -> Option<Stop> {
    if cfg.ramp.is_zero() {
        return None;
    }
    progress.step("ramp before the window");
    status::update(status, |s| s.phase = "ramp".into());
    tokio::select! {
        _ = tokio::time::sleep(cfg.ramp) => None,
        s = stopped(stop) => Some(s),
    }
}

/// Opens or closes the kernel's selection window (kernel mode); a failure goes to the report.
fn set_window(installed: &mut Installed, open: bool, report: &mut Report) {
    if let Some(o) = installed.observer.as_mut()
        && let Err(e) = o.set_window(open)
    {
        let what = if open { "opening" } else { "closing" };
        report.errors.push(format!("{what} the window failed: {e}"));
    }
}

/// Closes the kernel's window, or in userspace mode stops steering new connections; held ones
/// keep their sockets.
fn stop_selecting(installed: &mut Installed, report: &mut Report) {
    set_window(installed, false, report);
    report.ended_at = now_rfc3339();
    if installed.observer.is_none()
        && let Some(s) = installed.steer.as_mut()
        && let Err(e) = s.stop_steering()
    {
        report
            .errors
            .push(format!("stopping the steering rule failed: {e}"));
    }
}

/// Observer (kernel mode, or the reason it is not used), steering rule, data path. What was
/// installed stays in `installed` for the teardown, also on error.
fn install(
    cfg: &Config,
    host: &HostFacts,
    parts: &dyn Parts,
    listeners: parts::Listeners,
    metrics: Option<Metrics>,
    installed: &mut Installed,
    report: &mut Report,
) -> Result<(), RunError> {
    installed.observer = match cfg.mode {
        ModeRequest::Userspace => {
            report.mode_reason = Some("MODE=userspace was requested".into());
            None
        }
        ModeRequest::Kernel | ModeRequest::Auto => match parts.observe(cfg, host, &listeners) {
            Ok(o) => Some(o),
            Err(why) if cfg.mode == ModeRequest::Auto => {
                warn!(reason = %why, "eBPF unavailable: falling back to userspace mode (counts are not kernel-observed)");
                report.mode_reason = Some(format!("eBPF unavailable: {why}"));
                None
            }
            Err(why) => return Err(RunError::KernelUnavailable(why)),
        },
    };
    let kernel = installed.observer.is_some();
    if !kernel {
        report.mode = "userspace";
        report.counts_kernel_observed = false;
    }
    let spec = RedirectSpec {
        interface: cfg.interface.clone(),
        target_port: cfg.target_port,
        proxy_port: cfg.proxy_port,
        mark: kernel.then_some(real::MARK),
    };
    let steer = parts.steer(&spec, host)?;
    report.nft_table_owned = steer.owned();
    report.steering = Some(steer.steering());
    report.steering_fallbacks = steer.fallbacks();
    for why in &report.steering_fallbacks {
        warn!(%why, "nftables fallback");
    }
    if steer.steering() == Steering::Redirect {
        let firewalls = crate::nft::dropping_input_chains().unwrap_or_default();
        if !firewalls.is_empty() {
            warn!(chains = ?firewalls, proxy_port = cfg.proxy_port, "steering by NAT redirect rewrites the destination port to PROXY_PORT; a guest firewall input chain with policy drop may drop it unless it accepts PROXY_PORT");
        }
    }
    installed.steer = Some(steer);
    let observer = installed.observer.as_deref_mut();
    let data = parts.data_path(cfg, listeners, observer, metrics)?;
    installed.data = Some(data);
    Ok(())
}

/// The window: until it ends (None) or a stop comes (Some). Counts go to the metrics, the
/// status and the progress sink; lost flows are warned about as they happen.
async fn window(
    cfg: &Config,
    installed: &Installed,
    metrics: &Option<(Metrics, tokio::task::JoinHandle<()>)>,
    status: &status::Shared,
    stop: &mut watch::Receiver<Option<Stop>>,
    progress: &dyn Progress,
) -> Option<Stop> {
    let end = Instant::now() + cfg.duration;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut refresh = tokio::time::interval(Duration::from_millis(500));
    let mut lost = LostFlows::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => return None,
            s = stopped(stop) => return Some(s),
            _ = tick.tick() => {
                let c = fill::counts(installed.observer.as_deref(), installed.data.as_deref());
                progress.tick(&c, end.saturating_duration_since(Instant::now()).as_secs());
            }
            _ = refresh.tick() => {
                let c = fill::counts(installed.observer.as_deref(), installed.data.as_deref());
                if let Some((m, _)) = metrics {
                    fill::live_metrics(m, &c, true);
                }
                let left = end.saturating_duration_since(Instant::now()).as_secs();
                status::update(status, |s| {
                    s.counts = c;
                    s.counts_at = Some(crate::report::now_rfc3339());
                    s.seconds_left = Some(left);
                });
                if installed.observer.is_some() && cfg.unit == Unit::Connection
                    && let Some(n) = lost.observe(std::time::Instant::now(), c.flows_selected, c.proxy_accepted)
                {
                    warn!(
                        lost = n,
                        selected = c.flows_selected,
                        accepted = c.proxy_accepted,
                        "lost flows: the kernel selected flows more than {} s ago that the proxy never \
                         accepted; something between the nftables rule and the proxy drops them (a guest \
                         firewall?); run `reset-agent preflight` with the same settings",
                        crate::lost::GRACE.as_secs()
                    );
                }
            }
        }
    }
}

/// Waits until nothing is held (at most RESET_TIMEOUT + grace); a stop resets the rest at once.
async fn drain(
    cfg: &Config,
    data: Option<&dyn DataPath>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Option<Stop> {
    let data = data?;
    let end = Instant::now() + cfg.reset_timeout + DRAIN_GRACE;
    while data.held() > 0 && Instant::now() < end {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            s = stopped(stop) => {
                data.abort();
                return Some(s);
            }
        }
    }
    if data.held() > 0 {
        data.abort();
    }
    None
}

/// Removes what is installed, in order: data path, table, counters, programs, verification.
async fn teardown(
    cfg: &Config,
    parts: &dyn Parts,
    installed: Installed,
    report: &mut Report,
    progress: &dyn Progress,
) {
    let Installed {
        observer,
        steer,
        data,
    } = installed;
    if let Some(d) = data {
        let (stats, error) = d.finish().await;
        if let Some(e) = error {
            report.errors.push(e);
        }
        fill::from_data(report, &stats, observer.is_some());
    }
    if let Some(s) = steer {
        match s.remove() {
            Ok(()) => {
                progress.step("nftables table removed");
                report.cleanup.nft_table_removed = true;
            }
            Err(e) => report
                .errors
                .push(format!("removing the nftables table failed: {e}")),
        }
    } else {
        report.cleanup.nft_table_removed = true;
    }
    match observer {
        Some(o) => {
            fill::from_kernel(report, o.as_ref(), cfg.unit);
            report.cleanup.ebpf_detached = o.detach().await;
        }
        None => report.cleanup.ebpf_detached = true,
    }
    report.cleanup.verified = parts.verify(cfg);
}

fn finish(mut report: Report, path: Option<&std::path::Path>, ending: Ending) -> Outcome {
    report.check_consistency();
    if let Some(path) = path
        && let Err(e) = report.write(path)
    {
        warn!(path = %path.display(), error = %e, "could not write the report");
    }
    let ending = match ending {
        Ending::Completed if report.flows_lost > 0 => Ending::LostFlows,
        e => e,
    };
    info!(?ending, "run ended");
    Outcome { report, ending }
}
