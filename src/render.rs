//! `ir::Ruleset` → `nft -f` text, as `netpold plan` prints it. The text replaces
//! the table atomically when loaded (add, delete, add in one file = one transaction)
//! and is byte-identical for equal rulesets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ir::*;

fn family_word(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

fn addr_type(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4_addr",
        Family::V6 => "ipv6_addr",
    }
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace(['"', '\\'], "'"))
}

/// A range printed as a prefix when it is exactly one, as nft itself prints it.
fn range_text(a: IpAddr, b: IpAddr) -> String {
    let (lo, hi, bits) = match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return format!("{a}-{b}"),
    };
    let size = hi.wrapping_sub(lo).wrapping_add(1);
    let full = bits == 128 && lo == 0 && hi == u128::MAX;
    if full || (size.is_power_of_two() && lo % size == 0) {
        let prefix = if full {
            0
        } else {
            bits - size.trailing_zeros() as u8
        };
        if let Ok(net) = IpNet::new(a, prefix) {
            return net.to_string();
        }
    }
    format!("{a}-{b}")
}

fn element_text(e: &Element) -> String {
    match e {
        Element::Addr(ip) => ip.to_string(),
        Element::Range(a, b) => range_text(*a, *b),
        Element::AddrPort(ip, port) => format!("{ip} . {port}"),
    }
}

fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// `sport` or `dport`, for a port match.
fn port_word(m: &Match) -> &'static str {
    match m.port_side() {
        Some(AddrSide::Src) => "sport",
        _ => "dport",
    }
}

fn ports_text(ranges: &[(u16, u16)]) -> String {
    let one = |&(a, b): &(u16, u16)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    match ranges {
        [single] => one(single),
        _ => format!(
            "{{ {} }}",
            ranges.iter().map(one).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn icmpv6_name(t: u8) -> String {
    match t {
        133 => "nd-router-solicit".into(),
        134 => "nd-router-advert".into(),
        135 => "nd-neighbor-solicit".into(),
        136 => "nd-neighbor-advert".into(),
        other => other.to_string(),
    }
}

pub fn match_text(m: &Match) -> String {
    match m {
        Match::Ct(CtState::EstablishedOrRelated) => "ct state established,related".into(),
        Match::Ct(CtState::Invalid) => "ct state invalid".into(),
        Match::Family(Family::V4) => "meta nfproto ipv4".into(),
        Match::Family(Family::V6) => "meta nfproto ipv6".into(),
        Match::Addr {
            side,
            family,
            negate,
            source,
        } => {
            let field = match side {
                AddrSide::Src => "saddr",
                AddrSide::Dst => "daddr",
            };
            let op = if *negate { "!= " } else { "" };
            let value = match source {
                AddrSource::Set(name) => format!("@{name}"),
                AddrSource::List(nets) if nets.len() == 1 => net_text(&nets[0]),
                AddrSource::List(nets) => {
                    format!(
                        "{{ {} }}",
                        nets.iter().map(net_text).collect::<Vec<_>>().join(", ")
                    )
                }
            };
            format!("{} {field} {op}{value}", family_word(*family))
        }
        Match::Protocol(p) => format!("meta l4proto {}", p.keyword()),
        Match::DstPorts { protocol, ranges } | Match::SrcPorts { protocol, ranges } => {
            format!(
                "{} {} {}",
                protocol.keyword(),
                port_word(m),
                ports_text(ranges)
            )
        }
        Match::AddrPort {
            side,
            family,
            protocol,
            set,
            negate,
        } => {
            let addr = match side {
                AddrSide::Src => "saddr",
                AddrSide::Dst => "daddr",
            };
            format!(
                "{} {addr} . {} {} {}@{set}",
                family_word(*family),
                protocol.keyword(),
                port_word(m),
                if *negate { "!= " } else { "" }
            )
        }

        Match::Icmpv6Types(types) => {
            let names: Vec<String> = types.iter().map(|t| icmpv6_name(*t)).collect();
            if names.len() == 1 {
                format!("icmpv6 type {}", names[0])
            } else {
                format!("icmpv6 type {{ {} }}", names.join(", "))
            }
        }
        Match::Limit { rate, burst } => {
            format!("limit rate {rate}/second burst {burst} packets")
        }
        Match::DstPortsNot {
            protocol,
            range: (a, b),
        }
        | Match::SrcPortsNot {
            protocol,
            range: (a, b),
        } => {
            let word = port_word(m);
            if a == b {
                format!("{} {word} != {a}", protocol.keyword())
            } else {
                format!("{} {word} != {a}-{b}", protocol.keyword())
            }
        }
        Match::L4Proto(n) => format!("meta l4proto {n}"),
        Match::Icmp {
            family,
            icmp_type,
            code,
            negate,
        } => {
            let word = match family {
                Family::V4 => "icmp",
                Family::V6 => "icmpv6",
            };
            let op = if *negate { "!= " } else { "" };
            match code {
                // Not this type with this code: both bytes at once, as a raw payload
                // (the compiler puts the family match before it).
                Some(c) if *negate => format!(
                    "meta l4proto {} @th,0,16 != {}",
                    match family {
                        Family::V4 => 1,
                        Family::V6 => 58,
                    },
                    u16::from(*icmp_type) << 8 | u16::from(*c)
                ),
                Some(c) => format!("{word} type {icmp_type} {word} code {c}"),
                None => format!("{word} type {op}{icmp_type}"),
            }
        }
    }
}

pub fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
        Verdict::Map {
            side: IfSide::In,
            map,
        } => format!("iifname vmap @{map}"),
        Verdict::Map {
            side: IfSide::Out,
            map,
        } => format!("oifname vmap @{map}"),
    }
}

pub fn rule_text(r: &Rule) -> String {
    let mut parts: Vec<String> = r.matches.iter().map(match_text).collect();
    if r.counter {
        parts.push("counter".into());
    }
    if let Some(log) = &r.log {
        let mut s = format!("log prefix {}", quote(&log.prefix));
        if let Some(g) = log.group {
            let _ = write!(s, " group {g}");
        }
        parts.push(s);
    }
    if let Some(v) = &r.verdict {
        parts.push(verdict_text(v));
    }
    if let Some(c) = &r.comment {
        parts.push(format!("comment {}", quote(c)));
    }
    parts.join(" ")
}

fn priority_text(p: i32) -> String {
    match p {
        0 => "filter".into(),
        p if p > 0 => format!("filter + {p}"),
        p => format!("filter - {}", -p),
    }
}

fn hook_text(h: Hook) -> &'static str {
    match h {
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Output => "output",
    }
}

