//! `ir::Ruleset` → one nftables transaction, with the expressions `nft` itself
//! generates for the same rule text (`render` prints that text): the same protocol
//! guards, registers, byte orders, anonymous sets and set flags, so `nft list` shows
//! our table exactly as if `netpold plan | nft -f -` had loaded it.

use std::collections::BTreeMap;
use std::ffi::CString;

use nftnl::nftnl_sys as sys;
use std::net::IpAddr;

use ipnet::IpNet;

use super::ffi::{Attr, Batch, ChainSpec, ElemSpec, Expr, Hook, RuleSpec, SetSpec};
use crate::ir::{
    self, AddrSide, AddrSource, CtState, Element, Family, IfSide, Match, SetKind, diff,
};
use crate::model::Protocol;

// nftables constants (linux/netfilter/nf_tables.h, nft's datatype.h).
const SET_ANONYMOUS: u32 = 0x1;
const SET_CONSTANT: u32 = 0x2;
const SET_INTERVAL: u32 = 0x4;
const SET_MAP: u32 = 0x8;
const ELEM_INTERVAL_END: u32 = 0x1;
const DATA_VERDICT: u32 = 0xffff_ff00;
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_ICMP6_TYPE: u32 = 29;
const TYPE_IFNAME: u32 = 41;
const TYPE_BITS: u32 = 6;
const IFNAMSIZ: usize = 16;
const REG_VERDICT: u32 = 0;
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const REG32_01: u32 = 9;
const PAYLOAD_NETWORK: u32 = 1;
const PAYLOAD_TRANSPORT: u32 = 2;
const META_IIFNAME: u32 = 6;
const META_OIFNAME: u32 = 7;
const META_NFPROTO: u32 = 15;
const META_L4PROTO: u32 = 16;
const CT_STATE: u32 = 0;
const CT_INVALID: u32 = 1;
const CT_ESTABLISHED_RELATED: u32 = 2 | 4;
const CMP_EQ: u32 = 0;
const CMP_NEQ: u32 = 1;
const CMP_LTE: u32 = 3;
const CMP_GTE: u32 = 5;
const LOOKUP_INVERT: u32 = 1;
const LIMIT_PER_SECOND: u64 = 1;
const LIMIT_PACKETS: u32 = 0;
const NF_DROP: i32 = 0;
const NF_ACCEPT: i32 = 1;
const NFT_JUMP: i32 = -3;
const NFT_GOTO: i32 = -4;
const NFT_RETURN: i32 = -5;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_ICMP: u8 = 1;
/// `nft_range_ops`: NFT_RANGE_NEQ.
const RANGE_NEQ: u32 = 1;
// nft's set userdata (libnftnl's udata.h) and byte orders.
const UDATA_SET_KEYBYTEORDER: u8 = 0;
const UDATA_SET_DATABYTEORDER: u8 = 1;
const UDATA_SET_DATA_INTERVAL: u8 = 6;
const UDATA_SET_COMMENT: u8 = 7;
const UDATA_COMMENT: u8 = 0;
const UDATA_SET_ELEM_FLAGS: u8 = 1;
const ELEM_F_INTERVAL_OPEN: u32 = 1;
const BYTEORDER_HOST: u32 = 1;
const BYTEORDER_BIG: u32 = 2;

/// A C string from text we generated or validated; a NUL (never expected) is dropped
/// rather than truncating the name.
pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "")).unwrap_or_default()
}

/// libnftnl's userdata TLVs: type, length, value.
fn udata(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (kind, value) in entries {
        let len = u8::try_from(value.len()).expect("userdata values are short");
        out.push(*kind);
        out.push(len);
        out.extend_from_slice(value);
    }
    out
}

fn comment_value(comment: &str) -> Vec<u8> {
    let mut v = ir::bounded_comment(&comment.replace('\0', "")).into_bytes();
    v.push(0);
    v
}

fn comment_udata(comment: &str) -> Vec<u8> {
    if comment.is_empty() {
        return Vec::new();
    }
    udata(&[(UDATA_COMMENT, &comment_value(comment))])
}

fn addr_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn addr_type(family: Family) -> (u32, u32) {
    match family {
        Family::V4 => (TYPE_IPADDR, 4),
        Family::V6 => (TYPE_IP6ADDR, 16),
    }
}

fn nfproto(family: Family) -> u8 {
    match family {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    }
}

fn ip_proto(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => libc::IPPROTO_TCP as u8,
        Protocol::Udp => libc::IPPROTO_UDP as u8,
        Protocol::Sctp => libc::IPPROTO_SCTP as u8,
    }
}

/// Offset of the source or destination address in the network header.
fn addr_offset(family: Family, side: AddrSide) -> u32 {
    match (family, side) {
        (Family::V4, AddrSide::Src) => 12,
        (Family::V4, AddrSide::Dst) => 16,
        (Family::V6, AddrSide::Src) => 8,
        (Family::V6, AddrSide::Dst) => 24,
    }
}

/// Offset in the transport header of the port a port match looks at.
fn port_offset(m: &Match) -> u32 {
    match m.port_side() {
        Some(AddrSide::Src) => 0,
        _ => 2,
    }
}

fn ifname_key(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.truncate(IFNAMSIZ - 1);
    key.resize(IFNAMSIZ, 0);
    key
}

/// An expression attribute number as libnftnl's setters take it.
fn a(attr: u32) -> u16 {
    attr as u16
}

fn meta(key: u32) -> Expr {
    Expr {
        name: c"meta",
        attrs: vec![
            Attr::U32(a(sys::NFTNL_EXPR_META_DREG), REG_1),
            Attr::U32(a(sys::NFTNL_EXPR_META_KEY), key),
        ],
    }
}

