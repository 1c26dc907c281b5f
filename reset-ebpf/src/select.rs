//! Ingress: selection at SYN time. Every other segment returns after the header parse.
//!
//! `random`: the verdict is `random_selects` of a SipHash of the 4-tuple and the ISN under the
//! run's key: stateless, and the same for every retransmission of a SYN. Only selected flows
//! are stored (FLOWS, for the proxy's confirmation and the timestamps); an unselected SYN
//! leaves a 32-bit tag in a 4-way set of SYN_SEEN so that its retransmissions are counted once.
//!
//! `exact`: flow number n is selected iff `exact_selects(n)`; a retransmitted SYN must not take
//! a second number, so every flow is stored (one LRU insert per new flow).
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use aya_log_ebpf::{info, warn};
use reset_common::{
    CTR_FLOWS_SEEN, CTR_FLOWS_SELECTED, CTR_MAP_FULL, CTR_SYN_RETRANSMITS, CTR_SYNS_OUTSIDE_WINDOW,
    CTR_UNPARSED, FLOW_IN_WINDOW, FLOW_SELECTED, FlowKey, FlowState, SELECTION_EXACT, STATE_WINDOW,
    SYN_WAYS, exact_selects, flow_hash, random_selects, syn_slot,
};

use reset_common::request::UNIT_REQUEST;

use crate::{
    CONTROL, FLOWS, HASH_K0, HASH_K1, MARK, SELECTION, SEQUENCE, SYN_SEEN, TARGET_PORT, TC_NEXT,
    TOXICITY_PPM, UNIT, bump, global,
    packet::{self, Direction, Segment},
    request,
};

pub fn try_ingress(ctx: &TcContext) -> Result<i32, i32> {
    let port = global(&TARGET_PORT);
    let request_unit = global(&UNIT) == UNIT_REQUEST;
    let seg = match packet::parse(ctx, Direction::ToPort(port)) {
        Ok(Some(seg)) if seg.is_syn() => seg,
        Ok(Some(seg)) if request_unit => {
            return Ok(request::ingress(ctx, &seg, window_open(ctx)));
        }
        Ok(_) => return Ok(TC_NEXT),
        Err(()) => {
            bump(CTR_UNPARSED);
            return Ok(TC_NEXT);
        }
    };
    let window = window_open(ctx);
    let key = seg.flow_key();
    if request_unit {
        // New connections are counted as flows; requests are the selections.
        if window && first_sighting(flow_hash(global(&HASH_K0), global(&HASH_K1), &key, seg.seq)) {
            bump(CTR_FLOWS_SEEN);
            request::syn(&key);
        }
        return Ok(TC_NEXT);
    }
    if global(&SELECTION) == SELECTION_EXACT {
        exact(ctx, &seg, &key, window);
    } else {
        random(ctx, &seg, &key, window);
    }
    Ok(TC_NEXT)
}

/// Whether the window is open; logs (aya-log, once per change) when user space changed it.
#[inline(always)]
fn window_open(ctx: &TcContext) -> bool {
    let Some(control) = CONTROL.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a valid pointer into the one-element array map; plain integers.
    let control = unsafe { &mut *control };
    let state = control.state;
    if control.logged != state {
        // Rare: once per window change. Two CPUs may both log it; that is harmless.
        control.logged = state;
        if state == STATE_WINDOW {
            info!(ctx, "window opened: selecting new flows");
        } else {
            info!(ctx, "window closed: no new flow is selected");
        }
    }
    state == STATE_WINDOW
}

/// A SYN already stored with the same ISN is a retransmission: it keeps its verdict (and its
/// mark) and is counted once. Returns whether it was one.
#[inline(always)]
fn retransmission(ctx: &TcContext, key: &FlowKey, isn: u32) -> bool {
    // SAFETY: lookups return valid pointers into map values of plain integers.
    match FLOWS.get_ptr_mut(key).map(|f| unsafe { &*f }) {
        Some(flow) if flow.isn == isn => {
            bump(CTR_SYN_RETRANSMITS);
            if flow.flags & FLOW_SELECTED != 0 {
                ctx.set_mark(global(&MARK));
            }
            true
        }
        _ => false,
    }
}

