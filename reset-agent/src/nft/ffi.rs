//! The only unsafe code in the agent besides the eBPF loader's: what nftnl 0.9 lacks.
//!
//! nftnl 0.9 has no `redir` expression, no table-flags setter and no table listing that reports
//! flags, so this file adds them over the re-exported `nftnl-sys`, implementing nftnl's public
//! `Expression` and `NlMsg` traits. Each unsafe block says why it is sound.
use std::{
    ffi::{CStr, CString, c_char, c_void},
    io, ptr,
};

use nftnl::{
    MsgType, NlMsg, ProtoFamily, Rule,
    expr::{Expression, Register},
    nftnl_sys::{self as sys, libc},
};

/// NFT_TABLE_F_OWNER (linux/netfilter/nf_tables.h, kernel >= 5.12): the table belongs to the
/// netlink socket that created it and is deleted by the kernel when that socket closes.
pub const NFT_TABLE_F_OWNER: u32 = 0x2;

/// A table message with flags, in place of `nftnl::Table` (which always sends flags = 0).
pub struct FlaggedTable {
    raw: ptr::NonNull<sys::nftnl_table>,
    family: ProtoFamily,
}

impl FlaggedTable {
    pub fn new(name: &CStr, family: ProtoFamily, flags: u32) -> Self {
        // SAFETY: allocation has no preconditions; a null return is handled.
        let raw = ptr::NonNull::new(unsafe { sys::nftnl_table_alloc() })
            .expect("nftnl_table_alloc: out of memory");
        // SAFETY: `raw` is a live table; the setters copy the string and integers.
        unsafe {
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, family as u32);
            sys::nftnl_table_set_str(raw.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr());
            sys::nftnl_table_set_u32(raw.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, flags);
        }
        Self { raw, family }
    }
}

// SAFETY: a table message is far below nft_nlmsg_maxsize (name + two u32 attributes).
unsafe impl NlMsg for FlaggedTable {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, msg_type: MsgType) {
        let raw_type = match msg_type {
            MsgType::Add => libc::NFT_MSG_NEWTABLE,
            MsgType::Del => libc::NFT_MSG_DELTABLE,
        };
        // SAFETY: the caller passes a buffer of nft_nlmsg_maxsize bytes (NlMsg contract).
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

// SAFETY: the table is only read after construction.
unsafe impl Send for FlaggedTable {}

/// `redirect to :port` with the port read from a register (nft_redir, NFTA_REDIR_REG_PROTO_MIN).
pub struct Redirect {
    pub port_register: Register,
}

impl Expression for Redirect {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        // SAFETY: "redir" is a NUL-terminated expression name known to libnftnl.
        let expr = ptr::NonNull::new(unsafe { sys::nftnl_expr_alloc(c"redir".as_ptr()) })
            .expect("nftnl_expr_alloc(redir): out of memory");
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

/// `notrack`: exempts the packet from connection tracking (nft_notrack, no attributes).
pub struct Notrack;

impl Expression for Notrack {
    fn to_expr(&self, _rule: &Rule) -> ptr::NonNull<sys::nftnl_expr> {
        // SAFETY: "notrack" is a NUL-terminated expression name known to libnftnl.
        ptr::NonNull::new(unsafe { sys::nftnl_expr_alloc(c"notrack".as_ptr()) })
            .expect("nftnl_expr_alloc(notrack): out of memory")
    }
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

/// A dump request for all tables (NFT_MSG_GETTABLE, NLM_F_DUMP).
pub fn get_tables_request(seq: u32) -> AlignedBuf {
    let mut buf = AlignedBuf::new(nftnl::nft_nlmsg_maxsize() as usize);
    // SAFETY: the buffer holds nft_nlmsg_maxsize bytes; only a header is written.
    let header = unsafe {
        sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr().cast::<c_char>(),
            libc::NFT_MSG_GETTABLE as u16,
            ProtoFamily::Unspec as u16,
            (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
            seq,
        )
    };
    // SAFETY: `header` points into `buf`; nlmsg_len was set by build_hdr.
    let len = unsafe { (*header).nlmsg_len } as usize;
    buf.truncate(len);
    buf
}

/// mnl callback: parses one table message into `out`.
pub fn table_cb(header: &libc::nlmsghdr, out: &mut Vec<TableInfo>) -> libc::c_int {
    // SAFETY: allocation without preconditions; freed below on every path.
    let table = unsafe { sys::nftnl_table_alloc() };
    if table.is_null() {
        return mnl_error();
    }
    // SAFETY: `header` is a complete message validated by mnl_cb_run; `table` is live.
    let parsed = unsafe { sys::nftnl_table_nlmsg_parse(header, table) };
    if parsed >= 0 {
        // SAFETY: `table` was filled by the parser; get_str returns a pointer into it (or null),
        // copied before the table is freed.
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
    if parsed < 0 {
        mnl_error()
    } else {
        1 /* MNL_CB_OK */
    }
}

fn mnl_error() -> libc::c_int {
    -1 // MNL_CB_ERROR
}

/// A byte buffer aligned for `nlmsghdr`, as mnl's parser requires.
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
        // SAFETY: as above, exclusive borrow.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.len) }
    }
}

/// Maps an mnl error to its errno, for telling EOPNOTSUPP and EPERM apart.
pub fn errno(err: &io::Error) -> Option<i32> {
    err.raw_os_error()
}
