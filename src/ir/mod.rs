//! A dataplane-neutral ruleset: one table of sets, verdict maps and chains of
//! ordered rules. The compiler produces it, `render` prints it as `nft -f` text,
//! the kernel backend programs it, and `ir::eval` runs packets through it.
//! Everything is kept in sorted maps so equal inputs give equal output.
//!
//! Order is priority: a chain's rules run in `Vec` order, base chains of one hook by
//! `priority`, and an endpoint chain jumps to its policies' chains in the order the
//! compiler gives them. That is all ordered policies need: `Allow` is `Verdict::Accept`,
//! `Deny` is `Verdict::Drop` (final in every base chain), `Log` is a rule with `log` and
//! no verdict (evaluation goes on), and `Pass` is a `Verdict::Map` lookup of the
//! endpoint's interface that goes to the endpoint's chain of what comes after (a policy
//! chain is shared by the endpoints it selects, so it cannot name one). Kubernetes
//! NetworkPolicies only allow: their chains accept, and an isolated endpoint's chain
//! ends in a drop.

pub mod diff;
pub mod eval;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::Protocol;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetKind {
    /// Host addresses (selector membership).
    Addr(Family),
    /// Address intervals (ipBlock minus except).
    Interval(Family),
    /// `address . port` pairs (named ports resolved per endpoint).
    AddrPort(Family),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Addr(IpAddr),
    /// Inclusive range of addresses.
    Range(IpAddr, IpAddr),
    AddrPort(IpAddr, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub kind: SetKind,
    pub elements: BTreeSet<Element>,
    pub comment: String,
}

/// What a packet is looked up by in a verdict map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IfSide {
    /// The interface the packet came in by.
    In,
    /// The interface it leaves by.
    Out,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerdictMap {
    /// Interface name → verdict.
    pub entries: BTreeMap<String, Verdict>,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    Input,
    Forward,
    Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub hook: Hook,
    /// Relative to the `filter` priority (0); lower runs first.
    pub priority: i32,
    /// What happens to a packet no rule decides: netpold's base chains accept,
    /// so traffic no endpoint claims is left to the host's other tables.
    pub policy_accept: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
    pub comment: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrSide {
    Src,
    Dst,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    EstablishedOrRelated,
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AddrSource {
    /// A named set of kind `Addr` or `Interval`.
    Set(String),
    /// Literal prefixes (e.g. an endpoint's own addresses for anti-spoofing).
    List(Vec<IpNet>),
}

/// One condition of a rule; all conditions of a rule must hold.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Match {
    Ct(CtState),
    /// Only packets of this address family.
    Family(Family),
    Addr {
        side: AddrSide,
        family: Family,
        negate: bool,
        source: AddrSource,
    },
    /// Any port of the protocol (`meta l4proto tcp`).
    Protocol(Protocol),
    /// Destination port in any of the inclusive ranges.
    DstPorts {
        protocol: Protocol,
        ranges: Vec<(u16, u16)>,
    },
    /// `daddr . dport` (`Dst`) or `saddr . sport` (`Src`) in a set of kind `AddrPort`,
    /// for one protocol; `negate`: not in it (`ip daddr . tcp dport != @set`).
    AddrPort {
        side: AddrSide,
        family: Family,
        protocol: Protocol,
        set: String,
        negate: bool,
    },
    /// ICMPv6 message types (neighbour discovery must reach the host).
    Icmpv6Types(Vec<u8>),
    /// At most `rate` packets a second, after a burst of `burst` (a token bucket per
    /// rule, shared by every packet reaching it): bounds what a log rule writes.
    Limit {
        rate: u32,
        burst: u32,
    },
    /// Destination port of the protocol outside the inclusive range (`tcp dport != 22`).
    DstPortsNot {
        protocol: Protocol,
        range: (u16, u16),
    },
    /// Source port in any of the inclusive ranges (`tcp sport 1024-65535`).
    SrcPorts {
        protocol: Protocol,
        ranges: Vec<(u16, u16)>,
    },
    /// Source port of the protocol outside the inclusive range (`tcp sport != 53`).
    SrcPortsNot {
        protocol: Protocol,
        range: (u16, u16),
    },
    /// Any packet of this IP protocol number (`meta l4proto 47`).
    L4Proto(u8),
    /// An ICMP (`V4`) or ICMPv6 (`V6`) message of this type (and code), or, negated, of
    /// another type (`icmp type != 8`) or another type and code pair.
    Icmp {
        family: Family,
        icmp_type: u8,
        code: Option<u8>,
        negate: bool,
    },
}

impl Match {
    /// The port of `side` in any of the inclusive ranges.
    pub fn ports(side: AddrSide, protocol: Protocol, ranges: Vec<(u16, u16)>) -> Match {
        match side {
            AddrSide::Src => Match::SrcPorts { protocol, ranges },
            AddrSide::Dst => Match::DstPorts { protocol, ranges },
        }
    }

    /// Which end's port a port match looks at (`None`: not a port match).
    pub fn port_side(&self) -> Option<AddrSide> {
        match self {
            Match::SrcPorts { .. } | Match::SrcPortsNot { .. } => Some(AddrSide::Src),
            Match::DstPorts { .. } | Match::DstPortsNot { .. } => Some(AddrSide::Dst),
            Match::AddrPort { side, .. } => Some(*side),
            _ => None,
        }
    }

    /// The port of `side` outside the inclusive range.
    pub fn ports_not(side: AddrSide, protocol: Protocol, range: (u16, u16)) -> Match {
        match side {
            AddrSide::Src => Match::SrcPortsNot { protocol, range },
            AddrSide::Dst => Match::DstPortsNot { protocol, range },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(String),
    Goto(String),
    /// Look the packet's interface up in a verdict map; no entry: go on.
    Map {
        side: IfSide,
        map: String,
    },
}

/// A non-terminal log statement: to the kernel log, or to NFLOG group `group`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Log {
    pub prefix: String,
    pub group: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub counter: bool,
    pub log: Option<Log>,
    /// `None`: the rule only logs or counts, evaluation goes on.
    pub verdict: Option<Verdict>,
    pub comment: Option<String>,
}

impl Rule {
    pub fn new(matches: Vec<Match>, verdict: Verdict) -> Rule {
        Rule {
            matches,
            counter: false,
            log: None,
            verdict: Some(verdict),
            comment: None,
        }
    }

    /// Sets the comment, cut to what `nft` accepts.
    pub fn with_comment(mut self, comment: impl AsRef<str>) -> Rule {
        self.comment = Some(bounded_comment(comment.as_ref()));
        self
    }

    pub fn counted(mut self) -> Rule {
        self.counter = true;
        self
    }
}

/// Longest comment `nft` accepts on a rule, chain or set.
pub const MAX_COMMENT: usize = 128;

/// `text` cut at a character boundary to at most `MAX_COMMENT` bytes.
pub fn bounded_comment(text: &str) -> String {
    if text.len() <= MAX_COMMENT {
        return text.to_owned();
    }
    let mut end = MAX_COMMENT - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `before name after` in at most `MAX_COMMENT` bytes, cutting only the name (which
/// then ends in `...`), so the words around it, which readers of the table parse
/// (`policy <name> ingress`), survive a long name.
pub fn comment_around(before: &str, name: &str, after: &str) -> String {
    let room = MAX_COMMENT.saturating_sub(before.len() + after.len());
    if name.len() <= room {
        return format!("{before}{name}{after}");
    }
    let mut end = room.saturating_sub(3);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    bounded_comment(&format!("{before}{}...{after}", &name[..end]))
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub sets: BTreeMap<String, Set>,
    pub maps: BTreeMap<String, VerdictMap>,
    pub chains: BTreeMap<String, Chain>,
}

impl Ruleset {
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
}
