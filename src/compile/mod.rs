//! NetworkPolicy semantics → `ir::Ruleset`. Pure and deterministic: no I/O, and
//! the output depends only on the model's content.
//!
//! Layout (see README "Rule layout"):
//! - Two forward base chains: `forward_egress` (priority filter) dispatches on the
//!   input interface to the sender's egress chain, `forward_ingress` (filter + 1) on
//!   the output interface to the receiver's ingress chain. An `accept` ends only its
//!   own base chain, so traffic between two local endpoints must pass both.
//! - `input_egress` applies a workload's egress policy to traffic it sends to the
//!   host itself. Traffic from the host to its workloads is never filtered (S9).
//! - Per local endpoint, `ep_<h>_out` / `ep_<h>_in`: invalid-state drop,
//!   anti-spoofing (egress), a jump to each selecting policy's chain, and a final
//!   drop when the endpoint is isolated in that direction (accept otherwise).
//! - Per policy and governed direction, `pol_<h>_out` / `pol_<h>_in`: one accepting
//!   rule per (peer × port group); no match returns to the endpoint chain.
//! - Selector membership lives in named sets, shared by every rule with the same
//!   selector, so an endpoint that comes, goes or is relabelled changes set elements,
//!   never rules.
//! - netpold.io policies (`tiered`): `tp_<h>_*` chains in the same ordered sequence,
//!   the Kubernetes policies at order 1000; a Pass goes on to the endpoint's
//!   `epk_<h>_*` chain through the `*_pass` verdict maps.
//! - Every drop and every policy rule counts its packets. With `Options::drop_log`, a
//!   rate-limited log rule with the same conditions goes right before each drop of an
//!   isolated endpoint and each anti-spoofing drop (prefix: `droplog`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

pub mod failsafe;
mod host;
mod incremental;
mod origins;
mod tiered;

pub use failsafe::{Failsafe, FailsafePort};
pub use host::{
    HOST_FORWARD_IN, HOST_FORWARD_IN_MAP, HOST_FORWARD_OUT, HOST_FORWARD_OUT_MAP, HOST_IN_MAP,
    HOST_INPUT, HOST_OUT_MAP, HOST_OUTPUT,
};
pub use incremental::Incremental;
pub use origins::{ChainOrigin, ObjectKey, Origins, explainable};
pub use tiered::{
    ADMIN_EGRESS_PASS_MAP, ADMIN_INGRESS_PASS_MAP, EGRESS_PASS_MAP, INGRESS_PASS_MAP,
    policy_log_prefix, tier_rule_alternatives,
};

use crate::droplog::{DropCause, drop_prefix};
use crate::index::{Index, Namespaces};
use crate::ir::*;
use crate::model::{
    Direction, Endpoint, IpBlock, Model, NetworkPolicy, Peer, PortMatch, Protocol,
    Rule as PolicyRule, TieredPolicy,
};
use crate::selector::{LabelSelector, Labels};

/// What the ruleset depends on besides the model: the configuration's choices.
/// `Options::default()` logs nothing (the configuration's default, `log_denied =
/// true`, is `config::Config::compile_options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Log dropped packets before dropping them; `None`: count them only.
    pub drop_log: Option<DropLog>,
    /// Always allowed to and from host endpoints (default: the configuration's default).
    pub failsafe: Failsafe,
}

/// How dropped packets are logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropLog {
    /// NFLOG group; `None`: the kernel log.
    pub group: Option<u16>,
    /// Packets a second each log rule logs at most, after a burst of `burst`.
    pub rate: u32,
    pub burst: u32,
}

/// Names of the fixed objects of the table.
pub const EGRESS_MAP: &str = "egress_dispatch";
pub const INGRESS_MAP: &str = "ingress_dispatch";
pub const FORWARD_EGRESS: &str = "forward_egress";
pub const FORWARD_INGRESS: &str = "forward_ingress";
pub const INPUT_EGRESS: &str = "input_egress";

/// The set of this node's endpoint addresses, per family.
pub fn local_set(family: Family) -> String {
    match family {
        Family::V4 => "local_addrs4".into(),
        Family::V6 => "local_addrs6".into(),
    }
}

/// ICMPv6 router solicitation, neighbour solicitation and advertisement: a
/// workload must be able to resolve the host's address whatever its policy says.
const NEIGHBOUR_DISCOVERY: [u8; 3] = [133, 135, 136];

const IPV6_LINK_LOCAL: IpNet = IpNet::V6(
    match ipnet::Ipv6Net::new(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10) {
        Ok(net) => net,
        Err(_) => panic!("fe80::/10 is a valid prefix"),
    },
);

/// FNV-1a, 64 bits, with the MurmurHash3 finaliser so that similar keys get
/// unrelated names: stable across runs, platforms and releases, unlike `std`'s hasher.
fn stable_hash(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    format!("{h:016x}")
}

/// Kernel object names: `<prefix>_<hash of key><suffix>`, bounded in length. Two keys
/// whose hashes collide must never share an object (that would merge two selectors), so
/// the later one, in the compiler's deterministic order, is rehashed.
#[derive(Default)]
struct Names {
    by_key: HashMap<String, String>,
    owner: HashMap<String, String>,
    /// Some name needed a salt.
    salted: bool,
}

impl Names {
    fn get(&mut self, prefix: &str, key: &str, suffix: &str) -> String {
        let full_key = format!("{prefix}\0{key}\0{suffix}");
        if let Some(name) = self.by_key.get(&full_key) {
            return name.clone();
        }
        let mut salt = 0u32;
        loop {
            let hash = if salt == 0 {
                stable_hash(key)
            } else {
                stable_hash(&format!("{key}\0{salt}"))
            };
            let name = format!("{prefix}_{hash}{suffix}");
            self.salted |= salt > 0;
            if !self.owner.contains_key(&name) {
                self.owner.insert(name.clone(), full_key.clone());
                self.by_key.insert(full_key, name.clone());
                return name;
            }
            salt += 1;
        }
    }
}

fn namespaces_key(ns: &Namespaces) -> String {
    match ns {
        Namespaces::Exactly(name) => format!("ns={name}"),
        Namespaces::Matching(sel) => format!("nssel={sel}"),
    }
}

fn block_key(block: &IpBlock) -> String {
    let excepts: Vec<String> = block.except.iter().map(ToString::to_string).collect();
    format!("{} except {}", block.cidr, excepts.join(","))
}

/// Beyond this many addresses (of one family, link-local included) an endpoint's
/// anti-spoofing rule looks its addresses up in a named set.
const MAX_INLINE_OWN_ADDRESSES: usize = 8;

/// `_in` or `_out`: the direction a chain filters, in its name.
fn chain_suffix(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "_in",
        Direction::Egress => "_out",
    }
}

fn family_digit(family: Family) -> char {
    match family {
        Family::V4 => '4',
        Family::V6 => '6',
    }
}

fn describe_namespaces(ns: &Namespaces) -> String {
    match ns {
        Namespaces::Exactly(name) => format!("namespace {name}"),
        Namespaces::Matching(sel) => format!("namespaces {sel}"),
    }
}

/// Where a peer's addresses come from, before a set is made of them.
enum PeerAddr<'p> {
    Pods(Namespaces, &'p LabelSelector),
    Block(&'p IpBlock),
}

/// Which endpoints a named port is resolved on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PortScope {
    Pods(Namespaces, LabelSelector),
    Block(IpBlock),
}

/// The destination-port condition of one generated rule.
#[derive(Clone, Debug)]
enum PortCond {
    AnyTraffic,
    Protocol(Protocol),
    Ranges(Protocol, Vec<(u16, u16)>),
    Named(String, Protocol),
}

/// Rule ports → conditions: numeric ports of one protocol merge into ranges, one
/// condition each; "any port" of a protocol absorbs its ranges; named ports stand alone.
fn port_conditions(rule: &PolicyRule) -> Vec<PortCond> {
    if rule.ports.is_empty() {
        return vec![PortCond::AnyTraffic];
    }
    let mut any: BTreeSet<Protocol> = BTreeSet::new();
    let mut ranges: BTreeMap<Protocol, BTreeSet<(u16, u16)>> = BTreeMap::new();
    let mut named: BTreeSet<(String, Protocol)> = BTreeSet::new();
    for p in &rule.ports {
        match &p.port {
            PortMatch::Any => {
                any.insert(p.protocol);
            }
            PortMatch::Range(a, b) => {
                ranges.entry(p.protocol).or_default().insert((*a, *b));
            }
            PortMatch::Named(n) => {
                named.insert((n.clone(), p.protocol));
            }
        }
    }
    let mut out: Vec<PortCond> = Vec::new();
    for proto in Protocol::ALL {
        if any.contains(&proto) {
            out.push(PortCond::Protocol(proto));
        } else if let Some(r) = ranges.get(&proto) {
            out.extend(
                split_ranges(merge_ranges(r))
                    .into_iter()
                    .map(|ranges| PortCond::Ranges(proto, ranges)),
            );
        }
    }
    for (name, proto) in named {
        // A named port of a protocol already open on every port adds nothing.
        if !any.contains(&proto) {
            out.push(PortCond::Named(name, proto));
        }
    }
    out
}

