//! The parts a window installs and removes, behind small traits so the order of install and
//! teardown is unit-tested with fakes (lifecycle/tests.rs): the eBPF observer (`Observe`), the
//! nftables steering rule (`Steer`) and the data path that holds and resets (`DataPath`), made
//! by a `Parts` factory. `RealParts` makes the real ones.
use std::{future::Future, pin::Pin};

use crate::{
    config::Config,
    ebpf::Counters,
    host::HostFacts,
    nft::{NftError, RedirectSpec, Steering},
};

use super::RunError;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The proxy's listening sockets.
pub type Listeners = Vec<std::net::TcpListener>;

/// The eBPF programs: selection, marking, counting.
pub trait Observe {
    /// Opens (true) or closes (false) the selection window.
    fn set_window(&mut self, open: bool) -> Result<(), String>;
    fn counters(&self) -> Result<Counters, String>;
    /// Kernel-measured first byte -> RST of every reset flow (connection unit), ns.
    fn flow_delays_ns(&self) -> Vec<u64>;
    /// aya-log records written so far.
    fn log_records(&self) -> u64;
    /// Detaches the programs and says whether none of ours is attached any more.
    fn detach(self: Box<Self>) -> BoxFuture<bool>;
    /// The real observer, for the data path (the flow map, the events ring); fakes have none.
    fn real(&mut self) -> Option<&mut crate::ebpf::Observer> {
        None
    }
}

/// The nftables table and its steering rule.
pub trait Steer {
    fn steering(&self) -> Steering;
    fn owned(&self) -> bool;
    fn fallbacks(&self) -> Vec<String>;
    /// The rule as `nft list` shows it, for `status`.
    fn rule_text(&self) -> String;
    /// Stops steering new connections; steered ones keep working until they are reset.
    fn stop_steering(&mut self) -> Result<(), String>;
    /// Deletes the table and checks it is gone.
    fn remove(self: Box<Self>) -> Result<(), String>;
}

/// What holds and resets: the proxy (connection unit, userspace mode) and the requests thread
/// (request unit, kernel mode).
pub trait DataPath {
    /// Connections held and requests pending: what the drain waits for.
    fn held(&self) -> u64;
    /// A snapshot of the data path's counters.
    fn stats(&self) -> DataStats;
    /// Resets everything held at once (abort).
    fn abort(&self);
    /// Stops accepting and ends the data path; returns its final counters and what failed.
    fn finish(self: Box<Self>) -> BoxFuture<(DataStats, Option<String>)>;
}

/// Makes the parts. Each call is one step of the window; an error stops the run there.
pub trait Parts {
    /// Checks that change nothing (capabilities, the interface, the agent's own path).
    fn check(&self, cfg: &Config, host: &HostFacts) -> Result<(), RunError>;
    /// One run per network namespace; the guard also answers `reset-agent status`.
    fn lock(&self, cfg: &Config, status: super::status::Shared) -> Result<Box<dyn Send>, RunError>;
    /// Leftovers of an earlier run (old kernels), removed; a line per thing removed.
    fn remove_stale(&self, cfg: &Config) -> Vec<String>;
    fn bind(&self, cfg: &Config) -> Result<Listeners, RunError>;
    /// Loads and attaches the programs (window closed); why not, when they cannot be used.
    fn observe(
        &self,
        cfg: &Config,
        host: &HostFacts,
        listeners: &Listeners,
    ) -> Result<Box<dyn Observe>, String>;
    fn steer(&self, spec: &RedirectSpec, host: &HostFacts) -> Result<Box<dyn Steer>, NftError>;
    /// Starts the data path on `listeners`, with the observer when in kernel mode.
    fn data_path(
        &self,
        cfg: &Config,
        listeners: Listeners,
        observer: Option<&mut (dyn Observe + 'static)>,
        metrics: Option<crate::metrics::Metrics>,
    ) -> Result<Box<dyn DataPath>, RunError>;
    /// Nothing of ours left: no table, no program.
    fn verify(&self, cfg: &Config) -> bool;
}

/// The data path's counters at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DataStats {
    /// Connections the proxy accepted from the steering rule.
    pub accepted: u64,
    /// Userspace mode: selections the proxy made (connections, or requests).
    pub selected: u64,
    /// Userspace mode, request unit: requests the relay saw begin.
    pub requests_seen: u64,
    /// Userspace mode, request unit: connections that are not HTTP/1.
    pub flows_opaque: u64,
    /// Resets issued: zero-linger closes (proxy) and destroyed sockets (requests thread).
    pub resets_issued: u64,
    /// Held connections and pending requests.
    pub held: u64,
    pub unconfirmed: u64,
    pub refused_direct: u64,
    pub upstream_failures: u64,
    pub callers_gone: u64,
    /// Request unit: connections closed before their reset was due.
    pub closed_first: u64,
    /// Request unit: destroys that failed otherwise.
    pub reset_failures: u64,
    /// The proxy's own reset delays, microseconds.
    pub proxy_delays_us: Vec<u64>,
    /// Request unit: the kernel's first byte -> RST per request, nanoseconds.
    pub request_delays_ns: Vec<u64>,
}
