//! The netfilter netlink wire format (linux/netlink.h, linux/netfilter/nfnetlink.h): building
//! batches of nf_tables messages and parsing replies. No I/O here; `netlink` does that.
//!
//! A message is an `nlmsghdr` (length, type, flags, sequence, port id: 16 bytes in host byte
//! order), an `nfgenmsg` (family, version, resource id: 4 bytes) and attributes (`nlattr`: u16
//! length, u16 type, payload, padded to 4 bytes; nf_tables integers are big endian). Changes
//! travel in one batch, BATCH_BEGIN .. BATCH_END, that the kernel applies atomically.
//!
//! Replies are parsed defensively: a short, overlong or truncated message or attribute is an
//! `InvalidData` error, never a panic and never a read past the buffer.
use std::{ffi::CString, io};

const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;
/// Attribute type bit: the payload is itself a list of attributes.
const NLA_F_NESTED: u16 = 1 << 15;
/// Attribute type bit: the payload is in network byte order (informational).
const NLA_F_NET_BYTEORDER: u16 = 1 << 14;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// The dump was interrupted by a concurrent change; its content may be inconsistent.
pub(super) const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;

pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNETLINK_V0: u8 = 0;
pub(super) const AF_UNSPEC: u8 = 0;

/// The netlink message type of an nf_tables message (`NFT_MSG_*` from linux/netfilter/nf_tables.h).
pub const fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

pub(super) fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink reply: {what}"),
    )
}

/// One object of a dump: its family (from `nfgenmsg`) and its attributes.
#[derive(Debug)]
pub struct Reply {
    pub family: u8,
    pub attrs: Vec<u8>,
}

impl Reply {
    pub(super) fn parse(payload: &[u8]) -> io::Result<Reply> {
        let Some((nfgen, attrs)) = payload.split_at_checked(NFGENMSG_LEN) else {
            return Err(invalid("message shorter than nfgenmsg"));
        };
        Ok(Reply {
            family: nfgen[0],
            attrs: attrs.to_vec(),
        })
    }
}

/// The errno of an NLMSG_ERROR (or NLMSG_DONE) payload: `Ok` for an ack (0).
pub(super) fn error_code(payload: &[u8]) -> io::Result<()> {
    let code = payload
        .first_chunk::<4>()
        .map(|b| i32::from_ne_bytes(*b))
        .ok_or_else(|| invalid("error message without a code"))?;
    match code {
        0 => Ok(()),
        c if c < 0 => Err(io::Error::from_raw_os_error(c.saturating_neg())),
        _ => Err(invalid("positive error code")),
    }
}

fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

/// Pads `buf` with zeros to a 4-byte boundary.
fn pad(buf: &mut Vec<u8>) {
    buf.resize(align4(buf.len()), 0);
}