/// Most merged port ranges of one protocol and end that get a rule each.
pub const SPLIT_RANGES: usize = 4;

/// Merged port ranges as the port lists of alternative rules: a rule per range, not
/// `dport { … }`, since the kernel binds every anonymous set by walking the whole
/// transaction (quadratic at scale); but more than `SPLIT_RANGES` ranges go in one
/// set, so a long port list is one rule, not one per range (times the other end's).
fn split_ranges(ranges: Vec<(u16, u16)>) -> Vec<Vec<(u16, u16)>> {
    if ranges.len() > SPLIT_RANGES {
        vec![ranges]
    } else {
        ranges.into_iter().map(|r| vec![r]).collect()
    }
}

/// Most nft rules one manifest rule may compile to; above it the rule is refused as
/// invalid, so that a few kilobytes of ports and peers cannot make millions of rules.
pub const MAX_RULE_ALTERNATIVES: usize = 4096;

/// How many nft rules `rule` compiles to in a policy chain: per peer (each address
/// family of it) one per port condition, a named port without peer once per family.
pub fn policy_rule_alternatives(rule: &PolicyRule) -> usize {
    let conds = port_conditions(rule);
    let named = conds
        .iter()
        .filter(|c| matches!(c, PortCond::Named(..)))
        .count();
    let mut peers: Vec<&Peer> = rule.peers.iter().collect();
    peers.sort();
    peers.dedup();
    if peers.is_empty() {
        return conds.len() + named;
    }
    peers
        .iter()
        .map(|p| match p {
            Peer::Pods { .. } => 2 * conds.len(),
            Peer::IpBlock(_) => conds.len(),
        })
        .fold(0, usize::saturating_add)
}

/// Sorted, non-overlapping, non-adjacent ranges (nft refuses overlapping set elements).
fn merge_ranges(ranges: &BTreeSet<(u16, u16)>) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    for &(a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `cidr` minus every `except`, as sorted disjoint inclusive ranges.
/// Inclusive address ranges as interval-set elements (a single address as itself).
pub fn range_elements(ranges: Vec<(IpAddr, IpAddr)>) -> BTreeSet<Element> {
    ranges
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                Element::Addr(a)
            } else {
                Element::Range(a, b)
            }
        })
        .collect()
}

pub fn block_ranges(block: &IpBlock) -> Vec<(IpAddr, IpAddr)> {
    let to_u128 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let from_u128 = |n: u128| match block.cidr {
        IpNet::V4(_) => IpAddr::V4((n as u32).into()),
        IpNet::V6(_) => IpAddr::V6(n.into()),
    };
    let span = |net: &IpNet| (to_u128(net.network()), to_u128(net.broadcast()));
    let mut holes: Vec<(u128, u128)> = block.except.iter().map(span).collect();
    holes.sort_unstable();
    let (start, end) = span(&block.cidr);
    let mut out = Vec::new();
    let mut cursor = Some(start);
    for (h_start, h_end) in holes {
        let Some(c) = cursor else { break };
        if h_start > c {
            out.push((from_u128(c), from_u128(h_start - 1)));
        }
        if h_end >= c {
            cursor = if h_end >= end { None } else { Some(h_end + 1) };
        }
    }
    if let Some(c) = cursor {
        out.push((from_u128(c), from_u128(end)));
    }
    out
}

struct Compiler<'m> {
    model: &'m Model,
    /// Built on first use: an incremental update that creates no set needs none.
    index: Option<Index<'m>>,
    state: State,
}

/// What a compilation keeps to be updated later: names given, the output, and how to
/// recompute the members of each selector set.
#[derive(Default)]
struct State {
    /// Present when `explainable` asks where chains come from.
    origins: Option<Origins>,
    names: Names,
    out: Ruleset,
    defs: Defs,
    /// Present while an incremental update records what it touches.
    log: Option<incremental::ChangeLog>,
    options: Options,
    /// The policies with chains here (Kubernetes ones as `ns/name`, others by
    /// `TieredPolicy::label`): those that select a local endpoint or host endpoint.
    enforced: BTreeSet<String>,
}

/// The selector sets' definitions, kept by the namespaces whose endpoints can be
/// members: an edited endpoint is checked against its namespace's sets and the sets of
/// the namespace selectors its namespace matches, not against every set.
#[derive(Default)]
struct Defs {
    by_namespace: HashMap<String, BTreeMap<String, SetDef>>,
    /// By namespace selector; `None`: an ipBlock's named port, any namespace.
    by_selector: BTreeMap<Option<LabelSelector>, BTreeMap<String, SetDef>>,
    /// Where each set is kept.
    scope: HashMap<String, DefScope>,
}

#[derive(Clone)]
enum DefScope {
    Namespace(String),
    Selector(Option<LabelSelector>),
}

impl Defs {
    fn insert(&mut self, name: String, def: SetDef) {
        self.remove(&name);
        let scope = def.scope();
        self.scope.insert(name.clone(), scope.clone());
        match scope {
            DefScope::Namespace(ns) => self.by_namespace.entry(ns).or_default(),
            DefScope::Selector(sel) => self.by_selector.entry(sel).or_default(),
        }
        .insert(name, def);
    }

    fn remove(&mut self, name: &str) {
        match self.scope.remove(name) {
            Some(DefScope::Namespace(ns)) => {
                if let Some(defs) = self.by_namespace.get_mut(&ns) {
                    defs.remove(name);
                    if defs.is_empty() {
                        self.by_namespace.remove(&ns);
                    }
                }
            }
            Some(DefScope::Selector(sel)) => {
                if let Some(defs) = self.by_selector.get_mut(&sel) {
                    defs.remove(name);
                    if defs.is_empty() {
                        self.by_selector.remove(&sel);
                    }
                }
            }
            None => {}
        }
    }

    /// The sets of the namespace selectors that match `before` but not `after`
    /// (`join` false) or the other way round (`join` true).
    fn flipped<'d>(
        &'d self,
        before: &'d Labels,
        after: &'d Labels,
        join: bool,
    ) -> impl Iterator<Item = (&'d str, &'d SetDef)> {
        self.by_selector
            .iter()
            .filter_map(|(sel, defs)| Some((sel.as_ref()?, defs)))
            .filter(move |(sel, _)| {
                sel.matches(if join { after } else { before })
                    && !sel.matches(if join { before } else { after })
            })
            .flat_map(|(_, defs)| defs)
            .map(|(name, def)| (name.as_str(), def))
    }

    /// The sets an endpoint of namespace `ns`, labelled `labels`, can be a member of.
    fn for_namespace<'d>(
        &'d self,
        ns: &str,
        labels: &'d Labels,
    ) -> impl Iterator<Item = (&'d str, &'d SetDef)> {
        let selected = self
            .by_selector
            .iter()
            .filter(move |(sel, _)| sel.as_ref().is_none_or(|s| s.matches(labels)))
            .flat_map(|(_, defs)| defs);
        self.by_namespace
            .get(ns)
            .into_iter()
            .flatten()
            .chain(selected)
            .map(|(name, def)| (name.as_str(), def))
    }
}

/// What decides a selector set's members, so that one endpoint can be re-evaluated
/// against it without selecting over the whole model.
#[derive(Clone, Debug)]
enum SetDef {
    Pods {
        ns: Namespaces,
        pods: LabelSelector,
        family: Family,
    },
    Port {
        scope: PortScope,
        port: String,
        protocol: Protocol,
        family: Family,
    },
}

impl SetDef {
    /// The namespaces whose endpoints can be members.
    fn scope(&self) -> DefScope {
        match self {
            SetDef::Pods { ns, .. }
            | SetDef::Port {
                scope: PortScope::Pods(ns, _),
                ..
            } => match ns {
                Namespaces::Exactly(name) => DefScope::Namespace(name.clone()),
                Namespaces::Matching(sel) => DefScope::Selector(Some(sel.clone())),
            },
            SetDef::Port {
                scope: PortScope::Block(_),
                ..
            } => DefScope::Selector(None),
        }
    }
}

