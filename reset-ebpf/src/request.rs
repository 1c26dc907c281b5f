//! The request unit (UNIT=request): every HTTP/1.x request to the port is a selection, on new
//! connections and on connections opened before the window alike, and none of them passes
//! through the proxy.
//!
//! Ingress: a client payload that begins a request turn (a method token on the flow's first
//! payload, or after the service answered the previous turn) counts as a request and is
//! selected with the same random / exact rules as flows. A selected request becomes pending:
//! the agent is told (EVENTS) and resets the service's socket RESET_TIMEOUT after the first
//! byte. While pending, `upstream` drops the caller's payload (the service never sees the
//! request) and `downstream` lets it through; either way egress drops the service's payload and
//! FIN (the caller gets no byte of the answer), remembering the lowest sequence number held
//! back. The reset's RST is moved to that sequence number, the caller's next expected byte, so
//! the caller accepts it (RFC 5961) instead of answering with a challenge ACK.
//!
//! A flow whose first payload (seen from its SYN, or recognisably TLS or HTTP/2) is not HTTP/1
//! is opaque: one selection for the whole flow, as in the connection unit.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{LruHashMap, RingBuf},
    programs::TcContext,
};
use aya_log_ebpf::warn;
use reset_common::{
    CTR_RESETS_OTHER, FLOW_MAP_ENTRIES, FlowKey, SELECTION_EXACT, exact_selects, flow_hash,
    random_selects,
    request::{
        CTR_EVENTS_LOST, CTR_FLOWS_OPAQUE, CTR_REQUEST_RESETS_OBSERVED, CTR_REQUESTS_ABSORBED,
        CTR_REQUESTS_SEEN, CTR_REQUESTS_SELECTED, CTR_RESETS_REWRITTEN, CTR_WITHHELD_SEGMENTS,
        EVENT_RESET, EVENT_SELECTED, EVENTS_BYTES, Event, REQ_CLASSIFIED, REQ_FROM_SYN, REQ_OPAQUE,
        REQ_PENDING, REQ_TURN_OPEN, REQ_WITHHELD, ReqFlow, STREAM_UPSTREAM, Start, classify,
    },
};

use crate::{
    HASH_K0, HASH_K1, SELECTION, SEQUENCE, STREAM, TC_NEXT, TOXICITY_PPM, bump, global,
    packet::{self, Segment},
    select::fetch_add,
};

/// Drop the packet (TC_ACT_SHOT): only for bytes withheld while a reset is pending.
const TC_SHOT: i32 = 2;

#[map(name = "REQ_FLOWS")]
static REQ_FLOWS: LruHashMap<FlowKey, ReqFlow> = LruHashMap::with_max_entries(FLOW_MAP_ENTRIES, 0);

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[inline(always)]
fn now_ns() -> u64 {
    // SAFETY: helper without arguments or side effects.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn upstream() -> bool {
    global(&STREAM) == STREAM_UPSTREAM
}

/// A SYN in the window: remember that this flow's first payload starts its stream.
pub fn syn(key: &FlowKey) {
    let fresh = ReqFlow {
        flags: REQ_FROM_SYN,
        ..ReqFlow::default()
    };
    // Port reuse after TIME_WAIT replaces an old entry, which is right: a new stream.
    let _ = REQ_FLOWS.insert(key, fresh, 0);
}

/// Ingress payload of the caller.
pub fn ingress(ctx: &TcContext, seg: &Segment, window: bool) -> i32 {
    if seg.payload_len == 0 {
        return TC_NEXT;
    }
    let key = seg.flow_key();
    let flow = match REQ_FLOWS.get_ptr_mut(key) {
        Some(f) => f,
        None => {
            if !window {
                return TC_NEXT;
            }
            if REQ_FLOWS.insert(key, ReqFlow::default(), 0).is_err() {
                warn!(ctx, "request map insert failed: a request is not tracked");
                return TC_NEXT;
            }
            match REQ_FLOWS.get_ptr_mut(key) {
                Some(f) => f,
                None => return TC_NEXT,
            }
        }
    };
    // SAFETY: a valid pointer into the map value; fields are plain integers.
    let flow = unsafe { &mut *flow };
    let start = packet::payload_start(ctx, seg).map(classify);
    if flow.flags & REQ_PENDING != 0 {
        // Another request while this connection's reset is pending (pipelined, or sent without
        // waiting for the answer): it shares that reset. Retransmissions (the upstream mode
        // drops the request, the downstream mode may hold back the ACK riding on the withheld
        // answer) are not new requests.
        if (seg.seq.wrapping_sub(flow.caller_next) as i32) >= 0 {
            flow.caller_next = seg.seq.wrapping_add(seg.payload_len);
            if start == Some(Start::Method) {
                bump(CTR_REQUESTS_ABSORBED);
            }
        }
        if upstream() {
            bump(CTR_WITHHELD_SEGMENTS);
            return TC_SHOT;
        }
        return TC_NEXT;
    }
    let first = flow.flags & REQ_CLASSIFIED == 0;
    flow.flags |= REQ_CLASSIFIED;
    if flow.flags & REQ_OPAQUE != 0 || !window {
        return TC_NEXT;
    }
    let opaque = first
        && match start {
            Some(Start::Tls | Start::H2Preface) => true,
            Some(Start::Method) => false,
            // Unknown bytes are a protocol only if this is really the stream's start.
            Some(Start::Other) | None => flow.flags & REQ_FROM_SYN != 0,
        };
    if opaque {
        flow.flags |= REQ_OPAQUE;
        bump(CTR_FLOWS_OPAQUE);
    } else if start != Some(Start::Method) || flow.flags & REQ_TURN_OPEN != 0 {
        // A continuation of the open turn (a split request, pipelined requests, a body).
        return TC_NEXT;
    }
    flow.flags |= REQ_TURN_OPEN;
    bump(CTR_REQUESTS_SEEN);
    if !select(&key, seg.seq) {
        return TC_NEXT;
    }
    let first_byte_ns = now_ns();
    let event = Event {
        kind: EVENT_SELECTED,
        key,
        first_byte_ns,
        ..Event::default()
    };
    if EVENTS.output::<Event>(&event, 0).is_err() {
        // The agent cannot be told: leave the request alone rather than withhold it forever.
        bump(CTR_EVENTS_LOST);
        warn!(
            ctx,
            "event ring full: a selected request is left unselected"
        );
        return TC_NEXT;
    }
    bump(CTR_REQUESTS_SELECTED);
    flow.flags = (flow.flags | REQ_PENDING) & !REQ_WITHHELD;
    flow.req_seq = seg.seq;
    flow.caller_next = seg.seq.wrapping_add(seg.payload_len);
    flow.first_byte_ns = first_byte_ns;
    if upstream() {
        bump(CTR_WITHHELD_SEGMENTS);
        return TC_SHOT;
    }
    TC_NEXT
}

