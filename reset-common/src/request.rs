//! The request unit: what the kernel program and the agent share to select and reset single
//! HTTP/1.x requests on connections they do not proxy.
//!
//! A request turn starts with client payload that begins with a method token, on a flow whose
//! previous turn the service has answered (or on its first payload). The ingress program keeps
//! one `ReqFlow` per flow in `REQ_FLOWS`; a selected request sets `REQ_PENDING`, its bytes or
//! its answer are withheld by the programs, and an `Event` tells the agent, which resets the
//! service's socket (sock_diag SOCK_DESTROY) RESET_TIMEOUT after the first byte. The egress
//! program sees that RST, moves its sequence number back to the first withheld byte (so the
//! caller accepts it, RFC 5961) and reports it in another `Event`.
use crate::FlowKey;

/// LRU hash `FlowKey -> ReqFlow`: every flow of the port with payload in the window.
pub const MAP_REQ_FLOWS: &str = "REQ_FLOWS";
/// Ring buffer of `Event`s, kernel to agent.
pub const MAP_EVENTS: &str = "EVENTS";
/// Ring buffer size: 4096 events of 64 bytes in flight.
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Load-time global: `UNIT_CONNECTION` or `UNIT_REQUEST`.
pub const GLOBAL_UNIT: &str = "UNIT";
/// Load-time global: `STREAM_DOWNSTREAM` or `STREAM_UPSTREAM`.
pub const GLOBAL_STREAM: &str = "STREAM";

pub const UNIT_CONNECTION: u32 = 0;
pub const UNIT_REQUEST: u32 = 1;
pub const STREAM_DOWNSTREAM: u32 = 0;
pub const STREAM_UPSTREAM: u32 = 1;

/// Counter indices in `COUNTERS`, after the connection unit's.
pub const CTR_REQUESTS_SEEN: u32 = 8;
pub const CTR_REQUESTS_SELECTED: u32 = 9;
/// The RST that ended a pending request, seen leaving (one per request, not per packet).
pub const CTR_REQUEST_RESETS_OBSERVED: u32 = 10;
/// A request that began while its connection's reset was pending (pipelined or retried
/// early): it shares that reset and is not a selection of its own.
pub const CTR_REQUESTS_ABSORBED: u32 = 11;
/// Flows whose first payload is not HTTP/1 (TLS, HTTP/2, anything else): selected once, as a
/// whole, like the connection unit.
pub const CTR_FLOWS_OPAQUE: u32 = 12;
/// Selections the agent could not be told about (ring buffer full): left unselected.
pub const CTR_EVENTS_LOST: u32 = 13;
/// Segments held back (dropped) while a reset was pending: the request (upstream) or the
/// answer (downstream).
pub const CTR_WITHHELD_SEGMENTS: u32 = 14;
/// RSTs whose sequence number was moved back to the caller's next expected byte.
pub const CTR_RESETS_REWRITTEN: u32 = 15;

/// `ReqFlow::flags` bits.
/// A request turn is open: the service has not answered since it began.
pub const REQ_TURN_OPEN: u32 = 1;
/// A selected request waits for its reset.
pub const REQ_PENDING: u32 = 2;
/// Not HTTP/1: decided once for the whole flow.
pub const REQ_OPAQUE: u32 = 4;
/// The flow's first payload was seen (it was classified).
pub const REQ_CLASSIFIED: u32 = 8;
/// The flow's SYN was seen in the window, so its first payload is the start of its stream.
pub const REQ_FROM_SYN: u32 = 16;
/// `withheld_seq` holds the lowest sequence number of a withheld answer segment.
pub const REQ_WITHHELD: u32 = 32;

/// Per-flow state of the request unit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReqFlow {
    pub flags: u32,
    /// The caller's sequence number at the pending request's first byte.
    pub req_seq: u32,
    /// The service's sequence number of the first answer byte withheld: the caller's
    /// rcv_nxt, where the RST must sit to be accepted.
    pub withheld_seq: u32,
    /// The caller's next new sequence number while a reset is pending: a segment before it
    /// is a retransmission (of the selected request or of one it absorbed), not a request.
    pub caller_next: u32,
    /// CLOCK_MONOTONIC of the pending request's first byte (ingress).
    pub first_byte_ns: u64,
}

/// `Event::kind`.
/// A request (or an opaque flow) was selected; `first_byte_ns` is when it began.
pub const EVENT_SELECTED: u32 = 1;
/// Its reset left the interface at `rst_ns`.
pub const EVENT_RESET: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: u32,
    pub _reserved: u32,
    pub key: FlowKey,
    pub _pad: u32,
    pub first_byte_ns: u64,
    pub rst_ns: u64,
}

/// What the first bytes of a payload say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// An HTTP/1.x method token: a request begins here.
    Method,
    /// A TLS record (handshake, alert, application data, change cipher spec).
    Tls,
    /// HTTP/2's connection preface (`PRI * HTTP/2.0`).
    H2Preface,
    /// Anything else (a continuation, or another protocol).
    Other,
}

/// Classifies the first four bytes of a payload. Methods are told apart by their first four
/// bytes (RFC 9110's and WebDAV's common ones).
#[inline(always)]
pub const fn classify(b: [u8; 4]) -> Start {
    match b {
        [b'G', b'E', b'T', b' ']
        | [b'P', b'U', b'T', b' ']
        | [b'P', b'O', b'S', b'T']
        | [b'H', b'E', b'A', b'D']
        | [b'D', b'E', b'L', b'E']
        | [b'O', b'P', b'T', b'I']
        | [b'P', b'A', b'T', b'C']
        | [b'C', b'O', b'N', b'N']
        | [b'T', b'R', b'A', b'C'] => Start::Method,
        [b'P', b'R', b'I', b' '] => Start::H2Preface,
        [0x14..=0x17, 0x03, 0x00..=0x04, _] => Start::Tls,
        _ => Start::Other,
    }
}

const _: () = assert!(core::mem::size_of::<ReqFlow>() == 24);
const _: () = assert!(core::mem::size_of::<Event>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), no padding (sizes asserted above), every bit pattern is valid.
    unsafe impl aya::Pod for super::ReqFlow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_request_starts() {
        for m in [
            "GET /",
            "POST /x",
            "PUT /",
            "HEAD /",
            "DELETE /",
            "OPTIONS *",
            "PATCH /",
        ] {
            let b = m.as_bytes();
            assert_eq!(classify([b[0], b[1], b[2], b[3]]), Start::Method, "{m}");
        }
        assert_eq!(classify(*b"PRI "), Start::H2Preface);
        assert_eq!(classify([0x16, 0x03, 0x01, 0x02]), Start::Tls);
        assert_eq!(classify([0x17, 0x03, 0x03, 0x00]), Start::Tls);
        assert_eq!(classify(*b"GETX"), Start::Other);
        assert_eq!(classify(*b"{\"a\""), Start::Other);
        assert_eq!(classify(*b"get "), Start::Other);
    }
}