fn cmp(op: u32, data: Vec<u8>) -> Expr {
    Expr {
        name: c"cmp",
        attrs: vec![
            Attr::U32(a(sys::NFTNL_EXPR_CMP_SREG), REG_1),
            Attr::U32(a(sys::NFTNL_EXPR_CMP_OP), op),
            Attr::Bytes(a(sys::NFTNL_EXPR_CMP_DATA), data),
        ],
    }
}

fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
    Expr {
        name: c"payload",
        attrs: vec![
            Attr::U32(a(sys::NFTNL_EXPR_PAYLOAD_DREG), dreg),
            Attr::U32(a(sys::NFTNL_EXPR_PAYLOAD_BASE), base),
            Attr::U32(a(sys::NFTNL_EXPR_PAYLOAD_OFFSET), offset),
            Attr::U32(a(sys::NFTNL_EXPR_PAYLOAD_LEN), len),
        ],
    }
}

fn bitwise(mask: Vec<u8>) -> Expr {
    let len = u32::try_from(mask.len()).unwrap_or(4);
    let xor = vec![0; mask.len()];
    Expr {
        name: c"bitwise",
        attrs: vec![
            Attr::U32(a(sys::NFTNL_EXPR_BITWISE_SREG), REG_1),
            Attr::U32(a(sys::NFTNL_EXPR_BITWISE_DREG), REG_1),
            Attr::U32(a(sys::NFTNL_EXPR_BITWISE_LEN), len),
            Attr::Bytes(a(sys::NFTNL_EXPR_BITWISE_MASK), mask),
            Attr::Bytes(a(sys::NFTNL_EXPR_BITWISE_XOR), xor),
        ],
    }
}

fn lookup(set: &SetRef, dreg: Option<u32>, invert: bool) -> Expr {
    let mut attrs = vec![
        Attr::U32(a(sys::NFTNL_EXPR_LOOKUP_SREG), REG_1),
        Attr::Str(a(sys::NFTNL_EXPR_LOOKUP_SET), set.name.clone()),
        Attr::U32(a(sys::NFTNL_EXPR_LOOKUP_SET_ID), set.id),
    ];
    if let Some(d) = dreg {
        attrs.push(Attr::U32(a(sys::NFTNL_EXPR_LOOKUP_DREG), d));
    }
    if invert {
        attrs.push(Attr::U32(a(sys::NFTNL_EXPR_LOOKUP_FLAGS), LOOKUP_INVERT));
    }
    Expr {
        name: c"lookup",
        attrs,
    }
}

fn immediate(code: i32, chain: Option<&str>) -> Expr {
    let mut attrs = vec![
        Attr::U32(a(sys::NFTNL_EXPR_IMM_DREG), REG_VERDICT),
        Attr::U32(a(sys::NFTNL_EXPR_IMM_VERDICT), code as u32),
    ];
    if let Some(c) = chain {
        attrs.push(Attr::Str(a(sys::NFTNL_EXPR_IMM_CHAIN), c_string(c)));
    }
    Expr {
        name: c"immediate",
        attrs,
    }
}

