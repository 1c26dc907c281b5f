//! The netlink tc filters (cls_bpf on a clsact qdisc) of an interface, by program name: how the
//! programs are attached on kernels without TCX (< 6.6), and what a killed agent leaves there.
//! aya can detach such filters by name but not list them, so the agent lists them itself
//! (RTM_GETTFILTER dump, the TCA_BPF_NAME aya wrote at attach time) to verify its cleanup.
use std::io;

use nix::sys::socket::SockProtocol;

use crate::netlink::{self, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR};

const RTM_NEWTFILTER: u16 = 44;
const RTM_GETTFILTER: u16 = 46;
/// tcmsg: family, pad, pad, ifindex, handle, parent, info.
const TCMSG_LEN: usize = 20;
/// TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS / TC_H_MIN_EGRESS).
const PARENTS: [u32; 2] = [0xFFFF_FFF2, 0xFFFF_FFF3];
const TCA_KIND: u16 = 1;
const TCA_OPTIONS: u16 = 2;
const TCA_BPF_NAME: u16 = 7;

/// The names of the bpf filters on `ifindex`'s clsact ingress and egress hooks.
pub fn bpf_filter_names(ifindex: u32) -> io::Result<Vec<String>> {
    let mut nl = netlink::Socket::open(SockProtocol::NetlinkRoute)?;
    let mut names = Vec::new();
    for parent in PARENTS {
        let seq = nl.next_seq();
        let mut req = netlink::request(
            netlink::HEADER_LEN + TCMSG_LEN,
            RTM_GETTFILTER,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        );
        req.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
        req.extend_from_slice(&ifindex.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.extend_from_slice(&parent.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        nl.send(&req)?;
        let mut buf = vec![0u8; 32 * 1024];
        // A dump ends with NLMSG_DONE; bounded in case a kernel never says so.
        'dump: for _ in 0..1024 {
            let dgram = nl.recv(&mut buf)?;
            for m in netlink::messages(dgram)? {
                if m.seq != seq {
                    continue;
                }
                match m.ty {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => match m.error_code()? {
                        // EINVAL/ENOENT: no clsact qdisc on the interface, so no filters.
                        0 | libc::EINVAL | libc::ENOENT => break 'dump,
                        e => return Err(io::Error::from_raw_os_error(e)),
                    },
                    RTM_NEWTFILTER => names.extend(bpf_name(m.body)),
                    _ => {}
                }
            }
        }
    }
    Ok(names)
}

/// TCA_OPTIONS' TCA_BPF_NAME of a filter whose TCA_KIND is "bpf".
fn bpf_name(body: &[u8]) -> Option<String> {
    let attrs = netlink::attributes(body.get(TCMSG_LEN..)?);
    let kind = attrs.iter().find(|(t, _)| *t == TCA_KIND)?.1;
    if kind.split(|b| *b == 0).next() != Some(b"bpf") {
        return None;
    }
    let options = attrs.iter().find(|(t, _)| *t == TCA_OPTIONS)?.1;
    let name = netlink::attributes(options)
        .into_iter()
        .find(|(t, _)| *t == TCA_BPF_NAME)?
        .1;
    let name = name.split(|b| *b == 0).next()?;
    Some(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn the_bpf_name_is_read_from_a_filter_record() {
        let mut body = vec![0u8; TCMSG_LEN];
        body.extend(attr(TCA_KIND, b"bpf\0"));
        let options = [
            attr(3, &1u32.to_ne_bytes()),
            attr(TCA_BPF_NAME, b"reset_ingress\0"),
        ]
        .concat();
        body.extend(attr(TCA_OPTIONS | 0x8000, &options));
        assert_eq!(bpf_name(&body).as_deref(), Some("reset_ingress"));

        let mut other = vec![0u8; TCMSG_LEN];
        other.extend(attr(TCA_KIND, b"u32\0"));
        other.extend(attr(TCA_OPTIONS, &attr(TCA_BPF_NAME, b"reset_ingress\0")));
        assert_eq!(
            bpf_name(&other),
            None,
            "only cls_bpf filters have program names"
        );
    }
}
