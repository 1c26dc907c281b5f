//! Prometheus metrics of a run (prometheus-client, OpenMetrics text format), served
//! by [`serve`] on `--metrics-listen`. Labelled by `vm` (agent counters, reset
//! delay, phase), by `url` (HTTP probe) or by `query` (Prometheus probe).
//!
//! The agent's counters arrive once, when that VM's report is downloaded, so they
//! read 0 until then; the probe's counters move live. Recording never fails and
//! does no I/O: a run without `--metrics-listen` records into a registry nobody
//! reads.

pub mod serve;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::probe::prom::verdict::{EvalError, PromObserver};
use crate::probe::verdict::{Outcome, ProbeObserver, Verdict};
use crate::report::AgentReport;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// Where one VM's pipeline is (`reset_peer_vm_phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Logging in, looking the VM up.
    Pending,
    /// Checking the guest, uploading the agent.
    Staging,
    /// The agent runs (the fault is on).
    Injecting,
    /// Downloading the agent's report.
    Collecting,
    /// Removing guest files.
    Cleaning,
    /// Finished without error.
    Done,
    /// Finished with an error.
    Failed,
    /// Stopped by an abort.
    Aborted,
}

impl Phase {
    /// Every phase, in pipeline order.
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Staging,
        Phase::Injecting,
        Phase::Collecting,
        Phase::Cleaning,
        Phase::Done,
        Phase::Failed,
        Phase::Aborted,
    ];

    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Staging => "staging",
            Phase::Injecting => "injecting",
            Phase::Collecting => "collecting",
            Phase::Cleaning => "cleaning",
            Phase::Done => "done",
            Phase::Failed => "failed",
            Phase::Aborted => "aborted",
        }
    }
}

#[derive(Clone)]
struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        // 1 ms .. ~16 s, doubling.
        Histogram::new(exponential_buckets(1.0, 2.0, 15))
    }
}

struct Inner {
    registry: Registry,
    flows_seen: Family<Labels, Counter>,
    flows_selected: Family<Labels, Counter>,
    requests_seen: Family<Labels, Counter>,
    requests_selected: Family<Labels, Counter>,
    resets_issued: Family<Labels, Counter>,
    resets_observed: Family<Labels, Counter>,
    reset_delay: Family<Labels, Gauge<f64, AtomicU64>>,
    reset_delay_samples: Family<Labels, Gauge>,
    phase: Family<Labels, Gauge>,
    probe_attempts: Family<Labels, Counter>,
    probe_ok: Family<Labels, Counter>,
    probe_resets: Family<Labels, Counter>,
    probe_other_errors: Family<Labels, Counter>,
    probe_latency: Family<Labels, Histogram, LatencyBuckets>,
    probe_verdict: Family<Labels, Gauge>,
    prom_evaluations: Family<Labels, Counter>,
    prom_value: Family<Labels, Gauge<f64, AtomicU64>>,
    prom_verdict: Family<Labels, Gauge>,
}

/// The run's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn vm_label(vm: &str) -> Labels {
    vec![("vm".into(), vm.into())]
}

fn url_label(url: &str) -> Labels {
    vec![("url".into(), url.into())]
}

fn query_label(query: &str) -> Labels {
    vec![("query".into(), query.into())]
}

