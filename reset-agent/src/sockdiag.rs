//! sock_diag: reset a connection the agent does not own, from outside the process that owns it.
//!
//! `destroy(service, caller)` finds the service's TCP socket of that connection and asks the
//! kernel to destroy it (SOCK_DESTROY, what `ss -K` does; CONFIG_INET_DIAG_DESTROY): the
//! kernel aborts it and sends the caller an RST. The lookup the kernel does for SOCK_DESTROY
//! falls back to a listening socket when the connection is gone, and destroying that would
//! close the service itself; so the socket is first looked up (SOCK_DIAG_BY_FAMILY), checked to
//! be that connection and not a listener, and destroyed by its cookie, which only it matches.
//!
//! Messages are built and read here as bytes (netlink.rs): no unsafe code.
use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use nix::sys::socket::SockProtocol;

use crate::netlink::{self, NLM_F_ACK, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, invalid};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u8 = 10;
/// inet_diag_req_v2 is 56 bytes, inet_diag_msg 72; the sockid inside both is 48.
const REQ_LEN: usize = 16 + 56;

/// Why a connection could not be reset.
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    /// The service's socket is gone (the service or the caller closed the connection first).
    #[error("the connection is already closed")]
    Gone,
    /// This kernel cannot destroy sockets (no CONFIG_INET_DIAG_DESTROY).
    #[error(
        "this kernel cannot destroy sockets (CONFIG_INET_DIAG_DESTROY is not set); the request unit needs it in kernel mode"
    )]
    Unsupported,
    #[error("sock_diag failed: {0}")]
    Io(#[from] io::Error),
}

