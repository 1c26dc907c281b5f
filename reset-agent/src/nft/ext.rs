//! What nftnl 0.9 and mnl 0.3 lack, added through their public extension points: nftnl's
//! `Expression` and `NlMsg` traits and the re-exported `nftnl-sys` bindings. This is the only
//! unsafe code in the agent outside the eBPF crate; each block says why it is sound.
//!
//! - `FlaggedTable`: a table message with flags (nftnl's `Table` always sends 0), for
//!   NFT_TABLE_F_OWNER.
//! - `Tproxy`, `Redir`, `TransportBytes`: the `tproxy` and `redir` statements and a raw
//!   transport-header load (nftnl only knows TCP ports; we also read the TCP flags byte).
//! - `dump_request` and the `table_cb`/`chain_cb` parsers: listings with the fields nftnl's own
//!   listing drops (table flags and use count, chain hooks and policies).
//! - `harden`: close-on-exec and a receive timeout on mnl's socket, which mnl does not set.
#![allow(unsafe_code)]

use std::{
    ffi::{CStr, CString, c_char, c_void},
    io,
    os::fd::{AsRawFd, BorrowedFd},
    ptr,
    time::Duration,
};

use nftnl::{
    MsgType, NlMsg, ProtoFamily, Rule,
    expr::{Expression, Register},
    nftnl_sys::{self as sys, libc},
};

/// NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h, kernel >= 5.12): the table belongs to the
/// netlink socket that created it and is deleted by the kernel when that socket closes.
pub const NFT_TABLE_F_OWNER: u32 = 0x2;

// libnftnl's enum for the tproxy expression (libnftnl >= 1.1.1, include/libnftnl/expr.h):
// NFTNL_EXPR_BASE + 0..2. nftnl-sys is generated for the 1.0.6 API, which predates them.
const NFTNL_EXPR_TPROXY_FAMILY: u16 = 1;
const NFTNL_EXPR_TPROXY_REG_PORT: u16 = 3;

/// Allocates an expression by name; `None` when this libnftnl does not know the name (too old).
fn alloc_expr(name: &CStr) -> Option<ptr::NonNull<sys::nftnl_expr>> {
    // SAFETY: `name` is NUL-terminated; nftnl_expr_alloc returns null for an unknown name or
    // when out of memory, and a fresh expression otherwise.
    ptr::NonNull::new(unsafe { sys::nftnl_expr_alloc(name.as_ptr()) })
}

/// nftnl's `Expression` has no error path: an expression this libnftnl cannot build stops the
/// agent with a message instead of sending a wrong rule. `probe_expressions` checks first.
fn must_alloc(name: &CStr) -> ptr::NonNull<sys::nftnl_expr> {
    alloc_expr(name).unwrap_or_else(|| {
        panic!(
            "libnftnl cannot build the {name:?} expression (probe_expressions should have refused)"
        )
    })
}

/// Whether this libnftnl can build an expression (`tproxy` needs libnftnl >= 1.1.1).
pub fn libnftnl_knows(name: &CStr) -> bool {
    match alloc_expr(name) {
        Some(expr) => {
            // SAFETY: allocated just above, freed once, never used again.
            unsafe { sys::nftnl_expr_free(expr.as_ptr()) };
            true
        }
        None => false,
    }
}

/// A table message with flags, in place of `nftnl::Table`.
pub struct FlaggedTable {
    raw: ptr::NonNull<sys::nftnl_table>,
    family: ProtoFamily,
}

impl FlaggedTable {
    pub fn new(name: &CStr, family: ProtoFamily, flags: u32) -> Self {
        // SAFETY: allocation has no preconditions; a null return is handled.
        let raw = ptr::NonNull::new(unsafe { sys::nftnl_table_alloc() })
            .expect("nftnl_table_alloc: out of memory");
        // SAFETY: `raw` is a live table; the setters copy the string and the integers.
        unsafe {
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, family as u32);
            sys::nftnl_table_set_str(raw.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, flags);
        }
        Self { raw, family }
    }
}

