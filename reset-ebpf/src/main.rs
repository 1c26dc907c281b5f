//! The kernel side of reset-peer: two tc programs on NETWORK_INTERFACE.
//!
//! Owns: flow selection at SYN time (random or exact), the `skb->mark` that the nftables rule
//! redirects on, per-flow timestamps (SYN, first request byte, first RST on the wire) and the
//! per-CPU counters. Must not: drop, modify or redirect packets (it only marks), log on the
//! packet path, or read a header except through bounds-checked loads. Settings arrive as
//! load-time globals; the window is opened and closed by user space through `CONTROL`.
//!
//! Built for `bpfel-unknown-none` by reset-agent's build script. On the host it compiles to an
//! empty binary so that `cargo clippy --workspace` checks this code too.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

mod packet;

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns},
    macros::{classifier, map},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::TcContext,
};
use packet::{Direction, Segment};
use reset_common::{
    CTR_COUNT, CTR_FLOWS_SEEN, CTR_FLOWS_SELECTED, CTR_RESETS_OBSERVED, CTR_RESETS_OTHER,
    CTR_SYN_RETRANSMITS, CTR_SYNS_OUTSIDE_WINDOW, CTR_UNPARSED, Control, FLOW_IN_WINDOW,
    FLOW_MAP_ENTRIES, FLOW_SELECTED, FlowKey, FlowState, SELECTION_EXACT, STATE_WINDOW,
    exact_selects, random_selects,
};

/// "Continue": TC_ACT_UNSPEC for netlink cls_bpf, TCX_NEXT for TCX. We never end the chain, so
/// programs after ours (a CNI's, a firewall's) still see every packet.
const TC_NEXT: i32 = -1;

// Load-time globals (set by the agent with EbpfLoader::set_global; names in reset-common).
#[unsafe(no_mangle)]
static TARGET_PORT: u16 = 80;
#[unsafe(no_mangle)]
static TOXICITY_PPM: u32 = 0;
#[unsafe(no_mangle)]
static SELECTION: u32 = 0;
#[unsafe(no_mangle)]
static MARK: u32 = 0;
#[unsafe(no_mangle)]
static MARK_ALL: u32 = 0;

#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowState> = LruHashMap::with_max_entries(FLOW_MAP_ENTRIES, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CTR_COUNT, 0);

#[map(name = "CONTROL")]
static CONTROL: Array<Control> = Array::with_max_entries(1, 0);

#[map(name = "SEQUENCE")]
static SEQUENCE: Array<u64> = Array::with_max_entries(1, 0);

