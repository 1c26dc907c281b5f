//! Netfilter netlink I/O: the NETLINK_NETFILTER socket, batches whose every ack is matched to its
//! sequence number, and dumps. Pure Rust over nix's safe socket calls: no libmnl, no unsafe.
//! Message encoding and parsing live in `wire`.
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

use super::wire::{
    AF_UNSPEC, Batch, Finished, Messages, NFNL_SUBSYS_NFTABLES, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, Reply, error_code, invalid, nft_type,
    put_header,
};

/// Large enough for any single reply: the kernel caps a dump chunk at 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// The kernel answers within milliseconds (seconds when it loads a module); this only bounds
/// a kernel that never answers.
const REPLY_TIMEOUT_S: i64 = 10;
/// A dump longer than this is not a table list we could use.
const MAX_DUMP_BYTES: usize = 16 * 1024 * 1024;
/// How often an interrupted dump (NLM_F_DUMP_INTR) is retried.
const DUMP_ATTEMPTS: usize = 3;

/// A NETLINK_NETFILTER socket with its own sequence numbers.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    /// Opens and binds a socket; the kernel picks the port id (it owns our tables).
    pub fn open() -> io::Result<Socket> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        socket::setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(REPLY_TIMEOUT_S, 0),
        )?;
        Ok(Socket { fd, seq: 1 })
    }

    /// The sequence number the next batch or request should start at.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// Sends a batch and waits for the ack of each of its messages. Returns the first error the
    /// kernel reported (the batch was then not applied), with its errno.
    pub fn apply(&mut self, batch: Batch) -> io::Result<()> {
        let batch = batch.finish();
        self.seq = self.seq.max(batch.end_seq.wrapping_add(1));
        self.send(&batch.buf)?;
        let mut acks = Acks::new(&batch);
        let mut buf = vec![0; RECV_BUF];
        while !acks.complete() {
            let n = self.recv(&mut buf)?;
            acks.feed(&buf[..n])?;
        }
        acks.result()
    }

    /// Dumps objects (`NFT_MSG_GET*` with NLM_F_DUMP) of every family; returns each reply's
    /// family and attributes. An interrupted dump is retried.
    pub fn dump(&mut self, get_msg: u16) -> io::Result<Vec<Reply>> {
        for _ in 0..DUMP_ATTEMPTS {
            let seq = self.seq;
            self.seq = self.seq.wrapping_add(1);
            let mut req = Vec::new();
            put_header(
                &mut req,
                nft_type(get_msg),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP,
                seq,
                AF_UNSPEC,
                0,
            );
            self.send(&req)?;
            let mut dump = DumpReader::new(seq);
            let mut buf = vec![0; RECV_BUF];
            while !dump.done {
                let n = self.recv(&mut buf)?;
                dump.feed(&buf[..n])?;
            }
            if !dump.interrupted {
                return Ok(dump.replies);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Interrupted,
            "the nftables ruleset kept changing during the listing; try again",
        ))
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        let n = socket::send(self.fd.as_raw_fd(), buf, MsgFlags::empty())?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("netlink sent {n} of {} bytes", buf.len()),
            ));
        }
        Ok(())
    }

    /// One datagram; MSG_TRUNC makes the kernel report its full length, so a reply that did
    /// not fit is an error instead of silently cut.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > buf.len() => {
                    return Err(invalid(&format!("a {n}-byte datagram exceeds the buffer")));
                }
                Ok(n) => return Ok(n),
                // A signal handler ran (socket calls with a timeout are never restarted).
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no reply from nf_tables within {REPLY_TIMEOUT_S} s"),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Matches the replies to a batch with its messages.
struct Acks {
    begin_seq: u32,
    end_seq: u32,
    pending: Vec<u32>,
    first_error: Option<io::Error>,
}

impl Acks {
    fn new(batch: &Finished) -> Acks {
        Acks {
            begin_seq: batch.begin_seq,
            end_seq: batch.end_seq,
            pending: batch.acked.clone(),
            first_error: None,
        }
    }

    fn complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes one datagram. An error about the batch as a whole (no memory, failed commit) is
    /// returned at once: it comes alone, no ack of any message follows.
    fn feed(&mut self, datagram: &[u8]) -> io::Result<()> {
        for msg in Messages::new(datagram) {
            let msg = msg?;
            if msg.seq == self.begin_seq || msg.seq == self.end_seq {
                if msg.ty == NLMSG_ERROR {
                    error_code(msg.payload)?;
                }
                continue;
            }
            let Some(i) = self.pending.iter().position(|&s| s == msg.seq) else {
                continue; // a late reply to an earlier request on this socket
            };
            self.pending.swap_remove(i);
            let result = if msg.ty == NLMSG_ERROR {
                error_code(msg.payload)
            } else {
                Err(invalid("a batch message answered with data"))
            };
            // The kernel reports on every message even after a failure; the first error is the
            // cause, later ones (a chain in a table that was not created, ...) its consequences.
            if let Err(e) = result {
                self.first_error.get_or_insert(e);
            }
        }
        Ok(())
    }

    fn result(self) -> io::Result<()> {
        self.first_error.map_or(Ok(()), Err)
    }
}

/// Collects the replies to one dump request.
struct DumpReader {
    seq: u32,
    replies: Vec<Reply>,
    bytes: usize,
    interrupted: bool,
    done: bool,
}

impl DumpReader {
    fn new(seq: u32) -> DumpReader {
        DumpReader {
            seq,
            replies: Vec::new(),
            bytes: 0,
            interrupted: false,
            done: false,
        }
    }

