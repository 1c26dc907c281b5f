//! nftables: the redirect that sends selected connections to the proxy.
//!
//! Owns the one table `inet reset_peer`, built and removed in single batches over netfilter
//! netlink in pure Rust (`wire` encodes and parses messages, `expr` the expressions, `netlink`
//! talks to the kernel; never by running `nft`, no libnftnl), every ack checked, the table read
//! back after creation.
//! The table carries NFT_TABLE_F_OWNER, so it belongs to the socket held in `Redirect` and the
//! kernel deletes it if the agent dies. Only this module touches netfilter netlink.
mod expr;
mod netlink;
#[cfg(test)]
mod tests;
mod wire;

use std::{ffi::CString, io};

use expr::{Expr, MetaKey, PortField, ifname};
use netlink::Socket;
use wire::{Attrs, Batch, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, Reply};

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

/// NFT_TABLE_F_OWNER (kernel >= 5.12): the table belongs to the netlink socket that created it
/// and is deleted by the kernel when that socket closes.
const NFT_TABLE_F_OWNER: u32 = 0x2;
/// NFPROTO_INET: IPv4 and IPv6 in one table.
const NFPROTO_INET: u8 = 1;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_OUT: u32 = 3;
const IPPROTO_TCP: u8 = 6;

// enum nf_tables_msg_types (linux/netfilter/nf_tables.h)
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_DELRULE: u16 = 8;
// enum nft_table_attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USE: u16 = 3;
// enum nft_chain_attributes, nft_hook_attributes
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;

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

/// A table as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub name: CString,
    pub family: u32,
    pub flags: u32,
    /// Number of objects (chains, sets) in the table.
    pub use_count: u32,
}

impl TableInfo {
    fn is_ours(&self) -> bool {
        self.name.as_bytes() == TABLE_NAME.as_bytes() && self.family == u32::from(NFPROTO_INET)
    }
}

/// A live redirect. Dropping it closes the socket, and the kernel removes an owned table.
pub struct Redirect {
    socket: Socket,
    /// False on kernels < 5.12, where the table is a normal one (removed by cleanup).
    pub owned: bool,
}

