//! Runs one packet through an `ir::Ruleset` the way netfilter runs it through the
//! table: base chains of the packet's hook in priority order, `accept` ending only
//! the base chain it happens in, `drop` ending everything, jumps, gotos and
//! verdict-map lookups as nft defines them. Used to check the compiler against the
//! reference evaluator, and to explain a verdict from the rules the kernel gets.

use std::net::IpAddr;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtInfo {
    New,
    Established,
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub hook: Hook,
    /// Interfaces the packet comes in by and leaves by, where the hook has them.
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub sport: u16,
    pub dport: u16,
    pub ct: CtInfo,
}

/// Where a rule sits: chain name and index in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub chain: String,
    pub index: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub accepted: bool,
    /// Every rule whose verdict was taken, in order (jumps, map lookups, the final verdict).
    pub path: Vec<RuleRef>,
}

enum Flow {
    Accept,
    Drop,
    /// Fell off the end or returned.
    Continue,
}

/// Nesting bound: the compiler never nests deeper than base → endpoint → policy.
const MAX_DEPTH: usize = 16;

pub fn run(rs: &Ruleset, pkt: &Packet) -> Trace {
    let mut bases: Vec<(&String, &Chain, BaseChain)> = rs
        .chains
        .iter()
        .filter_map(|(n, c)| c.base.filter(|b| b.hook == pkt.hook).map(|b| (n, c, b)))
        .collect();
    bases.sort_by_key(|(n, _, b)| (b.priority, (*n).clone()));
    let mut trace = Trace {
        accepted: true,
        path: Vec::new(),
    };
    for (name, chain, base) in bases {
        match eval_chain(rs, pkt, name, chain, 0, &mut trace.path) {
            Flow::Drop => {
                trace.accepted = false;
                return trace;
            }
            Flow::Accept => {}
            Flow::Continue if base.policy_accept => {}
            Flow::Continue => {
                trace.accepted = false;
                return trace;
            }
        }
    }
    trace
}

/// What one chain, evaluated on its own, does with a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainTrace {
    /// `Some(true)`: accepted; `Some(false)`: dropped; `None`: fell off the end or returned.
    pub verdict: Option<bool>,
    /// Every rule whose verdict was taken, in order.
    pub path: Vec<RuleRef>,
}

/// Runs `pkt` through the chain `name` alone, as if a base chain had jumped to it.
/// `explain` uses it to show an endpoint's policy even where the kernel never
/// evaluates it (the receiver's ingress, when the sender's egress already dropped).
pub fn run_chain(rs: &Ruleset, name: &str, pkt: &Packet) -> ChainTrace {
    let mut path = Vec::new();
    let verdict = match rs.chains.get(name) {
        None => None,
        Some(chain) => match eval_chain(rs, pkt, name, chain, 0, &mut path) {
            Flow::Accept => Some(true),
            Flow::Drop => Some(false),
            Flow::Continue => None,
        },
    };
    ChainTrace { verdict, path }
}

fn eval_chain(
    rs: &Ruleset,
    pkt: &Packet,
    name: &str,
    chain: &Chain,
    depth: usize,
    path: &mut Vec<RuleRef>,
) -> Flow {
    if depth > MAX_DEPTH {
        return Flow::Drop;
    }
    for (index, rule) in chain.rules.iter().enumerate() {
        if !rule.matches.iter().all(|m| matches(rs, pkt, m)) {
            continue;
        }
        let Some(verdict) = &rule.verdict else {
            continue;
        };
        let verdict = match verdict {
            Verdict::Map { side, map } => {
                let iface = match side {
                    IfSide::In => pkt.iif.as_deref(),
                    IfSide::Out => pkt.oif.as_deref(),
                };
                match iface.and_then(|i| rs.maps.get(map)?.entries.get(i)) {
                    Some(v) => v,
                    None => continue,
                }
            }
            v => v,
        };
        path.push(RuleRef {
            chain: name.to_owned(),
            index,
        });
        match verdict {
            Verdict::Accept => return Flow::Accept,
            Verdict::Drop => return Flow::Drop,
            Verdict::Return => return Flow::Continue,
            Verdict::Jump(target) | Verdict::Goto(target) => {
                let Some(next) = rs.chains.get(target) else {
                    return Flow::Drop;
                };
                let flow = eval_chain(rs, pkt, target, next, depth + 1, path);
                // A goto never comes back here; a jump does when the target returns.
                if matches!(verdict, Verdict::Goto(_)) || !matches!(flow, Flow::Continue) {
                    return flow;
                }
            }
            Verdict::Map { .. } => return Flow::Drop,
        }
    }
    Flow::Continue
}

fn in_set(rs: &Ruleset, set: &str, probe: &Element) -> bool {
    let Some(set) = rs.sets.get(set) else {
        return false;
    };
    if set.elements.contains(probe) {
        return true;
    }
    let Element::Addr(ip) = probe else {
        return false;
    };
    set.elements.iter().any(|e| match e {
        Element::Range(a, b) => a <= ip && ip <= b && Family::of(a) == Family::of(ip),
        _ => false,
    })
}

