//! The run's probes (HTTP and Prometheus): started with the run, each waits for the fault
//! window to open, probes until it closes and stops at once on abort; their reports are
//! collected after the window with a progress line each.

use tokio::task::JoinHandle;

use super::abort::Abort;
use super::progress::Progress;
use super::window::FaultWindow;
use crate::config::RunConfig;
use crate::metrics::Metrics;
use crate::probe::prom::PromProbeReport;
use crate::probe::{self, ProbeReport};

/// The probes' tasks.
pub struct Probes {
    http: Option<JoinHandle<ProbeReport>>,
    prom: Option<JoinHandle<PromProbeReport>>,
}

impl Probes {
    /// Start the probes `cfg` asks for; counts go to `metrics` as they happen.
    pub fn start(cfg: &RunConfig, window: &FaultWindow, abort: &Abort, metrics: &Metrics) -> Self {
        let http = cfg.probe.clone().map(|settings| {
            let (mut w, abort, metrics) = (window.watch(), abort.clone(), metrics.clone());
            tokio::spawn(async move {
                if !w.opened().await {
                    return probe::not_run(&settings, &metrics);
                }
                probe::run(&settings, w.closed(), abort.wait(), &metrics).await
            })
        });
        let prom = cfg.prom_probe.clone().map(|settings| {
            let (mut w, abort, metrics) = (window.watch(), abort.clone(), metrics.clone());
            tokio::spawn(async move {
                if !w.opened().await {
                    return probe::prom::not_run(&settings, &metrics);
                }
                probe::prom::run(&settings, w.closed(), abort.wait(), &metrics).await
            })
        });
        Self { http, prom }
    }

    /// Wait for the probes (after the window closed) and say how each ended.
    pub async fn finish(
        self,
        progress: &Progress,
    ) -> (Option<ProbeReport>, Option<PromProbeReport>) {
        let http = join(self.http, "probe").await;
        if let Some(p) = &http {
            progress.line(
                "*",
                &format!(
                    "probe {}: {} attempts, {} ok, {} resets, {} other errors: verdict {}",
                    p.url,
                    p.attempts,
                    p.ok,
                    p.resets,
                    p.other_errors,
                    p.verdict.as_str()
                ),
            );
        }
        let prom = join(self.prom, "Prometheus probe").await;
        if let Some(p) = &prom {
            progress.line("*", &prom_line(p));
        }
        (http, prom)
    }
}

async fn join<T>(task: Option<JoinHandle<T>>, what: &str) -> Option<T> {
    match task?.await {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "the {what} task panicked");
            None
        }
    }
}

/// The progress line of the Prometheus probe's outcome.
fn prom_line(p: &PromProbeReport) -> String {
    let mut line = format!(
        "prometheus probe {} {} {}: held at {} of {} evaluation(s), {} without a value: verdict {}",
        p.query,
        p.comparator,
        p.value,
        p.held,
        p.evaluations,
        p.errors,
        p.verdict.as_str()
    );
    if let Some(e) = &p.error {
        line.push_str(&format!(" ({})", e.message));
    }
    line
}
