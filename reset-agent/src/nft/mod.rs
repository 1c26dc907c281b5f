//! nftables: the redirect that sends selected connections to the proxy.
//!
//! Owns the one table `inet reset_peer`, built and removed in single batches over netlink
//! (nftnl + mnl; never by running `nft`), every ack checked, the table read back after creation.
//! The table carries NFT_TABLE_F_OWNER, so it belongs to the socket held in `Redirect` and the
//! kernel deletes it if the agent dies. Only this module touches netfilter netlink.
mod ffi;

use std::{ffi::CString, io};

use nftnl::{
    Batch, Chain, FinalizedBatch, MsgType, ProtoFamily, Rule, Table,
    expr::{
        Cmp, CmpOp, Conntrack, Immediate, InterfaceName, Meta, Payload, Register, TcpHeaderField,
        TransportHeaderField,
    },
    nftnl_sys::libc,
};

pub use ffi::TableInfo;
use ffi::{AlignedBuf, FlaggedTable, NFT_TABLE_F_OWNER, Notrack, Redirect as RedirExpr};

/// The table every run uses; `nft list table inet reset_peer` shows it during a window.
pub const TABLE_NAME: &str = "reset_peer";
const CHAIN_NAME: &str = "prerouting";
const RAW_IN: &str = "untrack_in";
const RAW_OUT: &str = "untrack_out";
/// Before conntrack (-200): the raw priority.
const RAW_PRIORITY: i32 = -300;
/// Just before the usual dstnat priority (-100), so our redirect wins over service DNAT.
const CHAIN_PRIORITY: i32 = -110;
/// Compared against by the drain-time keep-alive rule; any value works, the rule has no effect.
const KEEPALIVE_CT_MARK: u32 = 0x7273_7470;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "cannot open a netfilter netlink socket: {0}; is nf_tables available (modprobe nf_tables)?"
    )]
    Socket(#[source] io::Error),
    #[error("the kernel refused the nftables change ({what}): {source}")]
    Rejected {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "table inet {TABLE_NAME} already exists and belongs to a running process: another reset-peer run is active in this network namespace; wait for it or stop it"
    )]
    Busy,
    #[error("read-back failed: {0}")]
    ReadBack(&'static str),
}

/// What to redirect.
#[derive(Debug, Clone)]
pub struct RedirectSpec {
    pub interface: String,
    pub target_port: u16,
    pub proxy_port: u16,
    /// Kernel mode: only packets with this mark (set by the tc program on selected SYNs).
    /// Userspace mode: `None`, all target traffic.
    pub mark: Option<u32>,
    /// Kernel mode only, and only when nothing else in the namespace uses conntrack: exempt
    /// unselected flows (unmarked packets) from conntrack, so the nat chain costs them
    /// nothing. Requires the tc program to mark every packet of a selected flow.
    pub untrack_unselected: bool,
}

/// A live redirect. Dropping it closes the socket, and the kernel removes an owned table.
pub struct Redirect {
    socket: mnl::Socket,
    seq: u32,
    /// False on kernels < 5.12, where the table is a normal one (removed by cleanup).
    pub owned: bool,
}

impl Redirect {
    /// Creates the table, chain and rule in one batch, then reads the table back.
    pub fn install(spec: &RedirectSpec) -> Result<Redirect, NftError> {
        let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
        let mut this = Redirect {
            socket,
            seq: 0,
            owned: true,
        };
        match this.send(build(spec, NFT_TABLE_F_OWNER, this.seq), "create table") {
            Ok(()) => {}
            Err(NftError::Rejected { source, .. })
                if ffi::errno(&source) == Some(libc::EOPNOTSUPP) =>
            {
                // Kernel without owner tables: fall back to a plain table.
                this.owned = false;
                this.send(build(spec, 0, this.seq), "create table")?;
            }
            Err(NftError::Rejected { source, .. }) if ffi::errno(&source) == Some(libc::EPERM) => {
                return Err(NftError::Busy);
            }
            Err(e) => return Err(e),
        }
        let tables = list_tables_on(&this.socket, &mut this.seq)?;
        let ours = tables
            .iter()
            .find(|t| {
                t.name.as_bytes() == TABLE_NAME.as_bytes() && t.family == ProtoFamily::Inet as u32
            })
            .ok_or(NftError::ReadBack("the table is not listed after creation"))?;
        if this.owned && ours.flags & NFT_TABLE_F_OWNER == 0 {
            return Err(NftError::ReadBack("the table lacks the owner flag"));
        }
        if ours.use_count < 1 {
            return Err(NftError::ReadBack("the table has no chain"));
        }
        Ok(this)
    }

