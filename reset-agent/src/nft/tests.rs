//! The batch plan, byte for byte: against hand-computed messages, and against what libnftnl
//! (through the nftnl crate, which the agent used before) sent for the same table, recorded with
//! `strace -e write=...` on kernel 6.18. Two normalisations of that recording: padding bytes are
//! zero here (libnftnl left stale bytes there; the kernel ignores them), and BATCH_BEGIN/END carry
//! NLM_F_REQUEST only (libnftnl asked the kernel, >= 6.10, to ack them too).
use super::*;
use wire::{Messages, attrs};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn kernel_spec() -> RedirectSpec {
    RedirectSpec {
        interface: "ens160".into(),
        target_port: 80,
        proxy_port: 8080,
        mark: Some(0x7273_7470),
        untrack_unselected: true,
    }
}

const BEGIN_SEQ_1: &str = "14000000 1000 0100 01000000 00000000 00 00 000a";

/// `nft add table inet reset_peer { flags owner; }` as one message, seq 2.
#[test]
fn table_message_by_hand() {
    let mut b = Batch::new(1);
    table_msg(&mut b, NFT_MSG_NEWTABLE, NFT_TABLE_F_OWNER);
    let want = hex(&[
        BEGIN_SEQ_1,
        "2c000000",                                        // nlmsg_len 44
        "000a",       // type: NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWTABLE
        "0500",       // flags: NLM_F_REQUEST | NLM_F_ACK
        "02000000",   // seq 2
        "00000000",   // port id 0: the kernel
        "01 00 0000", // nfgenmsg: NFPROTO_INET, NFNETLINK_V0, res_id 0
        "0f00 0100 72657365745f70656572 00 00", // NFTA_TABLE_NAME (15 bytes) "reset_peer\0" + 1 pad
        "0800 0200 00000002", // NFTA_TABLE_FLAGS = NFT_TABLE_F_OWNER, big endian
        "14000000 1100 0100 03000000 00000000 00 00 000a", // BATCH_END, seq 3
    ]
    .join(" "));
    assert_eq!(b.to_bytes(), want);
}

/// The drain-time keep-alive rule: `ct mark 0x72737470` with no statement.
#[test]
fn keepalive_rule_by_hand() {
    let msgs = stop_plan(1).to_bytes();
    let rule = Messages::new(&msgs).nth(2).unwrap().unwrap();
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
    assert_eq!(rule.payload, want);
    assert_eq!(
        rule.flags,
        wire::NLM_F_REQUEST | wire::NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND | NLM_F_EXCL
    );
}

#[test]
fn install_batch_matches_libnftnl() {
    let recorded = hex(&[
        BEGIN_SEQ_1,
        "2c000000000a05000200000000000000010000000f00010072657365745f7065657200000800020000000002",
        "50000000030a05040300000000000000010000000f00010072657365745f7065657200000f000300707265726f7574696e67000014000480080001000000000008000200ffffff92080007006e617400",
        "d4010000060a050e0400000000000000010000000f00010072657365745f7065657200000f000200707265726f7574696e670000a001048024000180090001006d6574610000000014000280080002000000000608000100000000013000018008000100636d70002400028008000100000000010800020000000000100003800b000100656e73313630000024000180090001006d6574610000000014000280080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000000c000380080001007074737224000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c00038006000100005000002c0001800e000100696d6d6564696174650000001800028008000100000000010c000280060001001f9000001c0001800a00010072656469720000000c0002800800010000000001",
        "54000000030a05040500000000000000010000000f00010072657365745f7065657200000f000300756e747261636b5f696e000014000480080001000000000008000200fffffed40b00070066696c7465720000",
        "9c010000060a050e0600000000000000010000000f00010072657365745f7065657200000f000200756e747261636b5f696e00006801048024000180090001006d6574610000000014000280080002000000000608000100000000013000018008000100636d70002400028008000100000000010800020000000000100003800b000100656e73313630000024000180090001006d6574610000000014000280080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000010c000380080001007074737224000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000208000400000000022c00018008000100636d700020000280080001000000000108000200000000000c0003800600010000500000100001800c0001006e6f747261636b00",
        "54000000030a05040700000000000000010000000f00010072657365745f70656572000010000300756e747261636b5f6f75740014000480080001000000000308000200fffffed40b00070066696c7465720000",
        "4c010000060a050e0800000000000000010000000f00010072657365745f70656572000010000200756e747261636b5f6f7574001801048024000180090001006d6574610000000014000280080002000000000708000100000000013000018008000100636d70002400028008000100000000010800020000000000100003800b000100656e73313630000024000180090001006d6574610000000014000280080002000000001008000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800500010006000000340001800c0001007061796c6f6164002400028008000100000000010800020000000002080003000000000008000400000000022c00018008000100636d700020000280080001000000000108000200000000000c0003800600010000500000100001800c0001006e6f747261636b00",
        "140000001100010009000000000000000000000a",
    ]
    .join(""));
    assert_eq!(
        build(&kernel_spec(), NFT_TABLE_F_OWNER, 1).to_bytes(),
        recorded
    );
}

