//! The nf_tables expressions our rules use, encoded as netlink attributes
//! (linux/netfilter/nf_tables.h). Each expression loads into, compares or reads register 1, the
//! 16-byte register `nft` itself uses for these matches. Attributes are written in libnftnl's
//! order so the bytes can be compared with what `nft` sends; the kernel does not care.
use super::wire::Attrs;

// enum nft_list_attributes, nft_expr_attributes, nft_data_attributes
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
// enum nft_registers: NFT_REG_1
const NFT_REG_1: u32 = 1;
// enum nft_meta_attributes
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
// enum nft_cmp_attributes
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
// enum nft_payload_attributes; NFT_PAYLOAD_TRANSPORT_HEADER
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
// enum nft_immediate_attributes
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_redir_attributes
const NFTA_REDIR_REG_PROTO_MIN: u16 = 1;
// enum nft_ct_attributes; NFT_CT_MARK
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFT_CT_MARK: u32 = 3;

/// `meta` keys (enum nft_meta_keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// skb->mark, a host-order u32.
    Mark = 3,
    /// Input interface name, 16 bytes (IFNAMSIZ), NUL padded.
    IifName = 6,
    /// Output interface name.
    OifName = 7,
    /// Layer 4 protocol number, one byte.
    L4Proto = 16,
}

/// Comparison operators (enum nft_cmp_ops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// A TCP or UDP port field of the transport header (offset, both 2 bytes long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortField {
    Sport = 0,
    Dport = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta KEY` into register 1.
    Meta(MetaKey),
    /// Register 1 compared with `data` (as many bytes as `data` has).
    Cmp { op: CmpOp, data: Vec<u8> },
    /// A port of the transport header into register 1 (network byte order).
    Port(PortField),
    /// `data` into register 1.
    Immediate(Vec<u8>),
    /// `redirect to :PORT`, the port (network byte order) read from register 1.
    RedirPortFromReg1,
    /// Exempts the packet from connection tracking.
    Notrack,
    /// `ct mark` into register 1.
    CtMark,
}

impl Expr {
    pub fn eq(data: impl Into<Vec<u8>>) -> Expr {
        Expr::Cmp {
            op: CmpOp::Eq,
            data: data.into(),
        }
    }

    pub fn neq(data: impl Into<Vec<u8>>) -> Expr {
        Expr::Cmp {
            op: CmpOp::Neq,
            data: data.into(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Expr::Meta(_) => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Port(_) => "payload",
            Expr::Immediate(_) => "immediate",
            Expr::RedirPortFromReg1 => "redir",
            Expr::Notrack => "notrack",
            Expr::CtMark => "ct",
        }
    }

    /// Writes the expression as one element of NFTA_RULE_EXPRESSIONS.
    pub fn encode(&self, list: &mut Attrs<'_>) {
        list.nest(NFTA_LIST_ELEM, |elem| {
            elem.str(NFTA_EXPR_NAME, self.name());
            if *self == Expr::Notrack {
                return; // no parameters, no NFTA_EXPR_DATA
            }
            elem.nest(NFTA_EXPR_DATA, |d| self.encode_data(d));
        });
    }

    fn encode_data(&self, d: &mut Attrs<'_>) {
        match self {
            Expr::Meta(key) => {
                d.be32(NFTA_META_KEY, *key as u32);
                d.be32(NFTA_META_DREG, NFT_REG_1);
            }
            Expr::Cmp { op, data } => {
                d.be32(NFTA_CMP_SREG, NFT_REG_1);
                d.be32(NFTA_CMP_OP, *op as u32);
                d.nest(NFTA_CMP_DATA, |v| v.bytes(NFTA_DATA_VALUE, data));
            }
            Expr::Port(field) => {
                d.be32(NFTA_PAYLOAD_DREG, NFT_REG_1);
                d.be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER);
                d.be32(NFTA_PAYLOAD_OFFSET, *field as u32);
                d.be32(NFTA_PAYLOAD_LEN, 2);
            }
            Expr::Immediate(data) => {
                d.be32(NFTA_IMMEDIATE_DREG, NFT_REG_1);
                d.nest(NFTA_IMMEDIATE_DATA, |v| v.bytes(NFTA_DATA_VALUE, data));
            }
            Expr::RedirPortFromReg1 => d.be32(NFTA_REDIR_REG_PROTO_MIN, NFT_REG_1),
            Expr::CtMark => {
                d.be32(NFTA_CT_KEY, NFT_CT_MARK);
                d.be32(NFTA_CT_DREG, NFT_REG_1);
            }
            Expr::Notrack => {}
        }
    }
}

/// An interface name as `meta iifname "NAME"` compares it: the bytes and the NUL, so that
/// "ens16" does not match "ens160".
pub fn ifname(name: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 1);
    v.extend_from_slice(name.as_bytes());
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::wire::{Batch, Messages, attrs};

    /// Encodes `exprs` as a rule body and returns the bytes of NFTA_RULE_EXPRESSIONS' content.
    fn encode(exprs: &[Expr]) -> Vec<u8> {
        let mut b = Batch::new(1);
        b.add(6, 1, 0, |a| {
            a.nest(4, |l| exprs.iter().for_each(|e| e.encode(l)))
        });
        let bytes = b.to_bytes();
        let msg = Messages::new(&bytes).nth(1).unwrap().unwrap();
        let (ty, list) = attrs(&msg.payload[4..]).next().unwrap().unwrap();
        assert_eq!(ty, 4);
        list.to_vec()
    }

    #[test]
    fn notrack_has_a_name_and_no_data() {
        // len 16, NESTED|ELEM; len 12, NAME "notrack\0".
        assert_eq!(
            encode(&[Expr::Notrack]),
            [
                16, 0, 1, 0x80, 12, 0, 1, 0, b'n', b'o', b't', b'r', b'a', b'c', b'k', 0
            ]
        );
    }

    #[test]
    fn redir_reads_the_port_from_register_1() {
        #[rustfmt::skip]
        let want = [
            28, 0, 1, 0x80,                          // list element, 28 bytes
            10, 0, 1, 0, b'r', b'e', b'd', b'i', b'r', 0, 0, 0, // NAME "redir\0" + 2 pad
            12, 0, 2, 0x80,                          // DATA, nested
            8, 0, 1, 0, 0, 0, 0, 1,                  // REG_PROTO_MIN = NFT_REG_1 (be32)
        ];
        assert_eq!(encode(&[Expr::RedirPortFromReg1]), want);
    }

    #[test]
    fn every_expression_parses_back() {
        let all = [
            Expr::Meta(MetaKey::IifName),
            Expr::eq(ifname("ens160")),
            Expr::Meta(MetaKey::Mark),
            Expr::neq(0x7273_7470u32.to_ne_bytes()),
            Expr::Port(PortField::Sport),
            Expr::Immediate(8080u16.to_be_bytes().to_vec()),
            Expr::CtMark,
        ];
        let list = encode(&all);
        let elems: Vec<_> = attrs(&list).map(Result::unwrap).collect();
        assert_eq!(elems.len(), all.len());
        for ((ty, elem), e) in elems.iter().zip(&all) {
            assert_eq!(*ty, NFTA_LIST_ELEM);
            let parts: Vec<_> = attrs(elem).map(Result::unwrap).collect();
            assert_eq!(parts[0].0, NFTA_EXPR_NAME);
            assert_eq!(parts[0].1, ifname(e.name()));
            assert_eq!(parts[1].0, NFTA_EXPR_DATA);
            assert!(attrs(parts[1].1).all(|a| a.is_ok()));
        }
    }
}