    /// Stops redirecting new connections while connections already redirected keep their NAT.
    ///
    /// Held connections must still be translated when the proxy resets them, or the RST leaves
    /// from PROXY_PORT and the caller never sees it. Translation needs the nat chain and
    /// conntrack; conntrack hooks are only registered while some expression holds a reference
    /// (the `redir` does), so deleting the last redirect would unregister them. Hence one batch:
    /// flush the chain and add a match-only `ct mark == MARK` rule (no statement, no effect)
    /// whose reference is taken before the redirect's is dropped. `remove` deletes it all.
    pub fn stop_redirecting(&mut self) -> Result<(), NftError> {
        let name = table_name();
        let shadow = Table::new(&name, ProtoFamily::Inet);
        let chain = Chain::new(CString::new(CHAIN_NAME).expect("no NUL"), &shadow);
        // A DELRULE without a handle deletes every rule of the chain (`nft flush chain`).
        let flush = Rule::new(&chain);
        let mut keep_conntrack = Rule::new(&chain);
        keep_conntrack.add_expr(&Conntrack::Mark { set: false });
        keep_conntrack.add_expr(&Cmp::new(CmpOp::Eq, KEEPALIVE_CT_MARK));
        let mut batch = Batch::new();
        batch.add(&flush, MsgType::Del);
        batch.add(&keep_conntrack, MsgType::Add);
        self.send(batch.finalize(), "stop redirecting")
    }

    /// Deletes the table through the owning socket and checks it is gone.
    pub fn remove(mut self) -> Result<(), NftError> {
        let mut batch = Batch::new();
        let table = FlaggedTable::new(&table_name(), ProtoFamily::Inet, 0);
        batch.add(&table, MsgType::Del);
        self.send(batch.finalize(), "delete table")?;
        if table_exists_on(&self.socket, &mut self.seq)? {
            return Err(NftError::ReadBack(
                "the table is still listed after deletion",
            ));
        }
        Ok(())
    }

    fn send(&mut self, batch: FinalizedBatch, what: &'static str) -> Result<(), NftError> {
        let seqs = batch.sequence_numbers();
        self.seq = seqs.end;
        send_batch(&self.socket, &batch, seqs).map_err(|source| NftError::Rejected { what, source })
    }
}

fn table_name() -> CString {
    CString::new(TABLE_NAME).expect("no NUL in table name")
}

