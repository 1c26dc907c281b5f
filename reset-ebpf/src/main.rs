//! The kernel side of reset-peer: two tc programs on NETWORK_INTERFACE and a socket filter on
//! the proxy's listeners.
//!
//! Owns: flow selection at SYN time (random: a keyed hash of the 4-tuple and ISN, no state;
//! exact: a shared counter, every flow stored), the `skb->mark` that the nftables rule steers
//! on, per-flow timestamps of selected flows (SYN, first request byte, first RST on the wire)
//! and the per-CPU counters. Must not: drop, modify or redirect packets (it only marks), log on
//! the per-packet path (aya-log only on rare events: a failed map insert, a window change), or
//! read a header except through bounds-checked access. An unselected flow costs one hash and
//! one array slot at its SYN and nothing afterwards. Settings arrive as load-time globals; the
//! window is opened and closed by user space through `CONTROL`.
//!
//! Built for `bpfel-unknown-none` by reset-agent's build script. On the host it compiles to an
//! empty binary so that `cargo clippy --workspace` checks this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod first_byte;
mod packet;
mod request;
mod select;

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, socket_filter},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{SkBuffContext, TcContext},
};
use packet::Direction;
use reset_common::{
    CTR_COUNT, CTR_RESETS_OBSERVED, CTR_RESETS_OTHER, CTR_UNPARSED, Control, FLOW_IN_WINDOW,
    FLOW_MAP_ENTRIES, FLOW_SELECTED, FlowKey, FlowState, SYN_SETS, SynSet,
};

/// "Continue": TC_ACT_UNSPEC for netlink cls_bpf, TCX_NEXT for TCX. We never end the chain, so
/// programs after ours (a CNI's, a firewall's) still see every packet.
const TC_NEXT: i32 = -1;

// Load-time globals (set by the agent with EbpfLoader::override_global; names in reset-common).
#[unsafe(no_mangle)]
static TARGET_PORT: u16 = 80;
#[unsafe(no_mangle)]
static TOXICITY_PPM: u32 = 0;
#[unsafe(no_mangle)]
static SELECTION: u32 = 0;
#[unsafe(no_mangle)]
static MARK: u32 = 0;
#[unsafe(no_mangle)]
static HASH_K0: u64 = 0;
#[unsafe(no_mangle)]
static HASH_K1: u64 = 0;
/// `request::UNIT_CONNECTION` or `UNIT_REQUEST`.
#[unsafe(no_mangle)]
static UNIT: u32 = 0;
/// `request::STREAM_DOWNSTREAM` or `STREAM_UPSTREAM`.
#[unsafe(no_mangle)]
static STREAM: u32 = 0;

#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(FLOW_MAP_ENTRIES, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

#[map(name = "CONTROL")]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

#[map(name = "SEQUENCE")]
static SEQUENCE: Array<u64> = Array::with_max_entries(1, 0);

#[map(name = "SYN_SEEN")]
static SYN_SEEN: Array<SynSet> = Array::with_max_entries(SYN_SETS, 0);

#[classifier]
pub fn reset_ingress(ctx: TcContext) -> i32 {
    match select::try_ingress(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

#[classifier]
pub fn reset_egress(ctx: TcContext) -> i32 {
    match try_egress(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

#[socket_filter]
pub fn reset_first_byte(ctx: SkBuffContext) -> i64 {
    first_byte::stamp(&ctx);
    // A socket filter returns how many bytes to keep: all of them.
    i64::from(ctx.len())
}

#[inline(always)]
fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: the global lives in .rodata, patched by the loader before the program runs;
    // a volatile read keeps the compiler from folding the compile-time default.
    unsafe { core::ptr::read_volatile(value) }
}

#[inline(always)]
fn bump(counter: u32) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(counter) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *ptr += 1 };
    }
}

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: helper without arguments or side effects.
    unsafe { bpf_ktime_get_ns() }
}

/// Egress: the first RST leaving from the service port for each selected in-window flow.
/// Non-RST segments cost a header parse and nothing else.
fn try_egress(ctx: &TcContext) -> Result<i32, i32> {
    let port = global(&TARGET_PORT);
    let seg = match packet::parse(ctx, Direction::FromPort(port)) {
        Ok(Some(seg)) => seg,
        Ok(None) => return Ok(TC_NEXT),
        Err(()) => {
            bump(CTR_UNPARSED);
            return Ok(TC_NEXT);
        }
    };
    if global(&UNIT) == reset_common::request::UNIT_REQUEST {
        return Ok(request::egress(ctx, &seg));
    }
    if !seg.is_rst() {
        return Ok(TC_NEXT);
    }
    let key = seg.flow_key();
    match FLOWS.get_ptr_mut(key) {
        Some(flow) => {
            // SAFETY: a valid pointer into the map value; fields are plain integers.
            let flow = unsafe { &mut *flow };
            let ours = FLOW_SELECTED | FLOW_IN_WINDOW;
            if flow.flags & ours == ours {
                if flow.rst_ns == 0 {
                    flow.rst_ns = now_ns();
                    bump(CTR_RESETS_OBSERVED);
                }
            } else {
                bump(CTR_RESETS_OTHER);
            }
        }
        None => bump(CTR_RESETS_OTHER),
    }
    Ok(TC_NEXT)
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
