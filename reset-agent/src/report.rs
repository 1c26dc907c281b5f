//! The run report: a JSON contract (field names fixed by the issue; more fields are welcome) and
//! a one-screen human summary.
use std::{fmt::Write as _, path::Path};

use serde::Serialize;

use crate::config::{Config, Selection, Stream, Unit};

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// How many flows the percentiles are computed over.
    pub samples: u64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values` (any unit), converted by `scale` to milliseconds.
    pub fn of(mut values: Vec<u64>, scale: f64) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: f64| {
            let idx = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[idx] as f64 * scale
        };
        Some(Percentiles {
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: *values.last().expect("non-empty") as f64 * scale,
            samples: values.len() as u64,
        })
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanupReport {
    pub nft_table_removed: bool,
    pub ebpf_detached: bool,
    /// Both of the above re-checked against the kernel after removal.
    pub verified: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "kernel" or "userspace" (what ran, not what was asked).
    pub mode: &'static str,
    /// Why userspace mode was used, when it was.
    pub mode_reason: Option<String>,
    /// False in userspace mode: counts come from the proxy, not the kernel.
    pub counts_kernel_observed: bool,
    pub toxicity_percent: f64,
    pub reset_timeout_ms: u64,
    pub stream: Stream,
    pub selection: Selection,
    /// What TOXICITY was a share of: "request" or "connection".
    pub unit: Unit,
    pub target_service_port: u16,
    pub proxy_port: u16,
    pub network_interface: String,
    pub total_chaos_duration_s: u64,
    pub ramp_time_s: u64,
    pub started_at: String,
    pub ended_at: String,
    pub aborted: bool,
    pub flows_seen: u64,
    pub flows_selected: u64,
    /// Request unit: HTTP/1.x requests (and opaque flows) seen in the window, and selected.
    pub requests_seen: u64,
    pub requests_selected: u64,
    pub proxy_accepted: u64,
    pub resets_issued: u64,
    pub resets_observed: u64,
    /// flows_selected / flows_seen (connection unit) or requests_selected / requests_seen
    /// (request unit), in percent.
    pub achieved_percent: f64,
    /// Kernel-measured (kernel mode) first request byte -> RST on the wire, in ms.
    pub reset_delay_ms: Percentiles,
    /// The proxy's own measurement of the same delay, in ms.
    pub reset_delay_userspace_ms: Percentiles,
    pub syn_retransmits: u64,
    pub resets_other: u64,
    pub syns_outside_window: u64,
    pub proxy_unconfirmed: u64,
    pub proxy_refused_direct: u64,
    pub upstream_failures: u64,
    pub callers_gone_early: u64,
    pub nft_table_owned: bool,
    /// How the rule handed connections to the proxy: "tproxy" (no NAT, no conntrack) or
    /// "redirect" (NAT fallback for kernels without nft_tproxy).
    pub steering: Option<crate::nft::Steering>,
    /// Why the steering or the table kind was not the preferred one.
    pub steering_fallbacks: Vec<String>,
    /// Selected flows the kernel could not store (left unselected).
    pub flows_map_full: u64,
    /// Selected flows the proxy never accepted (steered but lost, e.g. dropped by a firewall).
    pub flows_lost: u64,
    /// Log records the eBPF programs wrote (aya-log; rare events only, never per packet).
    pub ebpf_log_records: u64,
    /// Request unit: requests that began while their connection's reset was pending (they
    /// share that reset; not selections of their own).
    pub requests_absorbed: u64,
    /// Request unit: flows whose first payload was not HTTP/1 (TLS, HTTP/2, other), selected
    /// once as a whole.
    pub flows_opaque: u64,
    /// Request unit: connections closed (by the service or the caller) before their reset.
    pub requests_closed_first: u64,
    /// Request unit: resets that failed otherwise.
    pub reset_failures: u64,
    /// Request unit: selections the kernel could not hand to the agent (left unselected).
    pub events_lost: u64,
    /// Request unit: segments held back while a reset was pending.
    pub withheld_segments: u64,
    /// Request unit: RSTs moved to the caller's next expected byte.
    pub resets_rewritten: u64,
    pub cleanup: CleanupReport,
    pub errors: Vec<String>,
}

impl Report {
    pub fn new(cfg: &Config) -> Report {
        Report {
            mode: "kernel",
            mode_reason: None,
            counts_kernel_observed: true,
            toxicity_percent: cfg.toxicity.percent(),
            reset_timeout_ms: cfg.reset_timeout.as_millis() as u64,
            stream: cfg.stream,
            selection: cfg.selection,
            unit: cfg.unit,
            target_service_port: cfg.target_port,
            proxy_port: cfg.proxy_port,
            network_interface: cfg.interface.clone(),
            total_chaos_duration_s: cfg.duration.as_secs(),
            ramp_time_s: cfg.ramp.as_secs(),
            started_at: String::new(),
            ended_at: String::new(),
            aborted: false,
            flows_seen: 0,
            flows_selected: 0,
            requests_seen: 0,
            requests_selected: 0,
            proxy_accepted: 0,
            resets_issued: 0,
            resets_observed: 0,
            achieved_percent: 0.0,
            reset_delay_ms: Percentiles::default(),
            reset_delay_userspace_ms: Percentiles::default(),
            syn_retransmits: 0,
            resets_other: 0,
            syns_outside_window: 0,
            proxy_unconfirmed: 0,
            proxy_refused_direct: 0,
            upstream_failures: 0,
            callers_gone_early: 0,
            nft_table_owned: false,
            steering: None,
            steering_fallbacks: Vec::new(),
            flows_map_full: 0,
            flows_lost: 0,
            ebpf_log_records: 0,
            requests_absorbed: 0,
            flows_opaque: 0,
            requests_closed_first: 0,
            reset_failures: 0,
            events_lost: 0,
            withheld_segments: 0,
            resets_rewritten: 0,
            cleanup: CleanupReport::default(),
            errors: Vec::new(),
        }
    }

    /// Adds the consistency checks a reader would do by hand, as errors.
    pub fn check_consistency(&mut self) {
        let (seen, selected) = match self.unit {
            Unit::Request => (self.requests_seen, self.requests_selected),
            Unit::Connection => (self.flows_seen, self.flows_selected),
        };
        if seen > 0 {
            self.achieved_percent = 100.0 * selected as f64 / seen as f64;
        }
        if self.counts_kernel_observed {
            if self.resets_issued != self.resets_observed {
                self.errors.push(format!(
                    "mismatch: the proxy issued {} resets but the kernel observed {} on the wire",
                    self.resets_issued, self.resets_observed
                ));
            }
            if self.unit == Unit::Connection
                && !self.aborted
                && self.proxy_accepted != self.flows_selected
            {
                self.flows_lost = self.flows_selected.saturating_sub(self.proxy_accepted);
                self.errors.push(format!(
                    "lost flows: the kernel selected {} flows but the proxy accepted {}; \
                     something between the nftables rule and the proxy dropped them (a guest \
                     firewall?): run `reset-agent preflight` with the same settings",
                    self.flows_selected, self.proxy_accepted
                ));
            }
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json + "\n")?;
        std::fs::rename(tmp, path)
    }

    /// The one-screen summary printed on stdout.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "reset-peer: {}{}",
            if self.aborted { "ABORTED " } else { "" },
            self.mode
        );
        if let Some(r) = &self.mode_reason {
            let _ = writeln!(s, "  mode reason      {r}");
        }
        let _ = writeln!(
            s,
            "  fault            {}% of {} to :{} on {}, reset {} ms after the first request byte ({}, {})",
            self.toxicity_percent,
            match self.unit {
                Unit::Request => "requests",
                Unit::Connection => "new connections",
            },
            self.target_service_port,
            self.network_interface,
            self.reset_timeout_ms,
            self.stream.as_str(),
            self.selection.as_str()
        );
        let _ = writeln!(
            s,
            "  window           {} -> {}",
            self.started_at, self.ended_at
        );
        let src = if self.counts_kernel_observed {
            "kernel"
        } else {
            "userspace (not kernel-observed)"
        };
        let _ = writeln!(s, "  flows seen       {:>8}   ({src})", self.flows_seen);
        if self.unit == Unit::Request {
            let _ = writeln!(s, "  requests seen    {:>8}", self.requests_seen);
            let _ = writeln!(
                s,
                "  requests selected{:>8}   achieved {:.2}%",
                self.requests_selected, self.achieved_percent
            );
        } else {
            let _ = writeln!(
                s,
                "  flows selected   {:>8}   achieved {:.2}%",
                self.flows_selected, self.achieved_percent
            );
        }
        let _ = writeln!(s, "  proxy accepted   {:>8}", self.proxy_accepted);
        let _ = writeln!(s, "  resets issued    {:>8}", self.resets_issued);
        let _ = writeln!(s, "  resets observed  {:>8}", self.resets_observed);
        let d = &self.reset_delay_ms;
        let _ = writeln!(
            s,
            "  reset delay ms   p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (n={})",
            d.p50, d.p90, d.p99, d.max, d.samples
        );
        let c = &self.cleanup;
        let _ = writeln!(
            s,
            "  cleanup          table removed {}, eBPF detached {}, verified {}",
            c.nft_table_removed, c.ebpf_detached, c.verified
        );
        for e in &self.errors {
            let _ = writeln!(s, "  error            {e}");
        }
        s
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).collect(), 1.0).unwrap();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.samples),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        let p = Percentiles::of(vec![2_000_000], 1e-6).unwrap();
        assert_eq!((p.p50, p.max), (2.0, 2.0));
        assert!(Percentiles::of(vec![], 1.0).is_none());
    }

    #[test]
    fn contract_fields_are_present() {
        let cfg = crate::config::Config::resolve(Default::default()).unwrap();
        let v = serde_json::to_value(Report::new(&cfg)).unwrap();
        for f in [
            "mode",
            "toxicity_percent",
            "reset_timeout_ms",
            "stream",
            "selection",
            "started_at",
            "ended_at",
            "aborted",
            "flows_seen",
            "flows_selected",
            "proxy_accepted",
            "resets_issued",
            "resets_observed",
            "reset_delay_ms",
            "cleanup",
            "errors",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        for f in ["p50", "p90", "p99", "max"] {
            assert!(v["reset_delay_ms"].get(f).is_some());
        }
        for f in ["nft_table_removed", "ebpf_detached", "verified"] {
            assert!(v["cleanup"].get(f).is_some());
        }
        assert_eq!(v["stream"], "downstream");
        assert_eq!(v["selection"], "random");
    }
}