/// Stores `len` as a u16 length field at `at`. Every message here is a few hundred bytes, so an
/// attribute past 64 KiB is a programming error.
fn patch_len_u16(buf: &mut [u8], at: usize, len: usize) {
    let len = u16::try_from(len).expect("netlink attribute under 64 KiB");
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Appends an `nlmsghdr` (length patched later) and an `nfgenmsg`; returns the header's offset.
pub(super) fn put_header(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&((NLMSG_HDRLEN + NFGENMSG_LEN) as u32).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: 0 addresses the kernel
    buf.extend_from_slice(&[family, NFNETLINK_V0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    start
}

/// A batch of nf_tables changes, applied by the kernel all or nothing.
pub struct Batch {
    buf: Vec<u8>,
    begin_seq: u32,
    next_seq: u32,
    acked: Vec<u32>,
}

/// A batch with its end message, as sent.
pub(super) struct Finished {
    pub(super) buf: Vec<u8>,
    pub(super) begin_seq: u32,
    pub(super) end_seq: u32,
    /// The messages that ask for an ack.
    pub(super) acked: Vec<u32>,
}

impl Batch {
    /// Starts a batch whose BATCH_BEGIN carries `begin_seq`; messages follow with the next
    /// numbers. Begin and end ask for no ack: kernels before 6.10 ignore the flag on them.
    pub fn new(begin_seq: u32) -> Batch {
        let mut buf = Vec::with_capacity(2048);
        put_header(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            begin_seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        Batch {
            buf,
            begin_seq,
            next_seq: begin_seq.wrapping_add(1),
            acked: Vec::new(),
        }
    }

    /// Adds one nf_tables message (`NFT_MSG_*`) with NLM_F_REQUEST | NLM_F_ACK | `flags`;
    /// `attrs` writes its attributes.
    pub fn add(&mut self, msg: u16, family: u8, flags: u16, attrs: impl FnOnce(&mut Attrs<'_>)) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        self.acked.push(seq);
        let start = put_header(
            &mut self.buf,
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            seq,
            family,
            0,
        );
        attrs(&mut Attrs { buf: &mut self.buf });
        let len = u32::try_from(self.buf.len() - start).expect("netlink message under 4 GiB");
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    pub(super) fn finish(mut self) -> Finished {
        let end_seq = self.next_seq;
        put_header(
            &mut self.buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            end_seq,
            AF_UNSPEC,
            NFNL_SUBSYS_NFTABLES,
        );
        Finished {
            buf: self.buf,
            begin_seq: self.begin_seq,
            end_seq,
            acked: self.acked,
        }
    }

    /// The bytes the kernel receives, end message included.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Vec<u8> {
        Batch {
            buf: self.buf.clone(),
            begin_seq: self.begin_seq,
            next_seq: self.next_seq,
            acked: Vec::new(),
        }
        .finish()
        .buf
    }
}

/// Writes attributes at the end of a message (or of a nested attribute).
pub struct Attrs<'a> {
    buf: &'a mut Vec<u8>,
}

impl Attrs<'_> {
    /// An attribute with a raw payload.
    pub fn bytes(&mut self, ty: u16, payload: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        patch_len_u16(self.buf, start, NLA_HDRLEN + payload.len());
        pad(self.buf);
    }

    /// A NUL-terminated string (NLA_STRING / NLA_NUL_STRING).
    pub fn str(&mut self, ty: u16, s: &str) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
        patch_len_u16(self.buf, start, NLA_HDRLEN + s.len() + 1);
        pad(self.buf);
    }

    /// A big-endian u32 (nf_tables' NLA_U32 / NLA_BE32).
    pub fn be32(&mut self, ty: u16, v: u32) {
        self.bytes(ty, &v.to_be_bytes());
    }

    /// A nested attribute (NLA_F_NESTED) whose content `inner` writes.
    pub fn nest(&mut self, ty: u16, inner: impl FnOnce(&mut Attrs<'_>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        inner(&mut Attrs { buf: self.buf });
        let len = self.buf.len() - start;
        patch_len_u16(self.buf, start, len);
    }
}

/// One netlink message of a received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the `nlmsghdr`.
    pub payload: &'a [u8],
}

/// The messages of a datagram; yields one error and stops at the first malformed header.
pub struct Messages<'a> {
    rest: &'a [u8],
}

impl<'a> Messages<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Messages { rest: buf }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = io::Result<Msg<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = parse_msg(self.rest);
        match parsed {
            Ok((_, rest)) => self.rest = rest,
            Err(_) => self.rest = &[],
        }
        Some(parsed.map(|(msg, _)| msg))
    }
}

fn parse_msg(buf: &[u8]) -> io::Result<(Msg<'_>, &[u8])> {
    let Some(hdr) = buf.first_chunk::<NLMSG_HDRLEN>() else {
        return Err(invalid("truncated message header"));
    };
    let len = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(invalid("message length out of bounds"));
    }
    let msg = Msg {
        ty: u16::from_ne_bytes([hdr[4], hdr[5]]),
        flags: u16::from_ne_bytes([hdr[6], hdr[7]]),
        seq: u32::from_ne_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]),
        payload: &buf[NLMSG_HDRLEN..len],
    };
    // The last message of a datagram may lack its trailing padding.
    let rest = buf.get(align4(len)..).unwrap_or(&[]);
    Ok((msg, rest))
}

/// The attributes in `buf` as (type without flag bits, payload); yields one error and stops at
/// the first malformed attribute.
pub struct AttrIter<'a> {
    rest: &'a [u8],
}

pub fn attrs(buf: &[u8]) -> AttrIter<'_> {
    AttrIter { rest: buf }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = io::Result<(u16, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some(hdr) = self.rest.first_chunk::<NLA_HDRLEN>() else {
            self.rest = &[];
            return Some(Err(invalid("truncated attribute header")));
        };
        let len = usize::from(u16::from_ne_bytes([hdr[0], hdr[1]]));
        let ty = u16::from_ne_bytes([hdr[2], hdr[3]]) & !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return Some(Err(invalid("attribute length out of bounds")));
        }
        let payload = &self.rest[NLA_HDRLEN..len];
        self.rest = self.rest.get(align4(len)..).unwrap_or(&[]);
        Some(Ok((ty, payload)))
    }
}

/// A big-endian u32 attribute payload.
pub fn get_be32(payload: &[u8]) -> io::Result<u32> {
    <[u8; 4]>::try_from(payload)
        .map(u32::from_be_bytes)
        .map_err(|_| invalid("u32 attribute of the wrong size"))
}

/// A string attribute payload, up to its NUL (a missing NUL is tolerated).
pub fn get_cstring(payload: &[u8]) -> io::Result<CString> {
    let s = payload.split(|&b| b == 0).next().unwrap_or_default();
    CString::new(s).map_err(|_| invalid("string attribute"))
}

