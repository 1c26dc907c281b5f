//! Header parsing for the tc programs: Ethernet, IPv4 (with options) or IPv6, then TCP.
//!
//! Every read goes through `TcContext::load` (bpf_skb_load_bytes), which is bounds-checked by
//! the kernel and works on non-linear skbs. Returns `Ok(None)` for traffic that is not ours.
use aya_ebpf::programs::TcContext;
use reset_common::FlowKey;

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;
const TCP_FIN_SYN_RST_ACK: u8 = 0x17;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;

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
    pub payload_len: u32,
}

impl Segment {
    pub fn is_syn(&self) -> bool {
        self.flags & (TCP_SYN | 0x10) == TCP_SYN
    }

    pub fn is_rst(&self) -> bool {
        self.flags & TCP_RST != 0
    }

    pub fn flow_key(&self) -> FlowKey {
        FlowKey {
            client_addr: self.client_addr,
            server_addr: self.server_addr,
            client_port: self.client_port,
            server_port: self.server_port,
        }
    }

    #[inline(always)]
    pub fn parse(ctx: &TcContext, dir: Direction) -> Result<Option<Segment>, ()> {
        let ethertype = u16::from_be(ctx.load::<u16>(12).map_err(|_| ())?);
        let (src, dst, l4, ip_payload_len) = match ethertype {
            ETH_P_IP => {
                let vihl: u8 = ctx.load(ETH_HLEN).map_err(|_| ())?;
                let ihl = usize::from(vihl & 0x0f) * 4;
                if vihl >> 4 != 4 || ihl < 20 {
                    return Err(());
                }
                if ctx.load::<u8>(ETH_HLEN + 9).map_err(|_| ())? != IPPROTO_TCP {
                    return Ok(None);
                }
                // Fragment offset != 0: no TCP header in this packet.
                let frag = u16::from_be(ctx.load::<u16>(ETH_HLEN + 6).map_err(|_| ())?);
                if frag & 0x1fff != 0 {
                    return Ok(None);
                }
                let total = u32::from(u16::from_be(ctx.load::<u16>(ETH_HLEN + 2).map_err(|_| ())?));
                let s: [u8; 4] = ctx.load(ETH_HLEN + 12).map_err(|_| ())?;
                let d: [u8; 4] = ctx.load(ETH_HLEN + 16).map_err(|_| ())?;
                (
                    FlowKey::mapped_v4(s),
                    FlowKey::mapped_v4(d),
                    ETH_HLEN + ihl,
                    total.saturating_sub(ihl as u32),
                )
            }
            ETH_P_IPV6 => {
                // Extension headers before TCP are not followed: such packets are not ours.
                if ctx.load::<u8>(ETH_HLEN + 6).map_err(|_| ())? != IPPROTO_TCP {
                    return Ok(None);
                }
                let plen = u32::from(u16::from_be(ctx.load::<u16>(ETH_HLEN + 4).map_err(|_| ())?));
                let s: [u8; 16] = ctx.load(ETH_HLEN + 8).map_err(|_| ())?;
                let d: [u8; 16] = ctx.load(ETH_HLEN + 24).map_err(|_| ())?;
                (s, d, ETH_HLEN + 40, plen)
            }
            _ => return Ok(None),
        };
        let ports: [u8; 4] = ctx.load(l4).map_err(|_| ())?;
        let sport = u16::from_be_bytes([ports[0], ports[1]]);
        let dport = u16::from_be_bytes([ports[2], ports[3]]);
        let (client_addr, server_addr, client_port, server_port) = match dir {
            Direction::ToPort(p) if dport == p => (src, dst, sport, dport),
            Direction::FromPort(p) if sport == p => (dst, src, dport, sport),
            _ => return Ok(None),
        };
        let seq = u32::from_be(ctx.load::<u32>(l4 + 4).map_err(|_| ())?);
        let doff = u32::from(ctx.load::<u8>(l4 + 12).map_err(|_| ())? >> 4) * 4;
        let flags = ctx.load::<u8>(l4 + 13).map_err(|_| ())? & TCP_FIN_SYN_RST_ACK;
        Ok(Some(Segment {
            client_addr,
            server_addr,
            client_port,
            server_port,
            seq,
            flags,
            payload_len: ip_payload_len.saturating_sub(doff),
        }))
    }
}
