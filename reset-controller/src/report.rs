//! Reports: a typed, tolerant view of the agent's report JSON, and the
//! controller's own report (every agent report plus per-VM timings).
//!
//! Must not: import the runtime (orchestrate, the probes' run loops, metrics); it holds data
//! and reads the probes' verdict types only.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{FaultSettings, Sequence};
use crate::probe::prom::verdict::PromProbeReport;
use crate::probe::verdict::{ProbeReport, Verdict};

/// Reset delay percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Delay {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Resets measured.
    pub samples: Option<u64>,
}

/// What the agent says about its own cleanup.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct Cleanup {
    /// The nftables table is gone.
    pub nft_table_removed: Option<bool>,
    /// The eBPF programs are detached.
    pub ebpf_detached: Option<bool>,
    /// Both were checked after removal.
    pub verified: Option<bool>,
}

/// The fields of the agent's report the controller reads; extra fields are kept in
/// the raw JSON, missing ones are `None`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AgentReport {
    /// kernel or userspace.
    pub mode: Option<String>,
    /// The window was cut short by a signal.
    pub aborted: Option<bool>,
    /// What TOXICITY counted: "request" or "connection" (absent: an agent older than the unit).
    pub unit: Option<String>,
    /// New flows to the target port.
    pub flows_seen: Option<u64>,
    /// Flows selected for reset (connection unit).
    pub flows_selected: Option<u64>,
    /// Requests to the target port (request unit).
    pub requests_seen: Option<u64>,
    /// Requests selected for reset (request unit).
    pub requests_selected: Option<u64>,
    /// Connections the proxy accepted.
    pub proxy_accepted: Option<u64>,
    /// Resets the proxy issued.
    pub resets_issued: Option<u64>,
    /// RSTs the kernel saw leave.
    pub resets_observed: Option<u64>,
    /// Reset delay percentiles.
    pub reset_delay_ms: Delay,
    /// Cleanup verification.
    pub cleanup: Cleanup,
    /// Errors the agent hit.
    pub errors: Vec<Value>,
}

impl AgentReport {
    /// Read the typed view; `None` if the JSON is not an object.
    pub fn from_value(v: &Value) -> Option<Self> {
        v.is_object()
            .then(|| serde_json::from_value(v.clone()).ok())
            .flatten()
    }

    /// Whether TOXICITY counted requests (the agent's default unit).
    pub fn request_unit(&self) -> bool {
        self.unit.as_deref() == Some("request")
    }

    /// What TOXICITY was a share of, and how many were selected: requests in the request unit,
    /// new flows in the connection unit.
    pub fn seen_selected(&self) -> (Option<u64>, Option<u64>) {
        if self.request_unit() {
            (self.requests_seen, self.requests_selected)
        } else {
            (self.flows_seen, self.flows_selected)
        }
    }

    /// resets_observed / seen (requests or flows, by unit), percent.
    pub fn achieved_percent(&self) -> Option<f64> {
        let seen = self.seen_selected().0?;
        let observed = self.resets_observed?;
        (seen > 0).then(|| observed as f64 * 100.0 / seen as f64)
    }
}

/// Milliseconds since the controller started, per phase reached.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// (phase, ms since the run started).
    pub phases: Vec<(String, u64)>,
    /// From login to the agent running, ms.
    pub login_to_running_ms: Option<u64>,
    /// How long the agent ran, ms.
    pub agent_runtime_ms: Option<u64>,
}

/// Where one VM's row stands; serialized as `pending`, `ok`, `failed` or `aborted`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmStatus {
    /// Not finished (a row that never got further than this was cut short).
    #[default]
    Pending,
    /// Ran to the end without error.
    Ok,
    /// An error stopped it (the row's `error` says which).
    Failed,
    /// Stopped by SIGINT/SIGTERM.
    Aborted,
}

impl VmStatus {
    /// The status as the report and the table spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            VmStatus::Pending => "pending",
            VmStatus::Ok => "ok",
            VmStatus::Failed => "failed",
            VmStatus::Aborted => "aborted",
        }
    }
}

