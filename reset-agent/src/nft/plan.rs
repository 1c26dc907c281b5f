//! The batches, built with nftnl: one per change (install, stop steering, remove), pure
//! functions of the spec so the unit tests can read them message by message.
//!
//! Install (TPROXY, the default): table `inet reset_peer` (owner flag) with one filter chain on
//! prerouting at the mangle priority and one rule:
//!   kernel mode:    `meta mark MARK iifname IF tcp dport TARGET tproxy to :PROXY`
//!   userspace mode: `iifname IF tcp dport TARGET tcp flags & (syn|ack) == syn tproxy to :PROXY`
//! No NAT chain and no `ct` expression: the namespace gets no conntrack from us, and a guest
//! firewall's input chain sees the service's own port. Install (REDIRECT, kernels without
//! nft_tproxy): a nat chain with `... redirect to :PROXY` instead.
use std::ffi::CString;

use nftnl::{
    Batch, Chain, ChainType, FinalizedBatch, Hook, MsgType, ProtoFamily, Rule, Table,
    expr::{Bitwise, Cmp, CmpOp, Conntrack, Immediate, InterfaceName, Meta, Register},
    nftnl_sys::libc,
};

use super::{
    Steering,
    ext::{FlaggedTable, Redir, Tproxy, TransportBytes},
};

/// The table every run uses; `nft list table inet reset_peer` shows it during a window.
pub const TABLE_NAME: &str = "reset_peer";
pub const CHAIN_NAME: &str = "prerouting";
/// tproxy: the mangle priority (-150), before any DNAT of the service (-100).
const TPROXY_PRIORITY: i32 = -150;
/// redirect: just before the usual dstnat priority (-100), so our redirect wins.
const NAT_PRIORITY: i32 = -110;
/// Compared against by the redirect path's drain-time keep-alive rule; the rule has no effect.
const KEEPALIVE_CT_MARK: u32 = 0x7273_7470;
/// TCP flags byte: offset 13 of the header; SYN and ACK bits.
const TCP_FLAGS_OFFSET: u32 = 13;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// What to steer to the proxy.
#[derive(Debug, Clone)]
pub struct RedirectSpec {
    pub interface: String,
    pub target_port: u16,
    pub proxy_port: u16,
    /// Kernel mode: only packets with this mark (set by the tc program on selected SYNs).
    /// Userspace mode: `None`, every new connection (SYN) to the target port.
    pub mark: Option<u32>,
}

pub fn table_name() -> CString {
    CString::new(TABLE_NAME).expect("no NUL in the table name")
}

fn chain_name() -> CString {
    CString::new(CHAIN_NAME).expect("no NUL in the chain name")
}

