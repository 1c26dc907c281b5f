//! Netfilter netlink I/O over mnl: batches built by nftnl whose every ack is matched to its
//! sequence number, and bounded dumps. Safe code on top of mnl's socket and callback runner;
//! the parsers it runs on dump replies live in `ext`.
use std::{io, time::Duration};

use nftnl::{FinalizedBatch, nftnl_sys::libc};

use super::ext::{self, AlignedBuf};

/// The kernel answers within milliseconds (seconds when it loads a module); this only bounds a
/// kernel that never answers.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// A dump longer than this is not a listing we could use.
const MAX_DUMP_BYTES: usize = 16 * 1024 * 1024;
/// How often an interrupted dump (NLM_F_DUMP_INTR) is retried.
const DUMP_ATTEMPTS: usize = 3;
/// Receive buffer: a datagram never exceeds the kernel's dump chunk (32 KiB) or one ack.
const RECV_BUF: usize = 64 * 1024;

/// A NETLINK_NETFILTER socket (mnl) with its own request sequence numbers for dumps.
pub struct Netlink {
    socket: mnl::Socket,
    dump_seq: u32,
}

impl Netlink {
    /// Opens and binds the socket (the kernel picks the port id, which owns our table), with
    /// close-on-exec and a receive timeout.
    pub fn open() -> io::Result<Netlink> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter)?;
        ext::harden(&socket, REPLY_TIMEOUT)?;
        // Dumps use their own range so they never collide with a batch's acks (nftnl numbers
        // every batch from 1).
        Ok(Netlink {
            socket,
            dump_seq: 1 << 30,
        })
    }

    /// Sends one batch and waits for the ack of each of its messages. Returns the first error
    /// the kernel reported (the batch was then not applied), with its errno. Every reply of a
    /// failed batch is read, so the next batch starts on a clean socket.
    pub fn apply(&mut self, batch: &FinalizedBatch) -> io::Result<()> {
        let seqs = batch.sequence_numbers();
        self.socket.send_all(batch)?;
        let mut acks = Acks::new(seqs);
        let mut buf = AlignedBuf::new(RECV_BUF);
        while !acks.complete() {
            let n = self.recv(&mut buf)?;
            acks.feed(&buf.bytes()[..n], self.socket.portid())?;
        }
        acks.result()
    }

    /// Dumps objects of every family (`msg_type`: NFT_MSG_GETTABLE, NFT_MSG_GETCHAIN) through
    /// `cb`. An interrupted dump is retried; a dump past MAX_DUMP_BYTES is an error.
    pub fn dump<T>(
        &mut self,
        msg_type: u16,
        cb: fn(&libc::nlmsghdr, &mut Vec<T>) -> libc::c_int,
    ) -> io::Result<Vec<T>> {
        for _ in 0..DUMP_ATTEMPTS {
            self.dump_seq = self.dump_seq.wrapping_add(1);
            let seq = self.dump_seq;
            let req = ext::dump_request(msg_type, seq);
            self.socket.send(req.bytes())?;
            let mut out = Vec::new();
            let mut buf = AlignedBuf::new(RECV_BUF);
            let mut total = 0usize;
            let interrupted = loop {
                let n = self.recv(&mut buf)?;
                total += n;
                if total > MAX_DUMP_BYTES {
                    return Err(io::Error::other(format!(
                        "the nftables listing is larger than {} MiB",
                        MAX_DUMP_BYTES >> 20
                    )));
                }
                match mnl::cb_run2(&buf.bytes()[..n], seq, self.socket.portid(), cb, &mut out) {
                    Ok(mnl::CbResult::Stop) => break false,
                    Ok(mnl::CbResult::Ok) => {}
                    // mnl reports NLM_F_DUMP_INTR as EINTR: the ruleset changed mid-dump.
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {
                        self.drain();
                        break true;
                    }
                    Err(e) => {
                        self.drain();
                        return Err(e);
                    }
                }
            };
            if !interrupted {
                return Ok(out);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the nftables ruleset kept changing during the listing; try again",
        ))
    }

    /// One datagram. A reply too large for the buffer would be cut; the kernel never sends one
    /// (dump chunks are at most 32 KiB), and mnl's parser rejects a truncated message.
    fn recv(&self, buf: &mut AlignedBuf) -> io::Result<usize> {
        match self.socket.recv_raw(buf.bytes_mut()) {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed",
            )),
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the kernel did not answer within {} s",
                        REPLY_TIMEOUT.as_secs()
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Discards whatever is still queued (the rest of a failed dump), without waiting.
    fn drain(&self) {
        let mut buf = vec![0u8; RECV_BUF];
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.socket);
        while nix::sys::socket::recv(fd, &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
            .is_ok_and(|n| n > 0)
        {}
    }
}