impl fmt::Display for VmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One VM's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VmReport {
    /// The VM name.
    pub vm: String,
    /// ok, failed, aborted (pending while it runs).
    pub status: VmStatus,
    /// The error, if any.
    pub error: Option<String>,
    /// The guest directory used.
    pub guest_dir: Option<String>,
    /// The agent's exit code.
    pub agent_exit_code: Option<i32>,
    /// Guest files were removed.
    pub guest_files_removed: bool,
    /// Timings.
    pub timings: Timings,
    /// The agent's report as it wrote it.
    pub agent_report: Option<Value>,
}

impl VmReport {
    /// The typed view of the agent report.
    pub fn agent(&self) -> Option<AgentReport> {
        self.agent_report.as_ref().and_then(AgentReport::from_value)
    }

    /// Whether this VM counts as a failure for the exit code.
    pub fn failed(&self) -> bool {
        self.status != VmStatus::Ok
    }
}

/// The controller's report (`--report PATH`, `--output json`).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// This run's id; its guest directories are named `reset-peer-<run_id>-*`.
    pub run_id: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// RFC 3339 end time.
    pub ended_at: String,
    /// parallel or serial.
    pub sequence: Sequence,
    /// The run was aborted by a signal.
    pub aborted: bool,
    /// The fault settings (no secrets).
    pub settings: FaultSettings,
    /// RAMP_TIME, s.
    pub ramp_time_s: u64,
    /// CHAOS_INTERVAL, s.
    pub chaos_interval_s: u64,
    /// One entry per VM, in VM_NAME order.
    pub vms: Vec<VmReport>,
    /// The HTTP probe's counts and verdict, when PROBE_URL was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    /// The Prometheus probe's evaluations and verdict, when PROM_PROBE_URL was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prom_probe: Option<PromProbeReport>,
    /// The vCenter (or ESXi host) spoken to: negotiated API version and `about`; absent when
    /// login failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vcenter: Option<crate::vcenter::ServerReport>,
}

impl RunReport {
    /// Every VM ran to the end without error.
    pub fn vms_ok(&self) -> bool {
        !self.vms.iter().any(VmReport::failed)
    }

    /// The probes' verdicts: the HTTP probe's, then the Prometheus probe's, of those that ran.
    pub fn verdicts(&self) -> impl Iterator<Item = Verdict> + '_ {
        let http = self.probe.as_ref().map(|p| p.verdict);
        let prom = self.prom_probe.as_ref().map(|p| p.verdict);
        http.into_iter().chain(prom)
    }

    /// A probe ran and its verdict is fail.
    pub fn probe_failed(&self) -> bool {
        self.verdicts().any(|v| v == Verdict::Fail)
    }

    /// A probe could not be evaluated (verdict error).
    pub fn probe_error(&self) -> bool {
        self.verdicts().any(|v| v == Verdict::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_typed_view() {
        let v: Value = serde_json::json!({
            "mode": "kernel", "flows_seen": 200, "flows_selected": 100, "resets_observed": 99,
            "reset_delay_ms": {"p50": 2000.1, "p99": 2003.0},
            "cleanup": {"verified": true}, "extra": [1, 2], "errors": []
        });
        let r = AgentReport::from_value(&v).unwrap();
        assert_eq!(r.flows_seen, Some(200));
        assert_eq!(r.reset_delay_ms.p99, Some(2003.0));
        assert_eq!(r.reset_delay_ms.max, None);
        assert_eq!(r.cleanup.verified, Some(true));
        assert_eq!(r.achieved_percent(), Some(49.5));
        assert!(AgentReport::from_value(&serde_json::json!([1])).is_none());
        let wrong = serde_json::json!({"flows_seen": "many"});
        assert!(AgentReport::from_value(&wrong).is_none());
    }

    #[test]
    fn statuses_are_spelled_as_before() {
        for (s, text) in [
            (VmStatus::Pending, "pending"),
            (VmStatus::Ok, "ok"),
            (VmStatus::Failed, "failed"),
            (VmStatus::Aborted, "aborted"),
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), text);
            assert_eq!(s.to_string(), text);
        }
        let row = VmReport {
            vm: "a".into(),
            status: VmStatus::Aborted,
            ..VmReport::default()
        };
        assert_eq!(serde_json::to_value(&row).unwrap()["status"], "aborted");
        assert!(row.failed());
    }
}