// SAFETY: a table message (a name and two u32 attributes) is far below nft_nlmsg_maxsize, the
// buffer size the NlMsg contract guarantees.
unsafe impl NlMsg for FlaggedTable {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let raw_type = match msg_type {
            MsgType::Add => libc::NFT_MSG_NEWTABLE,
            MsgType::Del => libc::NFT_MSG_DELTABLE,
        };
        // SAFETY: the caller passes a buffer of nft_nlmsg_maxsize bytes (NlMsg contract); the
        // header and payload are written inside it.
        unsafe {
            let header = sys::nftnl_nlmsg_build_hdr(
                buf.cast::<c_char>(),
                raw_type as u16,
                self.family as u16,
                libc::NLM_F_ACK as u16,
                seq,
            );
            sys::nftnl_table_nlmsg_build_payload(header, self.raw.as_ptr());
        }
    }
}

impl Drop for FlaggedTable {
    fn drop(&mut self) {
        // SAFETY: allocated in `new`, freed once.
        unsafe { sys::nftnl_table_free(self.raw.as_ptr()) };
    }
}

/// `tproxy to :port`, the port read from a register (nft_tproxy, kernel >= 4.19). No family and
/// no address: in an inet table that serves IPv4 and IPv6 alike, and the packet keeps its own
/// destination address, which is local.
pub struct Tproxy {
    pub port_register: Register,
}

impl Expression for Tproxy {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        let expr = must_alloc(c"tproxy");
        // SAFETY: `expr` is a live tproxy expression; both attributes are u32 values.
        unsafe {
            sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                NFTNL_EXPR_TPROXY_FAMILY,
                libc::NFPROTO_UNSPEC as u32,
            );
            sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                NFTNL_EXPR_TPROXY_REG_PORT,
                self.port_register.to_raw(),
            );
        }
        expr
    }
}

/// `redirect to :port` (nft_redir, NFTA_REDIR_REG_PROTO_MIN): the NAT fallback for kernels
/// without nft_tproxy.
pub struct Redir {
    pub port_register: Register,
}

impl Expression for Redir {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        let expr = must_alloc(c"redir");
        // SAFETY: `expr` is a live redir expression; the attribute is a u32 register number.
        unsafe {
            sys::nftnl_expr_set_u32(
                expr.as_ptr(),
                sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN as u16,
                self.port_register.to_raw(),
            );
        }
        expr
    }
}

/// Loads `len` bytes at `offset` of the transport header into register 1 (nft_payload).
pub struct TransportBytes {
    pub offset: u32,
    pub len: u32,
}

impl Expression for TransportBytes {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        let expr = must_alloc(c"payload");
        // SAFETY: `expr` is a live payload expression; every attribute is a u32 value.
        unsafe {
            let e = expr.as_ptr();
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_PAYLOAD_BASE as u16,
                libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32,
            );
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_OFFSET as u16, self.offset);
            sys::nftnl_expr_set_u32(e, sys::NFTNL_EXPR_PAYLOAD_LEN as u16, self.len);
            sys::nftnl_expr_set_u32(
                e,
                sys::NFTNL_EXPR_PAYLOAD_DREG as u16,
                Register::Reg1.to_raw(),
            );
        }
        expr
    }
}

/// A dump request (`NFT_MSG_GET*` with NLM_F_DUMP) for every family.
pub fn dump_request(msg_type: u16, seq: u32) -> AlignedBuf {
    let mut buf = AlignedBuf::new(nftnl::nft_nlmsg_maxsize() as usize);
    // SAFETY: the buffer holds nft_nlmsg_maxsize bytes; only a header is written into it.
    let header = unsafe {
        sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            msg_type,
            ProtoFamily::Unspec as u16,
            (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
            seq,
        )
    };
    // SAFETY: `header` points into `buf`; build_hdr set nlmsg_len.
    let len = unsafe { (*header).nlmsg_len } as usize;
    buf.truncate(len);
    buf
}

/// A table as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: CString,
    pub family: u32,
    pub flags: u32,
    /// Number of objects (chains, sets) in the table.
    pub use_count: u32,
}

/// A base chain as the kernel reports it (regular chains carry no hook and are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    pub table: String,
    pub name: String,
    pub family: u32,
    pub hook: u32,
    pub priority: i32,
    /// NF_DROP (0) or NF_ACCEPT (1).
    pub policy: u32,
    pub kind: String,
}