impl Redirect {
    /// Creates the table, chain and rule in one batch, then reads the table back.
    pub fn install(spec: &RedirectSpec) -> Result<Redirect, NftError> {
        let socket = Socket::open().map_err(NftError::Socket)?;
        let mut this = Redirect {
            socket,
            owned: crate::host::has_owner_tables(),
        };
        let flags = if this.owned { NFT_TABLE_F_OWNER } else { 0 };
        let plan = build(spec, flags, this.socket.next_seq());
        match this.apply(plan, "create table") {
            Ok(()) => {}
            Err(NftError::Rejected { source, .. })
                if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
            {
                // Kernel without owner tables: fall back to a plain table.
                this.owned = false;
                let plan = build(spec, 0, this.socket.next_seq());
                this.apply(plan, "create table")?;
            }
            Err(NftError::Rejected { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) =>
            {
                return Err(NftError::Busy);
            }
            Err(e) => return Err(e),
        }
        let tables = list_tables_on(&mut this.socket)?;
        let ours = tables
            .iter()
            .find(|t| t.is_ours())
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
        let plan = stop_plan(self.socket.next_seq());
        self.apply(plan, "stop redirecting")
    }

    /// Deletes the table through the owning socket and checks it is gone.
    pub fn remove(mut self) -> Result<(), NftError> {
        let mut batch = Batch::new(self.socket.next_seq());
        table_msg(&mut batch, NFT_MSG_DELTABLE, 0);
        self.apply(batch, "delete table")?;
        if table_exists_on(&mut self.socket)? {
            return Err(NftError::ReadBack(
                "the table is still listed after deletion",
            ));
        }
        Ok(())
    }

    fn apply(&mut self, batch: Batch, what: &'static str) -> Result<(), NftError> {
        self.socket
            .apply(batch)
            .map_err(|source| NftError::Rejected { what, source })
    }
}

/// The plan for one redirect: table, nat prerouting chain, one rule (and the raw chains that
/// exempt unselected flows from conntrack, when asked).
fn build(spec: &RedirectSpec, table_flags: u32, seq: u32) -> Batch {
    let mut batch = Batch::new(seq);
    table_msg(&mut batch, NFT_MSG_NEWTABLE, table_flags);
    base_chain(
        &mut batch,
        CHAIN_NAME,
        NF_INET_PRE_ROUTING,
        CHAIN_PRIORITY,
        "nat",
    );
    let mut redirect = vec![
        Expr::Meta(MetaKey::IifName),
        Expr::eq(ifname(&spec.interface)),
    ];
    if let Some(mark) = spec.mark {
        redirect.extend([Expr::Meta(MetaKey::Mark), Expr::eq(mark.to_ne_bytes())]);
    }
    redirect.extend(tcp_port(PortField::Dport, spec.target_port));
    redirect.extend([
        Expr::Immediate(spec.proxy_port.to_be_bytes().to_vec()),
        Expr::RedirPortFromReg1,
    ]);
    rule(&mut batch, CHAIN_NAME, &redirect);

    // Unselected flows skip conntrack: unmarked packets to the port on the way in, and the
    // service's packets from the port on the way out (selected flows' replies leave the proxy
    // from PROXY_PORT and are translated after this hook, so they stay tracked).
    if let (Some(mark), true) = (spec.mark, spec.untrack_unselected) {
        let mut untrack_in = vec![
            Expr::Meta(MetaKey::IifName),
            Expr::eq(ifname(&spec.interface)),
            Expr::Meta(MetaKey::Mark),
            Expr::neq(mark.to_ne_bytes()),
        ];
        untrack_in.extend(tcp_port(PortField::Dport, spec.target_port));
        untrack_in.push(Expr::Notrack);
        let mut untrack_out = vec![
            Expr::Meta(MetaKey::OifName),
            Expr::eq(ifname(&spec.interface)),
        ];
        untrack_out.extend(tcp_port(PortField::Sport, spec.target_port));
        untrack_out.push(Expr::Notrack);
        base_chain(
            &mut batch,
            RAW_IN,
            NF_INET_PRE_ROUTING,
            RAW_PRIORITY,
            "filter",
        );
        rule(&mut batch, RAW_IN, &untrack_in);
        base_chain(
            &mut batch,
            RAW_OUT,
            NF_INET_LOCAL_OUT,
            RAW_PRIORITY,
            "filter",
        );
        rule(&mut batch, RAW_OUT, &untrack_out);
    }
    batch
}

/// `stop_redirecting`'s batch: flush the nat chain, add the match-only conntrack keep-alive.
fn stop_plan(seq: u32) -> Batch {
    let mut batch = Batch::new(seq);
    // A DELRULE without a handle deletes every rule of the chain (`nft flush chain`).
    batch.add(NFT_MSG_DELRULE, NFPROTO_INET, 0, |a| {
        a.str(NFTA_RULE_TABLE, TABLE_NAME);
        a.str(NFTA_RULE_CHAIN, CHAIN_NAME);
    });
    let keep_conntrack = [Expr::CtMark, Expr::eq(KEEPALIVE_CT_MARK.to_ne_bytes())];
    rule(&mut batch, CHAIN_NAME, &keep_conntrack);
    batch
}

/// `meta l4proto tcp tcp sport|dport PORT`.
fn tcp_port(field: PortField, port: u16) -> [Expr; 4] {
    [
        Expr::Meta(MetaKey::L4Proto),
        Expr::eq([IPPROTO_TCP]),
        Expr::Port(field),
        Expr::eq(port.to_be_bytes()),
    ]
}

/// NEWTABLE or DELTABLE for `inet reset_peer` (a delete ignores the flags).
fn table_msg(batch: &mut Batch, msg: u16, flags: u32) {
    batch.add(msg, NFPROTO_INET, 0, |a| {
        a.str(NFTA_TABLE_NAME, TABLE_NAME);
        a.be32(NFTA_TABLE_FLAGS, flags);
    });
}

/// A base chain (policy accept) of our table on `hook`.
fn base_chain(batch: &mut Batch, name: &str, hook: u32, priority: i32, kind: &str) {
    batch.add(NFT_MSG_NEWCHAIN, NFPROTO_INET, NLM_F_CREATE, |a| {
        a.str(NFTA_CHAIN_TABLE, TABLE_NAME);
        a.str(NFTA_CHAIN_NAME, name);
        a.nest(NFTA_CHAIN_HOOK, |h: &mut Attrs<'_>| {
            h.be32(NFTA_HOOK_HOOKNUM, hook);
            h.bytes(NFTA_HOOK_PRIORITY, &priority.to_be_bytes());
        });
        a.str(NFTA_CHAIN_TYPE, kind);
    });
}