/// Compiles the model for the node named `node` into table `table`, with
/// `Options::default()` (no drop logs).
pub fn compile(model: &Model, node: &str, table: &str) -> Ruleset {
    compile_with(model, node, table, &Options::default())
}

/// Compiles the model for the node named `node` into table `table`.
pub fn compile_with(model: &Model, node: &str, table: &str, options: &Options) -> Ruleset {
    let state = State {
        options: options.clone(),
        ..State::default()
    };
    let mut c = Compiler::new(model, table, state);
    c.compile(node);
    c.state.out
}

impl<'m> Compiler<'m> {
    fn new(model: &'m Model, table: &str, mut state: State) -> Compiler<'m> {
        state.out.table = table.to_owned();
        Compiler {
            model,
            index: None,
            state,
        }
    }

    fn index(&mut self) -> &mut Index<'m> {
        self.index.get_or_insert_with(|| Index::new(self.model))
    }

    /// The endpoints `pods` selects in `ns`. An incremental update (the one kind of
    /// compilation that logs) that makes a new set looks at the namespaces in scope
    /// only, rather than index the whole model.
    fn selected(&mut self, ns: &Namespaces, pods: &LabelSelector) -> Vec<&'m Endpoint> {
        let model = self.model;
        if self.index.is_none() && self.state.log.is_some() {
            let in_namespace = |name: &'m str| {
                model
                    .endpoints
                    .range((name.to_owned(), String::new())..)
                    .take_while(move |((n, _), _)| n == name)
                    .map(|(_, ep)| ep)
            };
            let scope: Vec<&'m Endpoint> = match ns {
                Namespaces::Exactly(name) => match model.namespaces.get_key_value(name) {
                    Some((name, _)) => in_namespace(name).collect(),
                    None => Vec::new(),
                },
                Namespaces::Matching(sel) => model
                    .namespaces
                    .values()
                    .filter(|n| sel.matches(&n.labels))
                    .flat_map(|n| in_namespace(&n.name))
                    .collect(),
            };
            return scope
                .into_iter()
                .filter(|ep| pods.matches(&ep.labels))
                .collect();
        }
        let selected = self.index().select(ns, pods).to_vec();
        selected
            .iter()
            .map(|&i| self.index().endpoints[i])
            .collect()
    }

    /// Records that the set `name` was created (for an incremental update's log).
    fn note_created_set(&mut self, name: &str) {
        if let Some(log) = &mut self.state.log {
            log.sets.entry(name.to_owned()).or_insert(None);
        }
    }

    fn compile(&mut self, node: &str) {
        // Which policies select each endpoint, per direction, in policy order.
        let mut selecting: BTreeMap<(usize, Direction), Vec<&'m NetworkPolicy>> = BTreeMap::new();
        for policy in self.model.policies.values() {
            let scope = Namespaces::Exactly(policy.namespace.clone());
            let selected = self.index().select(&scope, &policy.pod_selector).to_vec();
            // A policy that selects none of this node's endpoints is enforced elsewhere:
            // no chain and no sets here.
            let enforced_here = selected
                .iter()
                .any(|&i| self.index().endpoints[i].is_local(node));
            for direction in Direction::BOTH {
                if policy.rules(direction).is_none() {
                    continue;
                }
                if enforced_here {
                    self.policy_chain(policy, direction);
                }
                for &i in &selected {
                    selecting.entry((i, direction)).or_default().push(policy);
                }
            }
        }
        // The netpold.io policies selecting each endpoint, per direction, by order.
        let mut tiered_selecting: BTreeMap<(usize, Direction), Vec<&'m TieredPolicy>> =
            BTreeMap::new();
        let mut ordered: Vec<&'m TieredPolicy> = self
            .model
            .tiered
            .values()
            .filter(|p| p.is_ordered() && self.model.applies_on(p, node))
            .collect();
        ordered.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        // The admin policies: AdminNetworkPolicies by (priority, name), then the
        // BaselineAdminNetworkPolicy; with the endpoints each selects.
        let mut admin: Vec<&'m TieredPolicy> = self
            .model
            .tiered
            .values()
            .filter(|p| p.admin.is_some() && self.model.applies_on(p, node))
            .collect();
        admin.sort_by_key(|p| {
            let a = p.admin.as_ref().expect("admin");
            (a.baseline, a.priority, p.name.as_str())
        });
        let mut admin_selecting: BTreeMap<(usize, Direction), Vec<&'m TieredPolicy>> =
            BTreeMap::new();
        for &policy in &admin {
            self.tiered_chains_and_members(policy, node, &mut admin_selecting);
        }
        let mut admin_pass: [BTreeMap<String, Verdict>; 2] = Default::default();
        for &policy in &ordered {
            self.tiered_chains_and_members(policy, node, &mut tiered_selecting);
        }
        let mut egress_map = BTreeMap::new();
        let mut ingress_map = BTreeMap::new();
        let mut egress_pass = BTreeMap::new();
        let mut ingress_pass = BTreeMap::new();
        for i in 0..self.index().endpoints.len() {
            let ep = self.index().endpoints[i];
            if !ep.is_local(node) {
                continue;
            }
            for direction in Direction::BOTH {
                let policies = selecting
                    .get(&(i, direction))
                    .map_or(&[][..], Vec::as_slice);
                let tiered = tiered_selecting
                    .get(&(i, direction))
                    .map_or(&[][..], Vec::as_slice);
                let (anps, baseline): (Vec<&TieredPolicy>, Option<&TieredPolicy>) = {
                    let all = admin_selecting
                        .get(&(i, direction))
                        .map_or(&[][..], Vec::as_slice);
                    (
                        all.iter()
                            .copied()
                            .filter(|p| !p.admin.as_ref().expect("admin").baseline)
                            .collect(),
                        all.iter()
                            .copied()
                            .find(|p| p.admin.as_ref().expect("admin").baseline),
                    )
                };
                let (name, rest) =
                    self.endpoint_chain(ep, direction, policies, tiered, &anps, baseline);
                let (map, pass) = match direction {
                    Direction::Egress => (&mut egress_map, &mut egress_pass),
                    Direction::Ingress => (&mut ingress_map, &mut ingress_pass),
                };
                map.insert(ep.interface.clone(), Verdict::Goto(name));
                if tiered.iter().any(|p| tiered::has_pass(p, direction)) {
                    let name = self.kubernetes_chain(ep, direction, policies, baseline);
                    pass.insert(ep.interface.clone(), Verdict::Goto(name));
                }
                if let Some(rest) = rest {
                    admin_pass[usize::from(direction == Direction::Egress)]
                        .insert(ep.interface.clone(), Verdict::Goto(rest));
                }
            }
        }
        if !admin.is_empty() {
            let [ingress_admin, egress_admin] = admin_pass;
            self.state.out.maps.insert(
                ADMIN_EGRESS_PASS_MAP.to_owned(),
                VerdictMap {
                    entries: egress_admin,
                    comment: "sender interface -> its policies after an AdminNetworkPolicy Pass"
                        .into(),
                },
            );
            self.state.out.maps.insert(
                ADMIN_INGRESS_PASS_MAP.to_owned(),
                VerdictMap {
                    entries: ingress_admin,
                    comment: "receiver interface -> its policies after an AdminNetworkPolicy Pass"
                        .into(),
                },
            );
        }
        if !ordered.is_empty() {
            self.state.out.maps.insert(
                EGRESS_PASS_MAP.to_owned(),
                VerdictMap {
                    entries: egress_pass,
                    comment: "sender interface -> its Kubernetes NetworkPolicies after a Pass"
                        .into(),
                },
            );
            self.state.out.maps.insert(
                INGRESS_PASS_MAP.to_owned(),
                VerdictMap {
                    entries: ingress_pass,
                    comment: "receiver interface -> its Kubernetes NetworkPolicies after a Pass"
                        .into(),
                },
            );
        }
        self.state.out.maps.insert(
            EGRESS_MAP.to_owned(),
            VerdictMap {
                entries: egress_map,
                comment: "sender interface -> endpoint egress chain".into(),
            },
        );
        self.state.out.maps.insert(
            INGRESS_MAP.to_owned(),
            VerdictMap {
                entries: ingress_map,
                comment: "receiver interface -> endpoint ingress chain".into(),
            },
        );
        self.host_endpoints(node, &ordered);
        let local: Vec<IpAddr> = self
            .index()
            .endpoints
            .iter()
            .filter(|ep| ep.is_local(node))
            .flat_map(|ep| ep.ips.iter().copied())
            .collect();
        self.base_chains(&local);
    }

    /// Base chains. Packets from an endpoint's interface are dispatched before anything
    /// else can accept them, so anti-spoofing holds for established flows too; a packet
    /// from any other interface carrying a local endpoint's address is spoofed.
    fn base_chains(&mut self, local: &[IpAddr]) {
        for family in Family::BOTH {
            let elements = local
                .iter()
                .filter(|ip| Family::of(ip) == family)
                .map(|ip| Element::Addr(*ip))
                .collect();
            let comment = "addresses of this node's endpoints".to_owned();
            self.state.out.sets.insert(
                local_set(family),
                Set {
                    kind: SetKind::Addr(family),
                    elements,
                    comment,
                },
            );
        }
        let dispatch = |side, map: &str, what: &str| {
            Rule::new(
                vec![],
                Verdict::Map {
                    side,
                    map: map.into(),
                },
            )
            .with_comment(what)
        };
        let mut foreign_spoof = Vec::new();
        for family in Family::BOTH {
            let matches = vec![Match::Addr {
                side: AddrSide::Src,
                family,
                negate: false,
                source: AddrSource::Set(local_set(family)),
            }];
            let comment = "a local endpoint's address from another interface";
            // No endpoint to name: the logged source address says whose address it is.
            foreign_spoof.extend(self.logged_drop(
                matches,
                Direction::Egress,
                None,
                DropCause::Spoofed,
                comment.to_owned(),
            ));
        }
        let base = |hook, priority| {
            Some(BaseChain {
                hook,
                priority,
                policy_accept: true,
            })
        };
        self.state.out.chains.insert(
            FORWARD_EGRESS.into(),
            Chain {
                base: base(Hook::Forward, 0),
                rules: [dispatch(
                    IfSide::In,
                    EGRESS_MAP,
                    "to the sender's egress chain",
                )]
                .into_iter()
                .chain(foreign_spoof.iter().cloned())
                .collect(),
                comment: "forwarded traffic: the sender's egress policy".into(),
            },
        );
        self.state.out.chains.insert(
            FORWARD_INGRESS.into(),
            Chain {
                base: base(Hook::Forward, 1),
                rules: vec![
                    Rule::new(
                        vec![Match::Ct(CtState::EstablishedOrRelated)],
                        Verdict::Accept,
                    )
                    .with_comment("replies and related traffic of allowed connections"),
                    dispatch(IfSide::Out, INGRESS_MAP, "to the receiver's ingress chain"),
                ],
                comment: "forwarded traffic: the receiver's ingress policy".into(),
            },
        );
        self.state.out.chains.insert(
            INPUT_EGRESS.into(),
            Chain {
                base: base(Hook::Input, 0),
                rules: [
                    // Before anti-spoofing: duplicate address detection sends from `::`.
                    Rule::new(
                        vec![Match::Icmpv6Types(NEIGHBOUR_DISCOVERY.to_vec())],
                        Verdict::Accept,
                    )
                    .with_comment("neighbour discovery with the host"),
                    dispatch(IfSide::In, EGRESS_MAP, "to the sender's egress chain"),
                ]
                .into_iter()
                .chain(foreign_spoof)
                .collect(),
                comment: "traffic to the host: the sender's egress policy".into(),
            },
        );
    }

    /// The chains of a netpold.io or admin policy, when it selects an endpoint of
    /// `node`, and the endpoints (by index) it selects in each direction it governs.
    fn tiered_chains_and_members(
        &mut self,
        policy: &'m TieredPolicy,
        node: &str,
        selecting: &mut BTreeMap<(usize, Direction), Vec<&'m TieredPolicy>>,
    ) {
        let mut enforced_here = false;
        for i in 0..self.index().endpoints.len() {
            let ep = self.index().endpoints[i];
            let Some(ns) = self.model.namespaces.get(&ep.namespace) else {
                continue;
            };
            if !tiered::tiered_selects(policy, ep, &ns.labels) {
                continue;
            }
            enforced_here |= ep.is_local(node);
            for direction in Direction::BOTH {
                if policy.rules(direction).is_some() {
                    selecting.entry((i, direction)).or_default().push(policy);
                }
            }
        }
        // Host endpoints make their own copies of the chains (`tph_`).
        if enforced_here {
            for direction in Direction::BOTH {
                if policy.rules(direction).is_some() {
                    self.tiered_chain(policy, direction);
                }
            }
        }
    }

    fn endpoint_chain(
        &mut self,
        ep: &Endpoint,
        direction: Direction,
        policies: &[&NetworkPolicy],
        tiered: &[&TieredPolicy],
        anps: &[&TieredPolicy],
        baseline: Option<&TieredPolicy>,
    ) -> (String, Option<String>) {
        let name = self.endpoint_chain_name(ep, direction);
        let id = ep.id();
        let mut rules = Vec::new();
        if direction == Direction::Egress {
            for family in Family::BOTH {
                let mut own: Vec<IpNet> = ep
                    .ips
                    .iter()
                    .filter(|ip| Family::of(ip) == family)
                    .map(|ip| IpNet::from(*ip))
                    .collect();
                // Link-local sources never leave the link, and a workload needs its own to
                // talk to the host (IPv6 gateway, MLD, DHCPv6); its egress policy still applies.
                if family == Family::V6 {
                    own.push(IPV6_LINK_LOCAL);
                }
                own.sort();
                // One `!=` per address rather than `!= { … }`: an anonymous set per
                // endpoint makes the kernel's transaction cost grow with the square
                // of the endpoint count. An endpoint with many addresses gets a named
                // set instead, as a rule takes at most 128 expressions.
                let spoof: Vec<Match> = if own.is_empty() {
                    vec![Match::Family(family)]
                } else if own.len() > MAX_INLINE_OWN_ADDRESSES {
                    vec![Match::Addr {
                        side: AddrSide::Src,
                        family,
                        negate: true,
                        source: AddrSource::Set(self.own_addresses_set(ep, family, &own)),
                    }]
                } else {
                    own.into_iter()
                        .map(|net| Match::Addr {
                            side: AddrSide::Src,
                            family,
                            negate: true,
                            source: AddrSource::List(vec![net]),
                        })
                        .collect()
                };
                let comment = comment_around("", &id, ": spoofed source");
                rules.extend(self.logged_drop(
                    spoof,
                    Direction::Egress,
                    Some(&id),
                    DropCause::Spoofed,
                    comment,
                ));
            }
            // Egress is dispatched before any conntrack verdict (see `base_chains`).
            rules.push(
                Rule::new(
                    vec![Match::Ct(CtState::EstablishedOrRelated)],
                    Verdict::Accept,
                )
                .with_comment("replies and related traffic of allowed connections"),
            );
        }
        // Counted but not logged: mostly late retransmissions of closed connections,
        // which would crowd the drops that policies make out of the log.
        rules.push(
            Rule::new(vec![Match::Ct(CtState::Invalid)], Verdict::Drop)
                .counted()
                .with_comment("no connection state"),
        );
        // The AdminNetworkPolicies first, by (priority, name): an Allow or Deny is
        // final, a Pass goes to `epr_` (the rest of this chain) by the admin pass map.
        for policy in anps {
            let priority = policy.admin.as_ref().map_or(0, |a| a.priority);
            rules.push(
                Rule::new(
                    vec![],
                    Verdict::Jump(self.tiered_chain_name(policy, direction)),
                )
                .with_comment(bounded_comment(&format!(
                    "{} (priority {priority})",
                    policy.label()
                ))),
            );
        }
        let rest_from = rules.len();
        // One ordered sequence: netpold.io policies by (order, name, namespace), the
        // Kubernetes NetworkPolicies at order 1000 among them (in model order).
        let mut k8s = policies.iter().peekable();
        let mut ordered = tiered.iter().peekable();
        let mut order = Vec::new();
        loop {
            let take_k8s = match (k8s.peek(), ordered.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(p), Some(t)) => {
                    (
                        false,
                        Some(crate::model::tiered::Order::KUBERNETES),
                        p.name.as_str(),
                        p.namespace.as_str(),
                    ) <= t.sort_key()
                }
            };
            if take_k8s {
                let policy = k8s.next().expect("peeked");
                order.push(policy.id());
                rules.push(
                    Rule::new(
                        vec![],
                        Verdict::Jump(self.policy_chain_name(policy, direction)),
                    )
                    .with_comment(comment_around("policy ", &policy.id(), "")),
                );
            } else {
                let policy = ordered.next().expect("peeked");
                order.push(policy.label());
                let at = policy
                    .order
                    .map_or_else(|| "none".to_owned(), |o| o.to_string());
                rules.push(
                    Rule::new(
                        vec![],
                        Verdict::Jump(self.tiered_chain_name(policy, direction)),
                    )
                    .with_comment(bounded_comment(&format!("{} (order {at})", policy.label()))),
                );
            }
        }
        if policies.is_empty() && tiered.is_empty() {
            // Not isolated: the BaselineAdminNetworkPolicy has its say.
            if let Some(b) = baseline {
                rules.push(
                    Rule::new(vec![], Verdict::Jump(self.tiered_chain_name(b, direction)))
                        .with_comment(bounded_comment(&b.label())),
                );
            }
            rules.push(
                Rule::new(vec![], Verdict::Accept).with_comment(comment_around(
                    "",
                    &id,
                    &format!(": no {direction} policy"),
                )),
            );
        } else {
            let comment = comment_around(
                "",
                &id,
                &format!(": isolated for {direction}, no rule allows"),
            );
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
                comment: comment_around(
                    "endpoint ",
                    &id,
                    &format!(" {direction} ({})", ep.interface),
                ),
            },
        );
        if let Some(origins) = &mut self.state.origins {
            origins.note(
                &name,
                ChainOrigin::Endpoint {
                    endpoint: (ep.namespace.clone(), ep.name.clone()),
                    direction,
                    policies: policies
                        .iter()
                        .map(|p| (p.namespace.clone(), p.name.clone()))
                        .collect(),
                    order,
                    last_rule: self.state.out.chains[&name].rules.len() - 1,
                },
            );
        }
        // Where an AdminNetworkPolicy's Pass goes: the rest of the endpoint chain.
        let rest = anps
            .iter()
            .any(|p| tiered::has_pass(p, direction))
            .then(|| {
                let rest = self.admin_rest_chain_name(ep, direction);
                let rules = self.state.out.chains[&name].rules[rest_from..].to_vec();
                self.state.out.chains.insert(
                    rest.clone(),
                    Chain {
                        base: None,
                        rules,
                        comment: comment_around(
                            "endpoint ",
                            &id,
                            &format!(" {direction} after an AdminNetworkPolicy Pass"),
                        ),
                    },
                );
                if let Some(origins) = &mut self.state.origins {
                    origins
                        .admin_rest
                        .insert(rest.clone(), (name.clone(), rest_from));
                }
                rest
            });
        (name, rest)
    }

    fn admin_rest_chain_name(&mut self, ep: &Endpoint, direction: Direction) -> String {
        self.state.names.get(
            "epr",
            &format!("endpoint\0{}\0{}", ep.namespace, ep.name),
            chain_suffix(direction),
        )
    }

    /// The rule that logs what the drop after it, with the same `matches`, drops:
    /// rate-limited (the limit last, so only packets about to be dropped take tokens)
    /// and without a verdict. `None` when drops are not logged.
    /// A counted drop of what `matches` match, with its drop log before it (when drop
    /// logs are on).
    fn logged_drop(
        &self,
        matches: Vec<Match>,
        direction: Direction,
        endpoint: Option<&str>,
        cause: DropCause,
        comment: String,
    ) -> Vec<Rule> {
        let mut rules: Vec<Rule> = self
            .drop_log_rule(&matches, direction, endpoint, cause, &comment)
            .into_iter()
            .collect();
        rules.push(
            Rule::new(matches, Verdict::Drop)
                .counted()
                .with_comment(comment),
        );
        rules
    }

    fn drop_log_rule(
        &self,
        matches: &[Match],
        direction: Direction,
        endpoint: Option<&str>,
        cause: DropCause,
        comment: &str,
    ) -> Option<Rule> {
        let log = self.state.options.drop_log?;
        let mut matches = matches.to_vec();
        matches.push(Match::Limit {
            rate: log.rate,
            burst: log.burst,
        });
        Some(Rule {
            matches,
            counter: false,
            log: Some(Log {
                prefix: drop_prefix(direction, endpoint, cause),
                group: log.group,
            }),
            verdict: None,
            comment: Some(bounded_comment(comment)),
        })
    }

    fn policy_chain(&mut self, policy: &NetworkPolicy, direction: Direction) {
        let mut rules = Vec::new();
        // The policy rule each chain rule comes from, when origins are recorded.
        let mut from_rule = Vec::new();
        let own = Namespaces::Exactly(policy.namespace.clone());
        for (i, rule) in policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let comment = comment_around("", &policy.id(), &format!(" {direction}[{i}]"));
            // Peers are alternatives: sorted, so their order in the file does not change the plan.
            let peers: Vec<Option<&Peer>> = if rule.peers.is_empty() {
                vec![None]
            } else {
                let mut peers: Vec<Option<&Peer>> = rule.peers.iter().map(Some).collect();
                peers.sort();
                peers.dedup();
                peers
            };
            for peer in peers {
                for cond in port_conditions(rule) {
                    for matches in self.rule_matches(policy, &own, direction, peer, &cond) {
                        rules.push(
                            Rule::new(matches, Verdict::Accept)
                                .counted()
                                .with_comment(comment.clone()),
                        );
                    }
                }
            }
            if self.state.origins.is_some() {
                from_rule.resize(rules.len(), i);
            }
        }
        let name = self.policy_chain_name(policy, direction);
        self.state.enforced.insert(policy.id());
        if let Some(origins) = &mut self.state.origins {
            origins.note(
                &name,
                ChainOrigin::Policy {
                    policy: (policy.namespace.clone(), policy.name.clone()),
                    direction,
                    rules: from_rule,
                },
            );
        }
        self.state.out.chains.insert(
            name,
            Chain {
                base: None,
                rules,
                comment: comment_around("policy ", &policy.id(), &format!(" {direction}")),
            },
        );
    }

    /// The match lists (one per address family where it matters) for one peer and port condition.
    fn rule_matches(
        &mut self,
        policy: &NetworkPolicy,
        own: &Namespaces,
        direction: Direction,
        peer: Option<&Peer>,
        cond: &PortCond,
    ) -> Vec<Vec<Match>> {
        let peer_side = match direction {
            Direction::Ingress => AddrSide::Src,
            Direction::Egress => AddrSide::Dst,
        };
        let peer_in = |family: Family, set: String| Match::Addr {
            side: peer_side,
            family,
            negate: false,
            source: AddrSource::Set(set),
        };
        // The families this peer can match, and what its addresses are for each. The
        // set is only made when a rule looks it up (an egress named port does not).
        let peer_families: Vec<(Option<Family>, Option<PeerAddr>)> = match peer {
            None => vec![(None, None)],
            Some(Peer::Pods { namespaces, pods }) => {
                let ns = Namespaces::resolve(namespaces, &policy.namespace);
                Family::BOTH
                    .into_iter()
                    .map(|f| (Some(f), Some(PeerAddr::Pods(ns.clone(), pods))))
                    .collect()
            }
            Some(Peer::IpBlock(block)) => {
                vec![(
                    Some(Family::of_net(&block.cidr)),
                    Some(PeerAddr::Block(block)),
                )]
            }
        };
        let address = |this: &mut Self, family: Option<Family>, addr: &Option<PeerAddr>| {
            let (Some(f), Some(addr)) = (family, addr) else {
                return None;
            };
            let set = match addr {
                PeerAddr::Pods(ns, pods) => this.addr_set(ns, pods, f),
                PeerAddr::Block(block) => this.block_set(block),
            };
            Some(peer_in(f, set))
        };
        let mut out = Vec::new();
        for (family, addr) in peer_families {
            match cond {
                PortCond::Named(name, protocol) => {
                    // Named ports resolve on the destination: for ingress the policy's own
                    // endpoints; for egress the peer's endpoints (only endpoints have names).
                    let scope = match (direction, peer) {
                        (Direction::Ingress, _) => {
                            PortScope::Pods(own.clone(), policy.pod_selector.clone())
                        }
                        (Direction::Egress, Some(Peer::Pods { namespaces, pods })) => {
                            PortScope::Pods(
                                Namespaces::resolve(namespaces, &policy.namespace),
                                pods.clone(),
                            )
                        }
                        (Direction::Egress, Some(Peer::IpBlock(block))) => {
                            PortScope::Block(block.clone())
                        }
                        (Direction::Egress, None) => PortScope::Pods(
                            Namespaces::Matching(LabelSelector::everything()),
                            LabelSelector::everything(),
                        ),
                    };
                    let families = family.map_or(Family::BOTH.to_vec(), |f| vec![f]);
                    for f in families {
                        let set = self.named_port_set(&scope, name, *protocol, f);
                        let mut m = Vec::new();
                        // For egress the set already pins the destination to the peer.
                        if direction == Direction::Ingress {
                            m.extend(address(self, family, &addr));
                        }
                        m.push(Match::AddrPort {
                            side: AddrSide::Dst,
                            family: f,
                            protocol: *protocol,
                            set,
                            negate: false,
                        });
                        out.push(m);
                    }
                }
                _ => {
                    let mut m: Vec<Match> = address(self, family, &addr).into_iter().collect();
                    match cond {
                        PortCond::AnyTraffic => {}
                        PortCond::Protocol(p) => m.push(Match::Protocol(*p)),
                        PortCond::Ranges(p, r) => m.push(Match::DstPorts {
                            protocol: *p,
                            ranges: r.clone(),
                        }),
                        PortCond::Named(..) => unreachable!(),
                    }
                    out.push(m);
                }
            }
        }
        out
    }

    fn endpoint_chain_name(&mut self, ep: &Endpoint, direction: Direction) -> String {
        self.state.names.get(
            "ep",
            &format!("endpoint\0{}\0{}", ep.namespace, ep.name),
            chain_suffix(direction),
        )
    }

    fn own_addresses_set_name(&mut self, ep: &Endpoint, family: Family) -> String {
        self.state.names.get(
            &format!("a{}", family_digit(family)),
            &format!("own\0{}\0{}", ep.namespace, ep.name),
            "",
        )
    }

    fn policy_chain_name(&mut self, policy: &NetworkPolicy, direction: Direction) -> String {
        self.state.names.get(
            "pol",
            &format!("policy\0{}\0{}", policy.namespace, policy.name),
            chain_suffix(direction),
        )
    }

    fn addr_set(&mut self, ns: &Namespaces, pods: &LabelSelector, family: Family) -> String {
        let key = format!("pods\0{}\0{pods}", namespaces_key(ns));
        let name = self
            .state
            .names
            .get(&format!("s{}", family_digit(family)), &key, "");
        if !self.state.out.sets.contains_key(&name) {
            let elements = self
                .selected(ns, pods)
                .into_iter()
                .flat_map(|ep| ep.ips.iter())
                .filter(|ip| Family::of(ip) == family)
                .map(|ip| Element::Addr(*ip))
                .collect();
            let comment = bounded_comment(&format!("pods {pods} in {}", describe_namespaces(ns)));
            self.state.out.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Addr(family),
                    elements,
                    comment,
                },
            );
            self.state.defs.insert(
                name.clone(),
                SetDef::Pods {
                    ns: ns.clone(),
                    pods: pods.clone(),
                    family,
                },
            );
            self.note_created_set(&name);
        }
        name
    }

    /// The addresses an endpoint may send from, for one with too many to list in a rule.
    fn own_addresses_set(&mut self, ep: &Endpoint, family: Family, own: &[IpNet]) -> String {
        let name = self.own_addresses_set_name(ep, family);
        let elements = own
            .iter()
            .map(|net| {
                if net.prefix_len() == net.max_prefix_len() {
                    Element::Addr(net.addr())
                } else {
                    Element::Range(net.network(), net.broadcast())
                }
            })
            .collect();
        self.state.out.sets.insert(
            name.clone(),
            Set {
                kind: SetKind::Interval(family),
                elements,
                comment: bounded_comment(&format!("addresses of endpoint {}", ep.id())),
            },
        );
        self.note_created_set(&name);
        name
    }

    fn block_set(&mut self, block: &IpBlock) -> String {
        let family = Family::of_net(&block.cidr);
        let excepts: Vec<String> = block.except.iter().map(ToString::to_string).collect();
        let key = format!("block\0{}", block_key(block));
        let name = self
            .state
            .names
            .get(&format!("b{}", family_digit(family)), &key, "");
        if !self.state.out.sets.contains_key(&name) {
            let elements = range_elements(block_ranges(block));
            let comment = if excepts.is_empty() {
                format!("ipBlock {}", block.cidr)
            } else {
                format!("ipBlock {} except {}", block.cidr, excepts.join(" "))
            };
            self.state.out.sets.insert(
                name.clone(),
                Set {
                    kind: SetKind::Interval(family),
                    elements,
                    comment: bounded_comment(&comment),
                },
            );
            self.note_created_set(&name);
        }
        name
    }

    fn named_port_set(
        &mut self,
        scope: &PortScope,
        port: &str,
        protocol: Protocol,
        family: Family,
    ) -> String {
        let scope_key = match scope {
            PortScope::Pods(ns, pods) => format!("pods\0{}\0{pods}", namespaces_key(ns)),
            PortScope::Block(block) => format!("block\0{}", block_key(block)),
        };
        let key = format!("named\0{scope_key}\0{port}\0{protocol}");
        let name = self
            .state
            .names
            .get(&format!("n{}", family_digit(family)), &key, "");
        if self.state.out.sets.contains_key(&name) {
            return name;
        }
        let endpoints: Vec<&Endpoint> = match scope {
            PortScope::Pods(ns, pods) => self.selected(ns, pods),
            PortScope::Block(block) => self
                .model
                .endpoints
                .values()
                .filter(|ep| ep.ips.iter().any(|ip| block.contains(*ip)))
                .collect(),
        };
        let mut elements = BTreeSet::new();
        for ep in endpoints {
            let Some(number) = ep.named_port(port, protocol) else {
                continue;
            };
            for ip in &ep.ips {
                let inside = match scope {
                    PortScope::Block(block) => block.contains(*ip),
                    PortScope::Pods(..) => true,
                };
                if Family::of(ip) == family && inside {
                    elements.insert(Element::AddrPort(*ip, number));
                }
            }
        }
        let what = match scope {
            PortScope::Pods(ns, pods) => format!("pods {pods} in {}", describe_namespaces(ns)),
            PortScope::Block(block) => format!("pods in ipBlock {}", block.cidr),
        };
        let comment = bounded_comment(&format!("port {port}/{protocol} of {what}"));
        self.state.out.sets.insert(
            name.clone(),
            Set {
                kind: SetKind::AddrPort(family),
                elements,
                comment,
            },
        );
        self.state.defs.insert(
            name.clone(),
            SetDef::Port {
                scope: scope.clone(),
                port: port.to_owned(),
                protocol,
                family,
            },
        );
        self.note_created_set(&name);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PortSpec;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn block_minus_excepts_gives_disjoint_ranges() {
        type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            ("10.0.0.0/8", &[], &[("10.0.0.0", "10.255.255.255")]),
            (
                "10.0.0.0/8",
                &["10.0.0.0/16", "10.1.0.0/16", "10.1.2.0/24", "10.255.0.0/16"],
                &[("10.2.0.0", "10.254.255.255")],
            ),
            (
                "0.0.0.0/0",
                &["198.18.0.0/16", "198.19.0.0/24"],
                &[
                    ("0.0.0.0", "198.17.255.255"),
                    ("198.19.1.0", "255.255.255.255"),
                ],
            ),
            (
                "::/0",
                &["fd00::/8"],
                &[
                    ("::", "fcff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                    ("fe00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                ],
            ),
        ];
        for (cidr, except, expected) in cases {
            let block = IpBlock {
                cidr: net(cidr),
                except: except.iter().map(|e| net(e)).collect(),
            };
            let got = block_ranges(&block);
            let want: Vec<(IpAddr, IpAddr)> =
                expected.iter().map(|(a, b)| (ip(a), ip(b))).collect();
            assert_eq!(got, want, "{cidr} except {except:?}");
        }
    }

    #[test]
    fn ports_merge_per_protocol() {
        let spec = |protocol, port| PortSpec { protocol, port };
        let rule = PolicyRule {
            peers: vec![],
            ports: vec![
                spec(Protocol::Tcp, PortMatch::Range(80, 80)),
                spec(Protocol::Tcp, PortMatch::Range(81, 90)),
                spec(Protocol::Tcp, PortMatch::Range(85, 100)),
                spec(Protocol::Tcp, PortMatch::Range(443, 443)),
                spec(Protocol::Udp, PortMatch::Range(53, 53)),
                spec(Protocol::Udp, PortMatch::Any),
                spec(Protocol::Udp, PortMatch::Named("dns".into())),
                spec(Protocol::Tcp, PortMatch::Named("http".into())),
            ],
        };
        let conds: Vec<String> = port_conditions(&rule)
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert_eq!(
            conds,
            [
                "Ranges(Tcp, [(80, 100)])",
                "Ranges(Tcp, [(443, 443)])",
                "Protocol(Udp)",
                "Named(\"http\", Tcp)",
            ]
        );
        assert_eq!(
            format!(
                "{:?}",
                port_conditions(&PolicyRule {
                    peers: vec![],
                    ports: vec![]
                })
            ),
            "[AnyTraffic]"
        );
    }

    fn compiled(yaml: &str) -> Ruleset {
        compile(&crate::model::from_valid_yaml(yaml), "n1", "netpold")
    }

    const ENDPOINTS: &str = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n2, interfaceName: veth-db, ips: [10.0.0.2, fd00::2]}
