//! The eBPF observer/selector: loads reset-ebpf's programs with the run's settings, opens and
//! closes the window, reads the kernel's counters and per-flow timestamps, and drains the
//! programs' aya-log records into tracing.
//!
//! Attachments are links (TCX on kernels >= 6.6: they die with the process). On older kernels
//! aya falls back to netlink clsact filters, which `cleanup` removes by program name. The
//! first-byte socket filter sits on the proxy's listeners and goes with them.
mod filters;
mod log;
use std::net::{IpAddr, SocketAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::{
        SchedClassifier, SocketFilter, TcAttachType,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use reset_common::{
    CTR_COUNT, Control, FLOW_IN_WINDOW, FLOW_SELECTED, FlowKey, FlowState, GLOBAL_HASH_K0,
    GLOBAL_HASH_K1, GLOBAL_MARK, GLOBAL_SELECTION, GLOBAL_TARGET_PORT, GLOBAL_TOXICITY_PPM,
    MAP_CONTROL, MAP_COUNTERS, MAP_FLOWS, PROG_EGRESS, PROG_FIRST_BYTE, PROG_INGRESS,
    SELECTION_EXACT, SELECTION_RANDOM, STATE_OBSERVE, STATE_UNSEEN, STATE_WINDOW,
};

use reset_common::request;

use crate::config::Selection;

/// The eBPF object, built by build.rs (aya-build) and embedded.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/reset-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "the embedded eBPF object is empty: this agent was built with AYA_BUILD_SKIP; rebuild it with `cargo xtask dist`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("loading or attaching {program} failed: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0} missing or of the wrong type")]
    Map(&'static str, #[source] aya::maps::MapError),
}

/// Settings patched into the programs at load time.
#[derive(Debug, Clone, Copy)]
pub struct Globals {
    pub target_port: u16,
    pub toxicity_ppm: u32,
    pub selection: Selection,
    pub mark: u32,
    /// The run's SipHash key for `random` selection (fresh per run).
    pub hash_key: (u64, u64),
    /// What a selection is: a new connection or a request.
    pub unit: crate::config::Unit,
    /// Request unit: what is withheld while a reset is pending.
    pub stream: crate::config::Stream,
}

/// Kernel counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub flows_seen: u64,
    pub flows_selected: u64,
    pub syn_retransmits: u64,
    pub resets_observed: u64,
    pub resets_other: u64,
    pub syns_outside_window: u64,
    pub unparsed: u64,
    /// Selected flows the kernel could not store (left unselected; logged by the program).
    pub map_full: u64,
    pub requests_seen: u64,
    pub requests_selected: u64,
    pub request_resets_observed: u64,
    pub requests_absorbed: u64,
    pub flows_opaque: u64,
    pub events_lost: u64,
    pub withheld_segments: u64,
    pub resets_rewritten: u64,
}

/// Loaded and attached programs. Dropping it detaches them.
pub struct Observer {
    ebpf: Ebpf,
    interface: String,
    flows: FlowTable,
    logs: Option<log::Drain>,
}

/// A shareable handle on the flow map, for the proxy's confirmation lookups.
#[derive(Clone)]
pub struct FlowTable(std::sync::Arc<HashMap<MapData, FlowKey, FlowState>>);

impl FlowTable {
    /// The kernel's record of the flow from `client` to `server`, if any.
    pub fn lookup(&self, client: SocketAddr, server: SocketAddr) -> Option<FlowState> {
        self.0.get(&flow_key(client, server), 0).ok()
    }

    /// Every in-window selected flow with both timestamps: (first byte ns, rst ns).
    pub fn reset_delays_ns(&self) -> Vec<u64> {
        let want = FLOW_SELECTED | FLOW_IN_WINDOW;
        self.0
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.flags & want == want && v.first_byte_ns != 0 && v.rst_ns != 0)
            .map(|(_, v)| v.rst_ns.saturating_sub(v.first_byte_ns))
            .collect()
    }
}

pub fn flow_key(client: SocketAddr, server: SocketAddr) -> FlowKey {
    fn bytes(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => FlowKey::mapped_v4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => FlowKey::mapped_v4(v4.octets()),
                None => v6.octets(),
            },
        }
    }
    FlowKey {
        client_addr: bytes(client.ip()),
        server_addr: bytes(server.ip()),
        client_port: client.port(),
        server_port: server.port(),
    }
}

