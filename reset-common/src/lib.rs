//! Types and names shared by the eBPF programs (`reset-ebpf`) and the agent (`reset-agent`).
//!
//! Owns: the `#[repr(C)]` layout of every map key and value, the map and global names, and the
//! counter indices. Must not: do I/O, allocate, or hold logic beyond the pure selection rule the
//! two sides must agree on. Every type is padding-free (asserted below) and uses integer flags
//! instead of `bool`, so the kernel and user space read the same bytes.
#![no_std]

// The settings contract of the two user-space binaries (std, serde); never built for the kernel.
#[cfg(feature = "settings")]
extern crate std;
#[cfg(feature = "settings")]
pub mod settings;

/// Name of the tc ingress program (SYN selection, first-byte stamping).
pub const PROG_INGRESS: &str = "reset_ingress";
/// Name of the tc egress program (RST observation).
pub const PROG_EGRESS: &str = "reset_egress";

/// LRU hash `FlowKey -> FlowState`.
pub const MAP_FLOWS: &str = "FLOWS";
/// Per-CPU array of `u64` counters, indexed by the `CTR_*` constants.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Array of one `Control` (index 0) that user space flips to open and close the window.
pub const MAP_CONTROL: &str = "CONTROL";
/// Array of one `u64` (index 0): the shared flow sequence number for `exact` selection.
pub const MAP_SEQUENCE: &str = "SEQUENCE";

/// Capacity of the flow map. The issue asks for at least 64k concurrent flows; the LRU map
/// keeps twice that so a burst of unselected flows cannot evict selected ones still held.
pub const FLOW_MAP_ENTRIES: u32 = 131_072;

/// Load-time global: TARGET_SERVICE_PORT (host byte order).
pub const GLOBAL_TARGET_PORT: &str = "TARGET_PORT";
/// Load-time global: toxicity in parts per million (0..=1_000_000).
pub const GLOBAL_TOXICITY_PPM: &str = "TOXICITY_PPM";
/// Load-time global: `SELECTION_RANDOM` or `SELECTION_EXACT`.
pub const GLOBAL_SELECTION: &str = "SELECTION";
/// Load-time global: the `skb->mark` value given to selected SYNs (matched by the nft rule).
pub const GLOBAL_MARK: &str = "MARK";
/// Load-time global: 1 to mark every ingress packet of a selected flow, not just its SYN.
/// Needed when unselected flows are exempted from conntrack (nft `notrack` on unmarked
/// packets): a selected flow's later packets must stay tracked for NAT.
pub const GLOBAL_MARK_ALL: &str = "MARK_ALL";

pub const SELECTION_RANDOM: u32 = 0;
pub const SELECTION_EXACT: u32 = 1;

/// One million: toxicity is carried as parts per million everywhere.
pub const PPM: u64 = 1_000_000;

/// Counter indices in `COUNTERS` (per-CPU; user space sums over CPUs).
pub const CTR_FLOWS_SEEN: u32 = 0;
pub const CTR_FLOWS_SELECTED: u32 = 1;
/// A SYN already in the map with the same ISN (retransmission): not a new flow.
pub const CTR_SYN_RETRANSMITS: u32 = 2;
/// First RST leaving from TARGET_SERVICE_PORT on a selected in-window flow.
pub const CTR_RESETS_OBSERVED: u32 = 3;
/// RST leaving from TARGET_SERVICE_PORT on any other flow (the service's own resets, ...).
pub const CTR_RESETS_OTHER: u32 = 4;
/// SYNs to the target port seen while the window was closed (ramp, drain).
pub const CTR_SYNS_OUTSIDE_WINDOW: u32 = 5;
/// Packets to the target port that could not be parsed (IP options past bounds, fragments).
pub const CTR_UNPARSED: u32 = 6;
pub const CTR_COUNT: u32 = 8;

/// `Control::state` values.
pub const STATE_OBSERVE: u32 = 0;
pub const STATE_WINDOW: u32 = 1;

/// Window control, written by user space, read by the ingress program on every SYN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// `STATE_OBSERVE` (count nothing, select nothing) or `STATE_WINDOW`.
    pub state: u32,
    pub _reserved: u32,
}

/// A flow as the caller sees it: its address and port, and the service's address and port.
/// IPv4 addresses are stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so one map serves both.
/// Addresses are in network byte order, ports in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
}

/// `FlowState::flags` bits.
pub const FLOW_SELECTED: u32 = 1;
/// The SYN arrived inside the window (so the flow counts in `flows_*`).
pub const FLOW_IN_WINDOW: u32 = 2;

/// What the kernel knows about one flow. Timestamps are `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// Initial sequence number of the SYN: tells a retransmitted SYN from port reuse.
    pub isn: u32,
    pub flags: u32,
    pub syn_ns: u64,
    /// First ingress segment with payload (the first request byte on the wire).
    pub first_byte_ns: u64,
    /// First RST leaving from the service port for this flow.
    pub rst_ns: u64,
}

impl FlowKey {
    /// Maps an IPv4 address (network byte order octets) to the IPv4-mapped IPv6 form.
    pub const fn mapped_v4(octets: [u8; 4]) -> [u8; 16] {
        [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2], octets[3],
        ]
    }
}

/// The `exact` selection rule, shared so user space (userspace mode, tests) and the kernel agree
/// bit for bit: flow number `n` (0-based) is selected iff `floor((n+1)p) > floor(n p)`, which
/// selects exactly `floor(N p)` of the first `N` flows, spread evenly (error diffusion).
#[inline(always)]
pub const fn exact_selects(n: u64, toxicity_ppm: u64) -> bool {
    // n < 2^44 keeps (n + 1) * 1e6 < 2^64; at 10M flows/s that is 20 days of flows.
    ((n + 1) * toxicity_ppm) / PPM > (n * toxicity_ppm) / PPM
}

/// The `random` selection rule over a uniform `u32`: selected iff `r * 1e6 / 2^32 < ppm`
/// (multiply-shift: no modulo bias, no division on the packet path).
#[inline(always)]
pub const fn random_selects(r: u32, toxicity_ppm: u64) -> bool {
    ((r as u64 * PPM) >> 32) < toxicity_ppm
}

const _: () = assert!(core::mem::size_of::<Control>() == 8);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 36);
const _: () = assert!(core::mem::size_of::<FlowState>() == 32);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding (sizes asserted above), every bit pattern is valid.
    unsafe impl aya::Pod for super::Control {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowState {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn exact_selects_floor_n_p_for_every_prefix() {
        for ppm in [0, 1, 5_000, 300_000, 333_333, 500_000, 999_999, 1_000_000] {
            let mut selected = 0u64;
            for n in 0..20_000u64 {
                if exact_selects(n, ppm) {
                    selected += 1;
                }
                assert_eq!(selected, (n + 1) * ppm / PPM, "ppm={ppm} n={n}");
            }
        }
    }

    #[test]
    fn random_selects_matches_probability_at_the_edges() {
        assert!(!random_selects(0, 0));
        assert!(!random_selects(u32::MAX, 0));
        assert!(random_selects(0, PPM));
        assert!(random_selects(u32::MAX, PPM));
        // half the u32 range is selected at 50%
        assert!(random_selects(u32::MAX / 2, 500_000));
        assert!(!random_selects(u32::MAX / 2 + 1, 500_000));
    }

    #[test]
    fn mapped_v4_layout() {
        let m = FlowKey::mapped_v4([198, 18, 0, 1]);
        assert_eq!(&m[10..], &[0xff, 0xff, 198, 18, 0, 1]);
    }
}