";

    #[test]
    fn only_local_endpoints_get_chains_but_remote_ones_are_set_members() {
        let rs = compiled(&format!(
            "{ENDPOINTS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  policyTypes: [Egress]
  egress: [{{to: [{{podSelector: {{matchLabels: {{app: db}}}}}}]}}]
"
        ));
        let egress = &rs.maps[EGRESS_MAP].entries;
        assert_eq!(egress.keys().collect::<Vec<_>>(), ["veth-web"]);
        let v4: Vec<&Set> = rs
            .sets
            .iter()
            .filter(|(n, s)| s.kind == SetKind::Addr(Family::V4) && !n.starts_with("local_"))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(v4.len(), 1);
        assert_eq!(
            v4[0].elements,
            BTreeSet::from([Element::Addr(ip("10.0.0.2"))])
        );
        let v6: Vec<&Set> = rs
            .sets
            .iter()
            .filter(|(n, s)| s.kind == SetKind::Addr(Family::V6) && !n.starts_with("local_"))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            v6[0].elements,
            BTreeSet::from([Element::Addr(ip("fd00::2"))])
        );
        // web is isolated for egress only: its egress chain ends in drop, its ingress chain in accept.
        let Verdict::Goto(out) = &egress["veth-web"] else {
            panic!()
        };
        assert_eq!(
            rs.chains[out].rules.last().unwrap().verdict,
            Some(Verdict::Drop)
        );
        let Verdict::Goto(inn) = &rs.maps[INGRESS_MAP].entries["veth-web"] else {
            panic!()
        };
        assert_eq!(
            rs.chains[inn].rules.last().unwrap().verdict,
            Some(Verdict::Accept)
        );
    }

    #[test]
    fn policies_that_select_no_local_endpoint_compile_nothing_here() {
        let yaml = format!(
            "{ENDPOINTS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-in, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]}}]
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {{name: db-out}}
spec:
  selector: app == 'db'
  egress: [{{action: Allow, destination: {{selector: app == 'web'}}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: db-admin}}
spec:
  priority: 5
  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: db}}}}}}}}
  ingress: [{{action: Allow, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{}}}}}}]}}]
