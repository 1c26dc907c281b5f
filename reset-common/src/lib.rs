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

pub mod request;

/// Name of the tc ingress program (SYN selection, first-byte stamping).
pub const PROG_INGRESS: &str = "reset_ingress";
/// Name of the tc egress program (RST observation).
pub const PROG_EGRESS: &str = "reset_egress";
/// Name of the socket filter on the proxy's listeners (first request byte of a proxied flow).
/// Accepted sockets inherit it, so it runs on selected flows' packets only.
pub const PROG_FIRST_BYTE: &str = "reset_first_byte";

/// LRU hash `FlowKey -> FlowState`.
pub const MAP_FLOWS: &str = "FLOWS";
/// Per-CPU array of `u64` counters, indexed by the `CTR_*` constants.
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Array of one `Control` (index 0) that user space flips to open and close the window.
pub const MAP_CONTROL: &str = "CONTROL";
/// Array of one `u64` (index 0): the shared flow sequence number for `exact` selection.
pub const MAP_SEQUENCE: &str = "SEQUENCE";
/// Array of `SynSet`: recently seen SYNs of unselected flows (`random` selection), so that a
/// retransmitted SYN is counted once without storing the flow.
pub const MAP_SYN_SEEN: &str = "SYN_SEEN";

/// Capacity of the flow map: every selected flow (`random`), every flow (`exact`). At least
/// 64k concurrent flows; twice that so a burst cannot evict flows still held.
pub const FLOW_MAP_ENTRIES: u32 = 131_072;
/// Sets in `SYN_SEEN` (a power of two), `SYN_WAYS` tags each: 1 MiB.
pub const SYN_SETS: u32 = 65_536;
pub const SYN_WAYS: usize = 4;

/// Load-time global: TARGET_SERVICE_PORT (host byte order).
pub const GLOBAL_TARGET_PORT: &str = "TARGET_PORT";
/// Load-time global: toxicity in parts per million (0..=1_000_000).
pub const GLOBAL_TOXICITY_PPM: &str = "TOXICITY_PPM";
/// Load-time global: `SELECTION_RANDOM` or `SELECTION_EXACT`.
pub const GLOBAL_SELECTION: &str = "SELECTION";
/// Load-time global: the `skb->mark` value given to selected SYNs (matched by the nft rule).
pub const GLOBAL_MARK: &str = "MARK";
/// Load-time globals: the two halves of the run's random SipHash key (`flow_hash`).
pub const GLOBAL_HASH_K0: &str = "HASH_K0";
pub const GLOBAL_HASH_K1: &str = "HASH_K1";

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
/// A selected flow that could not be stored (map insert failed): left unselected.
pub const CTR_MAP_FULL: u32 = 7;
/// Slots in `COUNTERS`: these and the request unit's (`request::CTR_*`).
pub const CTR_COUNT: u32 = 16;

/// `Control::state` values.
pub const STATE_OBSERVE: u32 = 0;
pub const STATE_WINDOW: u32 = 1;

/// Window control, written by user space, read by the ingress program on every SYN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// `STATE_OBSERVE` (count nothing, select nothing) or `STATE_WINDOW`.
    pub state: u32,
    /// The state the kernel program last logged (it logs each change once, through aya-log).
    /// User space writes `STATE_UNSEEN` here with every change.
    pub logged: u32,
}

/// `Control::logged` after user space changed the state: the next SYN logs the change.
pub const STATE_UNSEEN: u32 = u32::MAX;

/// One set of `SYN_SEEN`: tags (never 0) of recently seen unselected SYNs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynSet {
    pub tags: [u32; SYN_WAYS],
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

/// SipHash-1-3 of a flow (its 4-tuple and the SYN's initial sequence number) under the run's
/// random key: the `random` selection of a flow is `random_selects(high 32 bits)`, decided
/// without state and the same for every retransmission of its SYN. The kernel program and user
/// space compute it alike.
#[inline(always)]
pub fn flow_hash(k0: u64, k1: u64, key: &FlowKey, isn: u32) -> u64 {
    let c = &key.client_addr;
    let s = &key.server_addr;
    let w = |b: &[u8; 16], i: usize| {
        u64::from_le_bytes([
            b[i],
            b[i + 1],
            b[i + 2],
            b[i + 3],
            b[i + 4],
            b[i + 5],
            b[i + 6],
            b[i + 7],
        ])
    };
    let tail = u64::from(key.client_port) | u64::from(key.server_port) << 16 | u64::from(isn) << 32;
    let words = [w(c, 0), w(c, 8), w(s, 0), w(s, 8), tail];
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    for m in words {
        v[3] ^= m;
        sip_round(&mut v);
        v[0] ^= m;
    }
    let b = 40u64 << 56;
    v[3] ^= b;
    sip_round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// Where a flow's hash lives in `SYN_SEEN`: (set index, tag). The tag is never 0 (empty way).
#[inline(always)]
pub const fn syn_slot(hash: u64) -> (u32, u32) {
    ((hash as u32) & (SYN_SETS - 1), ((hash >> 16) as u32) | 1)
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
const _: () = assert!(core::mem::size_of::<SynSet>() == 16);
const _: () = assert!(SYN_SETS.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding (sizes asserted above), every bit pattern is valid.
    unsafe impl aya::Pod for super::Control {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FlowState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SynSet {}
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

    /// Checked against std's own SipHash-1-3 (`DefaultHasher::new()` is SipHash-1-3 with a zero
    /// key, fed raw bytes by `Hasher::write`), over the 40 bytes a flow hashes: client address,
    /// server address, then ports and ISN little-endian.
    #[test]
    fn flow_hash_is_siphash_1_3() {
        use core::hash::Hasher;
        let mut key = FlowKey::default();
        for i in 0..16 {
            key.client_addr[i] = i as u8;
            key.server_addr[i] = 16 + i as u8;
        }
        key.client_port = u16::from_le_bytes([32, 33]);
        key.server_port = u16::from_le_bytes([34, 35]);
        let isn = u32::from_le_bytes([36, 37, 38, 39]);
        let bytes: std::vec::Vec<u8> = (0..40).collect();
        let mut std_hasher = std::collections::hash_map::DefaultHasher::new();
        std_hasher.write(&bytes);
        assert_eq!(flow_hash(0, 0, &key, isn), std_hasher.finish());
    }

    #[test]
    fn flow_hash_selects_binomially_and_stably() {
        let mut key = FlowKey {
            server_port: 80,
            ..Default::default()
        };
        let mut selected = 0u32;
        for port in 0..20_000u32 {
            key.client_port = port as u16;
            key.client_addr[15] = (port >> 16) as u8;
            let h = flow_hash(7, 11, &key, port.wrapping_mul(2_654_435_761));
            assert_eq!(h, flow_hash(7, 11, &key, port.wrapping_mul(2_654_435_761)));
            if random_selects((h >> 32) as u32, 300_000) {
                selected += 1;
            }
        }
        // mean 6000, sd ~65: 5 sd
        assert!((selected as i64 - 6000).abs() < 325, "{selected}");
        let (set, tag) = syn_slot(u64::MAX);
        assert!(set < SYN_SETS && tag != 0);
    }

    #[test]
    fn mapped_v4_layout() {
        let m = FlowKey::mapped_v4([198, 18, 0, 1]);
        assert_eq!(&m[10..], &[0xff, 0xff, 198, 18, 0, 1]);
    }
}