/// A netlink header for tests: length, type, flags, sequence, port id 4242.
#[cfg(test)]
pub(super) fn test_header(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&4242u32.to_ne_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::test_header as hdr;

    #[test]
    fn attributes_round_trip_with_padding_and_nesting() {
        let mut buf = Vec::new();
        let mut a = Attrs { buf: &mut buf };
        a.str(1, "abcde");
        a.be32(2, 0xdead_beef);
        a.nest(3, |n| {
            n.bytes(1, &[7]);
            n.nest(2, |m| m.be32(9, 1));
        });
        a.bytes(4, &[]);
        assert_eq!(buf.len() % 4, 0);
        let top: Vec<_> = attrs(&buf).collect::<io::Result<_>>().unwrap();
        assert_eq!(top.len(), 4);
        assert_eq!(top[0], (1, &b"abcde\0"[..]));
        assert_eq!(get_cstring(top[0].1).unwrap().as_bytes(), b"abcde");
        assert_eq!((top[1].0, get_be32(top[1].1).unwrap()), (2, 0xdead_beef));
        assert_eq!(top[2].0, 3, "the nested flag is masked off");
        let inner: Vec<_> = attrs(top[2].1).collect::<io::Result<_>>().unwrap();
        assert_eq!(inner[0], (1, &[7u8][..]));
        let deepest: Vec<_> = attrs(inner[1].1).collect::<io::Result<_>>().unwrap();
        assert_eq!((deepest[0].0, get_be32(deepest[0].1).unwrap()), (9, 1));
        assert_eq!(top[3], (4, &[][..]));
        // The nested flag is on the wire.
        assert_eq!(u16::from_ne_bytes([buf[22], buf[23]]), 3 | NLA_F_NESTED);
    }

    #[test]
    fn batch_frames_messages_between_begin_and_end() {
        let mut b = Batch::new(7);
        b.add(0, 1, 0, |a| a.str(1, "t"));
        let bytes = b.to_bytes();
        let msgs: Vec<_> = Messages::new(&bytes).collect::<io::Result<_>>().unwrap();
        let summary: Vec<_> = msgs.iter().map(|m| (m.ty, m.flags, m.seq)).collect();
        assert_eq!(
            summary,
            [
                (NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 7),
                (nft_type(0), NLM_F_REQUEST | NLM_F_ACK, 8),
                (NFNL_MSG_BATCH_END, NLM_F_REQUEST, 9),
            ]
        );
        // Begin and end address the nf_tables subsystem (res_id, big endian).
        assert_eq!(msgs[0].payload, [AF_UNSPEC, 0, 0, 10]);
        assert_eq!(msgs[2].payload, [AF_UNSPEC, 0, 0, 10]);
        assert_eq!(b.acked, [8]);
    }

    #[test]
    fn error_messages_map_to_errno() {
        let mut ack = hdr(36, NLMSG_ERROR, 0x100, 3);
        ack.extend_from_slice(&0i32.to_ne_bytes());
        ack.extend_from_slice(&hdr(16, 0, 0, 3));
        let mut err = hdr(36, NLMSG_ERROR, 0, 4);
        err.extend_from_slice(&(-libc::EPERM).to_ne_bytes());
        err.extend_from_slice(&hdr(16, 0, 0, 4));
        let buf = [ack, err].concat();
        let msgs: Vec<_> = Messages::new(&buf).collect::<io::Result<_>>().unwrap();
        assert!(error_code(msgs[0].payload).is_ok());
        let e = error_code(msgs[1].payload).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
        assert!(error_code(&[]).is_err());
        assert!(error_code(&i32::MIN.to_ne_bytes()).is_err());
        assert!(error_code(&5i32.to_ne_bytes()).is_err());
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut good = hdr(28, nft_type(0), 2 /* NLM_F_MULTI */, 1);
        good.extend_from_slice(&[1, 0, 0, 0]);
        good.extend_from_slice(&[8, 0, 1, 0, b'x', 0, 0, 0]);
        // Every truncation of a valid message, and every corruption of each byte.
        for cut in 0..good.len() {
            let r: io::Result<Vec<_>> = Messages::new(&good[..cut]).collect();
            assert!(cut == 0 || r.is_err(), "truncated at {cut}");
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                for m in Messages::new(&bad).flatten() {
                    if let Ok(r) = Reply::parse(m.payload) {
                        for a in attrs(&r.attrs).flatten() {
                            let _ = get_be32(a.1);
                            let _ = get_cstring(a.1);
                        }
                    }
                    let _ = error_code(m.payload);
                }
            }
        }
        // Attribute lengths that lie.
        for bad in [&[8u8, 0, 1][..], &[3, 0, 1, 0], &[200, 0, 1, 0, 0, 0, 0, 0]] {
            let r: io::Result<Vec<_>> = attrs(bad).collect();
            assert!(r.is_err(), "{bad:?}");
        }
        // A message length smaller than its header would loop forever if accepted.
        assert!(Messages::new(&hdr(0, 3, 0, 1)).next().unwrap().is_err());
        assert!(Reply::parse(&[1, 0]).is_err());
        assert!(get_be32(&[1, 2, 3]).is_err());
    }
}