/// Random: a keyed hash of the flow and the request's first sequence number (the same for a
/// retransmission of that segment); exact: the shared counter.
#[inline(always)]
fn select(key: &FlowKey, seq: u32) -> bool {
    let ppm = u64::from(global(&TOXICITY_PPM));
    if global(&SELECTION) == SELECTION_EXACT {
        let Some(n) = SEQUENCE.get_ptr_mut(0) else {
            return false;
        };
        // SAFETY: `n` points at the 8-byte, 8-aligned value of a live array map entry.
        let n = unsafe { fetch_add(n, 1) };
        exact_selects(n, ppm)
    } else {
        let hash = flow_hash(global(&HASH_K0), global(&HASH_K1), key, seq);
        random_selects((hash >> 32) as u32, ppm)
    }
}

/// Egress from the service: withhold answers of pending requests, end turns, place the RST.
pub fn egress(ctx: &TcContext, seg: &Segment) -> i32 {
    if seg.payload_len == 0 && !seg.is_fin() && !seg.is_rst() {
        return TC_NEXT;
    }
    let key = seg.flow_key();
    let Some(flow) = REQ_FLOWS.get_ptr_mut(key) else {
        if seg.is_rst() {
            bump(CTR_RESETS_OTHER);
        }
        return TC_NEXT;
    };
    // SAFETY: a valid pointer into the map value; fields are plain integers.
    let flow = unsafe { &mut *flow };
    let pending = flow.flags & REQ_PENDING != 0;
    if seg.is_rst() {
        if !pending {
            bump(CTR_RESETS_OTHER);
            return TC_NEXT;
        }
        if flow.flags & REQ_WITHHELD != 0 && flow.withheld_seq != seg.seq {
            place_rst(ctx, seg, flow.withheld_seq);
        }
        bump(CTR_REQUEST_RESETS_OBSERVED);
        let event = Event {
            kind: EVENT_RESET,
            key,
            first_byte_ns: flow.first_byte_ns,
            rst_ns: now_ns(),
            ..Event::default()
        };
        let _ = EVENTS.output::<Event>(&event, 0);
        flow.flags &= !(REQ_PENDING | REQ_TURN_OPEN | REQ_WITHHELD);
        return TC_NEXT;
    }
    if pending {
        // The answer (or the service's FIN) is held back; keep the lowest sequence number,
        // where the caller's stream stopped.
        if flow.flags & REQ_WITHHELD == 0 || (seg.seq.wrapping_sub(flow.withheld_seq) as i32) < 0 {
            flow.withheld_seq = seg.seq;
            flow.flags |= REQ_WITHHELD;
        }
        bump(CTR_WITHHELD_SEGMENTS);
        return TC_SHOT;
    }
    if seg.payload_len > 0 {
        // The service answered: the next method token starts a new turn.
        flow.flags &= !REQ_TURN_OPEN;
    }
    TC_NEXT
}

/// Moves the RST's sequence number to `seq`, fixing the TCP checksum.
#[inline(always)]
fn place_rst(ctx: &TcContext, seg: &Segment, seq: u32) {
    let old = seg.seq.to_be();
    let new = seq.to_be();
    // The sequence number is not part of the pseudo-header: a plain 4-byte replace.
    if ctx
        .l4_csum_replace(seg.l4 + 16, u64::from(old), u64::from(new), 4)
        .is_ok()
        && ctx.store(seg.l4 + 4, &new, 0).is_ok()
    {
        bump(CTR_RESETS_REWRITTEN);
    }
}
