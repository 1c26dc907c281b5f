//! What a running agent says about itself: the live status `reset-agent status` prints and a
//! second run is refused with. The lifecycle updates it at every step and every half second;
//! the run lock's socket (instance.rs) answers with it.
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Counts so far: the kernel's and the data path's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub flows_seen: u64,
    pub flows_selected: u64,
    pub requests_seen: u64,
    pub requests_selected: u64,
    pub proxy_accepted: u64,
    pub resets_issued: u64,
    pub resets_observed: u64,
    pub held: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Status {
    /// "pid N, started T, TARGET_SERVICE_PORT P, PROXY_PORT Q": who holds the run lock.
    pub holder: String,
    pub pid: u32,
    pub started_at: String,
    /// ramp, installing, window, draining, removing, done.
    pub phase: String,
    pub window_opened_at: Option<String>,
    pub seconds_left: Option<u64>,
    pub mode: String,
    pub unit: String,
    pub toxicity_percent: f64,
    pub reset_timeout_ms: u64,
    pub target_service_port: u16,
    pub network_interface: String,
    /// `inet reset_peer` while the table exists.
    pub table: Option<String>,
    /// The steering rule as `nft list table` shows it.
    pub rule: Option<String>,
    pub counts: Counts,
    /// When `counts` were read (RFC 3339; they are refreshed every 500 ms).
    pub counts_at: Option<String>,
}

pub type Shared = Arc<Mutex<Status>>;

/// Applies `f` to the shared status.
pub fn update(shared: &Shared, f: impl FnOnce(&mut Status)) {
    f(&mut shared.lock().unwrap_or_else(|e| e.into_inner()));
}

/// The status as JSON (what the run lock answers).
pub fn json(shared: &Shared) -> String {
    serde_json::to_string(&*shared.lock().unwrap_or_else(|e| e.into_inner()))
        .unwrap_or_else(|_| "{}".into())
}