impl Observer {
    /// Loads and attaches the programs in the observe state (window closed): the tc programs on
    /// `interface`, the first-byte filter on the proxy's `listeners`. Must run inside the tokio
    /// runtime (the log drain is a task).
    pub fn attach(
        interface: &str,
        globals: Globals,
        listeners: &[std::net::TcpListener],
        tcx: bool,
    ) -> Result<Observer, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NoObject);
        }
        let selection = match globals.selection {
            Selection::Random => SELECTION_RANDOM,
            Selection::Exact => SELECTION_EXACT,
        };
        let level = log::level_for_ebpf();
        let unit = match globals.unit {
            crate::config::Unit::Connection => request::UNIT_CONNECTION,
            crate::config::Unit::Request => request::UNIT_REQUEST,
        };
        let stream = match globals.stream {
            crate::config::Stream::Downstream => request::STREAM_DOWNSTREAM,
            crate::config::Stream::Upstream => request::STREAM_UPSTREAM,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(GLOBAL_TARGET_PORT, &globals.target_port, true)
            .override_global(GLOBAL_TOXICITY_PPM, &globals.toxicity_ppm, true)
            .override_global(GLOBAL_SELECTION, &selection, true)
            .override_global(GLOBAL_MARK, &globals.mark, true)
            .override_global(GLOBAL_HASH_K0, &globals.hash_key.0, true)
            .override_global(GLOBAL_HASH_K1, &globals.hash_key.1, true)
            .override_global(request::GLOBAL_UNIT, &unit, true)
            .override_global(request::GLOBAL_STREAM, &stream, true)
            .override_global(aya_log::LEVEL, &level, true)
            .load(OBJECT)
            .map_err(EbpfError::Load)?;
        // The drain starts before the programs run, so their first record is not missed.
        let logs = log::Drain::start(&mut ebpf);
        for (name, attach_type) in [
            (PROG_INGRESS, TcAttachType::Ingress),
            (PROG_EGRESS, TcAttachType::Egress),
        ] {
            let err = |source| EbpfError::Program {
                program: name,
                source,
            };
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(EbpfError::Program {
                    program: name,
                    source: aya::programs::ProgramError::UnexpectedProgramType,
                })?
                .try_into()
                .map_err(err)?;
            prog.load().map_err(err)?;
            if !tcx {
                // No TCX: a netlink filter on the clsact qdisc (EEXIST is fine), removed when the
                // link is dropped, or by `cleanup` if the agent dies.
                let _ = tc::qdisc_add_clsact(interface);
                let nl = TcAttachOptions::Netlink(NlOptions::default());
                prog.attach_with_options(interface, attach_type, nl)
                    .map_err(err)?;
            } else {
                prog.attach(interface, attach_type).map_err(err)?;
            }
        }
        let err = |source| EbpfError::Program {
            program: PROG_FIRST_BYTE,
            source,
        };
        let filter: &mut SocketFilter = ebpf
            .program_mut(PROG_FIRST_BYTE)
            .ok_or(EbpfError::Program {
                program: PROG_FIRST_BYTE,
                source: aya::programs::ProgramError::UnexpectedProgramType,
            })?
            .try_into()
            .map_err(err)?;
        filter.load().map_err(err)?;
        for listener in listeners {
            filter.attach(listener).map_err(err)?;
        }
        let flows_map = ebpf.take_map(MAP_FLOWS).ok_or(EbpfError::Map(
            MAP_FLOWS,
            aya::maps::MapError::InvalidName {
                name: MAP_FLOWS.into(),
            },
        ))?;
        let flows = HashMap::try_from(flows_map).map_err(|e| EbpfError::Map(MAP_FLOWS, e))?;
        Ok(Observer {
            ebpf,
            interface: interface.to_owned(),
            flows: FlowTable(std::sync::Arc::new(flows)),
            logs,
        })
    }

    /// The kernel-to-agent event ring of the request unit (taken once, by the requests thread).
    pub fn take_events(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        let map = self.ebpf.take_map(request::MAP_EVENTS)?;
        aya::maps::RingBuf::try_from(map).ok()
    }

    /// How many aya-log records the programs wrote so far (rare events only).
    pub fn log_records(&self) -> u64 {
        self.logs.as_ref().map_or(0, log::Drain::records)
    }

    /// Opens (true) or closes (false) the selection window.
    pub fn set_window(&mut self, open: bool) -> Result<(), EbpfError> {
        let map = self.ebpf.map_mut(MAP_CONTROL).ok_or(EbpfError::Map(
            MAP_CONTROL,
            aya::maps::MapError::InvalidName {
                name: MAP_CONTROL.into(),
            },
        ))?;
        let mut control: Array<_, Control> =
            Array::try_from(map).map_err(|e| EbpfError::Map(MAP_CONTROL, e))?;
        let state = if open { STATE_WINDOW } else { STATE_OBSERVE };
        control
            .set(
                0,
                Control {
                    state,
                    logged: STATE_UNSEEN,
                },
                0,
            )
            .map_err(|e| EbpfError::Map(MAP_CONTROL, e))
    }

    pub fn flows(&self) -> FlowTable {
        self.flows.clone()
    }

    pub fn counters(&self) -> Result<Counters, EbpfError> {
        let map = self.ebpf.map(MAP_COUNTERS).ok_or(EbpfError::Map(
            MAP_COUNTERS,
            aya::maps::MapError::InvalidName {
                name: MAP_COUNTERS.into(),
            },
        ))?;
        let arr: PerCpuArray<_, u64> =
            PerCpuArray::try_from(map).map_err(|e| EbpfError::Map(MAP_COUNTERS, e))?;
        let mut sums = [0u64; CTR_COUNT as usize];
        for (i, sum) in sums.iter_mut().enumerate() {
            let values = arr
                .get(&(i as u32), 0)
                .map_err(|e| EbpfError::Map(MAP_COUNTERS, e))?;
            *sum = values.iter().sum();
        }
        Ok(Counters {
            flows_seen: sums[reset_common::CTR_FLOWS_SEEN as usize],
            flows_selected: sums[reset_common::CTR_FLOWS_SELECTED as usize],
            syn_retransmits: sums[reset_common::CTR_SYN_RETRANSMITS as usize],
            resets_observed: sums[reset_common::CTR_RESETS_OBSERVED as usize],
            resets_other: sums[reset_common::CTR_RESETS_OTHER as usize],
            syns_outside_window: sums[reset_common::CTR_SYNS_OUTSIDE_WINDOW as usize],
            unparsed: sums[reset_common::CTR_UNPARSED as usize],
            map_full: sums[reset_common::CTR_MAP_FULL as usize],
            requests_seen: sums[request::CTR_REQUESTS_SEEN as usize],
            requests_selected: sums[request::CTR_REQUESTS_SELECTED as usize],
            request_resets_observed: sums[request::CTR_REQUEST_RESETS_OBSERVED as usize],
            requests_absorbed: sums[request::CTR_REQUESTS_ABSORBED as usize],
            flows_opaque: sums[request::CTR_FLOWS_OPAQUE as usize],
            events_lost: sums[request::CTR_EVENTS_LOST as usize],
            withheld_segments: sums[request::CTR_WITHHELD_SEGMENTS as usize],
            resets_rewritten: sums[request::CTR_RESETS_REWRITTEN as usize],
        })
    }

    /// Detaches the programs (by dropping them) and checks none of ours is still attached.
    /// The programs' last log records are drained first.
    pub async fn detach(self) -> bool {
        let interface = self.interface.clone();
        if let Some(logs) = self.logs {
            logs.stop().await;
        }
        drop(self.flows);
        drop(self.ebpf);
        attached_programs(&interface).is_empty()
    }
}

