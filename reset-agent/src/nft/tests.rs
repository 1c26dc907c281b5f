//! The batch plans as the kernel will read them: the bytes nftnl builds are split into messages
//! and attributes here, and checked against hand-computed bytes from linux/netfilter/
//! nf_tables.h for the parts that matter (the owner table, the tproxy statement, the drain-time
//! keep-alive of the redirect path) and attribute by attribute for the rest. The e2e tests then
//! check that the kernel accepts them and that `nft list table` shows the expected rule.
use nftnl::FinalizedBatch;

use super::{Steering, ext::NFT_TABLE_F_OWNER, plan};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLA_TYPE_MASK: u16 = 0x3fff;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[derive(Debug)]
struct Msg {
    ty: u16,
    flags: u16,
    /// After the 16-byte header: nfgenmsg (4 bytes) + attributes.
    payload: Vec<u8>,
}

impl Msg {
    fn nft(&self) -> Option<u16> {
        (self.ty >> 8 == NFNL_SUBSYS_NFTABLES).then_some(self.ty & 0xff)
    }
    /// The attributes after nfgenmsg.
    fn attrs(&self) -> Vec<(u16, Vec<u8>)> {
        attrs(&self.payload[4..])
    }
}

fn messages(batch: &FinalizedBatch) -> Vec<Msg> {
    let bytes: Vec<u8> = batch.iter().flatten().copied().collect();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        out.push(Msg {
            ty: u16::from_ne_bytes(rest[4..6].try_into().unwrap()),
            flags: u16::from_ne_bytes(rest[6..8].try_into().unwrap()),
            payload: rest[16..len].to_vec(),
        });
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    assert!(rest.is_empty(), "trailing bytes in the batch");
    out
}

fn attrs(mut buf: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        out.push((ty, buf[4..len].to_vec()));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// The attributes re-encoded with zero padding, recursively through nests (NLA_F_NESTED):
/// libnftnl leaves whatever was in its buffer in padding bytes, which the kernel ignores.
fn canon(mut buf: &[u8]) -> Vec<u8> {
    const NLA_F_NESTED: u16 = 0x8000;
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]);
        let data = if ty & NLA_F_NESTED != 0 {
            canon(&buf[4..len])
        } else {
            buf[4..len].to_vec()
        };
        out.extend_from_slice(&buf[0..4]);
        out.extend_from_slice(&data);
        out.resize(out.len().next_multiple_of(4), 0);
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

/// nfgenmsg + attributes, padding zeroed.
fn canon_payload(m: &Msg) -> Vec<u8> {
    let mut out = m.payload[..4].to_vec();
    out.extend(canon(&m.payload[4..]));
    out
}

fn attr(list: &[(u16, Vec<u8>)], ty: u16) -> Vec<u8> {
    list.iter()
        .find(|(t, _)| *t == ty)
        .unwrap_or_else(|| panic!("attribute {ty} missing from {list:?}"))
        .1
        .clone()
}

/// A rule's expressions as (name, attributes of NFTA_EXPR_DATA).
/// Attributes as (type without flags, payload).
type Attrs = Vec<(u16, Vec<u8>)>;

fn expressions(rule: &Msg) -> Vec<(String, Attrs)> {
    const NFTA_RULE_EXPRESSIONS: u16 = 4;
    let list = attr(&rule.attrs(), NFTA_RULE_EXPRESSIONS);
    attrs(&list)
        .into_iter()
        .map(|(_, elem)| {
            let e = attrs(&elem);
            let name = String::from_utf8(attr(&e, 1)).unwrap();
            let data = e
                .iter()
                .find(|(t, _)| *t == 2)
                .map(|(_, d)| attrs(d))
                .unwrap_or_default();
            (name.trim_end_matches('\0').to_owned(), data)
        })
        .collect()
}