/// mnl callback: parses one NEWTABLE message of a dump into `out`.
pub fn table_cb(header: &libc::nlmsghdr, out: &mut Vec<TableInfo>) -> libc::c_int {
    // SAFETY: allocation without preconditions; freed below on every path.
    let table = unsafe { sys::nftnl_table_alloc() };
    if table.is_null() {
        return MNL_CB_ERROR;
    }
    // SAFETY: `header` is a complete message validated by mnl_cb_run; `table` is live.
    let parsed = unsafe { sys::nftnl_table_nlmsg_parse(header, table) };
    if parsed >= 0 {
        // SAFETY: `table` was filled by the parser; get_str returns a pointer into it (or
        // null), copied before the table is freed.
        unsafe {
            let name = sys::nftnl_table_get_str(table, sys::NFTNL_TABLE_NAME as u16);
            if !name.is_null() {
                out.push(TableInfo {
                    name: CStr::from_ptr(name).to_owned(),
                    family: sys::nftnl_table_get_u32(table, sys::NFTNL_TABLE_FAMILY as u16),
                    flags: sys::nftnl_table_get_u32(table, sys::NFTNL_TABLE_FLAGS as u16),
                    use_count: sys::nftnl_table_get_u32(table, sys::NFTNL_TABLE_USE as u16),
                });
            }
        }
    }
    // SAFETY: allocated above, freed once.
    unsafe { sys::nftnl_table_free(table) };
    if parsed < 0 { MNL_CB_ERROR } else { MNL_CB_OK }
}

/// mnl callback: parses one NEWCHAIN message of a dump; keeps base chains only.
pub fn chain_cb(header: &libc::nlmsghdr, out: &mut Vec<ChainInfo>) -> libc::c_int {
    // SAFETY: allocation without preconditions; freed below on every path.
    let chain = unsafe { sys::nftnl_chain_alloc() };
    if chain.is_null() {
        return MNL_CB_ERROR;
    }
    // SAFETY: `header` is a complete message validated by mnl_cb_run; `chain` is live.
    let parsed = unsafe { sys::nftnl_chain_nlmsg_parse(header, chain) };
    // SAFETY: `chain` was filled by the parser; attributes are read only when set, strings are
    // copied before the chain is freed.
    let info = (parsed >= 0).then(|| unsafe {
        let is_set = |attr: u32| sys::nftnl_chain_is_set(chain, attr as u16);
        let text = |attr: u32| {
            let p = sys::nftnl_chain_get_str(chain, attr as u16);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        is_set(sys::NFTNL_CHAIN_HOOKNUM).then(|| ChainInfo {
            table: text(sys::NFTNL_CHAIN_TABLE),
            name: text(sys::NFTNL_CHAIN_NAME),
            family: sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_FAMILY as u16),
            hook: sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_HOOKNUM as u16),
            priority: sys::nftnl_chain_get_s32(chain, sys::NFTNL_CHAIN_PRIO as u16),
            policy: if is_set(sys::NFTNL_CHAIN_POLICY) {
                sys::nftnl_chain_get_u32(chain, sys::NFTNL_CHAIN_POLICY as u16)
            } else {
                libc::NF_ACCEPT as u32
            },
            kind: text(sys::NFTNL_CHAIN_TYPE),
        })
    });
    // SAFETY: allocated above, freed once.
    unsafe { sys::nftnl_chain_free(chain) };
    match info {
        Some(Some(c)) => {
            out.push(c);
            MNL_CB_OK
        }
        Some(None) => MNL_CB_OK,
        None => MNL_CB_ERROR,
    }
}

const MNL_CB_ERROR: libc::c_int = -1;
const MNL_CB_OK: libc::c_int = 1;

/// Close-on-exec and a receive timeout on mnl's socket (mnl opens it with neither): a kernel
/// that never answers becomes an error after `timeout` instead of a hang.
pub fn harden(socket: &mnl::Socket, timeout: Duration) -> io::Result<()> {
    // SAFETY: the descriptor belongs to `socket`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)?;
    let flags = nix::fcntl::FdFlag::from_bits_truncate(flags) | nix::fcntl::FdFlag::FD_CLOEXEC;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(flags))?;
    let tv = nix::sys::time::TimeVal::new(
        timeout.as_secs() as libc::time_t,
        libc::suseconds_t::from(timeout.subsec_micros()),
    );
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
    Ok(())
}

/// A byte buffer aligned for `nlmsghdr`, as libnftnl and mnl's parsers require.
pub struct AlignedBuf {
    words: Vec<u64>,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(8)],
            len,
        }
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }
    fn truncate(&mut self, len: usize) {
        self.len = len.min(self.words.len() * 8);
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.len) }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, through an exclusive borrow.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }
}