fn chain_targets(chain: &Chain) -> impl Iterator<Item = &str> {
    chain.rules.iter().filter_map(|r| match &r.verdict {
        Some(Verdict::Jump(c) | Verdict::Goto(c)) => Some(c.as_str()),
        _ => None,
    })
}

/// Regular chains in an order where every chain comes after the chains it jumps
/// to, so the file loads whatever nft's handling of forward references.
pub fn chain_order(rs: &Ruleset) -> Vec<&str> {
    fn visit<'a>(
        name: &'a str,
        rs: &'a Ruleset,
        done: &mut BTreeSet<&'a str>,
        out: &mut Vec<&'a str>,
    ) {
        if !done.insert(name) {
            return;
        }
        if let Some(chain) = rs.chains.get(name) {
            for target in chain_targets(chain) {
                visit(target, rs, done, out);
            }
            out.push(name);
        }
    }
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for (name, chain) in &rs.chains {
        if chain.base.is_none() {
            visit(name, rs, &mut done, &mut out);
        }
    }
    out
}

fn write_chain(out: &mut String, name: &str, chain: &Chain) {
    let _ = writeln!(out, "\tchain {name} {{");
    if let Some(b) = &chain.base {
        let policy = if b.policy_accept { "accept" } else { "drop" };
        let _ = writeln!(
            out,
            "\t\ttype filter hook {} priority {}; policy {policy};",
            hook_text(b.hook),
            priority_text(b.priority)
        );
    }
    if !chain.comment.is_empty() {
        let _ = writeln!(out, "\t\tcomment {}", quote(&chain.comment));
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(rule));
    }
    out.push_str("\t}\n");
}