/// Names of our programs attached to `interface` (TCX and netlink), for verification.
pub fn attached_programs(interface: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attach_type in [TcAttachType::Ingress, TcAttachType::Egress] {
        if let Ok((_, progs)) = SchedClassifier::query_tcx(interface, attach_type) {
            for p in progs {
                if let Some(name) = p.name_as_str()
                    && is_ours(name)
                {
                    found.push(name.to_owned());
                }
            }
        }
    }
    match nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from) {
        Ok(index) => match filters::bpf_filter_names(index) {
            Ok(names) => found.extend(names.into_iter().filter(|n| is_ours(n))),
            Err(e) => {
                tracing::warn!(interface, error = %e, "cannot list the interface's tc filters")
            }
        },
        // No such interface: nothing can be attached to it.
        Err(e) => tracing::debug!(interface, error = %e, "cannot find the interface's index"),
    }
    found
}

/// Kernel program names are truncated to 15 bytes.
fn is_ours(name: &str) -> bool {
    [PROG_INGRESS, PROG_EGRESS]
        .iter()
        .any(|p| p.starts_with(name) && !name.is_empty())
}

/// Removes netlink tc filters left by an agent on an old kernel. Returns how many were removed.
pub fn remove_stale_filters(interface: &str) -> usize {
    let mut removed = 0;
    for (attach_type, name) in [
        (TcAttachType::Ingress, PROG_INGRESS),
        (TcAttachType::Egress, PROG_EGRESS),
    ] {
        if tc::qdisc_detach_program(interface, attach_type, name).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Loads and verifies the programs without attaching them (preflight).
pub fn probe_load() -> Result<(), String> {
    if OBJECT.is_empty() {
        return Err(EbpfError::NoObject.to_string());
    }
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| format!("{e:#}"))?;
    for name in [PROG_INGRESS, PROG_EGRESS] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing"))?
            .try_into()
            .map_err(|e| format!("{e:#}"))?;
        prog.load().map_err(|e| format!("{name}: {e:#}"))?;
    }
    let filter: &mut SocketFilter = ebpf
        .program_mut(PROG_FIRST_BYTE)
        .ok_or_else(|| format!("program {PROG_FIRST_BYTE} missing"))?
        .try_into()
        .map_err(|e| format!("{e:#}"))?;
    filter
        .load()
        .map_err(|e| format!("{PROG_FIRST_BYTE}: {e:#}"))?;
    Ok(())
}