#[inline(always)]
fn store(ctx: &TcContext, key: &FlowKey, isn: u32, selected: bool) -> bool {
    let flags = if selected {
        FLOW_IN_WINDOW | FLOW_SELECTED
    } else {
        FLOW_IN_WINDOW
    };
    let state = FlowState {
        isn,
        flags,
        // SAFETY: helper without arguments or side effects.
        syn_ns: unsafe { bpf_ktime_get_ns() },
        first_byte_ns: 0,
        rst_ns: 0,
    };
    if FLOWS.insert(key, state, 0).is_err() {
        bump(CTR_MAP_FULL);
        warn!(
            ctx,
            "flow map insert failed: a selected flow stays unselected"
        );
        return false;
    }
    true
}

fn random(ctx: &TcContext, seg: &Segment, key: &FlowKey, window: bool) {
    let hash = flow_hash(global(&HASH_K0), global(&HASH_K1), key, seg.seq);
    let selected = random_selects((hash >> 32) as u32, u64::from(global(&TOXICITY_PPM)));
    if selected && retransmission(ctx, key, seg.seq) {
        return;
    }
    if !window {
        bump(CTR_SYNS_OUTSIDE_WINDOW);
        return;
    }
    if !selected {
        if !first_sighting(hash) {
            bump(CTR_SYN_RETRANSMITS);
            return;
        }
        bump(CTR_FLOWS_SEEN);
        return;
    }
    bump(CTR_FLOWS_SEEN);
    if store(ctx, key, seg.seq, true) {
        bump(CTR_FLOWS_SELECTED);
        ctx.set_mark(global(&MARK));
    }
}

/// Records an unselected SYN's tag in its set; false when the tag was already there (a
/// retransmission). A full set replaces the way the hash picks.
#[inline(always)]
fn first_sighting(hash: u64) -> bool {
    let (set, tag) = syn_slot(hash);
    let Some(ways) = SYN_SEEN.get_ptr_mut(set) else {
        return true;
    };
    // SAFETY: a valid pointer into the array map value; plain integers.
    let ways = unsafe { &mut (*ways).tags };
    let mut free = None;
    for (i, way) in ways.iter().enumerate() {
        if *way == tag {
            return false;
        }
        if *way == 0 && free.is_none() {
            free = Some(i);
        }
    }
    let victim = free.unwrap_or(((hash >> 48) as usize) % SYN_WAYS);
    if let Some(way) = ways.get_mut(victim) {
        *way = tag;
    }
    true
}

fn exact(ctx: &TcContext, seg: &Segment, key: &FlowKey, window: bool) {
    if retransmission(ctx, key, seg.seq) {
        return;
    }
    if !window {
        bump(CTR_SYNS_OUTSIDE_WINDOW);
        return;
    }
    let Some(seq) = SEQUENCE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `seq` points at the 8-byte, 8-aligned value of a live array map entry.
    let n = unsafe { fetch_add(seq, 1) };
    let selected = exact_selects(n, u64::from(global(&TOXICITY_PPM)));
    bump(CTR_FLOWS_SEEN);
    if store(ctx, key, seg.seq, selected) && selected {
        bump(CTR_FLOWS_SELECTED);
        ctx.set_mark(global(&MARK));
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
pub(crate) unsafe fn fetch_add(ptr: *mut u64, add: u64) -> u64 {
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
pub(crate) unsafe fn fetch_add(ptr: *mut u64, add: u64) -> u64 {
    // SAFETY: the caller guarantees `ptr`.
    unsafe { core::sync::atomic::AtomicU64::from_ptr(ptr) }
        .fetch_add(add, core::sync::atomic::Ordering::Relaxed)
}