/// The plan for one redirect: table, nat prerouting chain, one rule.
fn build(spec: &RedirectSpec, table_flags: u32, _seq: u32) -> FinalizedBatch {
    let name = table_name();
    let table_msg = FlaggedTable::new(&name, ProtoFamily::Inet, table_flags);
    // nftnl's Chain needs an nftnl Table for its name and family; it is not sent.
    let shadow = Table::new(&name, ProtoFamily::Inet);
    let mut chain = Chain::new(CString::new(CHAIN_NAME).expect("no NUL"), &shadow);
    chain.set_hook(nftnl::Hook::PreRouting, CHAIN_PRIORITY);
    chain.set_type(nftnl::ChainType::Nat);

    let mut rule = Rule::new(&chain);
    let iface = CString::new(spec.interface.as_str()).expect("validated: no NUL");
    rule.add_expr(&Meta::IifName);
    rule.add_expr(&Cmp::new(CmpOp::Eq, InterfaceName::Exact(iface)));
    if let Some(mark) = spec.mark {
        rule.add_expr(&Meta::Mark { set: false });
        rule.add_expr(&Cmp::new(CmpOp::Eq, mark));
    }
    rule.add_expr(&Meta::L4Proto);
    rule.add_expr(&Cmp::new(CmpOp::Eq, libc::IPPROTO_TCP as u8));
    rule.add_expr(&Payload::Transport(TransportHeaderField::Tcp(
        TcpHeaderField::Dport,
    )));
    rule.add_expr(&Cmp::new(CmpOp::Eq, spec.target_port.to_be()));
    rule.add_expr(&Immediate::new(spec.proxy_port.to_be(), Register::Reg1));
    rule.add_expr(&RedirExpr {
        port_register: Register::Reg1,
    });

    let mut batch = Batch::new();
    batch.add(&table_msg, MsgType::Add);
    batch.add(&chain, MsgType::Add);
    batch.add(&rule, MsgType::Add);

    // Unselected flows skip conntrack: unmarked packets to the port on the way in, and the
    // service's packets from the port on the way out (selected flows' replies leave the proxy
    // from PROXY_PORT and are translated after this hook, so they stay tracked).
    let mut raw_in = Chain::new(CString::new(RAW_IN).expect("no NUL"), &shadow);
    raw_in.set_hook(nftnl::Hook::PreRouting, RAW_PRIORITY);
    raw_in.set_type(nftnl::ChainType::Filter);
    let mut raw_out = Chain::new(CString::new(RAW_OUT).expect("no NUL"), &shadow);
    raw_out.set_hook(nftnl::Hook::Out, RAW_PRIORITY);
    raw_out.set_type(nftnl::ChainType::Filter);
    let mut untrack_in = Rule::new(&raw_in);
    let mut untrack_out = Rule::new(&raw_out);
    if let (Some(mark), true) = (spec.mark, spec.untrack_unselected) {
        let iface = CString::new(spec.interface.as_str()).expect("validated: no NUL");
        untrack_in.add_expr(&Meta::IifName);
        untrack_in.add_expr(&Cmp::new(CmpOp::Eq, InterfaceName::Exact(iface.clone())));
        untrack_in.add_expr(&Meta::Mark { set: false });
        untrack_in.add_expr(&Cmp::new(CmpOp::Neq, mark));
        untrack_in.add_expr(&Meta::L4Proto);
        untrack_in.add_expr(&Cmp::new(CmpOp::Eq, libc::IPPROTO_TCP as u8));
        untrack_in.add_expr(&Payload::Transport(TransportHeaderField::Tcp(
            TcpHeaderField::Dport,
        )));
        untrack_in.add_expr(&Cmp::new(CmpOp::Eq, spec.target_port.to_be()));
        untrack_in.add_expr(&Notrack);
        untrack_out.add_expr(&Meta::OifName);
        untrack_out.add_expr(&Cmp::new(CmpOp::Eq, InterfaceName::Exact(iface)));
        untrack_out.add_expr(&Meta::L4Proto);
        untrack_out.add_expr(&Cmp::new(CmpOp::Eq, libc::IPPROTO_TCP as u8));
        untrack_out.add_expr(&Payload::Transport(TransportHeaderField::Tcp(
            TcpHeaderField::Sport,
        )));
        untrack_out.add_expr(&Cmp::new(CmpOp::Eq, spec.target_port.to_be()));
        untrack_out.add_expr(&Notrack);
        batch.add(&raw_in, MsgType::Add);
        batch.add(&untrack_in, MsgType::Add);
        batch.add(&raw_out, MsgType::Add);
        batch.add(&untrack_out, MsgType::Add);
    }
    batch.finalize()
}

