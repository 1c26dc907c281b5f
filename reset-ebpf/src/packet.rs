//! Header parsing for the tc programs: Ethernet, IPv4 (with options) or IPv6, then TCP.
//!
//! Headers are read by direct packet access (`data`..`data_end`, bounds-checked for the
//! verifier); only when a header is not in the linear part of the skb does a read fall back to
//! `bpf_skb_load_bytes`, which also works on non-linear skbs. Returns `Ok(None)` for traffic
//! that is not ours.
use aya_ebpf::programs::TcContext;
use reset_common::FlowKey;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const TCP_FIN_SYN_RST_ACK: u8 = 0x17;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
const TCP_RST: u8 = 0x04;
const TCP_FIN: u8 = 0x01;

/// Which side of the service port we look at.
#[derive(Clone, Copy)]
pub enum Direction {
    /// Ingress: segments whose destination port is the service port.
    ToPort(u16),
    /// Egress: segments whose source port is the service port.
    FromPort(u16),
}

/// The parts of a TCP segment the programs need, oriented as the caller's flow.
pub struct Segment {
    pub client_addr: [u8; 16],
    pub server_addr: [u8; 16],
    pub client_port: u16,
    pub server_port: u16,
    pub seq: u32,
    pub flags: u8,
    /// Offset of the TCP header in the packet.
    pub l4: usize,
    /// Offset and length of the TCP payload.
    pub payload_off: usize,
    pub payload_len: u32,
}

impl Segment {
    /// A SYN that opens a connection (not a SYN-ACK).
    pub fn is_syn(&self) -> bool {
        self.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }

    pub fn is_rst(&self) -> bool {
        self.flags & TCP_RST != 0
    }

    pub fn is_fin(&self) -> bool {
        self.flags & TCP_FIN != 0
    }

    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            client_addr: self.client_addr,
            server_addr: self.server_addr,
            client_port: self.client_port,
            server_port: self.server_port,
        }
    }
}

/// Reads a `T` at `off`: straight from the linear packet data when it is there, else through
/// the load helper.
#[inline(always)]
fn read<T: Copy>(ctx: &TcContext, off: usize) -> Result<T, ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + core::mem::size_of::<T>() <= end {
        // SAFETY: the bounds were checked against data_end just above (the verifier checks the
        // same), and `read_unaligned` makes no alignment assumption.
        return Ok(unsafe { core::ptr::read_unaligned((start + off) as *const T) });
    }
    ctx.load::<T>(off).map_err(|_| ())
}

/// Reads whole headers, never single bytes: a one-byte bounds check at a variable offset
/// compiles to `pkt < pkt_end`, which the verifier does not accept as a range.
#[inline(always)]
pub fn parse(ctx: &TcContext, dir: Direction) -> Result<Option<Segment>, ()> {
    let ethertype = u16::from_be(read::<u16>(ctx, 12)?);
    let (src, dst, l4, ip_payload) = match ethertype {
        ETH_P_IP => {
            let ip: [u8; 20] = read(ctx, ETH_HLEN)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 {
                return Err(());
            }
            if ip[9] != IPPROTO_TCP {
                return Ok(None);
            }
            // Fragment offset != 0: no TCP header in this packet.
            if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
                return Ok(None);
            }
            let s = [ip[12], ip[13], ip[14], ip[15]];
            let d = [ip[16], ip[17], ip[18], ip[19]];
            let total = u32::from(u16::from_be_bytes([ip[2], ip[3]]));
            (
                FlowKey::mapped_v4(s),
                FlowKey::mapped_v4(d),
                ETH_HLEN + ihl,
                total.saturating_sub(ihl as u32),
            )
        }
        ETH_P_IPV6 => {
            let ip: [u8; 40] = read(ctx, ETH_HLEN)?;
            // Extension headers before TCP are not followed: such packets are not ours.
            if ip[6] != IPPROTO_TCP {
                return Ok(None);
            }
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&ip[8..24]);
            d.copy_from_slice(&ip[24..40]);
            let plen = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
            (s, d, ETH_HLEN + 40, plen)
        }
        _ => return Ok(None),
    };
    let tcp: [u8; 20] = read(ctx, l4)?;
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    let (client_addr, server_addr, client_port, server_port) = match dir {
        Direction::ToPort(p) if dport == p => (src, dst, sport, dport),
        Direction::FromPort(p) if sport == p => (dst, src, dport, sport),
        _ => return Ok(None),
    };
    let doff = usize::from(tcp[12] >> 4) * 4;
    Ok(Some(Segment {
        client_addr,
        server_addr,
        client_port,
        server_port,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13] & TCP_FIN_SYN_RST_ACK,
        l4,
        payload_off: l4 + doff,
        payload_len: ip_payload.saturating_sub(doff as u32),
    }))
}

/// The first four payload bytes, when the payload has that many.
#[inline(always)]
pub fn payload_start(ctx: &TcContext, seg: &Segment) -> Option<[u8; 4]> {
    if seg.payload_len < 4 {
        return None;
    }
    read::<[u8; 4]>(ctx, seg.payload_off).ok()
}
