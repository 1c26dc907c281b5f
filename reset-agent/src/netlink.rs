//! Netlink as bytes over a nix socket, no unsafe code: a request's header, the messages of a
//! reply datagram, the attributes of a message. sock_diag (sockdiag.rs) and the tc filter
//! listing (ebpf/filters.rs) speak through it; nftables has its own path (nft/, mnl).
use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
};

use nix::sys::{
    socket::{
        self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, sockopt,
    },
    time::TimeVal,
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 1;
pub const NLM_F_ACK: u16 = 4;
pub const NLM_F_DUMP: u16 = 0x300;
/// nlmsghdr.
pub const HEADER_LEN: usize = 16;

/// A netlink socket of one protocol, with a request sequence number.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// Opens and binds a socket whose receives time out after 2 s.
    pub fn open(protocol: SockProtocol) -> io::Result<Socket> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            protocol,
        )?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;
        Ok(Socket { fd, seq: 0 })
    }

    /// The sequence number for the next request.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    pub fn send(&self, buf: &[u8]) -> io::Result<()> {
        let n = socket::send(self.fd.as_raw_fd(), buf, MsgFlags::empty())?;
        if n != buf.len() {
            return Err(invalid("short netlink send"));
        }
        Ok(())
    }

    /// One datagram into `buf`.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        let n = socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())?;
        Ok(&buf[..n])
    }
}

/// One message of a datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    pub ty: u16,
    pub seq: u32,
    pub body: &'a [u8],
}

impl Msg<'_> {
    /// NLMSG_ERROR's code as a positive errno (0 is an ack).
    pub fn error_code(&self) -> io::Result<i32> {
        self.body
            .get(..4)
            .map(|b| -i32::from_ne_bytes(b.try_into().expect("4")))
            .ok_or_else(|| invalid("short netlink error"))
    }
}

/// The messages of a datagram, in order.
pub fn messages(dgram: &[u8]) -> io::Result<Vec<Msg<'_>>> {
    let mut out = Vec::new();
    let mut rest = dgram;
    while rest.len() >= HEADER_LEN {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4")) as usize;
        if len < HEADER_LEN || len > rest.len() {
            return Err(invalid("malformed netlink message"));
        }
        out.push(Msg {
            ty: u16::from_ne_bytes([rest[4], rest[5]]),
            seq: u32::from_ne_bytes(rest[8..12].try_into().expect("4")),
            body: &rest[HEADER_LEN..len],
        });
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    Ok(out)
}

/// A request of `len` bytes in all: its header, to which the caller appends the body.
pub fn request(len: usize, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m
}

/// The attributes (type without the nested/byte-order flags, payload) in `buf`.
pub fn attributes(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        if len < 4 || len > rest.len() {
            break;
        }
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & 0x3fff;
        out.push((ty, &rest[4..len]));
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    out
}

pub fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_read_back() {
        let mut dgram = request(HEADER_LEN + 12, 44, NLM_F_REQUEST, 7);
        // Two attributes: a 3-byte string (padded to 4) and a nested flag on a u32.
        dgram.extend_from_slice(&[7, 0, 1, 0, b'b', b'p', b'f', 0]);
        dgram.extend_from_slice(&[4, 0, 2, 0x80]);
        let mut second = request(HEADER_LEN + 4, NLMSG_ERROR, 0, 7);
        second.extend_from_slice(&(-2i32).to_ne_bytes());
        dgram.extend_from_slice(&second);
        let msgs = messages(&dgram).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].ty, msgs[0].seq), (44, 7));
        assert_eq!(
            attributes(msgs[0].body),
            vec![(1, &b"bpf"[..]), (2, &[][..])]
        );
        assert_eq!(msgs[1].error_code().unwrap(), 2);
        assert!(messages(&dgram[..20]).is_err(), "a cut message is refused");
    }
}