fn matches(rs: &Ruleset, pkt: &Packet, m: &Match) -> bool {
    let family = Family::of(&pkt.src);
    match m {
        Match::Ct(CtState::EstablishedOrRelated) => pkt.ct == CtInfo::Established,
        Match::Ct(CtState::Invalid) => pkt.ct == CtInfo::Invalid,
        Match::Family(f) => *f == family,
        Match::Addr {
            side,
            family: f,
            negate,
            source,
        } => {
            // `ip saddr` carries an implicit `meta nfproto ipv4`: a packet of the
            // other family fails the rule even when the comparison is negated.
            if *f != family {
                return false;
            }
            let ip = match side {
                AddrSide::Src => pkt.src,
                AddrSide::Dst => pkt.dst,
            };
            let inside = match source {
                AddrSource::Set(name) => in_set(rs, name, &Element::Addr(ip)),
                AddrSource::List(nets) => nets.iter().any(|n| n.contains(&ip)),
            };
            inside != *negate
        }
        Match::Protocol(p) => pkt.protocol == *p,
        Match::DstPorts { protocol, ranges } => {
            pkt.protocol == *protocol && ranges.iter().any(|(a, b)| (*a..=*b).contains(&pkt.dport))
        }
        Match::AddrPort {
            side,
            family: f,
            protocol,
            set,
            negate,
        } => {
            let probe = match side {
                AddrSide::Src => Element::AddrPort(pkt.src, pkt.sport),
                AddrSide::Dst => Element::AddrPort(pkt.dst, pkt.dport),
            };
            // The family and protocol are dependencies, not negated with the lookup.
            *f == family && pkt.protocol == *protocol && in_set(rs, set, &probe) != *negate
        }
        Match::SrcPorts { protocol, ranges } => {
            pkt.protocol == *protocol && ranges.iter().any(|(a, b)| (*a..=*b).contains(&pkt.sport))
        }
        Match::SrcPortsNot {
            protocol,
            range: (a, b),
        } => pkt.protocol == *protocol && !(*a..=*b).contains(&pkt.sport),
        // Probes are TCP, UDP or SCTP.
        Match::Icmpv6Types(_) => false,
        // Only log rules are limited, and they have no verdict: whether the bucket
        // has a token changes what is logged, never what is accepted.
        Match::Limit { .. } => true,
        Match::DstPortsNot {
            protocol,
            range: (a, b),
        } => pkt.protocol == *protocol && !(*a..=*b).contains(&pkt.dport),
        Match::L4Proto(n) => {
            let number = match pkt.protocol {
                Protocol::Tcp => 6,
                Protocol::Udp => 17,
                Protocol::Sctp => 132,
            };
            number == *n
        }
        // Probes are TCP, UDP or SCTP: never an ICMP message, so no ICMP type matches
        // them, negated or not (`icmp type != 8` needs an ICMP packet too).
        Match::Icmp { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(dport: u16) -> Packet {
        Packet {
            hook: Hook::Forward,
            iif: Some("veth-a".into()),
            oif: Some("uplink0".into()),
            src: "10.0.0.1".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            sport: 40000,
            dport,
            ct: CtInfo::New,
        }
    }

    fn port(p: u16) -> Vec<Match> {
        vec![Match::DstPorts {
            protocol: Protocol::Tcp,
            ranges: vec![(p, p)],
        }]
    }

    /// The shape ordered policies need (Allow/Deny/Log/Pass across tiers) runs as nft would.
    #[test]
    fn ordered_tiers_with_deny_log_pass_and_allow() {
        let chain = |rules| Chain {
            base: None,
            rules,
            comment: String::new(),
        };
        let mut rs = Ruleset {
            table: "t".into(),
            ..Ruleset::default()
        };
        rs.chains.insert(
            "base".into(),
            Chain {
                base: Some(BaseChain {
                    hook: Hook::Forward,
                    priority: 0,
                    policy_accept: true,
                }),
                rules: vec![
                    Rule::new(vec![], Verdict::Jump("admin".into())),
                    Rule::new(vec![], Verdict::Drop),
                ],
                comment: String::new(),
            },
        );
        let log = Rule {
            matches: vec![],
            counter: true,
            log: Some(Log {
                prefix: "np ".into(),
                group: None,
            }),
            verdict: None,
            comment: None,
        };
        rs.chains.insert(
            "admin".into(),
            chain(vec![
                log,
                Rule::new(port(22), Verdict::Drop),
                Rule::new(port(443), Verdict::Accept),
                Rule::new(port(80), Verdict::Goto("namespaced".into())),
                // Reached by nothing Pass already took.
                Rule::new(port(80), Verdict::Drop),
            ]),
        );
        rs.chains.insert(
            "namespaced".into(),
            chain(vec![Rule::new(port(80), Verdict::Accept)]),
        );
        let verdicts: Vec<(u16, bool)> = [22, 443, 80, 8080]
            .iter()
            .map(|&p| (p, run(&rs, &tcp(p)).accepted))
            .collect();
        // 22 denied first, 443 allowed in the admin tier, 80 passed on and allowed below,
        // 8080 matched by nothing: the end of the base chain drops it.
        assert_eq!(
            verdicts,
            [(22, false), (443, true), (80, true), (8080, false)]
        );
        let path = run(&rs, &tcp(80)).path;
        assert_eq!(
            path.iter()
                .map(|r| (r.chain.as_str(), r.index))
                .collect::<Vec<_>>(),
            [("base", 0), ("admin", 3), ("namespaced", 0)]
        );
        let text = crate::render::render(&rs);
        assert!(text.contains("\t\tcounter log prefix \"np \"\n"), "{text}");
        assert!(text.contains("tcp dport 80 goto namespaced"), "{text}");
    }
}