/// Merges inclusive ranges that overlap or touch, as nft does for anonymous sets.
fn merged(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Interval-set elements for inclusive ranges of `width`-byte big-endian keys: nft's
/// encoding, a start element per range and an end marker one past it, led by an end
/// marker at zero when the first range does not start there. nft merges touching
/// ranges of anonymous sets (`merge`) but keeps a named set's elements as given.
fn interval_elements(mut ranges: Vec<(u128, u128)>, width: usize, merge: bool) -> Vec<ElemSpec> {
    let key = |v: u128| v.to_be_bytes()[16 - width..].to_vec();
    let max = if width == 16 {
        u128::MAX
    } else {
        (1u128 << (8 * width)) - 1
    };
    if merge {
        ranges = merged(ranges);
    } else {
        ranges.sort_unstable();
    }
    let mut out = Vec::new();
    if ranges.first().is_some_and(|r| r.0 != 0) {
        out.push(ElemSpec {
            key: key(0),
            flags: ELEM_INTERVAL_END,
            verdict: None,
            userdata: Vec::new(),
        });
    }
    for (a, b) in ranges {
        out.push(ElemSpec {
            key: key(a),
            flags: 0,
            verdict: None,
            userdata: Vec::new(),
        });
        if b < max {
            out.push(ElemSpec {
                key: key(b + 1),
                flags: ELEM_INTERVAL_END,
                verdict: None,
                userdata: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            // A range up to the last address has no end marker; nft flags its
            // start as open instead.
            last.userdata = udata(&[(UDATA_SET_ELEM_FLAGS, &ELEM_F_INTERVAL_OPEN.to_ne_bytes())]);
        }
    }
    out
}

fn addr_value(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

fn net_range(net: &IpNet) -> (u128, u128) {
    (addr_value(&net.network()), addr_value(&net.broadcast()))
}

fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// A named set's type as the kernel knows it.
struct SetShape {
    flags: u32,
    key_type: u32,
    key_len: u32,
    byteorder: u32,
}

impl SetShape {
    fn of(kind: SetKind) -> SetShape {
        let (flags, key_type, key_len, byteorder) = match kind {
            SetKind::Addr(f) => {
                let (t, l) = addr_type(f);
                (0, t, l, BYTEORDER_BIG)
            }
            SetKind::Interval(f) => {
                let (t, l) = addr_type(f);
                (SET_INTERVAL, t, l, BYTEORDER_BIG)
            }
            SetKind::AddrPort(f) => {
                // A concatenation: each part padded to 4 bytes, types packed 6 bits apiece.
                let (t, l) = addr_type(f);
                (0, (t << TYPE_BITS) | TYPE_INET_SERVICE, l + 4, 0)
            }
        };
        SetShape {
            flags,
            key_type,
            key_len,
            byteorder,
        }
    }

    fn spec<'s>(&self, name: &'s CString, id: u32, userdata: &'s [u8]) -> SetSpec<'s> {
        SetSpec {
            name,
            id,
            flags: self.flags,
            key_type: self.key_type,
            key_len: self.key_len,
            data: None,
            size: None,
            userdata,
        }
    }
}

fn map_spec<'s>(name: &'s CString, id: u32, userdata: &'s [u8]) -> SetSpec<'s> {
    SetSpec {
        name,
        id,
        flags: SET_MAP,
        key_type: TYPE_IFNAME,
        key_len: IFNAMSIZ as u32,
        data: Some((DATA_VERDICT, 0)),
        size: None,
        userdata,
    }
}

/// The kernel's elements for `elements` of a set of `kind`. For an interval set that is
/// the whole set (its end markers depend on every range).
fn element_specs<'e>(kind: SetKind, elements: impl Iterator<Item = &'e Element>) -> Vec<ElemSpec> {
    let plain = |key: Vec<u8>| ElemSpec {
        key,
        flags: 0,
        verdict: None,
        userdata: Vec::new(),
    };
    match kind {
        SetKind::Addr(_) => elements
            .filter_map(|e| match e {
                Element::Addr(ip) => Some(plain(addr_bytes(ip))),
                _ => None,
            })
            .collect(),
        SetKind::Interval(_) => {
            let ranges = elements
                .filter_map(|e| match e {
                    Element::Addr(ip) => Some((addr_value(ip), addr_value(ip))),
                    Element::Range(a, b) => Some((addr_value(a), addr_value(b))),
                    Element::AddrPort(..) => None,
                })
                .collect();
            interval_elements(ranges, SetShape::of(kind).key_len as usize, false)
        }
        SetKind::AddrPort(_) => elements
            .filter_map(|e| match e {
                Element::AddrPort(ip, port) => {
                    let mut key = addr_bytes(ip);
                    key.extend_from_slice(&port.to_be_bytes());
                    key.extend_from_slice(&[0, 0]);
                    Some(plain(key))
                }
                _ => None,
            })
            .collect(),
    }
}

/// A set as rules refer to it: by name and, inside the transaction that creates
/// it, by id.
#[derive(Clone)]
struct SetRef {
    name: CString,
    id: u32,
}

/// What one message of the transaction does, kept as references into the ruleset
/// and put into words only when the kernel refuses it.
#[derive(Clone, Copy)]
enum Message<'a> {
    AddTable(&'a str),
    DeleteTable(&'a str),
    Chain(&'a str),
    Set(&'a str),
    Elements {
        set: &'a str,
        count: usize,
    },
    AnonymousSet {
        chain: &'a str,
    },
    AnonymousElements {
        chain: &'a str,
        count: usize,
    },
    Rule {
        chain: &'a str,
        index: usize,
        comment: Option<&'a str>,
    },
    RemoveElements {
        set: &'a str,
        count: usize,
    },
    FlushSet(&'a str),
    FlushChain(&'a str),
    DeleteChain(&'a str),
    DeleteSet(&'a str),
}

impl std::fmt::Display for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Message::AddTable(t) => write!(f, "add table inet {t}"),
            Message::DeleteTable(t) => write!(f, "delete table inet {t}"),
            Message::Chain(c) => write!(f, "add chain {c}"),
            Message::Set(s) => write!(f, "add set {s}"),
            Message::Elements { set, count } => write!(f, "add {count} elements to set {set}"),
            Message::AnonymousSet { chain } => {
                write!(f, "add set (anonymous, for a rule in {chain})")
            }
            Message::AnonymousElements { chain, count } => write!(
                f,
                "add {count} elements to set (anonymous, for a rule in {chain})"
            ),
            Message::RemoveElements { set, count } => {
                write!(f, "remove {count} elements from set {set}")
            }
            Message::FlushSet(s) => write!(f, "flush set {s}"),
            Message::FlushChain(c) => write!(f, "flush chain {c}"),
            Message::DeleteChain(c) => write!(f, "delete chain {c}"),
            Message::DeleteSet(s) => write!(f, "delete set {s}"),
            Message::Rule {
                chain,
                index,
                comment,
            } => write!(
                f,
                "add rule {} of chain {chain} ({})",
                index + 1,
                comment.unwrap_or("no comment")
            ),
        }
    }
}

/// What each message of the transaction does, for error reports.
pub struct Descriptions<'a> {
    first_seq: u32,
    messages: Vec<Message<'a>>,
}

impl Descriptions<'_> {
    pub fn get(&self, seq: u32) -> Option<String> {
        let i = seq.wrapping_sub(self.first_seq) as usize;
        self.messages.get(i).map(ToString::to_string)
    }
}

/// The kernel's limit on expressions in one rule (NFT_RULE_MAXEXPRS).
const MAX_RULE_EXPRESSIONS: usize = 128;

pub struct Encoder<'a> {
    batch: Batch,
    /// Why the ruleset cannot be sent, found while encoding it; nothing is sent then.
    refused: Option<String>,
    table: CString,
    sets: BTreeMap<&'a str, SetRef>,
    next_set_id: u32,
    descriptions: Descriptions<'a>,
    /// Test builds only: after this many messages, one the kernel refuses.
    #[cfg(feature = "fault-injection")]
    fault_after: Option<usize>,
}

/// The chain an injected fault deletes; it never exists, so the kernel refuses it.
#[cfg(feature = "fault-injection")]
pub const FAULT_CHAIN: &str = "netpold-fault-injected";

impl<'a> Encoder<'a> {
    pub fn new(table: &str, first_seq: u32) -> Encoder<'a> {
        Encoder {
            batch: Batch::new(first_seq),
            refused: None,
            table: c_string(table),
            sets: BTreeMap::new(),
            next_set_id: 1,
            descriptions: Descriptions {
                // The batch-begin message takes `first_seq`.
                first_seq: first_seq.wrapping_add(1),
                messages: Vec::new(),
            },
            #[cfg(feature = "fault-injection")]
            fault_after: None,
        }
    }

    /// Puts a message the kernel refuses (deleting a chain that does not exist) after
    /// the first `after` messages, so the whole transaction must be rolled back.
    #[cfg(feature = "fault-injection")]
    pub fn inject_fault(&mut self, after: usize) {
        self.fault_after = Some(after);
    }

    /// How many messages have been encoded so far.
    #[cfg(feature = "fault-injection")]
    pub fn messages(&self) -> usize {
        self.descriptions.messages.len()
    }

    /// The finished batch, or why it must not be sent.
    pub fn finish(self) -> Result<(super::ffi::Finished, Descriptions<'a>), String> {
        match self.refused {
            Some(why) => Err(why),
            None => Ok((self.batch.finish(), self.descriptions)),
        }
    }

    /// Records what the messages `seqs` (one or more in a row) do.
    fn describe(&mut self, seqs: std::ops::Range<u32>, what: Message<'a>) {
        let n = seqs.end.wrapping_sub(seqs.start) as usize;
        self.descriptions
            .messages
            .extend(std::iter::repeat_n(what, n));
        #[cfg(feature = "fault-injection")]
        if self
            .fault_after
            .is_some_and(|after| self.descriptions.messages.len() >= after)
        {
            self.fault_after = None;
            self.batch.delete_chain(&self.table, &c_string(FAULT_CHAIN));
            self.descriptions
                .messages
                .push(Message::DeleteChain(FAULT_CHAIN));
        }
    }

    fn one(seq: u32) -> std::ops::Range<u32> {
        seq..seq.wrapping_add(1)
    }

    fn set_id(&mut self) -> u32 {
        let id = self.next_set_id;
        self.next_set_id += 1;
        id
    }

    /// The whole table, replaced in one transaction: add (a no-op when it exists),
    /// delete, add — deleting a missing table would abort the batch — then chains,
    /// sets and maps with their elements, then rules.
    pub fn replace(&mut self, rs: &'a ir::Ruleset) {
        let table = self.table.clone();
        let name = rs.table.as_str();
        let seq = self.batch.table(&table, false);
        self.describe(Self::one(seq), Message::AddTable(name));
        let seq = self.batch.table(&table, true);
        self.describe(Self::one(seq), Message::DeleteTable(name));
        let seq = self.batch.table(&table, false);
        self.describe(Self::one(seq), Message::AddTable(name));
        // The order `plan` prints them in, so handles and listings match nft's.
        let mut order = crate::render::chain_order(rs);
        order.extend(
            rs.chains
                .iter()
                .filter(|(_, c)| c.base.is_some())
                .map(|(n, _)| n.as_str()),
        );
        for name in &order {
            self.chain(name, &rs.chains[*name]);
        }
        for (name, set) in &rs.sets {
            self.named_set(name, set);
        }
        for (name, map) in &rs.maps {
            self.verdict_map(name, map);
        }
        for name in &order {
            for (i, rule) in rs.chains[*name].rules.iter().enumerate() {
                self.rule(name, i, rule);
            }
        }
    }

    fn chain(&mut self, name: &'a str, chain: &ir::Chain) {
        let c_name = c_string(name);
        let userdata = comment_udata(&chain.comment);
        let hook = chain.base.map(|b| Hook {
            hooknum: match b.hook {
                ir::Hook::Input => libc::NF_INET_LOCAL_IN as u32,
                ir::Hook::Forward => libc::NF_INET_FORWARD as u32,
                ir::Hook::Output => libc::NF_INET_LOCAL_OUT as u32,
            },
            priority: b.priority,
            policy: if b.policy_accept {
                NF_ACCEPT as u32
            } else {
                NF_DROP as u32
            },
        });
        let spec = ChainSpec {
            name: &c_name,
            hook,
            userdata: &userdata,
        };
        let seq = self.batch.chain(&self.table, &spec);
        self.describe(Self::one(seq), Message::Chain(name));
    }

    fn named_set(&mut self, name: &'a str, set: &ir::Set) {
        let elems = element_specs(set.kind, set.elements.iter());
        let shape = SetShape::of(set.kind);
        let comment = comment_value(&set.comment);
        let userdata = udata(&[
            (UDATA_SET_KEYBYTEORDER, &shape.byteorder.to_ne_bytes()),
            (UDATA_SET_COMMENT, &comment),
        ]);
        let id = self.set_id();
        let c_name = c_string(name);
        let spec = shape.spec(&c_name, id, &userdata);
        self.add_set(name, &spec, &elems);
        self.sets.insert(name, SetRef { name: c_name, id });
    }

    fn map_entries<'e>(
        &mut self,
        name: &str,
        entries: impl Iterator<Item = (&'e str, &'e ir::Verdict)>,
    ) -> Vec<ElemSpec> {
        entries
            .map(|(ifname, verdict)| {
                if matches!(verdict, ir::Verdict::Map { .. }) {
                    self.refused.get_or_insert_with(|| {
                        format!("map {name}: entry {ifname:?} looks up another map, which nftables cannot do")
                    });
                }
                let (code, chain) = verdict_code(verdict);
                ElemSpec {
                    key: ifname_key(ifname),
                    flags: 0,
                    verdict: Some((code, c_string(chain.unwrap_or_default()))),
                    userdata: Vec::new(),
                }
            })
            .collect()
    }

    fn verdict_map(&mut self, name: &'a str, map: &ir::VerdictMap) {
        let comment = comment_value(&map.comment);
        let userdata = udata(&[
            (UDATA_SET_KEYBYTEORDER, &BYTEORDER_HOST.to_ne_bytes()),
            (UDATA_SET_DATABYTEORDER, &0u32.to_ne_bytes()),
            (UDATA_SET_DATA_INTERVAL, &0u32.to_ne_bytes()),
            (UDATA_SET_COMMENT, &comment),
        ]);
        let elems = self.map_entries(name, map.entries.iter().map(|(k, v)| (k.as_str(), v)));
        let id = self.set_id();
        let c_name = c_string(name);
        let spec = map_spec(&c_name, id, &userdata);
        self.add_set(name, &spec, &elems);
        self.sets.insert(name, SetRef { name: c_name, id });
    }

    /// Element changes of a set that exists in the kernel.
    fn set_change(&mut self, set: &ir::Set, change: &diff::SetChange<'a>) {
        let name = change.name;
        let c_name = c_string(name);
        let spec = SetShape::of(set.kind).spec(&c_name, 0, &[]);
        if change.refill {
            let seq = self.batch.flush_set(&self.table, &c_name);
            self.describe(Self::one(seq), Message::FlushSet(name));
            let elems = element_specs(set.kind, set.elements.iter());
            let seqs = self.batch.elements(&self.table, &spec, &elems);
            let count = elems.len();
            self.describe(seqs, Message::Elements { set: name, count });
            return;
        }
        let removed = element_specs(set.kind, change.remove.iter().copied());
        let seqs = self.batch.delete_elements(&self.table, &spec, &removed);
        let count = removed.len();
        self.describe(seqs, Message::RemoveElements { set: name, count });
        let added = element_specs(set.kind, change.add.iter().copied());
        let seqs = self.batch.elements(&self.table, &spec, &added);
        let count = added.len();
        self.describe(seqs, Message::Elements { set: name, count });
    }

    /// Entry changes of a verdict map that exists in the kernel.
    fn map_change(&mut self, change: &diff::MapChange<'a>) {
        let name = change.name;
        let c_name = c_string(name);
        let spec = map_spec(&c_name, 0, &[]);
        let removed: Vec<ElemSpec> = change
            .remove
            .iter()
            .map(|ifname| ElemSpec {
                key: ifname_key(ifname),
                flags: 0,
                verdict: None,
                userdata: Vec::new(),
            })
            .collect();
        let seqs = self.batch.delete_elements(&self.table, &spec, &removed);
        let count = removed.len();
        self.describe(seqs, Message::RemoveElements { set: name, count });
        let added = self.map_entries(name, change.add.iter().copied());
        let seqs = self.batch.elements(&self.table, &spec, &added);
        let count = added.len();
        self.describe(seqs, Message::Elements { set: name, count });
    }

    /// Only what differs, in one transaction: sets and their elements first, then new
    /// chains (empty), maps (whose entries name chains), the changed chains flushed and
    /// every new or changed chain's rules added, and last the chains and sets nothing
    /// uses any more.
    pub fn update(&mut self, new: &'a ir::Ruleset, delta: &diff::Delta<'a>) {
        for name in &delta.added_sets {
            self.named_set(name, &new.sets[*name]);
        }
        for change in &delta.changed_sets {
            self.set_change(&new.sets[change.name], change);
        }
        // Chains are created empty before any rule, so no order among them matters
        // (and the delta costs nothing per chain it does not touch).
        for name in &delta.added_chains {
            self.chain(name, &new.chains[*name]);
        }
        for name in &delta.added_maps {
            self.verdict_map(name, &new.maps[*name]);
        }
        for change in &delta.changed_maps {
            self.map_change(change);
        }
        for name in delta.changed_chains.iter().chain(&delta.removed_chains) {
            let seq = self.batch.flush_chain(&self.table, &c_string(name));
            self.describe(Self::one(seq), Message::FlushChain(name));
        }
        for name in delta.added_chains.iter().chain(&delta.changed_chains) {
            for (i, rule) in new.chains[*name].rules.iter().enumerate() {
                self.rule(name, i, rule);
            }
        }
        // Sets and maps first: a removed map's entries may still name a removed chain.
        for name in delta.removed_sets.iter().chain(&delta.removed_maps) {
            let seq = self.batch.delete_set(&self.table, &c_string(name));
            self.describe(Self::one(seq), Message::DeleteSet(name));
        }
        for name in &delta.removed_chains {
            let seq = self.batch.delete_chain(&self.table, &c_string(name));
            self.describe(Self::one(seq), Message::DeleteChain(name));
        }
    }

    fn add_set(&mut self, name: &'a str, spec: &SetSpec, elems: &[ElemSpec]) {
        let seq = self.batch.set(&self.table, spec);
        self.describe(Self::one(seq), Message::Set(name));
        let seqs = self.batch.elements(&self.table, spec, elems);
        let count = elems.len();
        self.describe(seqs, Message::Elements { set: name, count });
    }

    /// An anonymous constant set, created right before the rule that uses it.
    fn anonymous_set(
        &mut self,
        key_type: u32,
        key_len: u32,
        interval: bool,
        elems: Vec<ElemSpec>,
        chain: &'a str,
    ) -> SetRef {
        let id = self.set_id();
        let name = c"__set%d";
        let userdata = udata(&[(UDATA_SET_KEYBYTEORDER, &BYTEORDER_BIG.to_ne_bytes())]);
        let mut flags = SET_ANONYMOUS | SET_CONSTANT;
        if interval {
            flags |= SET_INTERVAL;
        }
        let spec = SetSpec {
            name,
            id,
            flags,
            key_type,
            key_len,
            data: None,
            size: Some(u32::try_from(elems.len()).unwrap_or(u32::MAX)),
            userdata: &userdata,
        };
        let seq = self.batch.set(&self.table, &spec);
        self.describe(Self::one(seq), Message::AnonymousSet { chain });
        let seqs = self.batch.elements(&self.table, &spec, &elems);
        let count = elems.len();
        self.describe(seqs, Message::AnonymousElements { chain, count });
        SetRef {
            name: name.to_owned(),
            id,
        }
    }

    fn set_ref(&self, name: &str) -> SetRef {
        self.sets.get(name).cloned().unwrap_or_else(|| SetRef {
            // The compiler only names sets it declared; an unknown one makes the
            // kernel refuse the rule, which the error report then names.
            name: c_string(name),
            id: 0,
        })
    }

    fn rule(&mut self, chain: &'a str, index: usize, rule: &'a ir::Rule) {
        let mut exprs = Vec::new();
        let mut ctx = Context::default();
        for m in &rule.matches {
            self.match_exprs(m, &mut ctx, &mut exprs, chain);
        }
        if rule.counter {
            exprs.push(Expr {
                name: c"counter",
                attrs: Vec::new(),
            });
        }
        if let Some(log) = &rule.log {
            let mut attrs = vec![Attr::Str(
                a(sys::NFTNL_EXPR_LOG_PREFIX),
                c_string(&log.prefix),
            )];
            if let Some(g) = log.group {
                attrs.push(Attr::U16(a(sys::NFTNL_EXPR_LOG_GROUP), g));
            }
            exprs.push(Expr {
                name: c"log",
                attrs,
            });
        }
        if let Some(v) = &rule.verdict {
            match v {
                ir::Verdict::Map { side, map } => {
                    exprs.push(meta(match side {
                        IfSide::In => META_IIFNAME,
                        IfSide::Out => META_OIFNAME,
                    }));
                    let set = self.set_ref(map);
                    exprs.push(lookup(&set, Some(REG_VERDICT), false));
                }
                other => {
                    let (code, target) = verdict_code(other);
                    exprs.push(immediate(code, target));
                }
            }
        }
        if exprs.len() > MAX_RULE_EXPRESSIONS {
            // Checked here, not left to the kernel: it bounds the message size the
            // batch buffer relies on.
            self.refused.get_or_insert_with(|| {
                format!(
                    "rule {} of chain {chain} ({}) needs {} expressions; the kernel takes at most {MAX_RULE_EXPRESSIONS}",
                    index + 1,
                    rule.comment.as_deref().unwrap_or("no comment"),
                    exprs.len()
                )
            });
            return;
        }
        let userdata = rule
            .comment
            .as_deref()
            .map(comment_udata)
            .unwrap_or_default();
        let c_chain = c_string(chain);
        let spec = RuleSpec {
            chain: &c_chain,
            exprs: &exprs,
            userdata: &userdata,
        };
        let seq = self.batch.rule(&self.table, &spec);
        self.describe(
            Self::one(seq),
            Message::Rule {
                chain,
                index,
                comment: rule.comment.as_deref(),
            },
        );
    }

    fn match_exprs(&mut self, m: &Match, ctx: &mut Context, out: &mut Vec<Expr>, chain: &'a str) {
        match m {
            Match::Ct(state) => {
                let mask = match state {
                    CtState::EstablishedOrRelated => CT_ESTABLISHED_RELATED,
                    CtState::Invalid => CT_INVALID,
                };
                out.push(Expr {
                    name: c"ct",
                    attrs: vec![
                        Attr::U32(a(sys::NFTNL_EXPR_CT_DREG), REG_1),
                        Attr::U32(a(sys::NFTNL_EXPR_CT_KEY), CT_STATE),
                    ],
                });
                out.push(bitwise(mask.to_ne_bytes().to_vec()));
                out.push(cmp(CMP_NEQ, 0u32.to_ne_bytes().to_vec()));
            }
            Match::Family(f) => {
                out.push(meta(META_NFPROTO));
                out.push(cmp(CMP_EQ, vec![nfproto(*f)]));
                ctx.family = Some(*f);
            }
            Match::Addr {
                side,
                family,
                negate,
                source,
            } => {
                ctx.guard_family(*family, out);
                let (_, len) = addr_type(*family);
                out.push(payload(
                    PAYLOAD_NETWORK,
                    addr_offset(*family, *side),
                    len,
                    REG_1,
                ));
                match source {
                    AddrSource::Set(name) => {
                        let set = self.set_ref(name);
                        out.push(lookup(&set, None, *negate));
                    }
                    AddrSource::List(nets) => {
                        self.addr_list(nets, *family, *negate, out, chain);
                    }
                }
            }
            Match::Protocol(p) => {
                out.push(meta(META_L4PROTO));
                out.push(cmp(CMP_EQ, vec![ip_proto(*p)]));
                ctx.l4proto = Some(ip_proto(*p));
            }
            Match::DstPorts { protocol, ranges } | Match::SrcPorts { protocol, ranges } => {
                ctx.guard_l4proto(ip_proto(*protocol), out);
                out.push(payload(PAYLOAD_TRANSPORT, port_offset(m), 2, REG_1));
                match ranges.as_slice() {
                    [(a, b)] if a == b => out.push(cmp(CMP_EQ, a.to_be_bytes().to_vec())),
                    [(a, b)] => {
                        out.push(cmp(CMP_GTE, a.to_be_bytes().to_vec()));
                        out.push(cmp(CMP_LTE, b.to_be_bytes().to_vec()));
                    }
                    _ => {
                        let interval = ranges.iter().any(|(a, b)| a != b);
                        let elems = if interval {
                            interval_elements(
                                ranges
                                    .iter()
                                    .map(|&(a, b)| (u128::from(a), u128::from(b)))
                                    .collect(),
                                2,
                                true,
                            )
                        } else {
                            ranges
                                .iter()
                                .map(|(a, _)| ElemSpec {
                                    key: a.to_be_bytes().to_vec(),
                                    flags: 0,
                                    verdict: None,
                                    userdata: Vec::new(),
                                })
                                .collect()
                        };
                        let set = self.anonymous_set(TYPE_INET_SERVICE, 2, interval, elems, chain);
                        out.push(lookup(&set, None, false));
                    }
                }
            }
            Match::AddrPort {
                side,
                family,
                protocol,
                set,
                negate,
            } => {
                ctx.guard_family(*family, out);
                ctx.guard_l4proto(ip_proto(*protocol), out);
                let (_, len) = addr_type(*family);
                out.push(payload(
                    PAYLOAD_NETWORK,
                    addr_offset(*family, *side),
                    len,
                    REG_1,
                ));
                // The port goes in the register after the address: 32-bit register
                // 1 after an IPv4 address, 128-bit register 2 after an IPv6 one.
                let port_reg = match family {
                    Family::V4 => REG32_01,
                    Family::V6 => REG_2,
                };
                out.push(payload(PAYLOAD_TRANSPORT, port_offset(m), 2, port_reg));
                let set = self.set_ref(set);
                out.push(lookup(&set, None, *negate));
            }
            Match::Icmpv6Types(types) => {
                ctx.guard_family(Family::V6, out);
                ctx.guard_l4proto(IPPROTO_ICMPV6, out);
                out.push(payload(PAYLOAD_TRANSPORT, 0, 1, REG_1));
                match types.as_slice() {
                    [one] => out.push(cmp(CMP_EQ, vec![*one])),
                    _ => {
                        let elems = types
                            .iter()
                            .map(|t| ElemSpec {
                                key: vec![*t],
                                flags: 0,
                                verdict: None,
                                userdata: Vec::new(),
                            })
                            .collect();
                        let set = self.anonymous_set(TYPE_ICMP6_TYPE, 1, false, elems, chain);
                        out.push(lookup(&set, None, false));
                    }
                }
            }
            Match::DstPortsNot {
                protocol,
                range: (first, last),
            }
            | Match::SrcPortsNot {
                protocol,
                range: (first, last),
            } => {
                ctx.guard_l4proto(ip_proto(*protocol), out);
                out.push(payload(PAYLOAD_TRANSPORT, port_offset(m), 2, REG_1));
                if first == last {
                    out.push(cmp(CMP_NEQ, first.to_be_bytes().to_vec()));
                } else {
                    // As nft sends `tcp dport != first-last`.
                    out.push(Expr {
                        name: c"range",
                        attrs: vec![
                            Attr::U32(a(sys::NFTNL_EXPR_RANGE_SREG), REG_1),
                            Attr::U32(a(sys::NFTNL_EXPR_RANGE_OP), RANGE_NEQ),
                            Attr::Bytes(
                                a(sys::NFTNL_EXPR_RANGE_FROM_DATA),
                                first.to_be_bytes().to_vec(),
                            ),
                            Attr::Bytes(
                                a(sys::NFTNL_EXPR_RANGE_TO_DATA),
                                last.to_be_bytes().to_vec(),
                            ),
                        ],
                    });
                }
            }
            Match::L4Proto(n) => {
                out.push(meta(META_L4PROTO));
                out.push(cmp(CMP_EQ, vec![*n]));
                ctx.l4proto = Some(*n);
            }
            Match::Icmp {
                family,
                icmp_type,
                code,
                negate,
            } => {
                ctx.guard_family(*family, out);
                ctx.guard_l4proto(
                    match family {
                        Family::V4 => IPPROTO_ICMP,
                        Family::V6 => IPPROTO_ICMPV6,
                    },
                    out,
                );
                let op = if *negate { CMP_NEQ } else { CMP_EQ };
                match code {
                    // nft merges the two adjacent one-byte fields into one load.
                    Some(code) => {
                        out.push(payload(PAYLOAD_TRANSPORT, 0, 2, REG_1));
                        out.push(cmp(op, vec![*icmp_type, *code]));
                    }
                    None => {
                        out.push(payload(PAYLOAD_TRANSPORT, 0, 1, REG_1));
                        out.push(cmp(op, vec![*icmp_type]));
                    }
                }
            }
            // Every attribute, as nft sends them for `limit rate R/second burst B packets`.
            Match::Limit { rate, burst } => out.push(Expr {
                name: c"limit",
                attrs: vec![
                    Attr::U64(a(sys::NFTNL_EXPR_LIMIT_RATE), u64::from(*rate)),
                    Attr::U64(a(sys::NFTNL_EXPR_LIMIT_UNIT), LIMIT_PER_SECOND),
                    Attr::U32(a(sys::NFTNL_EXPR_LIMIT_BURST), *burst),
                    Attr::U32(a(sys::NFTNL_EXPR_LIMIT_TYPE), LIMIT_PACKETS),
                    Attr::U32(a(sys::NFTNL_EXPR_LIMIT_FLAGS), 0),
                ],
            }),
        }
    }

    /// `ip saddr 10.0.0.1`, `ip6 saddr != fe80::/10`, `ip6 saddr != { a, b/10 }`.
    fn addr_list(
        &mut self,
        nets: &[IpNet],
        family: Family,
        negate: bool,
        out: &mut Vec<Expr>,
        chain: &'a str,
    ) {
        let op = if negate { CMP_NEQ } else { CMP_EQ };
        let (key_type, len) = addr_type(family);
        match nets {
            [one] if is_host(one) => out.push(cmp(op, addr_bytes(&one.addr()))),
            [one] => prefix_match(one, op, out),
            _ => {
                let interval = nets.iter().any(|n| !is_host(n));
                let elems = if interval {
                    interval_elements(nets.iter().map(net_range).collect(), len as usize, true)
                } else {
                    nets.iter()
                        .map(|n| ElemSpec {
                            key: addr_bytes(&n.addr()),
                            flags: 0,
                            verdict: None,
                            userdata: Vec::new(),
                        })
                        .collect()
                };
                let set = self.anonymous_set(key_type, len, interval, elems, chain);
                out.push(lookup(&set, None, negate));
            }
        }
    }
}

/// `ip saddr 10.0.0.0/8`, `ip6 saddr != fe80::/10`, as nft encodes them: a
/// byte-aligned prefix loads and compares just its bytes; any other is masked at
/// full width.
fn prefix_match(net: &IpNet, op: u32, out: &mut Vec<Expr>) {
    let bits = usize::from(net.prefix_len());
    let network = addr_bytes(&net.network());
    if bits % 8 == 0 {
        let bytes = bits / 8;
        if let Some(Expr { name, attrs }) = out.last_mut()
            && *name == c"payload"
        {
            for attr in attrs.iter_mut() {
                if let Attr::U32(which, len) = attr
                    && *which == a(sys::NFTNL_EXPR_PAYLOAD_LEN)
                {
                    *len = u32::try_from(bytes).unwrap_or(*len);
                }
            }
        }
        out.push(cmp(op, network[..bytes].to_vec()));
        return;
    }
    let mask: Vec<u8> = (0..network.len())
        .map(|i| match bits.saturating_sub(8 * i) {
            0 => 0,
            b if b >= 8 => 0xff,
            b => 0xffu8 << (8 - b),
        })
        .collect();
    out.push(bitwise(mask));
    out.push(cmp(op, network));
}

fn verdict_code(v: &ir::Verdict) -> (i32, Option<&str>) {
    match v {
        ir::Verdict::Accept => (NF_ACCEPT, None),
        ir::Verdict::Drop => (NF_DROP, None),
        ir::Verdict::Return => (NFT_RETURN, None),
        ir::Verdict::Jump(c) => (NFT_JUMP, Some(c)),
        ir::Verdict::Goto(c) => (NFT_GOTO, Some(c)),
        // Refused by `verdict_map` (a map entry) and never reaches here from a rule.
        ir::Verdict::Map { .. } => (NF_DROP, None),
    }
}

/// What earlier matches of a rule already established, so the protocol guards nft
/// would not repeat are not repeated.
#[derive(Default)]
struct Context {
    family: Option<Family>,
    l4proto: Option<u8>,
}

impl Context {
    fn guard_family(&mut self, family: Family, out: &mut Vec<Expr>) {
        if self.family != Some(family) {
            out.push(meta(META_NFPROTO));
            out.push(cmp(CMP_EQ, vec![nfproto(family)]));
            self.family = Some(family);
        }
    }

    fn guard_l4proto(&mut self, proto: u8, out: &mut Vec<Expr>) {
        if self.l4proto != Some(proto) {
            out.push(meta(META_L4PROTO));
            out.push(cmp(CMP_EQ, vec![proto]));
            self.l4proto = Some(proto);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(elems: &[ElemSpec]) -> Vec<(Vec<u8>, u32, bool)> {
        elems
            .iter()
            .map(|e| (e.key.clone(), e.flags, !e.userdata.is_empty()))
            .collect()
    }

    #[test]
    fn intervals_start_with_an_end_marker_at_zero_and_end_one_past() {
        let elems = interval_elements(vec![(0x0a00_0000, 0x0aff_ffff)], 4, false);
        assert_eq!(
            keys(&elems),
            [
                (vec![0, 0, 0, 0], ELEM_INTERVAL_END, false),
                (vec![10, 0, 0, 0], 0, false),
                (vec![11, 0, 0, 0], ELEM_INTERVAL_END, false),
            ]
        );
    }

    #[test]
    fn touching_ranges_merge_and_a_range_to_the_top_is_open() {
        let elems = interval_elements(vec![(0, 9), (10, 20), (30, 0xffff)], 2, true);
        assert_eq!(
            keys(&elems),
            [
                (vec![0, 0], 0, false),
                (vec![0, 21], ELEM_INTERVAL_END, false),
                (vec![0, 30], 0, true),
            ]
        );
    }

    #[test]
    fn prefixes_load_only_their_bytes_or_mask_at_full_width() {
        let mut out = vec![payload(PAYLOAD_NETWORK, 12, 4, REG_1)];
        prefix_match(&"10.0.0.0/8".parse().unwrap(), CMP_EQ, &mut out);
        assert_eq!(out[0], payload(PAYLOAD_NETWORK, 12, 1, REG_1));
        assert_eq!(out[1], cmp(CMP_EQ, vec![10]));

        let mut out = vec![payload(PAYLOAD_NETWORK, 8, 16, REG_1)];
        prefix_match(&"fe80::/10".parse().unwrap(), CMP_NEQ, &mut out);
        let mut mask = vec![0xff, 0xc0];
        mask.resize(16, 0);
        let mut network = vec![0xfe, 0x80];
        network.resize(16, 0);
        assert_eq!(out[1], bitwise(mask));
        assert_eq!(out[2], cmp(CMP_NEQ, network));
    }

    #[test]
    fn interface_names_are_nul_padded_to_ifnamsiz() {
        assert_eq!(ifname_key("veth0"), b"veth0\0\0\0\0\0\0\0\0\0\0\0".to_vec());
    }
}