/// A verdict gauge's value: 1 pass, 0 fail, -2 error (-1 is "still running").
fn verdict_value(v: Verdict) -> i64 {
    match v {
        Verdict::Pass => 1,
        Verdict::Fail => 0,
        Verdict::Error => -2,
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("reset_peer");
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let f = Family::<Labels, Counter>::default();
            r.register(name, help, f.clone());
            f
        };
        let flows_seen = counter(
            &mut r,
            "flows_seen",
            "New flows (SYNs) to the target port inside the window, from the agent's report (kernel-observed); set when the report is downloaded",
        );
        let flows_selected = counter(
            &mut r,
            "flows_selected",
            "Flows selected for reset, from the agent's report; set when the report is downloaded",
        );
        let requests_seen = counter(
            &mut r,
            "requests_seen",
            "HTTP/1.x requests to the target port inside the window (UNIT=request), from the agent's report (kernel-observed); set when the report is downloaded",
        );
        let requests_selected = counter(
            &mut r,
            "requests_selected",
            "Requests selected for reset (UNIT=request), from the agent's report; set when the report is downloaded",
        );
        let resets_issued = counter(
            &mut r,
            "resets_issued",
            "Resets the agent made (zero-linger closes by its proxy, or service sockets destroyed in the request unit), from the agent's report; set when the report is downloaded",
        );
        let resets_observed = counter(
            &mut r,
            "resets_observed",
            "RSTs the kernel saw leave for selected flows or requests, from the agent's report; set when the report is downloaded",
        );
        let reset_delay = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "reset_delay_ms",
            "Reset delay (first request byte to RST on the wire) percentiles as the agent reported them, ms; quantile 1 is the maximum. Summary-style gauges, not a histogram: the agent reports percentiles, not buckets; set when the report is downloaded",
            reset_delay.clone(),
        );
        let reset_delay_samples = Family::<Labels, Gauge>::default();
        r.register(
            "reset_delay_samples",
            "Number of resets the reset_delay_ms percentiles were computed from",
            reset_delay_samples.clone(),
        );
        let phase = Family::<Labels, Gauge>::default();
        r.register(
            "vm_phase",
            "Where each VM's pipeline is: 1 for the current phase, 0 for the others",
            phase.clone(),
        );
        let probe_attempts = counter(
            &mut r,
            "probe_attempts",
            "HTTP probe attempts finished inside the fault window (live)",
        );
        let probe_ok = counter(
            &mut r,
            "probe_ok",
            "HTTP probe attempts answered with status 200-399 (live)",
        );
        let probe_resets = counter(
            &mut r,
            "probe_resets",
            "HTTP probe attempts whose connection was reset, ECONNRESET (live)",
        );
        let probe_other_errors = counter(
            &mut r,
            "probe_other_errors",
            "HTTP probe attempts that failed otherwise: refused, timeout, bad status (live)",
        );
        let probe_latency = Family::new_with_constructor(LatencyBuckets);
        r.register(
            "probe_latency_ms",
            "Time from connecting to each probe attempt's outcome (response, reset or error), ms",
            probe_latency.clone(),
        );
        let probe_verdict = Family::<Labels, Gauge>::default();
        r.register(
            "probe_verdict",
            "Probe SLO verdict: 1 pass, 0 fail, -1 while the probe still runs",
            probe_verdict.clone(),
        );
        let prom_evaluations = counter(
            &mut r,
            "prom_probe_evaluations",
            "Prometheus probe evaluations by result: held, not_held, or error (no value) (live)",
        );
        let prom_value = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        r.register(
            "prom_probe_value",
            "The Prometheus probe query's last value (live)",
            prom_value.clone(),
        );
        let prom_verdict = Family::<Labels, Gauge>::default();
        r.register(
            "prom_probe_verdict",
            "Prometheus probe verdict: 1 pass, 0 fail, -2 error (not evaluated), -1 while it still runs",
            prom_verdict.clone(),
        );
        Self(Arc::new(Inner {
            registry: r,
            flows_seen,
            flows_selected,
            requests_seen,
            requests_selected,
            resets_issued,
            resets_observed,
            reset_delay,
            reset_delay_samples,
            phase,
            probe_attempts,
            probe_ok,
            probe_resets,
            probe_other_errors,
            probe_latency,
            probe_verdict,
            prom_evaluations,
            prom_value,
            prom_verdict,
        }))
    }

    /// Record that `vm` entered `phase`.
    pub fn phase(&self, vm: &str, phase: Phase) {
        for p in Phase::ALL {
            let labels = vec![
                ("vm".into(), vm.into()),
                ("phase".into(), p.as_str().into()),
            ];
            self.0
                .phase
                .get_or_create(&labels)
                .set(i64::from(p == phase));
        }
    }

    /// Record the counters of `vm`'s downloaded agent report.
    pub fn agent_report(&self, vm: &str, r: &AgentReport) {
        let l = vm_label(vm);
        let i = &self.0;
        for (family, value) in [
            (&i.flows_seen, r.flows_seen),
            (&i.flows_selected, r.flows_selected),
            (&i.requests_seen, r.requests_seen),
            (&i.requests_selected, r.requests_selected),
            (&i.resets_issued, r.resets_issued),
            (&i.resets_observed, r.resets_observed),
        ] {
            family.get_or_create(&l).inc_by(value.unwrap_or(0));
        }
        let d = &r.reset_delay_ms;
        for (q, v) in [
            ("0.5", d.p50),
            ("0.9", d.p90),
            ("0.99", d.p99),
            ("1", d.max),
        ] {
            if let Some(v) = v {
                let labels = vec![("vm".into(), vm.into()), ("quantile".into(), q.into())];
                i.reset_delay.get_or_create(&labels).set(v);
            }
        }
        if let Some(n) = d.samples {
            i.reset_delay_samples
                .get_or_create(&l)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The exposition, OpenMetrics text (`# EOF` last), which Prometheus reads.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }
}