fn be32(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

fn cmp_value(data: &[(u16, Vec<u8>)]) -> Vec<u8> {
    // NFTA_CMP_DATA (3) holds a nested NFTA_DATA_VALUE (1).
    attr(&attrs(&attr(data, 3)), 1)
}

fn spec(mark: Option<u32>) -> plan::RedirectSpec {
    plan::RedirectSpec {
        interface: "ens160".into(),
        target_port: 80,
        proxy_port: 8080,
        mark,
    }
}

#[test]
fn install_is_one_batch_of_table_chain_rule() {
    let b = plan::install(
        &spec(Some(0x7273_7470)),
        Steering::Tproxy,
        NFT_TABLE_F_OWNER,
    );
    let m = messages(&b);
    assert_eq!(m.len(), 5, "{m:?}");
    assert_eq!(m[0].ty, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(m[4].ty, NFNL_MSG_BATCH_END);
    assert_eq!(
        m[1..4].iter().map(|m| m.nft().unwrap()).collect::<Vec<_>>(),
        [0, 3, 6], // NEWTABLE, NEWCHAIN, NEWRULE
    );
    // Every change asks for an ack (NLM_F_REQUEST | NLM_F_ACK at least).
    assert!(m[1..4].iter().all(|m| m.flags & 0x5 == 0x5), "{m:?}");
}

/// `nft add table inet reset_peer { flags owner; }`, by hand.
#[test]
fn the_table_is_owned() {
    let b = plan::install(&spec(Some(1)), Steering::Tproxy, NFT_TABLE_F_OWNER);
    let table = &messages(&b)[1];
    let want = hex(&[
        "01 00 0000",                           // nfgenmsg: NFPROTO_INET, NFNETLINK_V0, res_id 0
        "0f00 0100 72657365745f70656572 00 00", // NFTA_TABLE_NAME "reset_peer\0" + 1 pad
        "0800 0200 00000002",                   // NFTA_TABLE_FLAGS = NFT_TABLE_F_OWNER (BE)
    ]
    .join(" "));
    assert_eq!(canon_payload(table), want);
}

#[test]
fn tproxy_chain_is_a_prerouting_filter_at_mangle_priority() {
    let b = plan::install(&spec(Some(1)), Steering::Tproxy, NFT_TABLE_F_OWNER);
    let chain = messages(&b)[2].attrs();
    assert_eq!(attr(&chain, 1), b"reset_peer\0"); // NFTA_CHAIN_TABLE
    assert_eq!(attr(&chain, 3), b"prerouting\0"); // NFTA_CHAIN_NAME
    let hook = attrs(&attr(&chain, 4)); // NFTA_CHAIN_HOOK
    assert_eq!(attr(&hook, 1), be32(0)); // NF_INET_PRE_ROUTING
    assert_eq!(attr(&hook, 2), (-150i32).to_be_bytes()); // NF_IP_PRI_MANGLE
    assert_eq!(attr(&chain, 7), b"filter\0"); // NFTA_CHAIN_TYPE: no nat chain
}

#[test]
fn kernel_mode_rule_matches_the_mark_first_and_tproxies() {
    let b = plan::install(
        &spec(Some(0x7273_7470)),
        Steering::Tproxy,
        NFT_TABLE_F_OWNER,
    );
    let exprs = expressions(&messages(&b)[3]);
    let names: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "meta",
            "cmp",
            "meta",
            "cmp",
            "meta",
            "cmp",
            "payload",
            "cmp",
            "immediate",
            "tproxy"
        ]
    );
    assert_eq!(attr(&exprs[0].1, 2), be32(3)); // NFTA_META_KEY = NFT_META_MARK
    assert_eq!(cmp_value(&exprs[1].1), 0x7273_7470u32.to_ne_bytes());
    assert_eq!(attr(&exprs[2].1, 2), be32(6)); // NFT_META_IIFNAME
    let mut ifname = b"ens160".to_vec();
    ifname.resize(7, 0);
    assert_eq!(cmp_value(&exprs[3].1), ifname);
    assert_eq!(attr(&exprs[4].1, 2), be32(16)); // NFT_META_L4PROTO
    assert_eq!(cmp_value(&exprs[5].1), [6]); // IPPROTO_TCP
    assert_eq!(attr(&exprs[6].1, 2), be32(2)); // NFT_PAYLOAD_TRANSPORT_HEADER
    assert_eq!(attr(&exprs[6].1, 3), be32(2)); // offset of the destination port
    assert_eq!(attr(&exprs[6].1, 4), be32(2)); // 2 bytes
    assert_eq!(cmp_value(&exprs[7].1), 80u16.to_be_bytes());
    // NFTA_IMMEDIATE_DATA (2) { NFTA_DATA_VALUE: 8080, network order }
    assert_eq!(
        attr(&attrs(&attr(&exprs[8].1, 2)), 1),
        8080u16.to_be_bytes()
    );
}

/// The tproxy statement, by hand: `tproxy to :<reg 1>` with no family and no address, so one
/// inet rule serves IPv4 and IPv6.
#[test]
fn tproxy_statement_by_hand() {
    let b = plan::install(&spec(Some(1)), Steering::Tproxy, 0);
    let rule = &messages(&b)[3];
    let list = attr(&rule.attrs(), 4);
    let last = canon(&attrs(&list).pop().unwrap().1);
    let want = hex(&[
        "0b00 0100 7470726f7879 00 00", // NFTA_EXPR_NAME "tproxy\0" + 1 pad
        "1400 0280",                    // NFTA_EXPR_DATA, nested, 20 bytes
        "0800 0100 00000000",           //   NFTA_TPROXY_FAMILY = NFPROTO_UNSPEC
        "0800 0300 00000001",           //   NFTA_TPROXY_REG_PORT = NFT_REG_1
    ]
    .join(" "));
    assert_eq!(last, want);
}

