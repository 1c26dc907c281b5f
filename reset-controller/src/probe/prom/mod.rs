//! The Prometheus probe (`--prom-probe-url`): PROM_PROBE_QUERY, evaluated through Prometheus'
//! HTTP API, held to PROM_PROBE_COMPARATOR PROM_PROBE_VALUE. In `continuous` mode it is
//! evaluated when the fault window opens and every PROM_PROBE_INTERVAL until it closes, and
//! every evaluation must hold; in `end` mode once, when the window has closed.
//!
//! An evaluation that gives no value (Prometheus unreachable, a refused query, an empty vector,
//! several series...) is counted as an error with its reason, never skipped. The verdict is
//! fail when a value did not hold, else error when an evaluation gave no value (or none was
//! made), else pass. Evaluations go to a [`PromObserver`] as they happen (the run's metrics).

pub mod api;
#[cfg(test)]
mod fake;
pub mod verdict;

use std::future::Future;
use std::time::Instant;

use tokio::time::MissedTickBehavior;

use crate::config::{PromMode, PromProbeSettings};
pub use verdict::{EvalError, PromObserver, PromProbeReport, PromTally};

/// Why a probe made no evaluation when the window never opened.
pub const NEVER_OPENED: &str = "the fault window never opened (no agent started)";
/// Why a probe made no evaluation when the run was aborted first.
const ABORTED: &str = "the run was aborted before the probe evaluated";
/// Why a continuous probe made no evaluation when the window closed at once.
const CLOSED_AT_ONCE: &str = "the fault window closed before the first evaluation";

/// The report of a probe that never ran (the window never opened): verdict error.
pub fn not_run(settings: &PromProbeSettings, observer: &impl PromObserver) -> PromProbeReport {
    let r = PromTally::default().report(settings, NEVER_OPENED);
    observer.prom_verdict(&settings.query, r.verdict);
    r
}

/// Evaluate as the mode says until `stop` resolves (the window closed); `cancel` (abort) ends
/// at once, dropping an evaluation in flight. Returns the report with its verdict.
pub async fn run(
    settings: &PromProbeSettings,
    stop: impl Future<Output = ()>,
    cancel: impl Future<Output = ()>,
    observer: &impl PromObserver,
) -> PromProbeReport {
    let query = settings.query.as_str();
    observer.prom_started(query);
    let t0 = Instant::now();
    let mut tally = PromTally::default();
    let client = api::Client::new(settings);
    let evaluate = || async {
        match &client {
            Ok(c) => c.evaluate().await,
            Err(e) => Err(e.clone()),
        }
    };
    let mut record = |outcome: Result<f64, EvalError>| {
        let held = tally.record(t0.elapsed(), &outcome, settings.comparator, settings.value);
        match &outcome {
            Ok(v) => tracing::debug!(query, value = v, held, "prometheus probe evaluated"),
            Err(e) => tracing::warn!(query, error = %e, "prometheus probe: no value"),
        }
        observer.prom_evaluated(query, &outcome, held);
    };
    tokio::pin!(stop, cancel);
    let mut aborted = false;
    match settings.mode {
        PromMode::Continuous => {
            let mut tick = tokio::time::interval(settings.interval);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = &mut cancel => { aborted = true; break }
                    () = &mut stop => break,
                    _ = tick.tick() => {}
                }
                tokio::select! {
                    biased;
                    () = &mut cancel => { aborted = true; break }
                    outcome = evaluate() => record(outcome),
                }
            }
        }
        PromMode::End => {
            tokio::select! {
                biased;
                () = &mut cancel => aborted = true,
                () = &mut stop => {}
            }
            if !aborted {
                tokio::select! {
                    biased;
                    () = &mut cancel => aborted = true,
                    outcome = evaluate() => record(outcome),
                }
            }
        }
    }
    let report = tally.report(settings, if aborted { ABORTED } else { CLOSED_AT_ONCE });
    observer.prom_verdict(query, report.verdict);
    tracing::info!(
        query,
        evaluations = report.evaluations,
        held = report.held,
        not_held = report.not_held,
        errors = report.errors,
        verdict = ?report.verdict,
        "prometheus probe finished"
    );
    report
}

#[cfg(test)]
mod tests;