#[classifier]
pub fn reset_ingress(ctx: TcContext) -> i32 {
    match try_ingress(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

#[classifier]
pub fn reset_egress(ctx: TcContext) -> i32 {
    match try_egress(&ctx) {
        Ok(v) | Err(v) => v,
    }
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

#[inline(always)]
fn window_open() -> bool {
    CONTROL.get(0).is_some_and(|c| c.state == STATE_WINDOW)
}

fn try_ingress(ctx: &TcContext) -> Result<i32, i32> {
    let port = global(&TARGET_PORT);
    let seg = match Segment::parse(ctx, Direction::ToPort(port)) {
        Ok(Some(seg)) => seg,
        Ok(None) => return Ok(TC_NEXT),
        Err(()) => {
            bump(CTR_UNPARSED);
            return Ok(TC_NEXT);
        }
    };
    let key = seg.flow_key();

    if seg.is_syn() {
        if let Some(flow) = FLOWS.get_ptr_mut(key) {
            // SAFETY: a valid pointer into the map value; fields are plain integers.
            let flow = unsafe { &mut *flow };
            if flow.isn == seg.seq {
                // A retransmitted SYN keeps its verdict (and its mark) and is counted once.
                bump(CTR_SYN_RETRANSMITS);
                if flow.flags & FLOW_SELECTED != 0 {
                    ctx.set_mark(global(&MARK));
                }
                return Ok(TC_NEXT);
            }
            // Same 4-tuple, new ISN: port reuse after TIME_WAIT, a new flow (below).
        }
        if !window_open() {
            bump(CTR_SYNS_OUTSIDE_WINDOW);
            // Forget any stale verdict, so a reused 4-tuple cannot inherit it.
            let _ = FLOWS.remove(key);
            return Ok(TC_NEXT);
        }
        bump(CTR_FLOWS_SEEN);
        let selected = select();
        let mut flags = FLOW_IN_WINDOW;
        if selected {
            flags |= FLOW_SELECTED;
        }
        let state = FlowState {
            isn: seg.seq,
            flags,
            syn_ns: now_ns(),
            first_byte_ns: 0,
            rst_ns: 0,
        };
        if FLOWS.insert(key, state, 0).is_err() {
            // Without the map entry the proxy cannot confirm the flow: leave it unselected.
            bump(CTR_UNPARSED);
            return Ok(TC_NEXT);
        }
        if selected {
            bump(CTR_FLOWS_SELECTED);
            ctx.set_mark(global(&MARK));
        }
        return Ok(TC_NEXT);
    }

    let mark_all = global(&MARK_ALL) != 0;
    if (seg.payload_len > 0 || mark_all)
        && let Some(flow) = FLOWS.get_ptr_mut(key)
    {
        // SAFETY: a valid pointer into the map value.
        let flow = unsafe { &mut *flow };
        if flow.flags & FLOW_SELECTED != 0 {
            if mark_all {
                ctx.set_mark(global(&MARK));
            }
            if seg.payload_len > 0 && flow.first_byte_ns == 0 {
                flow.first_byte_ns = now_ns();
            }
        }
    }
    Ok(TC_NEXT)
}

fn select() -> bool {
    let ppm = u64::from(global(&TOXICITY_PPM));
    if global(&SELECTION) == SELECTION_EXACT {
        let Some(seq) = SEQUENCE.get_ptr_mut(0) else {
            return false;
        };
        // SAFETY: `seq` points at the 8-byte, 8-aligned value of a live array map entry.
        let n = unsafe { fetch_add(seq, 1) };
        exact_selects(n, ppm)
    } else {
        // SAFETY: helper without arguments.
        random_selects(unsafe { bpf_get_prandom_u32() }, ppm)
    }
}

/// Atomic fetch-and-add on a map value shared by all CPUs (BPF_ATOMIC | BPF_FETCH, kernel
/// >= 5.12). core's AtomicU64::fetch_add is not available on the bpf target, so this is the one
/// line of assembly in the crate.
///
/// # Safety
/// `ptr` must point at a valid, 8-byte aligned u64 in a map value.
#[cfg(target_arch = "bpf")]
#[inline(always)]
unsafe fn fetch_add(ptr: *mut u64, add: u64) -> u64 {
    let mut value = add;
    // SAFETY: the caller guarantees `ptr`; the instruction only touches that word.
    unsafe {
        core::arch::asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) ptr,
            v = inout(reg) value,
        );
    }
    value
}

/// Host build (clippy only; the programs never run on the host).
#[cfg(not(target_arch = "bpf"))]
unsafe fn fetch_add(ptr: *mut u64, add: u64) -> u64 {
    // SAFETY: the caller guarantees `ptr`.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(ptr) }
        .fetch_add(add, core::sync::atomic::Ordering::Relaxed)
}

fn try_egress(ctx: &TcContext) -> Result<i32, i32> {
    let port = global(&TARGET_PORT);
    let seg = match Segment::parse(ctx, Direction::FromPort(port)) {
        Ok(Some(seg)) => seg,
        Ok(None) | Err(()) => return Ok(TC_NEXT),
    };
    if !seg.is_rst() {
        return Ok(TC_NEXT);
    }
    let key = seg.flow_key();
    match FLOWS.get_ptr_mut(key) {
        Some(flow) => {
            // SAFETY: a valid pointer into the map value.
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