fn write_elements(out: &mut String, elements: impl ExactSizeIterator<Item = String>) {
    if elements.len() == 0 {
        return;
    }
    out.push_str("\t\telements = {\n");
    let n = elements.len();
    for (i, e) in elements.enumerate() {
        let sep = if i + 1 < n { "," } else { "" };
        let _ = writeln!(out, "\t\t\t{e}{sep}");
    }
    out.push_str("\t\t}\n");
}

/// The whole ruleset as one `nft -f` transaction that replaces table `inet <table>`.
pub fn render(rs: &Ruleset) -> String {
    let t = &rs.table;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "table inet {t}\ndelete table inet {t}\ntable inet {t} {{"
    );
    for (name, set) in &rs.sets {
        let _ = writeln!(out, "\tset {name} {{");
        let (ty, interval) = match set.kind {
            SetKind::Addr(f) => (addr_type(f).to_owned(), false),
            SetKind::Interval(f) => (addr_type(f).to_owned(), true),
            SetKind::AddrPort(f) => (format!("{} . inet_service", addr_type(f)), false),
        };
        let _ = writeln!(out, "\t\ttype {ty}");
        if interval {
            out.push_str("\t\tflags interval\n");
        }
        if !set.comment.is_empty() {
            let _ = writeln!(out, "\t\tcomment {}", quote(&set.comment));
        }
        write_elements(
            &mut out,
            set.elements
                .iter()
                .map(element_text)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        out.push_str("\t}\n");
    }
    for name in chain_order(rs) {
        write_chain(&mut out, name, &rs.chains[name]);
    }
    for (name, map) in &rs.maps {
        let _ = writeln!(out, "\tmap {name} {{\n\t\ttype ifname : verdict");
        if !map.comment.is_empty() {
            let _ = writeln!(out, "\t\tcomment {}", quote(&map.comment));
        }
        let entries: Vec<String> = map
            .entries
            .iter()
            .map(|(k, v)| format!("{} : {}", quote(k), verdict_text(v)))
            .collect();
        write_elements(&mut out, entries.into_iter());
        out.push_str("\t}\n");
    }
    for (name, chain) in &rs.chains {
        if chain.base.is_some() {
            write_chain(&mut out, name, chain);
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_print_as_prefixes_when_aligned() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (a, b, text) in [
            ("10.0.0.0", "10.0.255.255", "10.0.0.0/16"),
            ("0.0.0.0", "255.255.255.255", "0.0.0.0/0"),
            ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"),
            ("10.0.0.1", "10.0.0.6", "10.0.0.1-10.0.0.6"),
            ("10.0.0.2", "10.0.0.3", "10.0.0.2/31"),
        ] {
            assert_eq!(range_text(ip(a), ip(b)), text);
        }
    }

    #[test]
    fn rule_text_reads_like_nft() {
        let r = Rule::new(
            vec![
                Match::Addr {
                    side: AddrSide::Src,
                    family: Family::V4,
                    negate: false,
                    source: AddrSource::Set("s4_x".into()),
                },
                Match::DstPorts {
                    protocol: crate::model::Protocol::Tcp,
                    ranges: vec![(80, 80), (8000, 8100)],
                },
            ],
            Verdict::Accept,
        )
        .counted()
        .with_comment("ns/p ingress[0]");
        assert_eq!(
            rule_text(&r),
            "ip saddr @s4_x tcp dport { 80, 8000-8100 } counter accept comment \"ns/p ingress[0]\""
        );
    }

    #[test]
    fn log_rules_read_like_nft() {
        let log = |group| Rule {
            matches: vec![Match::Limit {
                rate: 10,
                burst: 20,
            }],
            counter: false,
            log: Some(Log {
                prefix: "netpold drop ingress a/b isolated: ".into(),
                group,
            }),
            verdict: None,
            comment: Some("a/b: isolated for ingress, no rule allows".into()),
        };
        assert_eq!(
            rule_text(&log(None)),
            "limit rate 10/second burst 20 packets log prefix \"netpold drop ingress a/b isolated: \" comment \"a/b: isolated for ingress, no rule allows\""
        );
        assert_eq!(
            rule_text(&log(Some(7))),
            "limit rate 10/second burst 20 packets log prefix \"netpold drop ingress a/b isolated: \" group 7 comment \"a/b: isolated for ingress, no rule allows\""
        );
    }
}