#[test]
fn stop_and_remove_batches_match_libnftnl() {
    let stop = hex(&[
        BEGIN_SEQ_1,
        "34000000080a05000200000000000000010000000f00010072657365745f7065657200000f000200707265726f7574696e670000",
        "84000000060a050e0300000000000000010000000f00010072657365745f7065657200000f000200707265726f7574696e6700005000048020000180070001006374000014000280080002000000000308000100000000012c00018008000100636d700020000280080001000000000108000200000000000c0003800800010070747372",
        "140000001100010004000000000000000000000a",
    ]
    .join(""));
    assert_eq!(stop_plan(1).to_bytes(), stop);
    let remove = hex(&[
        BEGIN_SEQ_1,
        "2c000000020a05000200000000000000010000000f00010072657365745f7065657200000800020000000000",
        "140000001100010003000000000000000000000a",
    ]
    .join(""));
    let mut b = Batch::new(1);
    table_msg(&mut b, NFT_MSG_DELTABLE, 0);
    assert_eq!(b.to_bytes(), remove);
}

/// Expression names of each rule in a batch, in order.
fn rule_shapes(batch: &Batch) -> Vec<Vec<String>> {
    let bytes = batch.to_bytes();
    Messages::new(&bytes)
        .map(Result::unwrap)
        .filter(|m| m.ty == wire::nft_type(NFT_MSG_NEWRULE))
        .map(|m| {
            let (_, list) = attrs(&m.payload[4..])
                .map(Result::unwrap)
                .find(|(ty, _)| *ty == NFTA_RULE_EXPRESSIONS)
                .unwrap();
            attrs(list)
                .map(|e| {
                    let (_, name) = attrs(e.unwrap().1).next().unwrap().unwrap();
                    wire::get_cstring(name).unwrap().into_string().unwrap()
                })
                .collect()
        })
        .collect()
}

#[test]
fn userspace_mode_redirects_all_target_traffic() {
    let spec = RedirectSpec {
        mark: None,
        untrack_unselected: true, // ignored without a mark
        ..kernel_spec()
    };
    let batch = build(&spec, 0, 1);
    assert_eq!(
        rule_shapes(&batch),
        [[
            "meta",
            "cmp",
            "meta",
            "cmp",
            "payload",
            "cmp",
            "immediate",
            "redir"
        ]]
    );
    // Plain table: flags 0.
    let bytes = batch.to_bytes();
    let table = Messages::new(&bytes).nth(1).unwrap().unwrap();
    assert_eq!(table.payload[table.payload.len() - 4..], [0, 0, 0, 0]);
}

#[test]
fn dump_replies_parse_into_tables() {
    // A NEWTABLE reply as the kernel writes it: name, flags, use, handle (be64), owner.
    let mut b = Batch::new(1);
    b.add(NFT_MSG_NEWTABLE, NFPROTO_INET, 0, |a| {
        a.str(NFTA_TABLE_NAME, TABLE_NAME);
        a.be32(NFTA_TABLE_FLAGS, NFT_TABLE_F_OWNER);
        a.be32(NFTA_TABLE_USE, 3);
        a.bytes(4, &7u64.to_be_bytes());
        a.be32(7, 4242);
    });
    let bytes = b.to_bytes();
    let msg = Messages::new(&bytes).nth(1).unwrap().unwrap();
    let reply = Reply {
        family: msg.payload[0],
        attrs: msg.payload[4..].to_vec(),
    };
    let t = parse_table(&reply).unwrap().unwrap();
    assert!(t.is_ours());
    assert_eq!((t.flags, t.use_count), (NFT_TABLE_F_OWNER, 3));
    // No name: skipped. A bad flags attribute or a cut attribute: an error.
    let nameless = Reply {
        family: 1,
        attrs: hex("0800 0300 00000001"),
    };
    assert_eq!(parse_table(&nameless).unwrap(), None);
    for bad in ["0700 0200 000000", "0800 0200 0000", "0c00 0100 7265"] {
        let r = Reply {
            family: 1,
            attrs: hex(bad),
        };
        assert!(parse_table(&r).is_err(), "{bad}");
    }
}
