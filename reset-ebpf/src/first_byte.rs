//! The socket filter on the proxy's listening sockets: stamps a selected flow's first request
//! byte. Accepted sockets inherit a listener's filter, so this runs on packets of flows that
//! were steered to the proxy and on nothing else: unselected flows never pay for it.
//!
//! It runs where TCP receives the segment (tcp_v4_rcv/tcp_v6_rcv, softirq), so `skb->data` is
//! the TCP header and the IP header is read relative to the network header.
use aya_ebpf::{
    bindings::bpf_hdr_start_off::BPF_HDR_START_NET,
    helpers::{bpf_ktime_get_ns, bpf_skb_load_bytes_relative},
    programs::SkBuffContext,
};
use reset_common::FlowKey;

use crate::FLOWS;

const ETH_P_IP: u32 = 0x0800;
const ETH_P_IPV6: u32 = 0x86DD;

/// Reads `N` bytes at `off` from the network header.
#[inline(always)]
fn net_bytes<const N: usize>(ctx: &SkBuffContext, off: u32) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: the helper writes at most N bytes into `buf` and reports errors by return value.
    let rc = unsafe {
        bpf_skb_load_bytes_relative(
            ctx.skb.skb as *const _,
            off,
            buf.as_mut_ptr().cast(),
            N as u32,
            BPF_HDR_START_NET,
        )
    };
    (rc == 0).then_some(buf)
}

#[inline(always)]
pub fn stamp(ctx: &SkBuffContext) {
    let _ = try_stamp(ctx);
}

#[inline(always)]
fn try_stamp(ctx: &SkBuffContext) -> Option<()> {
    // skb->data is the TCP header: ports, then the data offset at byte 12.
    let ports: [u8; 4] = ctx.load(0).ok()?;
    let doff = u32::from(ctx.load::<u8>(12).ok()? >> 4) * 4;
    if ctx.len() <= doff {
        return None; // no payload: SYN, ACK, FIN
    }
    let (client_addr, server_addr) = match u32::from(u16::from_be(ctx.skb.protocol() as u16)) {
        ETH_P_IP => {
            let a: [u8; 8] = net_bytes(ctx, 12)?;
            (
                FlowKey::mapped_v4([a[0], a[1], a[2], a[3]]),
                FlowKey::mapped_v4([a[4], a[5], a[6], a[7]]),
            )
        }
        ETH_P_IPV6 => {
            let a: [u8; 32] = net_bytes(ctx, 8)?;
            let mut c = [0u8; 16];
            let mut s = [0u8; 16];
            c.copy_from_slice(&a[..16]);
            s.copy_from_slice(&a[16..]);
            (c, s)
        }
        _ => return None,
    };
    let key = FlowKey {
        client_addr,
        server_addr,
        client_port: u16::from_be_bytes([ports[0], ports[1]]),
        server_port: u16::from_be_bytes([ports[2], ports[3]]),
    };
    let flow = FLOWS.get_ptr_mut(key)?;
    // SAFETY: a valid pointer into the map value; fields are plain integers.
    let flow = unsafe { &mut *flow };
    if flow.first_byte_ns == 0 {
        // SAFETY: helper without arguments or side effects.
        flow.first_byte_ns = unsafe { bpf_ktime_get_ns() };
    }
    Some(())
}
