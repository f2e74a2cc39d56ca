//! The `netpold.io/v1` policies: one ordered sequence with the Kubernetes
//! NetworkPolicies, which sit at order 1000 (Calico's placement).
//!
//! - Per policy and governed direction, `tp_<h>_in` / `tp_<h>_out`: the rules in
//!   order. `Allow` accepts (final for the direction), `Deny` drops (logged first with
//!   drop logs on), `Log` logs rate-limited and goes on, `Pass` looks the endpoint's
//!   interface up in `ingress_pass` / `egress_pass` and goes to its `epk_<h>_*` chain.
//!   No match returns to the endpoint chain, which goes on with the next policy.
//! - The endpoint chain jumps to every selecting policy, netpold.io and Kubernetes
//!   alike, by (order, name, namespace); then drops when any of them selected it.
//! - `epk_<h>_in` / `epk_<h>_out`, for an endpoint with a `Pass` rule among its
//!   policies: the Kubernetes NetworkPolicies only, then a drop when one of them
//!   selects it, an accept when none does (a Pass hands the verdict to them).
//!
//! - The admin policies (AdminNetworkPolicy, BaselineAdminNetworkPolicy) are lowered
//!   to this form (`TieredPolicy::admin`) and compiled by the same code to `anp_` /
//!   `banp_` chains: the endpoint chain jumps to the ANPs by (priority, name) before
//!   the ordered sequence; an ANP `Pass` looks the interface up in `ingress_admin_pass`
//!   / `egress_admin_pass` and goes to the endpoint's `epr_` chain, a copy of the rest
//!   of its endpoint chain. The baseline is jumped to where the endpoint chain (or
//!   `epk_`) would accept because nothing isolates the endpoint.
//!
//! The selector sets of rules (`x4_`/`x6_`) and the sets of `nets`/`notNets`
//! (`c4_`/`c6_`, intervals) are named like the other sets, from their canonical keys.

use std::net::IpAddr;

use ipnet::IpNet;

use super::*;
use crate::model::tiered::{Action, Entity, PortItem, RuleProtocol, TierRule, TieredPolicy};
use crate::selector::expr::Expr;

pub const INGRESS_PASS_MAP: &str = "ingress_pass";
pub const EGRESS_PASS_MAP: &str = "egress_pass";
pub const ADMIN_INGRESS_PASS_MAP: &str = "ingress_admin_pass";
pub const ADMIN_EGRESS_PASS_MAP: &str = "egress_admin_pass";

/// Which endpoints a rule's selector looks at.
enum ExprScope<'p> {
    Namespace(&'p str),
    Matching(&'p Expr),
    All,
    /// A GlobalNetworkPolicy's selector without namespaceSelector: every namespace's
    /// endpoints and the host endpoints (by their `expectedIPs`).
    Global,
}

/// The endpoints an entity's selectors look at: its namespace scope and selector.
fn entity_scope<'p>(policy: &'p TieredPolicy, entity: &'p Entity) -> (ExprScope<'p>, Expr) {
    let scope = match (&entity.namespace_selector, policy.global) {
        (None, true) => ExprScope::Global,
        (Some(Expr::All), _) => ExprScope::All,
        (Some(e), _) => ExprScope::Matching(e),
        (None, false) => ExprScope::Namespace(&policy.namespace),
    };
    (scope, entity.selector.clone().unwrap_or(Expr::All))
}

/// The interface a direction's endpoint is found by, and its pass map (`admin`: of
/// the AdminNetworkPolicies).
fn pass_lookup(direction: Direction, admin: bool) -> Verdict {
    match (direction, admin) {
        (Direction::Ingress, false) => Verdict::Map {
            side: IfSide::Out,
            map: INGRESS_PASS_MAP.into(),
        },
        (Direction::Egress, false) => Verdict::Map {
            side: IfSide::In,
            map: EGRESS_PASS_MAP.into(),
        },
        (Direction::Ingress, true) => Verdict::Map {
            side: IfSide::Out,
            map: ADMIN_INGRESS_PASS_MAP.into(),
        },
        (Direction::Egress, true) => Verdict::Map {
            side: IfSide::In,
            map: ADMIN_EGRESS_PASS_MAP.into(),
        },
    }
}

/// Whether `policy` selects `ep` (whose namespace is labelled `ns_labels`).
pub fn tiered_selects(policy: &TieredPolicy, ep: &Endpoint, ns_labels: &Labels) -> bool {
    let in_scope = if policy.global {
        policy
            .namespace_selector
            .as_ref()
            .is_none_or(|s| s.matches(ns_labels))
    } else {
        ep.namespace == policy.namespace
    };
    in_scope && policy.selector.matches(&ep.labels)
}

/// Whether one of the policy's rules for `direction` passes.
pub fn has_pass(policy: &TieredPolicy, direction: Direction) -> bool {
    policy
        .rules(direction)
        .unwrap_or_default()
        .iter()
        .any(|r| r.action == Action::Pass)
}

/// `nets` as sorted disjoint inclusive ranges (nft refuses overlapping elements).
fn nets_ranges(nets: &[&IpNet]) -> Vec<(IpAddr, IpAddr)> {
    let to_u128 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let Some(first) = nets.first() else {
        return Vec::new();
    };
    let v4 = matches!(first, IpNet::V4(_));
    let from_u128 = |n: u128| {
        if v4 {
            IpAddr::V4((n as u32).into())
        } else {
            IpAddr::V6(n.into())
        }
    };
    let mut spans: Vec<(u128, u128)> = nets
        .iter()
        .map(|n| (to_u128(n.network()), to_u128(n.broadcast())))
        .collect();
    spans.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::new();
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.into_iter()
        .map(|(a, b)| (from_u128(a), from_u128(b)))
        .collect()
}