/// Table, chain and rule in one batch.
pub fn install(spec: &RedirectSpec, steering: Steering, table_flags: u32) -> FinalizedBatch {
    let name = table_name();
    let table_msg = FlaggedTable::new(&name, ProtoFamily::Inet, table_flags);
    // nftnl's Chain needs an nftnl Table for its name and family; that one is not sent.
    let shadow = Table::new(&name, ProtoFamily::Inet);
    let mut chain = Chain::new(chain_name(), &shadow);
    match steering {
        Steering::Tproxy => {
            chain.set_hook(Hook::PreRouting, TPROXY_PRIORITY);
            chain.set_type(ChainType::Filter);
        }
        Steering::Redirect => {
            chain.set_hook(Hook::PreRouting, NAT_PRIORITY);
            chain.set_type(ChainType::Nat);
        }
    }
    let mut rule = Rule::new(&chain);
    // Kernel mode: the mark first, so the unmarked majority leaves the rule at its first test.
    if let Some(mark) = spec.mark {
        rule.add_expr(&Meta::Mark { set: false });
        rule.add_expr(&Cmp::new(CmpOp::Eq, mark));
    }
    let iface = CString::new(spec.interface.as_str()).expect("validated: no NUL");
    rule.add_expr(&Meta::IifName);
    rule.add_expr(&Cmp::new(CmpOp::Eq, InterfaceName::Exact(iface)));
    rule.add_expr(&Meta::L4Proto);
    rule.add_expr(&Cmp::new(CmpOp::Eq, libc::IPPROTO_TCP as u8));
    rule.add_expr(&nftnl::nft_expr!(payload tcp dport));
    rule.add_expr(&Cmp::new(CmpOp::Eq, spec.target_port.to_be()));
    if spec.mark.is_none() {
        // Userspace mode: new connections only; established ones keep their sockets.
        rule.add_expr(&TransportBytes {
            offset: TCP_FLAGS_OFFSET,
            len: 1,
        });
        rule.add_expr(&Bitwise::new(TCP_SYN | TCP_ACK, 0u8));
        rule.add_expr(&Cmp::new(CmpOp::Eq, TCP_SYN));
    }
    rule.add_expr(&Immediate::new(spec.proxy_port.to_be(), Register::Reg1));
    match steering {
        Steering::Tproxy => rule.add_expr(&Tproxy {
            port_register: Register::Reg1,
        }),
        Steering::Redirect => rule.add_expr(&Redir {
            port_register: Register::Reg1,
        }),
    }
    let mut batch = Batch::new();
    batch.add(&table_msg, MsgType::Add);
    batch.add(&chain, MsgType::Add);
    batch.add(&rule, MsgType::Add);
    batch.finalize()
}

/// Stops steering new connections; connections already steered keep working.
///
/// TPROXY: delete the rule (flush the chain). Held connections are ordinary sockets of the
/// proxy whose 4-tuple the normal lookup finds; no rule is needed for them.
///
/// REDIRECT: held connections must still be translated when the proxy resets them, or the RST
/// leaves from PROXY_PORT and the caller never sees it. Translation needs the nat chain and
/// conntrack, whose hooks stay registered only while an expression holds a reference (the
/// `redir` does). Hence one batch: flush the chain and add a match-only `ct mark == MARK` rule
/// (no statement, no effect) whose reference is taken before the redirect's is dropped.
pub fn stop_steering(steering: Steering) -> FinalizedBatch {
    let name = table_name();
    let shadow = Table::new(&name, ProtoFamily::Inet);
    let chain = Chain::new(chain_name(), &shadow);
    // A DELRULE without a handle deletes every rule of the chain (`nft flush chain`).
    let flush = Rule::new(&chain);
    let mut batch = Batch::new();
    batch.add(&flush, MsgType::Del);
    if steering == Steering::Redirect {
        let mut keep_conntrack = Rule::new(&chain);
        keep_conntrack.add_expr(&Conntrack::Mark { set: false });
        keep_conntrack.add_expr(&Cmp::new(CmpOp::Eq, KEEPALIVE_CT_MARK));
        batch.add(&keep_conntrack, MsgType::Add);
    }
    batch.finalize()
}

/// Deletes the whole table (chains and rules with it).
pub fn remove() -> FinalizedBatch {
    let mut batch = Batch::new();
    let table = FlaggedTable::new(&table_name(), ProtoFamily::Inet, 0);
    batch.add(&table, MsgType::Del);
    batch.finalize()
}

/// The rule of `install` as `nft list table` prints it.
pub fn rule_text(spec: &RedirectSpec, steering: Steering) -> String {
    let mut r = String::new();
    if let Some(mark) = spec.mark {
        r.push_str(&format!("meta mark {mark:#010x} "));
    }
    r.push_str(&format!(
        "iifname \"{}\" tcp dport {} ",
        spec.interface, spec.target_port
    ));
    if spec.mark.is_none() {
        r.push_str("tcp flags syn / syn,ack ");
    }
    match steering {
        Steering::Tproxy => r.push_str(&format!("tproxy to :{}", spec.proxy_port)),
        Steering::Redirect => r.push_str(&format!("redirect to :{}", spec.proxy_port)),
    }
    r
}
