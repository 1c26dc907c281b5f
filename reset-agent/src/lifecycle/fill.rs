//! Counts gathered from the kernel and the data path, and where they go: the live status, the
//! metrics, and the report at the end.
use super::{
    parts::DataStats,
    parts::{DataPath, Observe},
    status::{self, Counts},
};
use crate::{
    config::{Config, Unit},
    metrics::{Metrics, Snapshot},
    report::{Percentiles, Report, now_rfc3339},
};

/// The counts so far (kernel mode: the kernel's; userspace mode: the proxy's).
pub fn counts(observer: Option<&dyn Observe>, data: Option<&dyn DataPath>) -> Counts {
    let d = data.map(DataPath::stats).unwrap_or_default();
    match observer.and_then(|o| o.counters().ok()) {
        Some(k) => Counts {
            flows_seen: k.flows_seen,
            flows_selected: k.flows_selected,
            requests_seen: k.requests_seen,
            requests_selected: k.requests_selected,
            proxy_accepted: d.accepted,
            resets_issued: d.resets_issued,
            resets_observed: k.resets_observed + k.request_resets_observed,
            held: d.held,
        },
        None => Counts {
            flows_seen: d.accepted,
            flows_selected: if d.requests_seen > 0 { 0 } else { d.selected },
            requests_seen: d.requests_seen,
            requests_selected: if d.requests_seen > 0 { d.selected } else { 0 },
            proxy_accepted: d.accepted,
            resets_issued: d.resets_issued,
            resets_observed: d.resets_issued,
            held: d.held,
        },
    }
}

pub fn initial_status(shared: &status::Shared, cfg: &Config) {
    let started = now_rfc3339();
    status::update(shared, |s| {
        s.holder = format!(
            "pid {}, started {started}, TARGET_SERVICE_PORT {}, PROXY_PORT {}",
            std::process::id(),
            cfg.target_port,
            cfg.proxy_port
        );
        s.pid = std::process::id();
        s.started_at = started;
        s.phase = "starting".into();
        s.unit = cfg.unit.to_string();
        s.toxicity_percent = cfg.toxicity.percent();
        s.reset_timeout_ms = u64::try_from(cfg.reset_timeout.as_millis()).unwrap_or(u64::MAX);
        s.target_service_port = cfg.target_port;
        s.network_interface = cfg.interface.clone();
    });
}

pub fn installed_status(shared: &status::Shared, report: &Report, rule: String) {
    status::update(shared, |s| {
        s.mode = report.mode.into();
        s.table = Some(format!("inet {}", crate::nft::TABLE_NAME));
        s.rule = Some(rule);
    });
}

pub fn live_metrics(m: &Metrics, c: &Counts, window_open: bool) {
    m.update(Snapshot {
        flows_seen: c.flows_seen,
        flows_selected: c.flows_selected,
        requests_seen: c.requests_seen,
        requests_selected: c.requests_selected,
        resets_observed: c.resets_observed,
        proxy_accepted: c.proxy_accepted,
        resets_issued: c.resets_issued,
        held: c.held,
        window_open,
    });
}

pub fn final_metrics(m: &Metrics, r: &Report) {
    m.update(Snapshot {
        flows_seen: r.flows_seen,
        flows_selected: r.flows_selected,
        requests_seen: r.requests_seen,
        requests_selected: r.requests_selected,
        resets_observed: r.resets_observed,
        proxy_accepted: r.proxy_accepted,
        resets_issued: r.resets_issued,
        held: 0,
        window_open: false,
    });
}

/// The data path's final counters into the report (userspace mode: also the selection counts).
pub fn from_data(report: &mut Report, d: &DataStats, kernel: bool) {
    report.proxy_accepted = d.accepted;
    report.resets_issued = d.resets_issued;
    report.proxy_unconfirmed = d.unconfirmed;
    report.proxy_refused_direct = d.refused_direct;
    report.upstream_failures = d.upstream_failures;
    report.callers_gone_early = d.callers_gone;
    report.requests_closed_first = d.closed_first;
    report.reset_failures = d.reset_failures;
    if let Some(p) = Percentiles::of(d.proxy_delays_us.clone(), 1e-3) {
        report.reset_delay_userspace_ms = p;
    }
    if kernel {
        if let Some(p) = Percentiles::of(d.request_delays_ns.clone(), 1e-6) {
            report.reset_delay_ms = p;
        }
        return;
    }
    report.flows_seen = d.accepted;
    if report.unit == Unit::Request {
        report.requests_seen = d.requests_seen;
        report.requests_selected = d.selected;
        report.flows_opaque = d.flows_opaque;
    } else {
        report.flows_selected = d.selected;
    }
    report.resets_observed = report.resets_issued;
    report.reset_delay_ms = report.reset_delay_userspace_ms;
}

/// The kernel's counters and delays into the report.
pub fn from_kernel(report: &mut Report, o: &dyn Observe, unit: Unit) {
    match o.counters() {
        Ok(c) => {
            report.flows_seen = c.flows_seen;
            report.flows_selected = c.flows_selected;
            report.requests_seen = c.requests_seen;
            report.requests_selected = c.requests_selected;
            report.resets_observed = c.resets_observed + c.request_resets_observed;
            report.syn_retransmits = c.syn_retransmits;
            report.resets_other = c.resets_other;
            report.syns_outside_window = c.syns_outside_window;
            report.flows_map_full = c.map_full;
            report.requests_absorbed = c.requests_absorbed;
            report.flows_opaque = c.flows_opaque;
            report.events_lost = c.events_lost;
            report.withheld_segments = c.withheld_segments;
            report.resets_rewritten = c.resets_rewritten;
        }
        Err(e) => report
            .errors
            .push(format!("reading kernel counters failed: {e}")),
    }
    if unit == Unit::Connection
        && let Some(p) = Percentiles::of(o.flow_delays_ns(), 1e-6)
    {
        report.reset_delay_ms = p;
    }
    report.ebpf_log_records = o.log_records();
}

/// A run stopped during the ramp before the window: nothing was installed, so nothing was
/// removed, and `verified` says the host is clean.
pub fn stopped_before_install(report: &mut Report, verified: bool) {
    report.aborted = true;
    report.started_at = now_rfc3339();
    report.ended_at = report.started_at.clone();
    report.cleanup.nft_table_removed = true;
    report.cleanup.ebpf_detached = true;
    report.cleanup.verified = verified;
}