/// The port conditions of one end of a rule, as alternatives (any one must hold): the
/// merged ranges of `ports` (one alternative per range up to `SPLIT_RANGES`, else one
/// for all of them) and one per name (a single empty list without `ports`), each with
/// every `notPorts` condition. A named port is an `AddrPort` match whose set holds the
/// name until the caller makes the set for a family.
fn port_alternatives(entity: &Entity, side: AddrSide, protocol: Protocol) -> Vec<Vec<Match>> {
    let numeric = |items: &[PortItem]| -> BTreeSet<(u16, u16)> {
        items
            .iter()
            .filter_map(|item| match item {
                PortItem::Range(a, b) => Some((*a, *b)),
                PortItem::Named(_) => None,
            })
            .collect()
    };
    let names = |items: &[PortItem]| -> BTreeSet<String> {
        items
            .iter()
            .filter_map(|item| match item {
                PortItem::Named(n) => Some(n.clone()),
                PortItem::Range(..) => None,
            })
            .collect()
    };
    let named = |name: String, negate: bool| Match::AddrPort {
        side,
        family: Family::V4,
        protocol,
        set: name,
        negate,
    };
    let not: Vec<Match> = merge_ranges(&numeric(&entity.not_ports))
        .into_iter()
        .map(|range| Match::ports_not(side, protocol, range))
        .chain(names(&entity.not_ports).into_iter().map(|n| named(n, true)))
        .collect();
    if entity.ports.is_empty() {
        return vec![not];
    }
    split_ranges(merge_ranges(&numeric(&entity.ports)))
        .into_iter()
        .map(|ranges| Match::ports(side, protocol, ranges))
        .chain(names(&entity.ports).into_iter().map(|n| named(n, false)))
        .map(|m| {
            let mut list = vec![m];
            list.extend(not.iter().cloned());
            list
        })
        .collect()
}

/// The address families a rule compiles to separately: each family where addresses or
/// `ipVersion` make it matter (`None`: one rule for both).
fn rule_families(rule: &TierRule) -> Vec<Option<Family>> {
    let specific =
        |e: &Entity| e.selects_endpoints() || !e.nets.is_empty() || !e.not_nets.is_empty();
    // ICMP is IPv4's, ICMPv6 IPv6's.
    let version = rule
        .ip_version
        .or_else(|| rule.protocol.and_then(RuleProtocol::version));
    if version.is_none() && !specific(&rule.source) && !specific(&rule.destination) {
        vec![None]
    } else {
        Family::BOTH
            .into_iter()
            .filter(|f| {
                version.is_none_or(|v| match v {
                    crate::model::tiered::IpVersion::V4 => *f == Family::V4,
                    crate::model::tiered::IpVersion::V6 => *f == Family::V6,
                })
            })
            // `nets` of the other family only: this family cannot match.
            .filter(|f| {
                [&rule.source, &rule.destination]
                    .iter()
                    .all(|e| e.nets.is_empty() || e.nets.iter().any(|n| Family::of_net(n) == *f))
            })
            .map(Some)
            .collect()
    }
}

/// How many nft rules `rule` compiles to, at most: one per family, source port
/// alternative and destination port alternative; a named port without a family twice
/// (once per family).
pub fn tier_rule_alternatives(rule: &TierRule) -> usize {
    let ends = match rule.protocol {
        Some(RuleProtocol::Ported(_)) => {
            let alternatives = |e: &Entity| {
                let mut numeric = BTreeSet::new();
                let mut names = BTreeSet::new();
                for item in &e.ports {
                    match item {
                        PortItem::Range(a, b) => {
                            numeric.insert((*a, *b));
                        }
                        PortItem::Named(n) => {
                            names.insert(n);
                        }
                    }
                }
                (split_ranges(merge_ranges(&numeric)).len() + names.len()).max(1)
            };
            alternatives(&rule.source).saturating_mul(alternatives(&rule.destination))
        }
        _ => 1,
    };
    let families = rule_families(rule);
    let per_family = if families == [None] { 2 } else { 1 };
    ends.saturating_mul(families.len() * per_family)
}

/// The prefix of a `Log` or `Deny` rule's log: `netpold <log|deny> <direction>
/// <policy> <rule>: `, cut to what nft takes.
pub fn policy_log_prefix(word: &str, direction: Direction, policy: &str, rule: usize) -> String {
    let text = format!("netpold {word} {direction} {policy} {direction}[{rule}]: ");
    if text.len() <= crate::droplog::MAX_PREFIX {
        return text;
    }
    let mut end = crate::droplog::MAX_PREFIX - 5;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...: ", &text[..end])
}