/// The probe's counts, live: the probe reports here through [`ProbeObserver`].
impl ProbeObserver for Metrics {
    /// Register the probe of `url` before its first attempt (counters at 0, verdict -1).
    fn started(&self, url: &str) {
        let l = url_label(url);
        let i = &self.0;
        for f in [
            &i.probe_attempts,
            &i.probe_ok,
            &i.probe_resets,
            &i.probe_other_errors,
        ] {
            f.get_or_create_owned(&l);
        }
        i.probe_latency.get_or_create_owned(&l);
        i.probe_verdict.get_or_create(&l).set(-1);
    }

    /// Count one finished probe attempt.
    fn attempt(&self, url: &str, outcome: Outcome, took: Duration) {
        let l = url_label(url);
        let i = &self.0;
        i.probe_attempts.get_or_create(&l).inc();
        match outcome {
            Outcome::Ok => i.probe_ok.get_or_create(&l).inc(),
            Outcome::Reset => i.probe_resets.get_or_create(&l).inc(),
            Outcome::OtherError => i.probe_other_errors.get_or_create(&l).inc(),
        };
        i.probe_latency
            .get_or_create(&l)
            .observe(took.as_secs_f64() * 1000.0);
    }

    /// Record the probe's verdict.
    fn verdict(&self, url: &str, verdict: Verdict) {
        self.0
            .probe_verdict
            .get_or_create(&url_label(url))
            .set(verdict_value(verdict));
    }
}

/// The Prometheus probe's evaluations, live: the probe reports here through [`PromObserver`].
impl PromObserver for Metrics {
    /// Register the probe of `query` (counters at 0, verdict -1).
    fn prom_started(&self, query: &str) {
        let i = &self.0;
        for result in ["held", "not_held", "error"] {
            let mut l = query_label(query);
            l.push(("result".into(), result.into()));
            i.prom_evaluations.get_or_create_owned(&l);
        }
        i.prom_verdict.get_or_create(&query_label(query)).set(-1);
    }

    /// Count one evaluation and keep its value.
    fn prom_evaluated(&self, query: &str, outcome: &Result<f64, EvalError>, held: bool) {
        let result = match (outcome, held) {
            (Ok(_), true) => "held",
            (Ok(_), false) => "not_held",
            (Err(_), _) => "error",
        };
        let mut l = query_label(query);
        l.push(("result".into(), result.into()));
        self.0.prom_evaluations.get_or_create(&l).inc();
        if let Ok(v) = outcome {
            self.0.prom_value.get_or_create(&query_label(query)).set(*v);
        }
    }

    /// Record the probe's verdict.
    fn prom_verdict(&self, query: &str, verdict: Verdict) {
        self.0
            .prom_verdict
            .get_or_create(&query_label(query))
            .set(verdict_value(verdict));
    }
}

#[cfg(test)]
mod tests;