/// A rule appended to `chain` of our table.
fn rule(batch: &mut Batch, chain: &str, exprs: &[Expr]) {
    let flags = NLM_F_CREATE | NLM_F_APPEND | NLM_F_EXCL;
    batch.add(NFT_MSG_NEWRULE, NFPROTO_INET, flags, |a| {
        a.str(NFTA_RULE_TABLE, TABLE_NAME);
        a.str(NFTA_RULE_CHAIN, chain);
        a.nest(NFTA_RULE_EXPRESSIONS, |list| {
            exprs.iter().for_each(|e| e.encode(list));
        });
    });
}

/// A table from a NEWTABLE dump reply; `None` for a reply without a name.
fn parse_table(reply: &Reply) -> io::Result<Option<TableInfo>> {
    let (mut name, mut flags, mut use_count) = (None, 0, 0);
    for attr in wire::attrs(&reply.attrs) {
        let (ty, payload) = attr?;
        match ty {
            NFTA_TABLE_NAME => name = Some(wire::get_cstring(payload)?),
            NFTA_TABLE_FLAGS => flags = wire::get_be32(payload)?,
            NFTA_TABLE_USE => use_count = wire::get_be32(payload)?,
            _ => {}
        }
    }
    Ok(name.map(|name| TableInfo {
        name,
        family: u32::from(reply.family),
        flags,
        use_count,
    }))
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

fn list_tables_on(socket: &mut Socket) -> Result<Vec<TableInfo>, NftError> {
    let read = |source| NftError::Rejected {
        what: "list tables",
        source,
    };
    let replies = socket.dump(NFT_MSG_GETTABLE).map_err(read)?;
    let mut tables = Vec::with_capacity(replies.len());
    for reply in &replies {
        tables.extend(parse_table(reply).map_err(read)?);
    }
    Ok(tables)
}

fn table_exists_on(socket: &mut Socket) -> Result<bool, NftError> {
    Ok(list_tables_on(socket)?.iter().any(TableInfo::is_ours))
}

/// Lists the tables in this network namespace (for cleanup, preflight and tests).
pub fn list_tables() -> Result<Vec<TableInfo>, NftError> {
    let mut socket = Socket::open().map_err(NftError::Socket)?;
    list_tables_on(&mut socket)
}

/// Whether `inet reset_peer` exists in this network namespace.
pub fn table_exists() -> Result<bool, NftError> {
    let mut socket = Socket::open().map_err(NftError::Socket)?;
    table_exists_on(&mut socket)
}

/// Removes a leftover (not owned) `inet reset_peer` table. Returns whether one was removed.
/// An owned table belongs to a live agent and is refused with `Busy`.
pub fn remove_stale_table() -> Result<bool, NftError> {
    let mut socket = Socket::open().map_err(NftError::Socket)?;
    let tables = list_tables_on(&mut socket)?;
    let Some(t) = tables.iter().find(|t| t.is_ours()) else {
        return Ok(false);
    };
    if t.flags & NFT_TABLE_F_OWNER != 0 {
        return Err(NftError::Busy);
    }
    let mut batch = Batch::new(socket.next_seq());
    table_msg(&mut batch, NFT_MSG_DELTABLE, 0);
    socket.apply(batch).map_err(|source| NftError::Rejected {
        what: "delete stale table",
        source,
    })?;
    Ok(true)
}