"
        );
        let model = crate::model::from_valid_yaml(&yaml);
        let policy_chains = |rs: &Ruleset| -> Vec<String> {
            rs.chains
                .iter()
                .filter(|(n, _)| ["pol_", "tp_", "anp_"].iter().any(|p| n.starts_with(p)))
                .map(|(_, c)| c.comment.clone())
                .collect()
        };
        // n1 runs web only, which none of them selects: no chain, and no set but its own.
        let n1 = compile(&model, "n1", "netpold");
        assert_eq!(policy_chains(&n1), Vec::<String>::new());
        assert_eq!(
            n1.sets.keys().collect::<Vec<_>>(),
            ["local_addrs4", "local_addrs6"]
        );
        // n2 runs db: all three, with web (of n1) in their peer sets.
        let n2 = compile(&model, "n2", "netpold");
        assert_eq!(policy_chains(&n2).len(), 3, "{:?}", policy_chains(&n2));
        assert!(
            n2.sets
                .values()
                .any(|s| s.elements.contains(&Element::Addr(ip("10.0.0.1"))))
        );
    }

    #[test]
    fn anti_spoofing_allows_own_and_link_local_sources_only() {
        let rs = compiled(ENDPOINTS);
        let Verdict::Goto(out) = &rs.maps[EGRESS_MAP].entries["veth-web"] else {
            panic!()
        };
        let spoof: Vec<&Vec<Match>> = rs.chains[out]
            .rules
            .iter()
            .filter(|r| r.comment.as_deref() == Some("a/web: spoofed source"))
            .map(|r| &r.matches)
            .collect();
        assert_eq!(
            spoof,
            [
                &vec![Match::Addr {
                    side: AddrSide::Src,
                    family: Family::V4,
                    negate: true,
                    source: AddrSource::List(vec![net("10.0.0.1/32")])
                }],
                &vec![Match::Addr {
                    side: AddrSide::Src,
                    family: Family::V6,
                    negate: true,
                    source: AddrSource::List(vec![net("fe80::/10")])
                }],
            ]
        );
    }

    #[test]
    fn colliding_names_are_rehashed() {
        let mut names = Names::default();
        let first = names.get("s4", "k1", "");
        // Pretend another key already owns the name k2 would get.
        let k2_name = format!("s4_{}", stable_hash("k2"));
        names.owner.insert(k2_name.clone(), "someone else".into());
        let second = names.get("s4", "k2", "");
        assert_ne!(second, k2_name);
        assert_eq!(second, format!("s4_{}", stable_hash("k2\u{0}1")));
        assert_eq!(names.get("s4", "k1", ""), first);
        assert_eq!(names.get("s4", "k2", ""), second);
    }

    #[test]
    fn equal_selectors_share_one_set_and_names_are_stable() {
        let policy = |name: &str, sel: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: a}}\nspec: {{podSelector: {{}}, ingress: [{{from: [{{podSelector: {sel}}}]}}]}}\n"
            )
        };
        let rs = compiled(&format!(
            "{ENDPOINTS}{}{}",
            policy("p1", "{matchLabels: {app: db}}"),
            policy(
                "p2",
                "{matchExpressions: [{key: app, operator: In, values: [db]}]}"
            )
        ));
        let addr_sets = rs
            .sets
            .iter()
            .filter(|(n, s)| matches!(s.kind, SetKind::Addr(_)) && !n.starts_with("local_"))
            .count();
        assert_eq!(addr_sets, 2, "one v4 and one v6 set for both spellings");
        // Bounded names: a 3-character prefix and 16 hex digits.
        assert!(
            rs.sets
                .keys()
                .filter(|k| !k.starts_with("local_"))
                .all(|k| k.len() == 19),
            "{:?}",
            rs.sets.keys()
        );
        assert_eq!(stable_hash("policy\0a\0p1"), stable_hash("policy\0a\0p1"));
        assert_ne!(stable_hash("policy\0a\0p1"), stable_hash("policy\0a\0p2"));
        // Similar keys get unrelated names.
        let (a, b) = (
            stable_hash("endpoint\0shop\0web-1"),
            stable_hash("endpoint\0shop\0web-2"),
        );
        assert_ne!(a[..8], b[..8]);
    }

    fn packet(
        iif: &str,
        oif: &str,
        src: &str,
        dst: &str,
        ct: crate::ir::eval::CtInfo,
    ) -> crate::ir::eval::Packet {
        crate::ir::eval::Packet {
            hook: Hook::Forward,
            iif: Some(iif.into()),
            oif: Some(oif.into()),
            src: ip(src),
            dst: ip(dst),
            protocol: Protocol::Udp,
            sport: 40000,
            dport: 53,
            ct,
        }
    }

    /// Drop logs add a limited, verdict-less log rule with the drop's conditions right
    /// before every isolated and anti-spoofing drop, and change no verdict.
    #[test]
    fn drop_logs_go_right_before_each_logged_drop_and_change_no_verdict() {
        use crate::ir::eval::{CtInfo, run};
        let yaml = format!(
            "{ENDPOINTS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  policyTypes: [Ingress]
  ingress: [{{ports: [{{port: 80}}]}}]
"
        );
        let model = crate::model::from_valid_yaml(&yaml);
        let plain = compile(&model, "n1", "netpold");
        let options = Options {
            drop_log: Some(DropLog {
                group: Some(3),
                rate: 5,
                burst: 7,
            }),
            ..Default::default()
        };
        let logged = compile_with(&model, "n1", "netpold", &options);
        let mut logs = 0;
        for (name, chain) in &logged.chains {
            for (i, rule) in chain.rules.iter().enumerate() {
                let Some(log) = &rule.log else { continue };
                logs += 1;
                let drop = &chain.rules[i + 1];
                assert_eq!(drop.verdict, Some(Verdict::Drop), "{name}[{i}]");
                assert!(drop.counter);
                assert_eq!(rule.verdict, None);
                assert_eq!(log.group, Some(3));
                // The same conditions, then the limit.
                let (limit, conditions) = rule.matches.split_last().unwrap();
                assert_eq!(conditions, &drop.matches[..], "{name}[{i}]");
                assert_eq!(limit, &Match::Limit { rate: 5, burst: 7 });
                let prefix = crate::droplog::parse_drop_prefix(&log.prefix).unwrap();
                let expected_cause = if name.starts_with("ep_") && drop.matches.is_empty() {
                    DropCause::Isolated
                } else {
                    DropCause::Spoofed
                };
                assert_eq!(prefix.cause, expected_cause, "{}", log.prefix);
                assert_eq!(prefix.endpoint.is_some(), name.starts_with("ep_"));
            }
            // Without logs the chain is the same but for the log rules.
            let without: Vec<&Rule> = chain.rules.iter().filter(|r| r.log.is_none()).collect();
            assert_eq!(without, plain.chains[name].rules.iter().collect::<Vec<_>>());
        }
        // web: isolated ingress plus two anti-spoofing drops; 2 base chains x 2 families.
        assert_eq!(logs, 3 + 4);
        let text = crate::render::render(&logged);
        assert!(
            text.contains("\t\tlimit rate 5/second burst 7 packets log prefix \"netpold drop ingress a/web isolated: \" group 3 comment \"a/web: isolated for ingress, no rule allows\"\n"),
            "{text}"
        );
        for (src, dst, port, iif, oif) in [
            ("192.0.2.1", "10.0.0.1", 80, "uplink0", "veth-web"),
            ("192.0.2.1", "10.0.0.1", 81, "uplink0", "veth-web"),
            ("10.0.0.9", "192.0.2.1", 53, "veth-web", "uplink0"),
            ("10.0.0.1", "192.0.2.1", 53, "veth-web", "uplink0"),
        ] {
            let mut p = packet(iif, oif, src, dst, CtInfo::New);
            p.protocol = Protocol::Tcp;
            p.dport = port;
            assert_eq!(run(&plain, &p), run(&logged_without_logs(&logged), &p));
            assert_eq!(run(&plain, &p).accepted, run(&logged, &p).accepted);
        }
    }

    /// `rs` with its log rules taken out (so that traces, which index rules, compare).
    fn logged_without_logs(rs: &Ruleset) -> Ruleset {
        let mut rs = rs.clone();
        for chain in rs.chains.values_mut() {
            chain.rules.retain(|r| r.log.is_none());
        }
        rs
    }

    #[test]
    fn an_endpoint_with_many_addresses_checks_them_in_a_set() {
        use crate::ir::eval::{CtInfo, run};
        let ips: Vec<String> = (1..=12).map(|i| format!("10.0.1.{i}")).collect();
        let rs = compiled(&format!(
            "apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: router, namespace: a}}
spec: {{node: n1, interfaceName: veth-r, ips: [{}]}}
",
            ips.join(", ")
        ));
        let own: Vec<&String> = rs.sets.keys().filter(|n| n.starts_with("a4_")).collect();
        assert_eq!(own.len(), 1, "{:?}", rs.sets.keys());
        assert_eq!(rs.sets[own[0]].elements.len(), 12);
        let accepted = |src: &str| {
            run(
                &rs,
                &packet("veth-r", "uplink0", src, "192.0.2.1", CtInfo::New),
            )
            .accepted
        };
        assert!(accepted("10.0.1.1") && accepted("10.0.1.12"));
        assert!(!accepted("10.0.1.13") && !accepted("10.0.0.1"));
    }

    #[test]
    fn spoofed_sources_are_dropped_even_on_established_flows() {
        use crate::ir::eval::{CtInfo, run};
        let rs = compiled(&format!(
            "{ENDPOINTS}---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: api, namespace: a, labels: {{app: api}}}}
spec: {{node: n1, interfaceName: veth-api, ips: [10.0.0.3]}}
"
        ));
        let accepted = |iif: &str, oif: &str, src: &str, dst: &str, ct| {
            run(&rs, &packet(iif, oif, src, dst, ct)).accepted
        };
        // Nothing isolates anyone: honest traffic passes in every state.
        assert!(accepted(
            "veth-web",
            "uplink0",
            "10.0.0.1",
            "192.0.2.1",
            CtInfo::New
        ));
        assert!(accepted(
            "uplink0",
            "veth-web",
            "192.0.2.1",
            "10.0.0.1",
            CtInfo::Established
        ));
        // A local endpoint's address arriving by the uplink, or by another endpoint's interface.
        for ct in [CtInfo::New, CtInfo::Established] {
            assert!(
                !accepted("uplink0", "veth-api", "10.0.0.1", "10.0.0.3", ct),
                "{ct:?}"
            );
            assert!(
                !accepted("veth-api", "uplink0", "10.0.0.1", "192.0.2.1", ct),
                "{ct:?}"
            );
        }
        // A remote endpoint's address is not ours to vouch for.
        assert!(accepted(
            "uplink0",
            "veth-web",
            "10.0.0.2",
            "10.0.0.1",
            CtInfo::New
        ));
    }

    #[test]
    fn comments_fit_nft_even_for_long_names() {
        let long = "x".repeat(200);
        let rs = compiled(&format!(
            "apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: {long}, namespace: a, labels: {{app: web}}}}
spec: {{interfaceName: veth-web, ips: [10.0.0.1]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {long}, namespace: a}}
spec: {{podSelector: {{}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {}}}}}}}]}}]}}
",
            "v".repeat(63)
        ));
        let comments = rs
            .chains
            .values()
            .flat_map(|c| {
                c.rules
                    .iter()
                    .filter_map(|r| r.comment.as_deref())
                    .chain([c.comment.as_str()])
            })
            .chain(rs.sets.values().map(|s| s.comment.as_str()));
        for comment in comments {
            assert!(
                comment.len() <= crate::ir::MAX_COMMENT,
                "{} bytes: {comment}",
                comment.len()
            );
        }
    }

    #[test]
    fn order_of_alternatives_does_not_change_the_ruleset() {
        let doc = |ips: &str, peers: &str, ports: &str| {
            format!(
                "apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: web, namespace: a, labels: {{app: web}}}}
spec: {{interfaceName: veth-web, ips: [{ips}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: a}}
spec: {{podSelector: {{}}, ingress: [{{from: [{peers}], ports: [{ports}]}}]}}
"
            )
        };
        let a = compiled(&doc(
            "10.0.0.1, fd00::1, 10.0.0.2",
            "{ipBlock: {cidr: 10.0.0.0/8}}, {podSelector: {}}",
            "{port: 80}, {port: 53, protocol: UDP}, {port: 22}",
        ));
        let b = compiled(&doc(
            "fd00::1, 10.0.0.2, 10.0.0.1",
            "{podSelector: {}}, {ipBlock: {cidr: 10.0.0.0/8}}, {podSelector: {}}",
            "{port: 53, protocol: UDP}, {port: 22}, {port: 80}",
        ));
        assert_eq!(crate::render::render(&a), crate::render::render(&b));
    }

    /// T7: a rule with ports only ever matches its protocols, so ICMP never passes it;
    /// a rule without ports matches every protocol, ICMP included.
    #[test]
    fn icmp_passes_only_rules_without_ports() {
        let rs = compiled(&format!(
            "{ENDPOINTS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: p, namespace: a}}
spec:
  podSelector: {{}}
  ingress:
  - ports: [{{}}, {{port: 80}}, {{port: 53, protocol: UDP}}, {{port: http}}, {{protocol: SCTP, port: 9, endPort: 10}}]
  - from: [{{ipBlock: {{cidr: 10.0.0.0/8}}}}]
"
        ));
        let chain = rs
            .chains
            .iter()
            .find(|(n, _)| n.starts_with("pol_"))
            .unwrap()
            .1;
        let protocol_bound = |r: &Rule| {
            r.matches.iter().any(|m| {
                matches!(
                    m,
                    Match::Protocol(_) | Match::DstPorts { .. } | Match::AddrPort { .. }
                )
            })
        };
        let (with_ports, without): (Vec<&Rule>, Vec<&Rule>) = chain
            .rules
            .iter()
            .partition(|r| r.comment.as_deref() == Some("a/p ingress[0]"));
        assert!(!with_ports.is_empty() && with_ports.iter().all(|r| protocol_bound(r)));
        assert_eq!(without.len(), 1);
        assert!(!protocol_bound(without[0]));
    }
}