    /// Takes one datagram; sets `done` at NLMSG_DONE.
    fn feed(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.bytes += datagram.len();
        if self.bytes > MAX_DUMP_BYTES {
            return Err(invalid("dump longer than 16 MiB"));
        }
        for msg in Messages::new(datagram) {
            let msg = msg?;
            if msg.seq != self.seq || self.done {
                continue;
            }
            self.interrupted |= msg.flags & NLM_F_DUMP_INTR != 0;
            match msg.ty {
                NLMSG_DONE => {
                    // NLMSG_DONE carries the dump's status (0 or a negative errno).
                    if !msg.payload.is_empty() {
                        error_code(msg.payload)?;
                    }
                    self.done = true;
                }
                NLMSG_ERROR => error_code(msg.payload)?,
                ty if ty >> 8 == NFNL_SUBSYS_NFTABLES => {
                    self.replies.push(Reply::parse(msg.payload)?);
                }
                _ => return Err(invalid("unexpected message type in a dump")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::wire::{attrs, test_header as hdr};

    fn error_msg(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = hdr(36, NLMSG_ERROR, 0x100 /* NLM_F_CAPPED */, seq);
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m.extend_from_slice(&hdr(16, 0, 0, seq));
        m
    }

    fn finished(ops: usize) -> Finished {
        let mut b = Batch::new(10);
        for _ in 0..ops {
            b.add(0, 1, 0, |_| {});
        }
        b.finish()
    }

    #[test]
    fn acks_are_matched_by_sequence_number() {
        let mut acks = Acks::new(&finished(3)); // messages 11, 12, 13; end 14
        // Out of order, split over datagrams, with a stale reply to an earlier request.
        acks.feed(&[error_msg(13, 0), error_msg(5, libc::ENOENT)].concat())
            .unwrap();
        assert!(!acks.complete());
        acks.feed(&[error_msg(11, 0), error_msg(12, 0)].concat())
            .unwrap();
        assert!(acks.complete());
        assert!(acks.result().is_ok());
    }

    #[test]
    fn the_first_error_of_a_batch_is_returned() {
        let mut acks = Acks::new(&finished(3));
        acks.feed(&error_msg(11, 0)).unwrap();
        acks.feed(&[error_msg(12, libc::EOPNOTSUPP), error_msg(13, libc::ENOENT)].concat())
            .unwrap();
        assert!(acks.complete());
        let e = acks.result().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
        // An error on BATCH_BEGIN (a failed commit) ends the wait at once.
        let mut acks = Acks::new(&finished(2));
        let e = acks.feed(&error_msg(10, libc::ENOMEM)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        // Data where an ack belongs, and a cut datagram, are errors too.
        let mut acks = Acks::new(&finished(1));
        acks.feed(&hdr(16, nft_type(0), 0, 11)).unwrap();
        assert!(acks.complete() && acks.result().is_err());
        let mut acks = Acks::new(&finished(1));
        let ack = error_msg(11, 0);
        assert!(acks.feed(&ack[..30]).is_err());
    }

    fn table_reply(seq: u32, flags: u16) -> Vec<u8> {
        let mut m = hdr(36, nft_type(0), 2 | flags, seq);
        m.extend_from_slice(&[1, 0, 0, 0]);
        m.extend_from_slice(&[6, 0, 1, 0, b'x', 0, 0, 0]);
        m.extend_from_slice(&[8, 0, 2, 0, 0, 0, 0, 2]);
        m
    }

    fn done(seq: u32, status: i32) -> Vec<u8> {
        let mut m = hdr(20, NLMSG_DONE, 2, seq);
        m.extend_from_slice(&status.to_ne_bytes());
        m
    }

    #[test]
    fn dumps_end_at_done() {
        let mut d = DumpReader::new(4);
        d.feed(&[table_reply(4, 0), table_reply(3, 0), table_reply(4, 0)].concat())
            .unwrap();
        assert!(!d.done);
        d.feed(&done(4, 0)).unwrap();
        assert!(d.done && !d.interrupted);
        assert_eq!(d.replies.len(), 2, "the reply to seq 3 is not ours");
        let a: Vec<_> = attrs(&d.replies[0].attrs)
            .collect::<io::Result<_>>()
            .unwrap();
        assert_eq!(a[0], (1, &b"x\0"[..]));
        assert_eq!(d.replies[0].family, 1);

        let mut d = DumpReader::new(4);
        d.feed(&[table_reply(4, NLM_F_DUMP_INTR), done(4, 0)].concat())
            .unwrap();
        assert!(d.done && d.interrupted);
    }

    #[test]
    fn malformed_or_failed_dumps_are_errors() {
        let good = [table_reply(4, 0), done(4, 0)].concat();
        for cut in 1..good.len() {
            if cut == 36 {
                continue; // a whole message: valid, the dump goes on
            }
            let mut d = DumpReader::new(4);
            assert!(d.feed(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut d = DumpReader::new(4);
        let e = d.feed(&error_msg(4, libc::EPERM)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        let mut d = DumpReader::new(4);
        let e = d.feed(&done(4, -libc::EINTR)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINTR));
        let mut d = DumpReader::new(4);
        assert!(d.feed(&hdr(16, 0x0b00, 2, 4)).is_err(), "another subsystem");
        // A reply too short for its nfgenmsg.
        let mut short = hdr(18, nft_type(0), 2, 4);
        short.extend_from_slice(&[1, 0]);
        assert!(DumpReader::new(4).feed(&short).is_err());
    }
}