/// Acks of one batch, matched by sequence number: each message of the batch must be answered
/// once, by an ack (error 0) or an error.
struct Acks {
    seqs: std::ops::Range<u32>,
    answered: Vec<bool>,
    first_error: Option<io::Error>,
}

impl Acks {
    fn new(seqs: std::ops::Range<u32>) -> Acks {
        let n = seqs.len();
        Acks {
            seqs,
            answered: vec![false; n],
            first_error: None,
        }
    }

    fn complete(&self) -> bool {
        self.answered.iter().all(|a| *a)
    }

    /// Reads every message of one datagram; a message outside the batch is an error.
    fn feed(&mut self, datagram: &[u8], portid: u32) -> io::Result<()> {
        for msg in mnl::NlMessages::new(datagram) {
            let msg = msg?;
            let seq = header_seq(msg)?;
            if !self.seqs.contains(&seq) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "netlink reply for sequence {seq}, outside this batch ({:?})",
                        self.seqs
                    ),
                ));
            }
            let idx = (seq - self.seqs.start) as usize;
            if std::mem::replace(&mut self.answered[idx], true) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("netlink answered sequence {seq} twice"),
                ));
            }
            // mnl turns an NLMSG_ERROR with a non-zero error into that errno.
            if let Err(e) = mnl::cb_run(msg, seq, portid)
                && self.first_error.is_none()
            {
                self.first_error = Some(e);
            }
        }
        Ok(())
    }

    fn result(self) -> io::Result<()> {
        match self.first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The sequence number of one netlink message (nlmsghdr: len u32, type u16, flags u16, seq u32).
fn header_seq(msg: &[u8]) -> io::Result<u32> {
    msg.get(8..12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "netlink message too short"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An nlmsgerr ack: header (16 bytes) + error code + the request's header.
    fn ack(seq: u32, error: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&error.to_ne_bytes());
        m.extend_from_slice(&[0u8; 16]);
        m
    }

    #[test]
    fn every_message_must_be_acked_once() {
        let mut acks = Acks::new(1..4);
        acks.feed(&[ack(1, 0), ack(2, 0)].concat(), 0).unwrap();
        assert!(!acks.complete());
        acks.feed(&ack(3, 0), 0).unwrap();
        assert!(acks.complete());
        acks.result().unwrap();
    }

    #[test]
    fn the_first_error_wins_and_keeps_its_errno() {
        let mut acks = Acks::new(1..4);
        let replies = [ack(1, 0), ack(2, -libc::EOPNOTSUPP), ack(3, -libc::ENOENT)].concat();
        acks.feed(&replies, 0).unwrap();
        assert!(acks.complete());
        let e = acks.result().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
    }

    #[test]
    fn stray_or_repeated_replies_are_errors() {
        let mut acks = Acks::new(1..3);
        assert!(acks.feed(&ack(7, 0), 0).is_err());
        let mut acks = Acks::new(1..3);
        assert!(acks.feed(&[ack(1, 0), ack(1, 0)].concat(), 0).is_err());
        assert!(header_seq(&[0u8; 4]).is_err());
    }
}