#[test]
fn userspace_mode_rule_takes_new_connections_only() {
    let b = plan::install(&spec(None), Steering::Tproxy, NFT_TABLE_F_OWNER);
    let exprs = expressions(&messages(&b)[3]);
    let names: Vec<&str> = exprs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "meta",
            "cmp",
            "meta",
            "cmp",
            "payload",
            "cmp",
            "payload",
            "bitwise",
            "cmp",
            "immediate",
            "tproxy"
        ]
    );
    assert_eq!(attr(&exprs[6].1, 3), be32(13)); // the TCP flags byte
    assert_eq!(attr(&exprs[6].1, 4), be32(1));
    assert_eq!(attr(&attrs(&attr(&exprs[7].1, 4)), 1), [0x12]); // mask SYN|ACK
    assert_eq!(cmp_value(&exprs[8].1), [0x02]); // == SYN
}

#[test]
fn redirect_fallback_is_a_nat_chain_with_redir() {
    let b = plan::install(&spec(Some(1)), Steering::Redirect, 0);
    let m = messages(&b);
    let chain = m[2].attrs();
    assert_eq!(attr(&chain, 7), b"nat\0");
    assert_eq!(attr(&attrs(&attr(&chain, 4)), 2), (-110i32).to_be_bytes());
    let exprs = expressions(&m[3]);
    let (name, data) = exprs.last().unwrap();
    assert_eq!(name, "redir");
    assert_eq!(attr(data, 1), be32(1)); // NFTA_REDIR_REG_PROTO_MIN = NFT_REG_1
    // The table without the owner flag.
    assert_eq!(attr(&m[1].attrs(), 2), be32(0));
}

#[test]
fn stopping_tproxy_only_flushes_the_chain() {
    let m = messages(&plan::stop_steering(Steering::Tproxy));
    assert_eq!(m.len(), 3);
    assert_eq!(m[1].nft(), Some(8)); // NFT_MSG_DELRULE without a handle: flush
    let a = m[1].attrs();
    assert_eq!(attr(&a, 1), b"reset_peer\0");
    assert_eq!(attr(&a, 2), b"prerouting\0");
    assert!(a.iter().all(|(t, _)| *t != 3), "no handle: every rule goes");
}

/// The redirect path's drain-time keep-alive rule, `ct mark 0x72737470` with no statement, by
/// hand: it keeps conntrack (and so NAT) alive for held connections.
#[test]
fn redirect_keepalive_rule_by_hand() {
    let m = messages(&plan::stop_steering(Steering::Redirect));
    assert_eq!(m.len(), 4);
    assert_eq!(m[2].nft(), Some(6));
    #[rustfmt::skip]
    let want = hex(&[
        "01 00 0000",                           // nfgenmsg: NFPROTO_INET, version 0, res_id 0
        "0f00 0100 72657365745f70656572 00 00", // NFTA_RULE_TABLE "reset_peer"
        "0f00 0200 707265726f7574696e67 00 00", // NFTA_RULE_CHAIN "prerouting"
        "5000 0480",                            // NFTA_RULE_EXPRESSIONS, nested, 80 bytes
        "2000 0180",                            //   NFTA_LIST_ELEM, 32 bytes
        "0700 0100 637400 00",                  //     NFTA_EXPR_NAME "ct"
        "1400 0280",                            //     NFTA_EXPR_DATA, 20 bytes
        "0800 0200 00000003",                   //       NFTA_CT_KEY = NFT_CT_MARK
        "0800 0100 00000001",                   //       NFTA_CT_DREG = NFT_REG_1
        "2c00 0180",                            //   NFTA_LIST_ELEM, 44 bytes
        "0800 0100 636d7000",                   //     NFTA_EXPR_NAME "cmp"
        "2000 0280",                            //     NFTA_EXPR_DATA, 32 bytes
        "0800 0100 00000001",                   //       NFTA_CMP_SREG = NFT_REG_1
        "0800 0200 00000000",                   //       NFTA_CMP_OP = NFT_CMP_EQ
        "0c00 0380",                            //       NFTA_CMP_DATA, nested
        "0800 0100 70747372",                   //         NFTA_DATA_VALUE: the mark, host order
    ].join(" "));
    assert_eq!(canon_payload(&m[2]), want);
}

#[test]
fn remove_deletes_the_table() {
    let m = messages(&plan::remove());
    assert_eq!(m.len(), 3);
    assert_eq!(m[1].nft(), Some(2)); // NFT_MSG_DELTABLE
    assert_eq!(attr(&m[1].attrs(), 1), b"reset_peer\0");
}

#[test]
fn rule_text_matches_what_nft_prints() {
    assert_eq!(
        plan::rule_text(&spec(Some(0x7273_7470)), Steering::Tproxy),
        "meta mark 0x72737470 iifname \"ens160\" tcp dport 80 tproxy to :8080"
    );
    assert_eq!(
        plan::rule_text(&spec(None), Steering::Redirect),
        "iifname \"ens160\" tcp dport 80 tcp flags syn / syn,ack redirect to :8080"
    );
}