/// Whether anything besides us uses conntrack in this network namespace: any other nftables
/// table (iptables-nft included) or legacy iptables tables. When nothing does, exempting
/// unselected flows from conntrack cannot change anyone's `ct state` matches.
pub fn conntrack_used_by_others() -> Result<bool, NftError> {
    let others = list_tables()?
        .iter()
        .any(|t| t.name.as_bytes() != TABLE_NAME.as_bytes());
    let legacy = ["/proc/net/ip_tables_names", "/proc/net/ip6_tables_names"]
        .iter()
        .any(|p| std::fs::read_to_string(p).is_ok_and(|s| !s.trim().is_empty()));
    Ok(others || legacy)
}

fn send_batch(
    socket: &mnl::Socket,
    batch: &FinalizedBatch,
    mut seqs: std::ops::Range<u32>,
) -> io::Result<()> {
    socket.send_all(batch)?;
    let mut buf = AlignedBuf::new(nftnl::nft_nlmsg_maxsize() as usize);
    let portid = socket.portid();
    while !seqs.is_empty() {
        let n = socket.recv_raw(buf.bytes_mut())?;
        for msg in mnl::NlMessages::new(&buf.bytes()[..n]) {
            let msg = msg?;
            let Some(seq) = seqs.next() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected netlink ack",
                ));
            };
            mnl::cb_run(msg, seq, portid)?;
        }
    }
    Ok(())
}

fn list_tables_on(socket: &mnl::Socket, seq: &mut u32) -> Result<Vec<TableInfo>, NftError> {
    let my_seq = *seq;
    *seq = seq.wrapping_add(1);
    let req = ffi::get_tables_request(my_seq);
    let read = |e| NftError::Rejected {
        what: "list tables",
        source: e,
    };
    socket.send(req.bytes()).map_err(read)?;
    let mut out = Vec::new();
    let mut buf = AlignedBuf::new(nftnl::nft_nlmsg_maxsize() as usize);
    loop {
        let n = socket.recv_raw(buf.bytes_mut()).map_err(read)?;
        match mnl::cb_run2(
            &buf.bytes()[..n],
            my_seq,
            socket.portid(),
            ffi::table_cb,
            &mut out,
        )
        .map_err(read)?
        {
            mnl::CbResult::Stop => return Ok(out),
            mnl::CbResult::Ok => {}
        }
    }
}

fn table_exists_on(socket: &mnl::Socket, seq: &mut u32) -> Result<bool, NftError> {
    Ok(list_tables_on(socket, seq)?.iter().any(|t| {
        t.name.as_bytes() == TABLE_NAME.as_bytes() && t.family == ProtoFamily::Inet as u32
    }))
}

/// Lists the tables in this network namespace (for cleanup, preflight and tests).
pub fn list_tables() -> Result<Vec<TableInfo>, NftError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    list_tables_on(&socket, &mut 1)
}

/// Whether `inet reset_peer` exists in this network namespace.
pub fn table_exists() -> Result<bool, NftError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    table_exists_on(&socket, &mut 1)
}

/// Removes a leftover (not owned) `inet reset_peer` table. Returns whether one was removed.
/// An owned table belongs to a live agent and is refused with `Busy`.
pub fn remove_stale_table() -> Result<bool, NftError> {
    let socket = mnl::Socket::new(mnl::Bus::Netfilter).map_err(NftError::Socket)?;
    let mut seq = 1;
    let tables = list_tables_on(&socket, &mut seq)?;
    let Some(t) = tables.iter().find(|t| {
        t.name.as_bytes() == TABLE_NAME.as_bytes() && t.family == ProtoFamily::Inet as u32
    }) else {
        return Ok(false);
    };
    if t.flags & NFT_TABLE_F_OWNER != 0 {
        return Err(NftError::Busy);
    }
    let mut batch = Batch::new();
    let table = FlaggedTable::new(&table_name(), ProtoFamily::Inet, 0);
    batch.add(&table, MsgType::Del);
    let batch = batch.finalize();
    let seqs = batch.sequence_numbers();
    send_batch(&socket, &batch, seqs).map_err(|source| NftError::Rejected {
        what: "delete stale table",
        source,
    })?;
    Ok(true)
}