/// A NETLINK_SOCK_DIAG socket.
pub struct SockDiag {
    nl: netlink::Socket,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        Ok(SockDiag {
            nl: netlink::Socket::open(SockProtocol::NetlinkSockDiag)?,
        })
    }

    /// Destroys the service's socket of the connection `service` <- `caller`.
    pub fn destroy(&mut self, service: SocketAddr, caller: SocketAddr) -> Result<(), DestroyError> {
        let cookie = self.lookup(service, caller)?;
        let seq = self.nl.next_seq();
        self.nl
            .send(&request(SOCK_DESTROY, seq, service, caller, cookie))?;
        match self.reply(seq)? {
            Reply::Ack => Ok(()),
            Reply::Error(e) if e == libc::ENOENT || e == libc::ESTALE => Err(DestroyError::Gone),
            Reply::Error(e) if e == libc::EOPNOTSUPP => Err(DestroyError::Unsupported),
            Reply::Error(e) => Err(io::Error::from_raw_os_error(e).into()),
            Reply::Socket { .. } => {
                Err(invalid("a socket record in answer to SOCK_DESTROY").into())
            }
        }
    }

    /// The cookie of the service's socket of that connection; `Gone` when there is none (or
    /// only a listener answers the lookup).
    fn lookup(&mut self, service: SocketAddr, caller: SocketAddr) -> Result<[u8; 8], DestroyError> {
        let seq = self.nl.next_seq();
        self.nl.send(&request(
            SOCK_DIAG_BY_FAMILY,
            seq,
            service,
            caller,
            [0xff; 8],
        ))?;
        match self.reply(seq)? {
            Reply::Socket {
                state,
                remote_port,
                cookie,
            } if state != TCP_LISTEN && remote_port == caller.port() => {
                // The record is followed by an ack (NLM_F_ACK); read it so the next call
                // starts clean.
                let _ = self.reply(seq);
                Ok(cookie)
            }
            Reply::Socket { .. } => {
                let _ = self.reply(seq);
                Err(DestroyError::Gone)
            }
            Reply::Error(e) if e == libc::ENOENT => Err(DestroyError::Gone),
            Reply::Error(e) => Err(io::Error::from_raw_os_error(e).into()),
            Reply::Ack => Err(DestroyError::Gone),
        }
    }

    /// The next message for `seq` (older ones are skipped).
    fn reply(&self, seq: u32) -> io::Result<Reply> {
        let mut buf = [0u8; 8192];
        loop {
            let dgram = self.nl.recv(&mut buf)?;
            if let Some(r) = parse(dgram, seq)? {
                return Ok(r);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ack,
    Error(i32),
    Socket {
        state: u8,
        remote_port: u16,
        cookie: [u8; 8],
    },
}

/// The first message of a datagram that answers `seq`, if any.
fn parse(dgram: &[u8], seq: u32) -> io::Result<Option<Reply>> {
    for m in netlink::messages(dgram)? {
        if m.seq != seq {
            continue;
        }
        return Ok(Some(match m.ty {
            NLMSG_ERROR => match m.error_code()? {
                0 => Reply::Ack,
                e => Reply::Error(e),
            },
            NLMSG_DONE => Reply::Ack,
            SOCK_DIAG_BY_FAMILY => {
                // inet_diag_msg: family, state, timer, retrans, then the sockid (sport, dport,
                // src, dst, if, cookie).
                let body = m.body;
                if body.len() < 4 + 48 {
                    return Err(invalid("short inet_diag_msg"));
                }
                let mut cookie = [0u8; 8];
                cookie.copy_from_slice(&body[4 + 40..4 + 48]);
                Reply::Socket {
                    state: body[1],
                    remote_port: u16::from_be_bytes([body[6], body[7]]),
                    cookie,
                }
            }
            _ => continue,
        }));
    }
    Ok(None)
}

/// nlmsghdr + inet_diag_req_v2 for the socket whose local end is `service` and remote end is
/// `caller`.
fn request(ty: u16, seq: u32, service: SocketAddr, caller: SocketAddr, cookie: [u8; 8]) -> Vec<u8> {
    let mut m = netlink::request(REQ_LEN, ty, NLM_F_REQUEST | NLM_F_ACK, seq);
    let (family, local, remote) = match (unmap(service.ip()), unmap(caller.ip())) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            let mut a = [0u8; 16];
            let mut b = [0u8; 16];
            a[..4].copy_from_slice(&l.octets());
            b[..4].copy_from_slice(&r.octets());
            (libc::AF_INET as u8, a, b)
        }
        (l, r) => (libc::AF_INET6 as u8, v6(l), v6(r)),
    };
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&service.port().to_be_bytes());
    m.extend_from_slice(&caller.port().to_be_bytes());
    m.extend_from_slice(&local);
    m.extend_from_slice(&remote);
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&cookie);
    debug_assert_eq!(m.len(), REQ_LEN);
    m
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Whether this kernel can destroy sockets: destroys the server end of a loopback connection
/// made for the purpose and checks its peer saw the reset.
pub fn supported() -> Result<(), DestroyError> {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, caller) = listener.accept()?;
    let mut diag = SockDiag::open()?;
    diag.destroy(server.local_addr()?, caller)?;
    client.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
    let mut b = [0u8; 1];
    match client.read(&mut b) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        other => Err(invalid(&format!(
            "SOCK_DESTROY answered but the peer saw {other:?} instead of a reset"
        ))
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let s: SocketAddr = "198.18.0.2:80".parse().unwrap();
        let c: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        let m = request(SOCK_DESTROY, 7, s, c, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.len(), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 21);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(&m[24..26], &80u16.to_be_bytes());
        assert_eq!(&m[26..28], &40000u16.to_be_bytes());
        assert_eq!(&m[28..32], &[198, 18, 0, 2]);
        assert_eq!(&m[44..48], &[198, 18, 0, 1]);
        assert_eq!(&m[64..72], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let s6: SocketAddr = "[2001:db8::2]:80".parse().unwrap();
        let c6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(
            request(SOCK_DESTROY, 1, s6, c6, [0; 8])[16],
            libc::AF_INET6 as u8
        );
    }

    #[test]
    fn parses_errors_and_records() {
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[8..12].copy_from_slice(&9u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert_eq!(parse(&err, 9).unwrap(), Some(Reply::Error(libc::ENOENT)));
        assert_eq!(
            parse(&err, 8).unwrap(),
            None,
            "another request's answer is skipped"
        );
        assert!(parse(&err[..20], 9).is_err());
    }

    /// Real sockets on loopback: the server end is destroyed, the peer sees a reset, and a
    /// second attempt finds nothing (not the listener).
    #[test]
    fn destroys_one_connection_and_never_the_listener() {
        if !crate::host::has_cap(crate::host::effective_caps(), crate::host::CAP_NET_ADMIN) {
            eprintln!("SKIPPED: SOCK_DESTROY needs CAP_NET_ADMIN");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (server, caller) = listener.accept().unwrap();
        let mut d = SockDiag::open().unwrap();
        d.destroy(server.local_addr().unwrap(), caller).unwrap();
        assert!(matches!(
            d.destroy(server.local_addr().unwrap(), caller),
            Err(DestroyError::Gone)
        ));
        // The listener still accepts.
        let _again = std::net::TcpStream::connect(addr).unwrap();
        assert!(listener.accept().is_ok());
        supported().expect("this kernel destroys sockets");
    }
}