impl Compiler<'_> {
    pub(super) fn tiered_chain_name(
        &mut self,
        policy: &TieredPolicy,
        direction: Direction,
    ) -> String {
        self.tiered_chain_name_for(policy, direction, false)
    }

    /// `tp_<h>_*`, or for host endpoints (`host`) `tph_<h>_*`: the same rules, except
    /// that a Pass accepts, as no Kubernetes NetworkPolicy selects a host endpoint.
    pub(super) fn tiered_chain_name_for(
        &mut self,
        policy: &TieredPolicy,
        direction: Direction,
        host: bool,
    ) -> String {
        if let Some(a) = &policy.admin {
            return self.state.names.get(
                if a.baseline { "banp" } else { "anp" },
                &format!("admin\0{}\0{}", a.baseline, policy.name),
                chain_suffix(direction),
            );
        }
        self.state.names.get(
            if host { "tph" } else { "tp" },
            &format!(
                "tiered\0{}\0{}\0{}",
                policy.global, policy.namespace, policy.name
            ),
            chain_suffix(direction),
        )
    }

    pub(super) fn kubernetes_chain_name(&mut self, ep: &Endpoint, direction: Direction) -> String {
        self.state.names.get(
            "epk",
            &format!("endpoint\0{}\0{}", ep.namespace, ep.name),
            chain_suffix(direction),
        )
    }

    fn expr_set(&mut self, scope: &ExprScope, sel: &Expr, family: Family) -> String {
        let scope_key = match scope {
            ExprScope::Namespace(ns) => format!("ns={ns}"),
            ExprScope::Matching(e) => format!("nssel={e}"),
            ExprScope::All => "all".to_owned(),
            ExprScope::Global => "global".to_owned(),
        };
        let key = format!("expr\0{scope_key}\0{sel}");
        let name = self
            .state
            .names
            .get(&format!("x{}", family_digit(family)), &key, "");
        if !self.state.out.sets.contains_key(&name) {
            let model = self.model;
            let hosts = model
                .hosts
                .values()
                .filter(|_| matches!(scope, ExprScope::Global))
                .filter(|h| sel.matches(&h.labels))
                .flat_map(|h| h.expected_ips.iter());
            let elements = model
                .endpoints
                .values()
                .filter(|ep| match scope {
                    ExprScope::Namespace(ns) => ep.namespace == *ns,
                    ExprScope::Matching(e) => model
                        .namespaces
                        .get(&ep.namespace)
                        .is_some_and(|n| e.matches(&n.labels)),
                    ExprScope::All | ExprScope::Global => true,
                })
                .filter(|ep| sel.matches(&ep.labels))
                .flat_map(|ep| ep.ips.iter())
                .chain(hosts)
                .filter(|ip| Family::of(ip) == family)
                .map(|ip| Element::Addr(*ip))
                .collect();
            let where_ = match scope {
                ExprScope::Namespace(ns) => format!("namespace {ns}"),
                ExprScope::Matching(e) => format!("namespaces {e}"),
                ExprScope::All => "all namespaces".to_owned(),
                ExprScope::Global => "all namespaces and host endpoints".to_owned(),
            };
            self.state.out.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Addr(family),
                    elements,
                    // No `"` in a comment: `plan` text could not carry it.
                    comment: bounded_comment(
                        &format!("endpoints {sel} in {where_}").replace('"', "'"),
                    ),
                },
            );
            self.note_created_set(&name);
        }
        name
    }

    /// `address . port` of the endpoints in `scope` matching `sel` (every endpoint when
    /// the destination selects none) that name `port` for `protocol`.
    fn expr_port_set(
        &mut self,
        scope: Option<(&ExprScope, &Expr)>,
        port: &str,
        protocol: Protocol,
        family: Family,
    ) -> String {
        let scope_key = match scope {
            None => "any".to_owned(),
            Some((ExprScope::Namespace(ns), sel)) => format!("ns={ns}\0{sel}"),
            Some((ExprScope::Matching(e), sel)) => format!("nssel={e}\0{sel}"),
            // Host endpoints have no named ports: the same members as All.
            Some((ExprScope::All | ExprScope::Global, sel)) => format!("all\0{sel}"),
        };
        let key = format!("exprport\0{scope_key}\0{port}\0{protocol}");
        let name = self
            .state
            .names
            .get(&format!("xp{}", family_digit(family)), &key, "");
        if !self.state.out.sets.contains_key(&name) {
            let model = self.model;
            let elements = model
                .endpoints
                .values()
                .filter(|ep| match scope {
                    None => true,
                    Some((ExprScope::Namespace(ns), sel)) => {
                        ep.namespace == *ns && sel.matches(&ep.labels)
                    }
                    Some((ExprScope::Matching(e), sel)) => {
                        model
                            .namespaces
                            .get(&ep.namespace)
                            .is_some_and(|n| e.matches(&n.labels))
                            && sel.matches(&ep.labels)
                    }
                    Some((ExprScope::All | ExprScope::Global, sel)) => sel.matches(&ep.labels),
                })
                .filter_map(|ep| ep.named_port(port, protocol).map(|number| (ep, number)))
                .flat_map(|(ep, number)| {
                    ep.ips
                        .iter()
                        .filter(|ip| Family::of(ip) == family)
                        .map(move |ip| Element::AddrPort(*ip, number))
                })
                .collect();
            self.state.out.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::AddrPort(family),
                    elements,
                    comment: bounded_comment(&format!("named port {port}/{protocol}")),
                },
            );
            self.note_created_set(&name);
        }
        name
    }

    fn nets_set(&mut self, nets: &[&IpNet], family: Family) -> String {
        let text: Vec<String> = nets.iter().map(ToString::to_string).collect();
        let key = format!("nets\0{}", text.join(","));
        let name = self
            .state
            .names
            .get(&format!("c{}", family_digit(family)), &key, "");
        if !self.state.out.sets.contains_key(&name) {
            let elements = range_elements(nets_ranges(nets));
            self.state.out.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Interval(family),
                    elements,
                    comment: bounded_comment(&format!("nets {}", text.join(" "))),
                },
            );
            self.note_created_set(&name);
        }
        name
    }

    /// The conditions on one end (source or destination) of a rule, for one family.
    fn entity_matches(
        &mut self,
        policy: &TieredPolicy,
        entity: &Entity,
        side: AddrSide,
        family: Family,
    ) -> Vec<Match> {
        let mut out = Vec::new();
        if entity.selects_endpoints() {
            let (scope, sel) = entity_scope(policy, entity);
            let set = self.expr_set(&scope, &sel, family);
            out.push(Match::Addr {
                side,
                family,
                negate: false,
                source: AddrSource::Set(set),
            });
        }
        for (nets, negate) in [(&entity.nets, false), (&entity.not_nets, true)] {
            let of_family: Vec<&IpNet> = nets
                .iter()
                .filter(|n| Family::of_net(n) == family)
                .collect();
            if of_family.is_empty() {
                continue;
            }
            let set = self.nets_set(&of_family, family);
            out.push(Match::Addr {
                side,
                family,
                negate,
                source: AddrSource::Set(set),
            });
        }
        out
    }

    /// The match lists one policy rule compiles to: one per family where addresses
    /// or `ipVersion` make it matter, times the source and destination port
    /// alternatives (`tier_rule_alternatives` counts them).
    fn tier_rule_matches(&mut self, policy: &TieredPolicy, rule: &TierRule) -> Vec<Vec<Match>> {
        let families = rule_families(rule);
        // The protocol and port conditions: one list per combination of a source and a
        // destination port alternative (a merged range or a name).
        let ports: Vec<Vec<Match>> = match rule.protocol {
            None => vec![Vec::new()],
            Some(RuleProtocol::Ported(p)) => {
                let sources = port_alternatives(&rule.source, AddrSide::Src, p);
                let destinations = port_alternatives(&rule.destination, AddrSide::Dst, p);
                let mut lists = Vec::new();
                for s in &sources {
                    for d in &destinations {
                        let mut m: Vec<Match> = s.iter().chain(d).cloned().collect();
                        if m.is_empty() {
                            m.push(Match::Protocol(p));
                        }
                        lists.push(m);
                    }
                }
                lists
            }
            Some(RuleProtocol::Number(n)) => vec![vec![Match::L4Proto(n)]],
            Some(icmp @ (RuleProtocol::Icmp | RuleProtocol::Icmpv6)) => {
                let family = if icmp == RuleProtocol::Icmp {
                    Family::V4
                } else {
                    Family::V6
                };
                let mut m = Vec::new();
                for (matched, negate) in [(rule.icmp, false), (rule.not_icmp, true)] {
                    if let Some(i) = matched {
                        m.push(Match::Icmp {
                            family,
                            icmp_type: i.icmp_type,
                            code: i.code,
                            negate,
                        });
                    }
                }
                if m.is_empty() {
                    m.push(Match::L4Proto(icmp.number()));
                }
                vec![m]
            }
        };
        let mut out = Vec::new();
        for family in families {
            let mut base = Vec::new();
            if let Some(f) = family {
                base.push(Match::Family(f));
                base.extend(self.entity_matches(policy, &rule.source, AddrSide::Src, f));
                base.extend(self.entity_matches(policy, &rule.destination, AddrSide::Dst, f));
            }
            for port in &ports {
                let named = port.iter().any(|m| matches!(m, Match::AddrPort { .. }));
                if !named {
                    let mut m = base.clone();
                    m.extend(port.iter().cloned());
                    out.push(m);
                    continue;
                }
                // A name resolves on the endpoint at its end: within that end's
                // selectors, or on any endpoint. Its set is per family.
                for f in family.map_or(Family::BOTH.to_vec(), |f| vec![f]) {
                    let mut m = base.clone();
                    for item in port {
                        m.push(match item {
                            Match::AddrPort {
                                side,
                                protocol,
                                set: name,
                                negate,
                                ..
                            } => {
                                let entity = match side {
                                    AddrSide::Src => &rule.source,
                                    AddrSide::Dst => &rule.destination,
                                };
                                let scope = entity
                                    .selects_endpoints()
                                    .then(|| entity_scope(policy, entity));
                                let set = self.expr_port_set(
                                    scope.as_ref().map(|(s, e)| (s, e)),
                                    name,
                                    *protocol,
                                    f,
                                );
                                Match::AddrPort {
                                    side: *side,
                                    family: f,
                                    protocol: *protocol,
                                    set,
                                    negate: *negate,
                                }
                            }
                            other => other.clone(),
                        });
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    pub(super) fn tiered_chain(&mut self, policy: &TieredPolicy, direction: Direction) {
        self.tiered_chain_for(policy, direction, false);
    }

    /// The policy's chain for `direction`; for host endpoints (`host`) a Pass accepts.
    pub(super) fn tiered_chain_for(
        &mut self,
        policy: &TieredPolicy,
        direction: Direction,
        host: bool,
    ) {
        let mut rules = Vec::new();
        let mut from_rule = Vec::new();
        // Logs name an admin policy `anp:NAME` / `banp:default` (a GlobalNetworkPolicy
        // may have the same name).
        let id = match &policy.admin {
            Some(a) if a.baseline => format!("banp:{}", policy.name),
            Some(_) => format!("anp:{}", policy.name),
            None => policy.id(),
        };
        let (rate, burst, group) = match self.state.options.drop_log {
            Some(log) => (log.rate, log.burst, log.group),
            None => (10, 20, None),
        };
        for (i, rule) in policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            // An admin policy's lowered rule is named by its manifest rule.
            let source = policy.source_rule(direction, i);
            let named = match &policy.admin {
                Some(a) => {
                    let names = match direction {
                        Direction::Ingress => &a.ingress_rules,
                        Direction::Egress => &a.egress_rules,
                    };
                    // In single quotes; nothing that nft text would quote differently.
                    let name: String = names[i]
                        .1
                        .chars()
                        .map(|c| {
                            if c == ' ' || (c.is_ascii_graphic() && !"\"'\\".contains(c)) {
                                c
                            } else {
                                '_'
                            }
                        })
                        .collect();
                    format!(" '{name}'")
                }
                None => String::new(),
            };
            let comment = bounded_comment(&format!(
                "{} {} {direction}[{source}]{named} {}",
                policy.kind(),
                policy.id(),
                rule.action
            ));
            let i = source;
            for matches in self.tier_rule_matches(policy, rule) {
                let limited = |prefix: String| {
                    let mut m = matches.clone();
                    m.push(Match::Limit { rate, burst });
                    Rule {
                        matches: m,
                        counter: false,
                        log: Some(Log { prefix, group }),
                        verdict: None,
                        comment: Some(comment.clone()),
                    }
                };
                match rule.action {
                    Action::Allow => rules.push(
                        Rule::new(matches, Verdict::Accept)
                            .counted()
                            .with_comment(&comment),
                    ),
                    Action::Deny => {
                        if self.state.options.drop_log.is_some() {
                            rules.push(limited(policy_log_prefix("deny", direction, &id, i)));
                        }
                        rules.push(
                            Rule::new(matches, Verdict::Drop)
                                .counted()
                                .with_comment(&comment),
                        );
                    }
                    Action::Log => {
                        let mut r = limited(policy_log_prefix("log", direction, &id, i));
                        r.counter = true;
                        rules.push(r);
                    }
                    Action::Pass if host => {
                        rules.push(Rule::new(matches, Verdict::Accept).counted().with_comment(
                            bounded_comment(&format!(
                                "{comment}: no Kubernetes NetworkPolicy selects host endpoints"
                            )),
                        ))
                    }
                    Action::Pass => rules.push(
                        Rule::new(matches, pass_lookup(direction, policy.admin.is_some()))
                            .counted()
                            .with_comment(&comment),
                    ),
                }
            }
            if self.state.origins.is_some() {
                from_rule.resize(rules.len(), i);
            }
        }
        let name = self.tiered_chain_name_for(policy, direction, host);
        self.state.enforced.insert(policy.label());
        if let Some(origins) = &mut self.state.origins {
            origins.note(
                &name,
                ChainOrigin::Tiered {
                    policy: policy.label(),
                    direction,
                    rules: from_rule,
                },
            );
        }
        // The order is in the endpoint chains' jump comments, not here: a chain's
        // comment is a property that only a new chain changes.
        self.state.out.chains.insert(
            name,
            Chain {
                base: None,
                rules,
                comment: bounded_comment(&format!(
                    "{} {direction}{}",
                    policy.label(),
                    if host { " (host endpoints)" } else { "" }
                )),
            },
        );
    }

    /// Where a Pass of `ep`'s policies goes: the Kubernetes NetworkPolicies alone.
    pub(super) fn kubernetes_chain(
        &mut self,
        ep: &Endpoint,
        direction: Direction,
        policies: &[&NetworkPolicy],
        baseline: Option<&TieredPolicy>,
    ) -> String {
        let name = self.kubernetes_chain_name(ep, direction);
        let id = ep.id();
        let mut rules = Vec::new();
        for policy in policies {
            rules.push(
                Rule::new(
                    vec![],
                    Verdict::Jump(self.policy_chain_name(policy, direction)),
                )
                .with_comment(bounded_comment(&format!("policy {}", policy.id()))),
            );
        }
        if policies.is_empty() {
            // No Kubernetes NetworkPolicy isolates it: the baseline has its say.
            if let Some(b) = baseline {
                rules.push(
                    Rule::new(vec![], Verdict::Jump(self.tiered_chain_name(b, direction)))
                        .with_comment(bounded_comment(&b.label())),
                );
            }
            rules.push(
                Rule::new(vec![], Verdict::Accept).with_comment(bounded_comment(&format!(
                    "{id}: passed; no Kubernetes NetworkPolicy governs {direction}"
                ))),
            );
        } else {
            let comment = format!("{id}: passed, isolated for {direction}, no rule allows");
            rules.extend(self.logged_drop(
                vec![],
                direction,
                Some(&id),
                DropCause::Isolated,
                comment,
            ));
        }
        self.state.out.chains.insert(
            name.clone(),
            Chain {
                base: None,
                rules,
                comment: bounded_comment(&format!(
                    "endpoint {id} {direction} after a Pass ({})",
                    ep.interface
                )),
            },
        );
        if let Some(origins) = &mut self.state.origins {
            origins.note(
                &name,
                ChainOrigin::Passed {
                    endpoint: (ep.namespace.clone(), ep.name.clone()),
                    direction,
                    policies: policies
                        .iter()
                        .map(|p| (p.namespace.clone(), p.name.clone()))
                        .collect(),
                    last_rule: self.state.out.chains[&name].rules.len() - 1,
                },
            );
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::{Explainer, Party, Port};
    use crate::manifest::parse_bytes;

    fn model(yaml: &str) -> Model {
        let mut problems = Vec::new();
        let raw = parse_bytes("t.yaml", yaml.as_bytes(), &mut problems);
        let (model, more) = Model::build(&raw);
        assert!(
            problems.is_empty() && more.is_empty(),
            "{problems:?} {more:?}"
        );
        model
    }

    /// Three endpoints on n1: a/web (app=web), a/client (app=client), b/other
    /// (app=client, namespace b labelled team=b).
    const ENDPOINTS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1, fd00::1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: client, namespace: a, labels: {app: client}}
spec: {node: n1, interfaceName: veth-client, ips: [10.0.0.2, fd00::2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: other, namespace: b, labels: {app: client}}
spec: {node: n1, interfaceName: veth-other, ips: [10.0.1.3]}
";

    /// `(allowed, ingress reason)` of a TCP flow to a/web.
    fn to_web(yaml: &str, from: &str, port: u16) -> (bool, String) {
        to_web_from(yaml, from, crate::explain::DEFAULT_SOURCE_PORT, port)
    }

    /// The same from source port `sport`.
    fn to_web_from(yaml: &str, from: &str, sport: u16, port: u16) -> (bool, String) {
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let options = Options {
            drop_log: Some(DropLog {
                group: Some(5),
                rate: 10,
                burst: 20,
            }),
            ..Default::default()
        };
        // The compilation explain runs is the daemon's.
        let (rs, _) = explainable(&m, "n1", "netpold", &options);
        assert_eq!(rs, compile_with(&m, "n1", "netpold", &options));
        let mut ex = Explainer::new(&m, "n1", "netpold")
            .with_options(options)
            .with_source_port(sport);
        let e = ex
            .explain(
                &from.parse::<Party>().unwrap(),
                &"a/web".parse::<Party>().unwrap(),
                Port {
                    protocol: Protocol::Tcp,
                    number: port,
                },
            )
            .unwrap();
        (e.allowed, e.ingress.reason.clone())
    }

    #[test]
    fn a_deny_at_low_order_beats_an_allow_at_higher_order() {
        let yaml = "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: a}
spec:
  order: 200
  selector: app == 'web'
  ingress: [{action: Allow}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: deny-client, namespace: a}
spec:
  order: 100
  selector: app == 'web'
  ingress:
  - {action: Deny, source: {selector: app == 'client'}}
";
        let (allowed, reason) = to_web(yaml, "a/client", 80);
        assert!(!allowed);
        assert_eq!(
            reason,
            "isolated by netpold.io/v1 NetworkPolicy a/deny-client, netpold.io/v1 NetworkPolicy a/allow-all; denied by netpold.io/v1 NetworkPolicy a/deny-client ingress[0]"
        );
        // b/other is app=client too, but the rule's selector means namespace a only.
        let (allowed, reason) = to_web(yaml, "b/other", 80);
        assert!(allowed, "{reason}");
        assert!(
            reason.ends_with("allowed by netpold.io/v1 NetworkPolicy a/allow-all ingress[0]"),
            "{reason}"
        );
        // Swapped orders: the allow decides first.
        let swapped = yaml.replace("order: 200", "order: 50");
        assert!(to_web(&swapped, "a/client", 80).0);
    }

    #[test]
    fn source_ports_numbered_ranged_named_and_negated_names() {
        let yaml = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: relay, namespace: a, labels: {app: relay}}
spec: {node: n1, interfaceName: veth-relay, ips: [10.0.0.4], ports: [{name: src, port: 5000}]}
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: sport, namespace: a}
spec:
  selector: app == 'web'
  ingress:
  - {action: Deny, protocol: TCP, source: {ports: ['1:1023']}}
  - {action: Allow, protocol: TCP, source: {notPorts: [src, '40000:40010']}, destination: {notPorts: [22]}}
  - {action: Allow, protocol: TCP, source: {selector: app == 'relay', ports: [src]}}
";
        let rule =
            |i: usize| format!("allowed by netpold.io/v1 NetworkPolicy a/sport ingress[{i}]");
        let cases = [
            (
                "a/client",
                1000,
                80,
                Err("denied by netpold.io/v1 NetworkPolicy a/sport ingress[0]".to_owned()),
            ),
            ("a/client", 41000, 80, Ok(rule(1))),
            ("a/client", 41000, 22, Err("no rule".to_owned())),
            ("a/client", 40005, 80, Err("no rule".to_owned())),
            // a/client names no port `src`: the negated name holds.
            ("a/client", 5000, 80, Ok(rule(1))),
            // 5000 is a/relay's `src`: not the notPorts rule, but the named source port's.
            ("a/relay", 5000, 80, Ok(rule(2))),
            ("a/relay", 5001, 80, Ok(rule(1))),
            ("a/relay", 40005, 80, Err("no rule".to_owned())),
        ];
        for (from, sport, port, expected) in cases {
            let (allowed, reason) = to_web_from(yaml, from, sport, port);
            let (want_allowed, want) = match &expected {
                Ok(r) => (true, r),
                Err(r) => (false, r),
            };
            assert!(
                allowed == want_allowed && reason.contains(want.as_str()),
                "{from}:{sport} -> {port}: {reason}"
            );
        }
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let text = crate::render::render(&compile_with(&m, "n1", "t", &Options::default()));
        for needed in [
            "tcp sport 1-1023 ",
            "tcp sport != 40000-40010 ip saddr . tcp sport != @xp4_",
            "tcp dport != 22",
            "ip saddr . tcp sport @xp4_",
        ] {
            assert!(text.contains(needed), "{needed}\n{text}");
        }
    }

    #[test]
    fn pass_goes_on_to_the_kubernetes_policies_and_log_changes_nothing() {
        let yaml = "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: pass-client, namespace: a}
spec:
  order: 10
  selector: all()
  ingress:
  - {action: Log}
  - {action: Pass, source: {selector: app == 'client'}}
  - {action: Deny}
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: deny-later, namespace: a}
spec:
  order: 20
  ingress: [{action: Deny}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-80, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
";
        let (allowed, reason) = to_web(yaml, "a/client", 80);
        assert!(allowed, "{reason}");
        assert!(
            reason.contains("passed by netpold.io/v1 NetworkPolicy a/pass-client ingress[1]; allowed by a/web-80 ingress[0]"),
            "{reason}"
        );
        let (allowed, reason) = to_web(yaml, "a/client", 81);
        assert!(!allowed);
        assert!(
            reason.ends_with("no rule of a/web-80 allows this"),
            "{reason}"
        );
        // Not passed: denied by the rule after the Pass.
        let (allowed, reason) = to_web(yaml, "b/other", 80);
        assert!(!allowed);
        assert!(
            reason.ends_with("denied by netpold.io/v1 NetworkPolicy a/pass-client ingress[2]"),
            "{reason}"
        );
        // Without the Kubernetes policy a Pass leaves the endpoint open.
        let without = yaml
            .split("---\napiVersion: networking.k8s.io/v1")
            .next()
            .unwrap();
        let (allowed, reason) = to_web(without, "a/client", 81);
        assert!(allowed, "{reason}");
        assert!(
            reason.contains("no Kubernetes NetworkPolicy selects it"),
            "{reason}"
        );
        // The Log rule logs, counts, and has no verdict.
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let rs = compile(&m, "n1", "netpold");
        let log = rs
            .chains
            .values()
            .flat_map(|c| &c.rules)
            .find(|r| {
                r.log
                    .as_ref()
                    .is_some_and(|l| l.prefix.starts_with("netpold log"))
            })
            .expect("a log rule");
        assert_eq!(log.verdict, None);
        assert!(log.counter);
        assert_eq!(
            log.log.as_ref().unwrap().prefix,
            "netpold log ingress a/pass-client ingress[0]: "
        );
    }

    #[test]
    fn an_endpoint_selected_by_no_rule_match_is_denied_and_orders_interleave_with_kubernetes() {
        let yaml = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: m-allow, namespace: a}
spec:
  podSelector: {}
  ingress: [{}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: z-deny, namespace: a}
spec:
  order: 1000
  ingress: [{action: Deny}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: nothing, namespace: a}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, source: {nets: [192.0.2.0/24]}}]
";
        // Same order 1000: the Kubernetes m-allow comes before z-deny by name.
        let (allowed, reason) = to_web(yaml, "a/client", 80);
        assert!(allowed, "{reason}");
        let a_deny = yaml.replace("z-deny", "a-deny");
        let (allowed, reason) = to_web(&a_deny, "a/client", 80);
        assert!(!allowed, "{reason}");
        // Only the unordered policy: selected, no rule matches, denied.
        let only = yaml.split("---\n").nth(2).unwrap();
        let (allowed, reason) = to_web(only, "a/client", 80);
        assert!(!allowed);
        assert_eq!(
            reason,
            "isolated; no rule of netpold.io/v1 NetworkPolicy a/nothing allows this"
        );
    }

    #[test]
    fn global_policies_select_across_namespaces_and_nets_exclude() {
        let yaml = "
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  order: 1
  selector: has(app)
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client', namespaceSelector: team == 'b', notNets: [10.0.1.0/24]}
    destination: {ports: [80]}
  - action: Allow
    protocol: TCP
    source: {nets: [10.0.0.0/16], notNets: [10.0.0.2/32]}
    destination: {ports: [\"8000:8080\"]}
  - action: Allow
    protocol: TCP
    source: {selector: app == 'client'}
    destination: {ports: [443]}
";
        // b/other matches the selectors of rule 0 but its address is in notNets.
        assert!(!to_web(yaml, "b/other", 80).0);
        assert!(!to_web(yaml, "a/client", 80).0);
        // Rule 1: 10.0.0.0/16 except 10.0.0.2 (a/client).
        assert!(!to_web(yaml, "a/client", 8000).0);
        let (allowed, reason) = to_web(yaml, "10.0.5.5", 8080);
        assert!(allowed, "{reason}");
        assert!(
            reason.ends_with("allowed by GlobalNetworkPolicy g ingress[1]"),
            "{reason}"
        );
        // Rule 2: a global policy's rule selector without namespaceSelector: every namespace.
        assert!(to_web(yaml, "a/client", 443).0);
        assert!(to_web(yaml, "b/other", 443).0);
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let rs = compile(&m, "n1", "netpold");
        let web_in = rs
            .chains
            .values()
            .find(|c| c.comment == "endpoint a/web ingress (veth-web)")
            .unwrap();
        assert!(
            web_in
                .rules
                .iter()
                .any(|r| r.comment.as_deref() == Some("GlobalNetworkPolicy g (order 1)"))
        );
    }

    #[test]
    fn nets_merge_into_disjoint_ranges() {
        let nets: Vec<IpNet> = ["10.0.0.0/24", "10.0.1.0/24", "10.0.0.128/25", "10.2.0.0/16"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let refs: Vec<&IpNet> = nets.iter().collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            nets_ranges(&refs),
            vec![
                (ip("10.0.0.0"), ip("10.0.1.255")),
                (ip("10.2.0.0"), ip("10.2.255.255"))
            ]
        );
    }

    #[test]
    fn log_prefixes_name_policy_and_rule_and_fit_nft() {
        assert_eq!(
            policy_log_prefix("deny", Direction::Ingress, "shop/deny-bad", 2),
            "netpold deny ingress shop/deny-bad ingress[2]: "
        );
        let long = format!("ns/{}", "a".repeat(200));
        let p = policy_log_prefix("log", Direction::Egress, &long, 0);
        assert!(p.len() <= crate::droplog::MAX_PREFIX, "{p}");
        assert!(p.ends_with("...: "));
    }

    const K8S_ALLOW_CLIENT: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
";

    #[test]
    fn admin_policies_run_by_priority_before_the_network_policies() {
        let anp = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 10
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - name: pass-8080
    action: Pass
    from: [{namespaces: {}}]
    ports: [{portNumber: {protocol: TCP, port: 8080}}]
  - name: deny-client-80
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}}]
    ports: [{portRange: {protocol: TCP, start: 80, end: 81}}]
  - name: allow-team-b
    action: Allow
    from: [{namespaces: {matchLabels: {team: b}}}]
";
        let yaml = format!("{K8S_ALLOW_CLIENT}---\n{anp}");
        // ANP Deny beats a NetworkPolicy Allow.
        let (allowed, reason) = to_web(&yaml, "a/client", 80);
        assert!(!allowed);
        assert_eq!(
            reason,
            "isolated by a/web-from-client; denied by AdminNetworkPolicy guard ingress[1]"
        );
        // ANP Allow overrides the NetworkPolicy's isolation.
        let (allowed, reason) = to_web(&yaml, "b/other", 443);
        assert!(allowed, "{reason}");
        assert!(
            reason.ends_with("; allowed by AdminNetworkPolicy guard ingress[2]"),
            "{reason}"
        );
        // Pass: the NetworkPolicy decides (allows a/client, isolates against 10.9.9.9).
        let (allowed, reason) = to_web(&yaml, "a/client", 8080);
        assert!(allowed, "{reason}");
        assert!(
            reason.contains("passed by AdminNetworkPolicy guard ingress[0]"),
            "{reason}"
        );
        assert!(
            reason.ends_with("allowed by a/web-from-client ingress[0]"),
            "{reason}"
        );
        assert!(!to_web(&yaml, "10.9.9.9", 8080).0);
        // A lower priority number runs first: an Allow at 5 beats the Deny at 10.
        let first = format!(
            "{yaml}---\n{}",
            anp.replace("name: guard", "name: zz-first")
                .replace("priority: 10", "priority: 5")
                .replace("action: Deny", "action: Allow")
        );
        let (allowed, reason) = to_web(&first, "a/client", 80);
        assert!(allowed, "{reason}");
        assert!(
            reason.ends_with("; allowed by AdminNetworkPolicy zz-first ingress[1]"),
            "{reason}"
        );
    }

    #[test]
    fn the_baseline_applies_only_where_no_policy_isolates() {
        let banp = "
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress:
  - {name: allow-b, action: Allow, from: [{namespaces: {matchLabels: {team: b}}}]}
  - {name: deny-rest, action: Deny, from: [{namespaces: {}}, {pods: {namespaceSelector: {}, podSelector: {}}}]}
";
        let (allowed, reason) = to_web(banp, "a/client", 80);
        assert!(!allowed);
        assert_eq!(
            reason,
            "denied by BaselineAdminNetworkPolicy default ingress[1]"
        );
        assert!(to_web(banp, "b/other", 80).0);
        // An outside address is no peer of the baseline's: allowed.
        assert!(to_web(banp, "10.9.9.9", 80).0);
        // With a NetworkPolicy selecting a/web, the baseline is not consulted.
        let yaml = format!("{K8S_ALLOW_CLIENT}---\n{banp}");
        let (allowed, reason) = to_web(&yaml, "a/client", 80);
        assert!(allowed, "{reason}");
        assert!(!to_web(&yaml, "b/other", 80).0);
        // A netpold.io Pass with no NetworkPolicy selecting: on to the baseline.
        let pass = format!(
            "{banp}---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: pass, namespace: a}}
spec:
  selector: app == 'web'
  ingress: [{{action: Pass}}]
"
        );
        assert!(!to_web(&pass, "a/client", 80).0);
        assert!(to_web(&pass, "b/other", 80).0);
    }

    #[test]
    fn admin_rules_are_counted_and_their_denies_logged_by_policy_and_rule() {
        let m = model(&format!(
            "{ENDPOINTS}---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: guard}}
spec:
  priority: 1
  subject: {{namespaces: {{}}}}
  ingress:
  - {{name: ok, action: Allow, from: [{{namespaces: {{matchLabels: {{team: b}}}}}}]}}
  - {{name: nope, action: Deny, from: [{{namespaces: {{}}}}]}}
"
        ));
        let options = Options {
            drop_log: Some(DropLog {
                group: Some(5),
                rate: 10,
                burst: 20,
            }),
            ..Default::default()
        };
        let rs = compile_with(&m, "n1", "netpold", &options);
        let (name, chain) = rs
            .chains
            .iter()
            .find(|(n, _)| n.starts_with("anp_") && n.ends_with("_in"))
            .expect("the ANP's ingress chain");
        let verdicts: Vec<&Rule> = chain.rules.iter().filter(|r| r.verdict.is_some()).collect();
        assert!(verdicts.iter().all(|r| r.counter), "{name}: {chain:?}");
        let logs: Vec<&str> = chain
            .rules
            .iter()
            .filter_map(|r| r.log.as_ref().map(|l| l.prefix.as_str()))
            .collect();
        assert!(!logs.is_empty());
        assert!(
            logs.iter()
                .all(|p| *p == "netpold deny ingress anp:guard ingress[1]: "),
            "{logs:?}"
        );
        assert!(
            verdicts
                .iter()
                .any(|r| r.comment.as_deref()
                    == Some("AdminNetworkPolicy guard ingress[1] 'nope' Deny")),
            "{:?}",
            verdicts.iter().map(|r| &r.comment).collect::<Vec<_>>()
        );
        // No ANP Pass: no epr_ chain; the admin pass maps exist, empty.
        assert!(!rs.chains.keys().any(|n| n.starts_with("epr_")));
        assert!(rs.maps[ADMIN_INGRESS_PASS_MAP].entries.is_empty());
    }

    /// The one `tp_` chain of `rs`.
    fn tiered_chain_of(rs: &Ruleset) -> &Chain {
        rs.chains
            .iter()
            .find(|(name, _)| name.starts_with("tp_"))
            .map(|(_, c)| c)
            .unwrap()
    }

    /// `item(i)` for each `i` of `items`, comma-separated.
    fn listed(items: impl Iterator<Item = usize>, item: impl Fn(usize) -> String) -> String {
        items.map(item).collect::<Vec<_>>().join(", ")
    }

    /// Asserts that `yaml` has exactly one problem and that it starts with `start`.
    fn assert_one_problem(yaml: &str, start: &str) {
        let found = problems(yaml);
        assert!(found.len() == 1 && found[0].starts_with(start), "{found:?}");
    }

    /// `ports: [1, 3, …, 1999]` at both ends: one alternative per end, not a million.
    #[test]
    fn long_port_lists_at_both_ends_compile_to_one_rule_per_family() {
        let odd: Vec<String> = (1..2000).step_by(2).map(|p| p.to_string()).collect();
        let odd = odd.join(", ");
        let yaml = format!(
            "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: many, namespace: a}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {{selector: app == 'client', ports: [{odd}]}}
    destination: {{ports: [{odd}, '3000:3010']}}
"
        );
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let rs = compile(&m, "n1", "netpold");
        let chain = tiered_chain_of(&rs);
        // One rule per family, each with all 1,000 source and 1,001 destination ranges.
        assert_eq!(chain.rules.len(), 2, "{:?}", chain.rules.len());
        let ranges = |r: &Rule, side: AddrSide| {
            r.matches
                .iter()
                .find_map(|m| match (m, side) {
                    (Match::SrcPorts { ranges, .. }, AddrSide::Src)
                    | (Match::DstPorts { ranges, .. }, AddrSide::Dst) => Some(ranges.len()),
                    _ => None,
                })
                .unwrap()
        };
        for r in &chain.rules {
            assert_eq!(ranges(r, AddrSide::Src), 1000);
            assert_eq!(ranges(r, AddrSide::Dst), 1001);
        }
        assert!(rs.rule_count() < 100, "{}", rs.rule_count());
        let cases = [
            (1, 1, true),
            (1999, 1999, true),
            (5, 3005, true),
            (2, 1, false),
            (1, 2, false),
            (2001, 1, false),
            (1, 3011, false),
            (1001, 999, true),
        ];
        for (sport, dport, allowed) in cases {
            assert_eq!(
                to_web_from(&yaml, "a/client", sport, dport).0,
                allowed,
                "{sport} -> {dport}"
            );
        }
        // Only a/client is the source.
        assert!(!to_web_from(&yaml, "b/other", 1, 1).0);
    }

    /// At most `SPLIT_RANGES` ranges get a rule each: no anonymous set for short lists.
    #[test]
    fn short_port_lists_keep_a_rule_per_range() {
        let yaml = "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: few, namespace: a}
spec:
  selector: app == 'web'
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80, 443, '8000:8080', 9000]}}
";
        let m = model(&format!("{ENDPOINTS}---\n{yaml}"));
        let rs = compile(&m, "n1", "netpold");
        let chain = tiered_chain_of(&rs);
        assert_eq!(chain.rules.len(), 4);
        for r in &chain.rules {
            assert!(
                r.matches
                    .iter()
                    .any(|m| matches!(m, Match::DstPorts { ranges, .. } if ranges.len() == 1))
            );
        }
        for (port, allowed) in [(80, true), (8040, true), (9000, true), (81, false)] {
            assert_eq!(to_web(yaml, "a/client", port).0, allowed, "{port}");
        }
    }

    /// The problems of `yaml` (the endpoints of `ENDPOINTS` around it).
    fn problems(yaml: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let raw = parse_bytes("t.yaml", yaml.as_bytes(), &mut problems);
        let (_, more) = Model::build(&raw);
        problems
            .into_iter()
            .chain(more)
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn a_rule_of_more_alternatives_than_the_cap_is_refused_at_the_rule() {
        let names = |prefix: &str, n: usize| listed(0..n, |i| format!("{prefix}{i}"));
        // 70 × 70 named ports, per family: 9,800 rules.
        let tiered = format!(
            "apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: names, namespace: a}}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: TCP
  - action: Allow
    protocol: TCP
    source: {{ports: [{}]}}
    destination: {{ports: [{}]}}
",
            names("s", 70),
            names("d", 70)
        );
        assert_one_problem(
            &tiered,
            "t.yaml:9:5: error: spec.ingress[1]: compiles to up to 9800 nft rules",
        );
        // notPorts: each is a condition of the one rule, bounded by the kernel's 128
        // expressions a rule.
        let not_ports = format!(
            "apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: not, namespace: a}}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: TCP
    destination: {{notPorts: [{}]}}
",
            (1..14)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            problems(&not_ports),
            [
                "t.yaml:9:29: error: spec.ingress[0].destination.notPorts: 13 ports; at most 12 (each is a condition of its own): merge them into ranges or split the rule"
            ]
        );
        assert!(problems(&not_ports.replace(", 13]", "]")).is_empty());
        // 70 named ports fit (140 rules).
        assert!(problems(&tiered.replace(&names("d", 70), "80")).is_empty());
        // Kubernetes: peers times ports (times two families for pod peers).
        let peers: Vec<String> = (0..100)
            .map(|i| format!("{{podSelector: {{matchLabels: {{app: a{i}}}}}}}"))
            .collect();
        let kubernetes = format!(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: peers, namespace: a}}
spec:
  podSelector: {{}}
  ingress:
  - from: [{}]
    ports: [{}]
",
            peers.join(", "),
            listed(0..30, |i| format!("{{port: p{i}}}"))
        );
        assert_one_problem(
            &kubernetes,
            "t.yaml:7:5: error: spec.ingress[0]: compiles to up to 6000 nft rules",
        );
        // Numeric ports are one condition per protocol: 100 peers × 1,000 ports fit.
        let numeric = listed((1..2000).step_by(2), |p| format!("{{port: {p}}}"));
        let kubernetes_numeric = kubernetes.replace(
            &kubernetes[kubernetes.find("    ports: [").unwrap()..],
            &format!("    ports: [{numeric}]\n"),
        );
        assert!(problems(&kubernetes_numeric).is_empty());
        // Admin policies: every peer times the ports.
        let admin_peers: Vec<String> = (0..100)
            .map(|i| format!("{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: a{i}}}}}}}}}"))
            .collect();
        let admin = format!(
            "apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: wide}}
spec:
  priority: 10
  subject: {{namespaces: {{}}}}
  ingress:
  - action: Allow
    from: [{}]
    ports: [{}]
",
            admin_peers.join(", "),
            listed(0..30, |i| format!("{{namedPort: p{i}}}"))
        );
        assert_one_problem(
            &admin,
            "t.yaml:8:5: error: spec.ingress[0]: compiles to up to ",
        );
    }

    #[test]
    fn rules_each_under_the_cap_are_capped_together() {
        // 100 pod peers × 20 named ports × 2 families = 4,000 a rule, under the rule's
        // cap; 17 such rules (68,000) are over the list's.
        let peers: Vec<String> = (0..100)
            .map(|i| format!("{{podSelector: {{matchLabels: {{app: a{i}}}}}}}"))
            .collect();
        let rule = format!(
            "  - from: [{}]\n    ports: [{}]\n",
            peers.join(", "),
            listed(0..20, |i| format!("{{port: p{i}}}"))
        );
        let policy = |rules: usize| {
            format!(
                "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: many, namespace: a}}
spec:
  podSelector: {{}}
  ingress:
{}",
                rule.repeat(rules)
            )
        };
        assert!(problems(&policy(16)).is_empty());
        assert_one_problem(
            &policy(17),
            "t.yaml:7:5: error: spec.ingress: these rules compile to up to 68000 nft rules in all; at most 65536",
        );
    }
}
