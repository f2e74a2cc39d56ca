//! A reference evaluator of Kubernetes NetworkPolicy over a [`Model`], written from the
//! specification alone and kept deliberately naive: every probe is a linear scan over the
//! endpoints and policies. It is the oracle the compiler is checked against, and the engine
//! behind `netpold explain`, so it returns why, not just whether.
//!
//! Semantics (upstream, plus the project's decisions for a bare host):
//! - An address belongs to at most one endpoint. The source endpoint's egress is enforced
//!   only when it runs on this node; so is the destination endpoint's ingress. Endpoints of
//!   other nodes are never enforced here, but they are members of every selector they match.
//! - An endpoint is isolated in a direction iff a policy of its namespace selects it and
//!   governs that direction. Not isolated: allowed. Isolated: allowed iff some rule of some
//!   selecting policy allows (policies are additive). Egress and ingress must both allow.
//! - The node itself ([`Party::Host`]) may always reach its local endpoints (ingress is not
//!   consulted). Traffic from a local endpoint to the node is subject to the endpoint's
//!   egress, where the node's address matches ipBlocks like any address; selectors never
//!   match it.
//! - Traffic neither end of which is a local endpoint is not ours to filter: allowed.
//! - netpold.io policies (README "Semantics of the ordered policies"): the policies of a
//!   direction selecting the endpoint, netpold.io and Kubernetes alike, are taken in order
//!   (absent order last; Kubernetes ones at 1000; ties by name, then namespace). A
//!   Kubernetes policy allows when one of its rules does; a netpold.io policy's first
//!   matching Allow or Deny rule decides, Log goes on, and Pass leaves the decision to the
//!   Kubernetes policies alone (allowed when none selects the endpoint). Selected by any
//!   and decided by none: denied.
//! - Host endpoints (README "Host endpoints"): traffic that neither comes from nor goes to
//!   a local workload enters and leaves the node by [`UPLINK`], whose host endpoint is the
//!   local one naming it, else the local `*` one. Its ingress (to the node) and egress (from
//!   it) are decided by the GlobalNetworkPolicies without namespaceSelector selecting it,
//!   in order, after the default failsafe ports; forwarded traffic through it by the
//!   applyOnForward ones alone, without failsafe ports. A Pass allows; selected by any and
//!   decided by none: denied. Rule selectors of such policies match host endpoints'
//!   expectedIPs too.

use std::fmt;
use std::net::IpAddr;

use crate::compile::Failsafe;
use crate::model::tiered::{Action, Entity, IpVersion, Order, RuleProtocol, TierRule};
use crate::model::{
    Direction, Endpoint, HostEndpoint, HostInterface, Model, NAMESPACE_NAME_LABEL, NamespaceScope,
    NetworkPolicy, Peer, PortMatch, PortSpec, Protocol, Rule, TieredPolicy,
};
use crate::selector::Labels;
use crate::selector::expr::Expr;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    /// The node netpold runs on, as the origin or target of its own traffic.
    /// Carries the node's address on the connection's family: ipBlocks match it like any
    /// other address, selectors never do.
    Host(IpAddr),
    /// An address: an endpoint's (on any node) or anything else's.
    Ip(IpAddr),
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Host(ip) => write!(f, "host ({ip})"),
            Party::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// The first packet of a connection, from `src` (port `sport`) to `dst` on
/// `protocol`/`port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    pub src: Party,
    pub dst: Party,
    pub protocol: Protocol,
    pub sport: u16,
    pub port: u16,
}

/// What one direction (the source's egress, or the destination's ingress) decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectionVerdict {
    /// `ns/name` of the endpoint whose policy applies in this direction, when that endpoint
    /// runs on this node; `None` when this end is not a local endpoint (nothing to enforce).
    pub endpoint: Option<String>,
    /// Whether some policy selecting the endpoint governs this direction.
    pub isolated: bool,
    /// Every policy selecting the endpoint for this direction, in evaluation order:
    /// Kubernetes ones as `ns/name`, netpold.io ones by `TieredPolicy::label`.
    pub policies: Vec<String>,
    /// The first (policy, rule index), in `policies` order, whose rule allows the probe.
    /// `None` when not isolated, when nothing allows, and for the node's own traffic to a
    /// local endpoint (allowed without consulting the rules).
    pub allowed_by: Option<(String, usize)>,
    /// The netpold.io (policy, rule index) that denied the probe.
    pub denied_by: Option<(String, usize)>,
    /// The netpold.io (policy, rule index) whose Pass handed the probe on.
    pub passed_by: Option<(String, usize)>,
    pub allowed: bool,
}

impl DirectionVerdict {
    /// The verdict for an end that is not a local endpoint: nothing to enforce.
    fn not_enforced() -> Self {
        DirectionVerdict {
            endpoint: None,
            isolated: false,
            policies: Vec::new(),
            allowed_by: None,
            denied_by: None,
            passed_by: None,
            allowed: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `egress.allowed && ingress.allowed`, and every host endpoint's.
    pub allowed: bool,
    pub egress: DirectionVerdict,
    pub ingress: DirectionVerdict,
    /// The host endpoints on the way (the uplink's, in and out), in order.
    pub hosts: Vec<DirectionVerdict>,
}

/// The interface by which traffic that is no local workload's enters and leaves the node.
pub const UPLINK: &str = "uplink0";

/// The local host endpoint of [`UPLINK`]: the one naming it, else the `*` one.
fn uplink_host<'m>(model: &'m Model, node: &str) -> Option<&'m HostEndpoint> {
    let local = || model.hosts.values().filter(|h| h.is_local(node));
    local()
        .find(|h| h.interface == HostInterface::Named(UPLINK.to_owned()))
        .or_else(|| local().find(|h| h.interface == HostInterface::All))
}

/// What a host endpoint's policies decide in `direction`, for the node's own traffic
/// (`forward` false: failsafe ports first) or forwarded traffic (applyOnForward only).
fn decide_host(
    model: &Model,
    h: &HostEndpoint,
    direction: Direction,
    forward: bool,
    probe: &Probe,
) -> DirectionVerdict {
    let mut policies: Vec<&TieredPolicy> = model
        .tiered
        .values()
        .filter(|p| p.selects_host(h) && p.rules(direction).is_some())
        .filter(|p| !forward || p.apply_on_forward)
        .collect();
    policies.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let mut verdict = DirectionVerdict {
        endpoint: Some(h.id()),
        isolated: !policies.is_empty(),
        policies: policies.iter().map(|p| p.label()).collect(),
        allowed_by: None,
        denied_by: None,
        passed_by: None,
        allowed: policies.is_empty(),
    };
    if policies.is_empty() {
        return verdict;
    }
    if !forward {
        let failsafe = Failsafe::default();
        let (ports, remote) = match direction {
            Direction::Ingress => (&failsafe.inbound, probe.src),
            Direction::Egress => (&failsafe.outbound, probe.dst),
        };
        let (Party::Host(remote) | Party::Ip(remote)) = remote;
        if ports
            .iter()
            .any(|p| p.matches(probe.protocol, remote, probe.port))
        {
            verdict.allowed = true;
            return verdict;
        }
    }
    for policy in policies {
        if let Some((action, index)) = first_decision(model, policy, direction, probe) {
            verdict.decided(action, (policy.label(), index));
            if action == Action::Pass {
                // No Kubernetes NetworkPolicy selects a host endpoint.
                verdict.allowed = true;
            }
            return verdict;
        }
    }
    verdict
}

impl DirectionVerdict {
    /// Records the ordered-policy rule that decided: Allow and Deny are final; after a
    /// Pass the caller decides what comes next.
    fn decided(&mut self, action: Action, by: (String, usize)) {
        match action {
            Action::Log => unreachable!("a Log rule decides nothing"),
            Action::Allow => {
                self.allowed_by = Some(by);
                self.allowed = true;
            }
            Action::Deny => {
                self.denied_by = Some(by);
                self.allowed = false;
            }
            Action::Pass => self.passed_by = Some(by),
        }
    }
}

/// Decides `probe` as the daemon on `node` must enforce it.
pub fn evaluate(model: &Model, node: &str, probe: &Probe) -> Verdict {
    // A policy whose nodeSelector leaves this node out is not enforced here.
    let scoped = model.scoped(node);
    let model = &*scoped;
    let src = owner(model, probe.src);
    let dst = owner(model, probe.dst);

    let egress = match src.filter(|e| e.is_local(node)) {
        Some(ep) => decide(model, ep, Direction::Egress, probe),
        None => DirectionVerdict::not_enforced(),
    };

    let ingress = match dst.filter(|e| e.is_local(node)) {
        Some(ep) => {
            let mut verdict = decide(model, ep, Direction::Ingress, probe);
            if matches!(probe.src, Party::Host(_)) {
                // S9: traffic from the endpoint's own node is always allowed at ingress.
                verdict.allowed_by = None;
                verdict.denied_by = None;
                verdict.passed_by = None;
                verdict.allowed = true;
            }
            verdict
        }
        None => DirectionVerdict::not_enforced(),
    };

    // The host endpoint of the uplink, for what enters or leaves by it.
    let local_workload = |e: Option<&Endpoint>| e.is_some_and(|e| e.is_local(node));
    let mut hosts = Vec::new();
    if let Some(h) = uplink_host(model, node) {
        match (probe.src, probe.dst) {
            (Party::Host(_), Party::Ip(_)) if !local_workload(dst) => {
                hosts.push(decide_host(model, h, Direction::Egress, false, probe));
            }
            (Party::Ip(_), Party::Host(_)) if !local_workload(src) => {
                hosts.push(decide_host(model, h, Direction::Ingress, false, probe));
            }
            (Party::Ip(_), Party::Ip(_)) => {
                if !local_workload(src) {
                    hosts.push(decide_host(model, h, Direction::Ingress, true, probe));
                }
                if !local_workload(dst) {
                    hosts.push(decide_host(model, h, Direction::Egress, true, probe));
                }
            }
            _ => {}
        }
    }
    Verdict {
        allowed: egress.allowed && ingress.allowed && hosts.iter().all(|h| h.allowed),
        egress,
        ingress,
        hosts,
    }
}

/// The endpoint (on any node) that owns the party's address. The host owns none.
fn owner(model: &Model, party: Party) -> Option<&Endpoint> {
    match party {
        Party::Host(_) => None,
        Party::Ip(ip) => model.endpoints.values().find(|e| e.ips.contains(&ip)),
    }
}

/// The policies of `ep`'s namespace that select it and govern `direction`, in
/// (namespace, name) order (the model's map order).
fn selecting_policies<'m>(
    model: &'m Model,
    ep: &Endpoint,
    direction: Direction,
) -> Vec<&'m NetworkPolicy> {
    model
        .policies
        .values()
        .filter(|p| p.namespace == ep.namespace)
        .filter(|p| p.pod_selector.matches(&ep.labels))
        .filter(|p| p.rules(direction).is_some())
        .collect()
}

/// The netpold.io policies that select `ep` and govern `direction`.
fn selecting_tiered<'m>(
    model: &'m Model,
    ep: &Endpoint,
    direction: Direction,
) -> Vec<&'m TieredPolicy> {
    model
        .tiered
        .values()
        .filter(|p| p.is_ordered())
        .filter(|p| {
            if p.global {
                p.namespace_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(&namespace_labels(model, ep)))
            } else {
                p.namespace == ep.namespace
            }
        })
        .filter(|p| p.selector.matches(&ep.labels))
        .filter(|p| p.rules(direction).is_some())
        .collect()
}

/// The admin policies that select `ep` and have rules for `direction`: the
/// AdminNetworkPolicies by (priority, name), and the BaselineAdminNetworkPolicy.
fn selecting_admin<'m>(
    model: &'m Model,
    ep: &Endpoint,
    direction: Direction,
) -> (Vec<&'m TieredPolicy>, Option<&'m TieredPolicy>) {
    let selecting = model.tiered.values().filter(|p| {
        p.admin.is_some()
            && p.namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(&namespace_labels(model, ep)))
            && p.selector.matches(&ep.labels)
            && p.rules(direction).is_some()
    });
    let (baseline, mut anps): (Vec<&TieredPolicy>, Vec<&TieredPolicy>) =
        selecting.partition(|p| p.admin.as_ref().is_some_and(|a| a.baseline));
    anps.sort_by_key(|p| (p.admin.as_ref().map_or(0, |a| a.priority), p.name.clone()));
    (anps, baseline.first().copied())
}

/// The first rule of an admin policy that matches: (action, manifest rule index).
fn admin_match(
    model: &Model,
    policy: &TieredPolicy,
    direction: Direction,
    probe: &Probe,
) -> Option<(Action, usize)> {
    policy
        .rules(direction)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .find(|(_, rule)| tier_rule_matches(model, policy, rule, probe))
        .map(|(i, rule)| (rule.action, policy.source_rule(direction, i)))
}

/// One policy of the ordered sequence.
enum Step<'m> {
    Kubernetes(&'m NetworkPolicy),
    Ordered(&'m TieredPolicy),
}

/// The verdict of `ep`'s policies for `direction`: its egress when it is the source,
/// its ingress when it is the destination.
fn decide(model: &Model, ep: &Endpoint, direction: Direction, probe: &Probe) -> DirectionVerdict {
    // AdminNetworkPolicies first: Allow and Deny are final, Pass skips the rest of
    // them; the BaselineAdminNetworkPolicy where no ordered policy isolates.
    let (anps, baseline) = selecting_admin(model, ep, direction);
    let mut admin_passed = None;
    for policy in anps {
        if let Some((action, index)) = admin_match(model, policy, direction, probe) {
            let by = Some((policy.label(), index));
            let mut verdict = decide_ordered(model, ep, direction, probe, None);
            verdict.allowed_by = None;
            verdict.denied_by = None;
            verdict.passed_by = None;
            match action {
                Action::Allow => {
                    verdict.allowed_by = by;
                    verdict.allowed = true;
                    return verdict;
                }
                Action::Deny => {
                    verdict.denied_by = by;
                    verdict.allowed = false;
                    return verdict;
                }
                _ => {
                    admin_passed = by;
                    break;
                }
            }
        }
    }
    let mut verdict = decide_ordered(model, ep, direction, probe, baseline);
    if admin_passed.is_some() {
        verdict.passed_by = admin_passed;
    }
    verdict
}

/// The ordered sequence, then (where nothing of it isolates, or a Pass found no
/// Kubernetes NetworkPolicy) the baseline.
fn decide_ordered(
    model: &Model,
    ep: &Endpoint,
    direction: Direction,
    probe: &Probe,
    baseline: Option<&TieredPolicy>,
) -> DirectionVerdict {
    let baseline_verdict = |verdict: &mut DirectionVerdict| {
        if let Some(b) = baseline
            && let Some((action, index)) = admin_match(model, b, direction, probe)
        {
            let by = Some((b.label(), index));
            if action == Action::Allow {
                verdict.allowed_by = by;
                verdict.allowed = true;
            } else {
                verdict.denied_by = by;
                verdict.allowed = false;
            }
        }
    };
    let kubernetes = selecting_policies(model, ep, direction);
    let mut steps: Vec<(bool, Order, String, String, Step)> = kubernetes
        .iter()
        .map(|p| {
            (
                false,
                Order::KUBERNETES,
                p.name.clone(),
                p.namespace.clone(),
                Step::Kubernetes(p),
            )
        })
        .collect();
    for p in selecting_tiered(model, ep, direction) {
        let order = p.order.unwrap_or(Order::KUBERNETES);
        steps.push((
            p.order.is_none(),
            order,
            p.name.clone(),
            p.namespace.clone(),
            Step::Ordered(p),
        ));
    }
    steps.sort_by(|a, b| (a.0, a.1, &a.2, &a.3).cmp(&(b.0, b.1, &b.2, &b.3)));
    let isolated = !steps.is_empty();
    let mut verdict = DirectionVerdict {
        endpoint: Some(ep.id()),
        isolated,
        policies: steps
            .iter()
            .map(|s| match s.4 {
                Step::Kubernetes(p) => p.id(),
                Step::Ordered(p) => p.label(),
            })
            .collect(),
        allowed_by: None,
        denied_by: None,
        passed_by: None,
        allowed: !isolated,
    };
    if !isolated {
        baseline_verdict(&mut verdict);
        return verdict;
    }
    let kubernetes_allow = |policy: &NetworkPolicy| {
        policy
            .rules(direction)
            .unwrap_or_default()
            .iter()
            .position(|rule| rule_allows(model, policy, rule, direction, probe))
            .map(|index| (policy.id(), index))
    };
    for (.., step) in &steps {
        match step {
            Step::Kubernetes(policy) => {
                if let Some(by) = kubernetes_allow(policy) {
                    verdict.allowed_by = Some(by);
                    verdict.allowed = true;
                    return verdict;
                }
            }
            Step::Ordered(policy) => {
                if let Some((action, index)) = first_decision(model, policy, direction, probe) {
                    verdict.decided(action, (policy.label(), index));
                    if action == Action::Pass {
                        verdict.allowed_by = kubernetes.iter().find_map(|p| kubernetes_allow(p));
                        verdict.allowed = kubernetes.is_empty() || verdict.allowed_by.is_some();
                        if kubernetes.is_empty() {
                            baseline_verdict(&mut verdict);
                        }
                    }
                    return verdict;
                }
            }
        }
    }
    verdict
}

/// Every condition a netpold.io rule states holds for the probe.
/// The first rule of `policy` for `direction` that matches and decides (Log rules only
/// log): its action and index.
fn first_decision(
    model: &Model,
    policy: &TieredPolicy,
    direction: Direction,
    probe: &Probe,
) -> Option<(Action, usize)> {
    policy
        .rules(direction)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .find(|(_, rule)| {
            rule.action != Action::Log && tier_rule_matches(model, policy, rule, probe)
        })
        .map(|(index, rule)| (rule.action, index))
}

fn tier_rule_matches(model: &Model, policy: &TieredPolicy, rule: &TierRule, probe: &Probe) -> bool {
    let ip_of = |p: Party| match p {
        Party::Host(ip) | Party::Ip(ip) => ip,
    };
    let protocol_ok = match rule.protocol {
        None => true,
        Some(RuleProtocol::Ported(p)) => p == probe.protocol,
        // Probes are TCP, UDP or SCTP.
        Some(_) => false,
    };
    let version_ok = match rule.ip_version {
        None => true,
        Some(IpVersion::V4) => ip_of(probe.src).is_ipv4(),
        Some(IpVersion::V6) => ip_of(probe.src).is_ipv6(),
    };
    let entity_ok = |entity: &Entity, party: Party, port: Option<u16>| {
        let ip = ip_of(party);
        if entity.selector.is_some() || entity.namespace_selector.is_some() {
            let selector = entity.selector.clone().unwrap_or(Expr::All);
            // A GlobalNetworkPolicy's selector alone matches host endpoints' expectedIPs.
            let host_ok = policy.global
                && entity.namespace_selector.is_none()
                && model
                    .hosts
                    .values()
                    .any(|h| h.expected_ips.contains(&ip) && selector.matches(&h.labels));
            let endpoint_ok = owner(model, party).is_some_and(|ep| {
                let namespace_ok = match &entity.namespace_selector {
                    Some(sel) => sel.matches(&namespace_labels(model, ep)),
                    None => policy.global || ep.namespace == policy.namespace,
                };
                namespace_ok && selector.matches(&ep.labels)
            });
            if !host_ok && !endpoint_ok {
                return false;
            }
        }
        if !entity.nets.is_empty() && !entity.nets.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        if entity.not_nets.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        // A named port is the endpoint's at this end (one the entity's selectors match,
        // when it has any): an address that is no endpoint's has none.
        let in_item = |port: u16, item: &crate::model::tiered::PortItem| match item {
            crate::model::tiered::PortItem::Range(a, b) => *a <= port && port <= *b,
            crate::model::tiered::PortItem::Named(name) => owner(model, party)
                .is_some_and(|ep| ep.named_port(name, probe.protocol) == Some(port)),
        };
        match port {
            Some(port) => {
                (entity.ports.is_empty() || entity.ports.iter().any(|p| in_item(port, p)))
                    && !entity.not_ports.iter().any(|p| in_item(port, p))
            }
            None => true,
        }
    };
    protocol_ok
        && version_ok
        && entity_ok(&rule.source, probe.src, Some(probe.sport))
        && entity_ok(&rule.destination, probe.dst, Some(probe.port))
}

/// A rule allows when one of its peers (any, if none are listed) is the other end, and one
/// of its ports (any, if none are listed) is the probe's.
fn rule_allows(
    model: &Model,
    policy: &NetworkPolicy,
    rule: &Rule,
    direction: Direction,
    probe: &Probe,
) -> bool {
    let other = match direction {
        Direction::Ingress => probe.src,
        Direction::Egress => probe.dst,
    };
    let peer_ok = rule.peers.is_empty()
        || rule
            .peers
            .iter()
            .any(|p| peer_matches(model, policy, p, other));
    let port_ok = rule.ports.is_empty() || rule.ports.iter().any(|s| port_matches(model, s, probe));
    peer_ok && port_ok
}

fn peer_matches(model: &Model, policy: &NetworkPolicy, peer: &Peer, other: Party) -> bool {
    match peer {
        // Selectors match endpoints only: never an outside address, never the host.
        Peer::Pods { namespaces, pods } => match owner(model, other) {
            Some(ep) => {
                let namespace_ok = match namespaces {
                    NamespaceScope::Own => ep.namespace == policy.namespace,
                    NamespaceScope::Matching(sel) => sel.matches(&namespace_labels(model, ep)),
                };
                namespace_ok && pods.matches(&ep.labels)
            }
            None => false,
        },
        Peer::IpBlock(block) => match other {
            Party::Host(ip) | Party::Ip(ip) => {
                same_family(block.cidr.addr(), ip) && block.contains(ip)
            }
        },
    }
}

/// The labels of the endpoint's namespace. `Model::build` declares every namespace that
/// an endpoint names; should one be missing, it carries only its name label, as upstream.
fn namespace_labels(model: &Model, ep: &Endpoint) -> Labels {
    match model.namespaces.get(&ep.namespace) {
        Some(ns) => ns.labels.clone(),
        None => Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), ep.namespace.clone())]),
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// A port entry matches its protocol and, for a named port, the number that name has on the
/// destination endpoint (for ingress, the enforced endpoint; for egress, the peer, which must
/// then be an endpoint: an outside address or the host has no named ports).
fn port_matches(model: &Model, spec: &PortSpec, probe: &Probe) -> bool {
    if spec.protocol != probe.protocol {
        return false;
    }
    match &spec.port {
        PortMatch::Any => true,
        PortMatch::Range(first, last) => *first <= probe.port && probe.port <= *last,
        PortMatch::Named(name) => owner(model, probe.dst)
            .is_some_and(|dst| dst.named_port(name, probe.protocol) == Some(probe.port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_bytes;

    const NODE: &str = "n1";

    // Addresses of the fixture's endpoints and of the outside world.
    const WEB: &str = "10.0.0.1"; // prod/web, local, {app: web, tier: front}
    const WEB6: &str = "fd00::1"; // prod/web's IPv6 address
    const DB: &str = "10.0.0.2"; // prod/db, local (node: n1), {app: db}, http=8080
    const DB_FAR: &str = "10.0.1.2"; // prod/db-far, on node n2, {app: db}, http=9090
    const CACHE: &str = "10.0.0.3"; // prod/cache, local, {app: cache}, no named ports
    const DEV_WEB: &str = "10.0.2.1"; // dev/web, local, {app: web}
    const DEV_TOOL: &str = "10.0.2.2"; // dev/tool, local, {app: tool, tier: back}
    const CLIENT: &str = "10.0.3.1"; // other/client, local; namespace "other" is undeclared
    const EXT: &str = "192.0.2.1";
    const EXT6: &str = "2001:db8::1";
    const HOST: &str = "host";
    /// The node's address on IPv4 in these tests; outside every endpoint's.
    const HOST_IP: &str = "192.0.2.254";

    const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: prod, labels: {app: web, tier: front}}
spec:
  interfaceName: veth-web
  ips: ["10.0.0.1", "fd00::1"]
  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: prod, labels: {app: db}}
spec:
  node: n1
  interfaceName: veth-db
  ips: ["10.0.0.2/32"]
  ports: [{name: http, port: 8080}]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db-far, namespace: prod, labels: {app: db}}
spec:
  node: n2
  interfaceName: veth-db
  ips: ["10.0.1.2"]
  ports: [{name: http, port: 9090}]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: cache, namespace: prod, labels: {app: cache}}
spec:
  interfaceName: veth-cache
  ips: ["10.0.0.3"]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: dev, labels: {app: web}}
spec:
  interfaceName: veth-dweb
  ips: ["10.0.2.1"]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: tool, namespace: dev, labels: {app: tool, tier: back}}
spec:
  interfaceName: veth-tool
  ips: ["10.0.2.2"]
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: client, namespace: other, labels: {app: client}}
spec:
  interfaceName: veth-client
  ips: ["10.0.3.1"]
"#;

    /// A NetworkPolicy document; `spec` is a one-line YAML flow mapping.
    fn np(namespace: &str, name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
             metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
        )
    }

    fn load(policies: &[String]) -> (Model, Vec<crate::diag::Diagnostic>) {
        let text = format!("{BASE}{}", policies.concat());
        let mut problems = Vec::new();
        let raw = parse_bytes("test.yaml", text.as_bytes(), &mut problems);
        let (model, more) = Model::build(&raw);
        problems.extend(more);
        (model, problems)
    }

    /// The fixture plus `policies`, which must all be valid.
    fn model(policies: &[String]) -> Model {
        let (model, problems) = load(policies);
        assert!(problems.is_empty(), "unexpected problems: {problems:?}");
        assert_eq!(model.policies.len(), policies.len());
        model
    }

    /// The problems of a fixture whose last policy must be rejected.
    fn rejected(policies: &[String]) -> Vec<String> {
        let (model, problems) = load(policies);
        assert!(!problems.is_empty(), "expected the policy to be rejected");
        assert_eq!(model.policies.len(), policies.len() - 1);
        problems.iter().map(|p| p.message.clone()).collect()
    }

    fn party(s: &str) -> Party {
        if s == HOST {
            Party::Host(HOST_IP.parse().unwrap())
        } else {
            Party::Ip(s.parse().unwrap())
        }
    }

    fn probe(src: &str, dst: &str, protocol: Protocol, port: u16) -> Probe {
        Probe {
            src: party(src),
            dst: party(dst),
            protocol,
            sport: 40000,
            port,
        }
    }

    fn eval(m: &Model, src: &str, dst: &str, protocol: Protocol, port: u16) -> Verdict {
        evaluate(m, NODE, &probe(src, dst, protocol, port))
    }

    fn tcp(m: &Model, src: &str, dst: &str, port: u16) -> Verdict {
        eval(m, src, dst, Protocol::Tcp, port)
    }

    fn allowed(m: &Model, src: &str, dst: &str, port: u16) -> bool {
        tcp(m, src, dst, port).allowed
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn by(policy: &str, rule: usize) -> Option<(String, usize)> {
        Some((policy.to_owned(), rule))
    }

    // ---- Scope of enforcement ----

    #[test]
    fn no_policy_allows_everything() {
        let m = model(&[]);
        let v = tcp(&m, WEB, DB, 5432);
        assert!(v.allowed);
        assert_eq!(v.egress.endpoint.as_deref(), Some("prod/web"));
        assert_eq!(v.ingress.endpoint.as_deref(), Some("prod/db"));
        for d in [&v.egress, &v.ingress] {
            assert!(!d.isolated && d.allowed && d.policies.is_empty() && d.allowed_by.is_none());
        }
    }

    #[test]
    fn only_local_endpoints_are_enforced() {
        // Deny-all both ways for every endpoint of prod.
        let m = model(&[np(
            "prod",
            "deny-all",
            "{podSelector: {}, policyTypes: [Ingress, Egress]}",
        )]);
        // Remote db-far: its ingress is not ours, only web's egress is.
        let v = tcp(&m, WEB, DB_FAR, 80);
        assert!(!v.allowed);
        assert_eq!(v.ingress, DirectionVerdict::not_enforced());
        assert_eq!(v.egress.endpoint.as_deref(), Some("prod/web"));
        assert!(!v.egress.allowed);
        // From db-far to a local endpoint without policy: db-far's egress is not ours.
        let v = tcp(&m, DB_FAR, DEV_WEB, 80);
        assert!(v.allowed);
        assert_eq!(v.egress, DirectionVerdict::not_enforced());
        // Neither end is a local endpoint: not ours.
        for (src, dst) in [(EXT, DB_FAR), (DB_FAR, EXT), (HOST, EXT), (EXT, HOST)] {
            let v = tcp(&m, src, dst, 80);
            assert!(v.allowed, "{src} -> {dst}");
            assert_eq!(v.egress, DirectionVerdict::not_enforced());
            assert_eq!(v.ingress, DirectionVerdict::not_enforced());
        }
        // Outside traffic to a local isolated endpoint is enforced.
        assert!(!allowed(&m, EXT, WEB, 80));
        assert!(!allowed(&m, EXT6, WEB6, 80));
        // An endpoint with no node is local to every node.
        assert!(!evaluate(&m, "n7", &probe(EXT, WEB, Protocol::Tcp, 80)).allowed);
        // db (node: n1) is not local to n2, db-far is.
        assert!(evaluate(&m, "n2", &probe(EXT, DB, Protocol::Tcp, 80)).allowed);
        assert!(!evaluate(&m, "n2", &probe(EXT, DB_FAR, Protocol::Tcp, 80)).allowed);
    }

    // ---- 4.1 Selection and isolation ----

    #[test]
    fn s1_pod_selector_selects_in_the_policy_namespace_only() {
        let m = model(&[np(
            "prod",
            "web-deny",
            "{podSelector: {matchLabels: {app: web}}}",
        )]);
        let v = tcp(&m, EXT, WEB, 80);
        assert!(!v.allowed);
        assert!(v.ingress.isolated);
        assert_eq!(v.ingress.policies, ids(&["prod/web-deny"]));
        assert_eq!(v.ingress.allowed_by, None);
        // Same labels in dev: not selected.
        let v = tcp(&m, EXT, DEV_WEB, 80);
        assert!(v.allowed);
        assert!(!v.ingress.isolated && v.ingress.policies.is_empty());
        // Other labels in prod: not selected.
        assert!(allowed(&m, EXT, DB, 80));
        // {} selects every endpoint of the namespace, and only those.
        let m = model(&[np("prod", "all", "{podSelector: {}}")]);
        for dst in [WEB, DB, CACHE] {
            assert!(!allowed(&m, EXT, dst, 80), "{dst}");
        }
        assert!(allowed(&m, EXT, DEV_WEB, 80));
        assert!(allowed(&m, EXT, CLIENT, 80));
    }

    #[test]
    fn s2_isolation_is_per_direction() {
        let m = model(&[np(
            "prod",
            "in-only",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}",
        )]);
        let v = tcp(&m, WEB, EXT, 443);
        assert!(v.allowed);
        assert!(!v.egress.isolated && v.egress.policies.is_empty());
        let v = tcp(&m, EXT, WEB, 443);
        assert!(!v.allowed && v.ingress.isolated);

        let m = model(&[np(
            "prod",
            "out-only",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}",
        )]);
        let v = tcp(&m, EXT, WEB, 443);
        assert!(v.allowed && !v.ingress.isolated);
        let v = tcp(&m, WEB, EXT, 443);
        assert!(!v.allowed);
        assert!(v.egress.isolated);
        assert_eq!(v.egress.policies, ids(&["prod/out-only"]));
    }

    #[test]
    fn s3_policy_types_defaulting() {
        // No policyTypes, `egress: []`: Ingress only; egress stays open.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, egress: []}",
        )]);
        assert!(allowed(&m, WEB, EXT, 80));
        assert!(!tcp(&m, WEB, EXT, 80).egress.isolated);
        assert!(!allowed(&m, EXT, WEB, 80));
        // Explicit empty policyTypes defaults the same way.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [], egress: []}",
        )]);
        assert!(allowed(&m, WEB, EXT, 80));
        assert!(!allowed(&m, EXT, WEB, 80));
        // No policyTypes, egress rules: Ingress and Egress.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, egress: [{ports: [{port: 53, protocol: UDP}]}]}",
        )]);
        let v = tcp(&m, WEB, EXT, 80);
        assert!(!v.allowed && v.egress.isolated);
        let v = eval(&m, WEB, EXT, Protocol::Udp, 53);
        assert!(v.allowed);
        assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        assert!(!allowed(&m, EXT, WEB, 80));
        // Deny-all egress needs Egress listed explicitly.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress]}",
        )]);
        assert!(!allowed(&m, WEB, EXT, 80));
        assert!(allowed(&m, EXT, WEB, 80));
    }

    #[test]
    fn s4_rules_of_an_ungoverned_direction_are_ignored() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], \
             ingress: [{from: [{podSelector: {matchLabels: {app: nothing}}}]}], egress: [{}]}",
        )]);
        // Ingress is not governed: open to everyone, not just to app=nothing.
        let v = tcp(&m, EXT, WEB, 80);
        assert!(v.allowed);
        assert!(!v.ingress.isolated && v.ingress.policies.is_empty());
        // Egress is governed and allows all.
        let v = tcp(&m, WEB, EXT, 80);
        assert!(v.allowed && v.egress.isolated);
        assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        // Governing Ingress with no rules, and with a rule that matches nothing, denies.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress, Egress], \
             ingress: [{from: [{podSelector: {matchLabels: {app: nothing}}}]}], egress: [{}]}",
        )]);
        assert!(!allowed(&m, EXT, WEB, 80));
        assert!(!allowed(&m, DB, WEB, 80));
    }

    #[test]
    fn s5_policies_are_additive() {
        let m = model(&[
            np(
                "prod",
                "b-https",
                "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 22}]}, {ports: [{port: 443}]}]}",
            ),
            np(
                "prod",
                "a-http",
                "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}, {port: 443}]}]}",
            ),
            np("prod", "c-db", "{podSelector: {matchLabels: {app: db}}}"),
        ]);
        let v = tcp(&m, EXT, WEB, 80);
        assert!(v.allowed);
        assert_eq!(v.ingress.policies, ids(&["prod/a-http", "prod/b-https"]));
        assert_eq!(v.ingress.allowed_by, by("prod/a-http", 0));
        // Both allow 443: the first in sorted order is named.
        assert_eq!(
            tcp(&m, EXT, WEB, 443).ingress.allowed_by,
            by("prod/a-http", 0)
        );
        // Only b-https allows 22, by its first rule.
        assert_eq!(
            tcp(&m, EXT, WEB, 22).ingress.allowed_by,
            by("prod/b-https", 0)
        );
        let v = tcp(&m, EXT, WEB, 8080);
        assert!(!v.allowed && v.ingress.isolated);
        assert_eq!(v.ingress.allowed_by, None);
        assert_eq!(v.ingress.policies.len(), 2);
    }

    #[test]
    fn s5_rule_index_is_reported() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 22}]}, {ports: [{port: 443}]}]}",
        )]);
        assert_eq!(tcp(&m, EXT, WEB, 443).ingress.allowed_by, by("prod/p", 1));
        assert_eq!(tcp(&m, EXT, WEB, 22).ingress.allowed_by, by("prod/p", 0));
        assert!(!allowed(&m, EXT, WEB, 80));
    }

    #[test]
    fn s6_egress_and_ingress_must_both_allow() {
        let m = model(&[
            np(
                "prod",
                "web-out",
                "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], \
                 egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}",
            ),
            np(
                "prod",
                "db-in",
                "{podSelector: {matchLabels: {app: db}}, \
                 ingress: [{from: [{namespaceSelector: {matchLabels: {env: dev}}}]}]}",
            ),
        ]);
        // web -> db: egress allows, ingress denies.
        let v = tcp(&m, WEB, DB, 5432);
        assert!(!v.allowed);
        assert!(v.egress.allowed && !v.ingress.allowed);
        assert_eq!(v.egress.allowed_by, by("prod/web-out", 0));
        assert!(v.ingress.isolated && v.ingress.allowed_by.is_none());
        // dev/web -> db: dev/web has no egress policy, db's ingress allows.
        let v = tcp(&m, DEV_WEB, DB, 5432);
        assert!(v.allowed);
        assert_eq!(v.ingress.allowed_by, by("prod/db-in", 0));
        // web -> cache: egress denies, cache is not isolated.
        let v = tcp(&m, WEB, CACHE, 80);
        assert!(!v.allowed);
        assert!(!v.egress.allowed && v.ingress.allowed && !v.ingress.isolated);
        // web -> db-far: egress allows, db-far's ingress is not ours.
        assert!(allowed(&m, WEB, DB_FAR, 5432));
    }

    #[test]
    fn s7_empty_ingress_denies_empty_rule_allows() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: []}",
        )]);
        let v = tcp(&m, DB, WEB, 80);
        assert!(!v.allowed && v.ingress.isolated && v.ingress.allowed_by.is_none());
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{}]}",
        )]);
        for src in [DB, EXT, EXT6, CLIENT, DB_FAR] {
            let v = tcp(&m, src, WEB, 80);
            assert!(v.allowed && v.ingress.isolated, "{src}");
            assert_eq!(v.ingress.allowed_by, by("prod/p", 0));
        }
    }

    #[test]
    fn s8_omitted_peers_and_ports_mean_all() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress, Egress], \
             ingress: [{from: [], ports: [{port: 80}]}], egress: [{ports: []}, {}]}",
        )]);
        // Peers omitted or []: every peer, outside addresses included.
        for src in [EXT, DB, CLIENT, DB_FAR] {
            assert!(allowed(&m, src, WEB, 80), "{src}");
            assert!(!allowed(&m, src, WEB, 81), "{src}");
        }
        assert!(allowed(&m, EXT6, WEB6, 80));
        // Ports omitted or []: every port of every protocol.
        for (protocol, port) in [
            (Protocol::Tcp, 1),
            (Protocol::Udp, 53),
            (Protocol::Sctp, 65535),
        ] {
            let v = eval(&m, WEB, EXT, protocol, port);
            assert!(v.allowed);
            assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        }
        // ... and reaches the host, as every peer does.
        assert!(allowed(&m, WEB, HOST, 22));
    }

    #[test]
    fn s9_host_traffic() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress, Egress], \
             egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0}}, {namespaceSelector: {}}]}, {ports: [{port: 53, protocol: UDP}]}]}",
        )]);
        // The host may always reach a local endpoint, even an isolated deny-all one.
        let v = tcp(&m, HOST, WEB, 80);
        assert!(v.allowed);
        assert!(v.ingress.isolated && v.ingress.allowed);
        assert_eq!(v.ingress.policies, ids(&["prod/p"]));
        assert_eq!(v.ingress.allowed_by, None);
        assert_eq!(v.egress, DirectionVerdict::not_enforced());
        // But not some other address outside.
        assert!(!allowed(&m, EXT, WEB, 80));
        // Endpoint -> host: egress applies; the host's address matches the ipBlock ...
        let v = tcp(&m, WEB, HOST, 80);
        assert!(v.allowed && v.egress.isolated);
        assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        assert_eq!(v.ingress, DirectionVerdict::not_enforced());
        // ... but never a selector.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress, Egress], \
             egress: [{to: [{namespaceSelector: {}}]}, {ports: [{port: 53, protocol: UDP}]}]}",
        )]);
        assert!(!allowed(&m, WEB, HOST, 80));
        // A rule without peers does.
        let v = eval(&m, WEB, HOST, Protocol::Udp, 53);
        assert!(v.allowed);
        assert_eq!(v.egress.allowed_by, by("prod/p", 1));
        // Without the ipBlock, outside addresses are denied too.
        assert!(!allowed(&m, WEB, EXT, 80));
    }

    // ---- 4.2 Peers and selectors ----

    #[test]
    fn p1_peer_kinds_are_separate_and_ored() {
        let problems = rejected(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
        )]);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("ipBlock cannot be combined"))
        );
        let problems = rejected(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{from: [{}]}]}",
        )]);
        assert!(problems.iter().any(|p| p.contains("a peer needs")));
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [\
             {podSelector: {matchLabels: {app: client}}, namespaceSelector: {}}, \
             {ipBlock: {cidr: 192.0.2.0/24}}]}]}",
        )]);
        assert!(allowed(&m, CLIENT, WEB, 80));
        assert!(allowed(&m, EXT, WEB, 80));
        assert!(!allowed(&m, DB, WEB, 80));
        assert!(!allowed(&m, "198.51.100.1", WEB, 80));
    }

    #[test]
    fn p2_pod_and_namespace_selectors() {
        // podSelector alone: the policy's namespace.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]}",
        )]);
        assert!(allowed(&m, WEB, DB, 5432));
        assert!(allowed(&m, WEB6, DB, 5432));
        assert!(!allowed(&m, DEV_WEB, DB, 5432));
        // namespaceSelector alone: every endpoint of the matching namespaces.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {matchLabels: {env: dev}}}]}]}",
        )]);
        assert!(allowed(&m, DEV_WEB, DB, 5432));
        assert!(allowed(&m, DEV_TOOL, DB, 5432));
        assert!(!allowed(&m, WEB, DB, 5432));
        // Both in one peer: AND.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [\
             {namespaceSelector: {matchLabels: {env: dev}}, podSelector: {matchLabels: {app: web}}}]}]}",
        )]);
        assert!(allowed(&m, DEV_WEB, DB, 5432));
        assert!(!allowed(&m, DEV_TOOL, DB, 5432));
        assert!(!allowed(&m, WEB, DB, 5432));
        // Separate peers: OR.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [\
             {namespaceSelector: {matchLabels: {env: dev}}}, {podSelector: {matchLabels: {app: web}}}]}]}",
        )]);
        assert!(allowed(&m, DEV_TOOL, DB, 5432));
        assert!(allowed(&m, WEB, DB, 5432));
        assert!(!allowed(&m, CLIENT, DB, 5432));
        assert!(!allowed(&m, CACHE, DB, 5432));
    }

    #[test]
    fn p2_egress_selectors_include_remote_endpoints() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], \
             egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]}",
        )]);
        let v = tcp(&m, WEB, DB_FAR, 5432);
        assert!(v.allowed);
        assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        assert!(allowed(&m, WEB, DB, 5432));
        assert!(!allowed(&m, WEB, CACHE, 5432));
        assert!(!allowed(&m, WEB, EXT, 5432));
    }

    #[test]
    fn p3_empty_selectors() {
        // namespaceSelector {}: every endpoint of every namespace, remote ones too.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{namespaceSelector: {}}]}]}",
        )]);
        for src in [DB, DB_FAR, DEV_WEB, DEV_TOOL, CLIENT] {
            assert!(allowed(&m, src, WEB, 80), "{src}");
        }
        assert!(!allowed(&m, EXT, WEB, 80));
        // podSelector {} alone: every endpoint of the own namespace only.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [{podSelector: {}}]}]}",
        )]);
        for src in [DB, DB_FAR, CACHE] {
            assert!(allowed(&m, src, WEB, 80), "{src}");
        }
        for src in [DEV_WEB, CLIENT, EXT] {
            assert!(!allowed(&m, src, WEB, 80), "{src}");
        }
    }

    #[test]
    fn p4_selectors_never_match_outside_addresses_or_the_host() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress, Egress], \
             ingress: [{from: [{namespaceSelector: {}, podSelector: {}}]}], \
             egress: [{to: [{namespaceSelector: {}, podSelector: {}}]}]}",
        )]);
        assert!(!allowed(&m, EXT, WEB, 80));
        assert!(!allowed(&m, EXT6, WEB6, 80));
        assert!(!allowed(&m, WEB, EXT, 80));
        assert!(!allowed(&m, WEB, HOST, 80));
        // An address next to an endpoint's is not an endpoint.
        assert!(!allowed(&m, "10.0.0.9", WEB, 80));
        assert!(allowed(&m, WEB, DEV_TOOL, 80));
        assert!(allowed(&m, CLIENT, WEB, 80));
    }

    #[test]
    fn p5_namespace_name_label_is_synthesised() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [\
             {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}}, \
             {namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [dev]}]}, \
              podSelector: {matchLabels: {app: tool}}}]}]}",
        )]);
        // "other" is named only by an endpoint, never declared.
        assert!(!m.namespaces["other"].labels.contains_key("env"));
        let v = tcp(&m, CLIENT, WEB, 80);
        assert!(v.allowed);
        assert_eq!(v.ingress.allowed_by, by("prod/p", 0));
        // Declared namespace: the synthesised label is there too.
        assert!(allowed(&m, DEV_TOOL, WEB, 80));
        assert!(!allowed(&m, DEV_WEB, WEB, 80));
        assert!(!allowed(&m, DB, WEB, 80));
    }

    #[test]
    fn p6_label_selector_operators() {
        // NotIn selects endpoints lacking the key: here web (tier=front) is not selected,
        // db and cache (no tier) are.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}}",
        )]);
        let v = tcp(&m, EXT, WEB, 80);
        assert!(v.allowed && !v.ingress.isolated);
        for dst in [DB, CACHE] {
            let v = tcp(&m, EXT, dst, 80);
            assert!(!v.allowed && v.ingress.isolated, "{dst}");
        }
        // matchLabels AND matchExpressions; Exists, DoesNotExist, In.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: db}}, ingress: [{from: [\
             {namespaceSelector: {}, podSelector: {matchLabels: {app: tool}, matchExpressions: [{key: tier, operator: Exists}]}}, \
             {namespaceSelector: {}, podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}, {key: app, operator: In, values: [client, cache]}]}}]}]}",
        )]);
        assert!(allowed(&m, DEV_TOOL, DB, 80)); // app=tool, tier exists
        assert!(allowed(&m, CLIENT, DB, 80)); // no tier, app in (client, cache)
        assert!(allowed(&m, CACHE, DB, 80));
        assert!(!allowed(&m, WEB, DB, 80)); // tier exists but app=web
        assert!(!allowed(&m, DEV_WEB, DB, 80)); // no tier, app=web not in set
        // In/NotIn need values; Exists must have none.
        rejected(&[np(
            "prod",
            "p",
            "{podSelector: {matchExpressions: [{key: tier, operator: In, values: []}]}}",
        )]);
        rejected(&[np(
            "prod",
            "p",
            "{podSelector: {matchExpressions: [{key: tier, operator: Exists, values: [a]}]}}",
        )]);
    }

    #[test]
    fn p7_selectors_matching_nothing_are_legal() {
        // A peer matching nothing: the endpoint is isolated and nothing is allowed.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{from: [\
             {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: nowhere}}}]}]}",
        )]);
        let v = tcp(&m, DB, WEB, 80);
        assert!(!v.allowed && v.ingress.isolated);
        assert_eq!(v.ingress.policies, ids(&["prod/p"]));
        // A policy selecting nothing isolates nothing.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: nothing}}}",
        )]);
        let v = tcp(&m, DB, WEB, 80);
        assert!(v.allowed && !v.ingress.isolated && v.ingress.policies.is_empty());
        // A policy of a namespace with no endpoints at all.
        let m = model(&[np("empty", "p", "{podSelector: {}}")]);
        assert!(allowed(&m, DB, WEB, 80));
    }

    // ---- 4.3 ipBlock ----

    #[test]
    fn b1_except_must_be_strictly_inside() {
        for except in ["10.0.0.0/16", "10.1.0.0/24", "10.0.0.0/8"] {
            let problems = rejected(&[np(
                "prod",
                "p",
                &format!(
                    "{{podSelector: {{}}, ingress: [{{from: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [{except}]}}}}]}}]}}"
                ),
            )]);
            assert!(
                problems.iter().any(|p| p.contains("is not inside")),
                "{except}"
            );
        }
        rejected(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {except: [10.0.0.0/24]}}]}]}",
        )]);
        model(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/17]}}]}]}",
        )]);
    }

    #[test]
    fn b2_ip_block_except() {
        let m = model(&[np(
            "dev",
            "p",
            "{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/23, except: [10.0.1.0/24, 10.0.0.3/32]}}]}]}",
        )]);
        // ipBlock matches endpoint addresses too (B5).
        let v = tcp(&m, WEB, DEV_WEB, 80);
        assert!(v.allowed);
        assert_eq!(v.ingress.allowed_by, by("dev/p", 0));
        assert!(allowed(&m, DB, DEV_WEB, 80));
        assert!(allowed(&m, "10.0.0.255", DEV_WEB, 80));
        // In an except.
        assert!(!allowed(&m, DB_FAR, DEV_WEB, 80));
        assert!(!allowed(&m, CACHE, DEV_WEB, 80));
        // Outside the cidr.
        assert!(!allowed(&m, DEV_TOOL, DEV_WEB, 80));
        assert!(!allowed(&m, EXT, DEV_WEB, 80));
    }

    #[test]
    fn b3_families_never_cross() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [\
             {from: [{ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: 4}]}, \
             {from: [{ipBlock: {cidr: \"::/0\"}}], ports: [{port: 6}]}]}",
        )]);
        assert!(allowed(&m, EXT, WEB, 4));
        assert!(!allowed(&m, EXT6, WEB6, 4));
        assert!(allowed(&m, EXT6, WEB6, 6));
        assert!(!allowed(&m, EXT, WEB, 6));
        // An IPv4-mapped IPv6 address is IPv6.
        assert!(!allowed(&m, "::ffff:192.0.2.1", WEB6, 4));
        assert_eq!(tcp(&m, EXT6, WEB6, 6).ingress.allowed_by, by("prod/p", 1));
        // Egress the same way.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], \
             egress: [{to: [{ipBlock: {cidr: \"2001:db8::/32\"}}]}]}",
        )]);
        assert!(allowed(&m, WEB6, EXT6, 443));
        assert!(!allowed(&m, WEB, EXT, 443));
        assert!(!allowed(&m, WEB, "32.1.13.184", 443));
    }

    #[test]
    fn b4_zero_prefix_blocks() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{to: [\
             {ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}, {ipBlock: {cidr: \"::/0\"}}]}]}",
        )]);
        for dst in [EXT, "255.255.255.255", "0.0.0.0", "172.16.0.1"] {
            assert!(allowed(&m, WEB, dst, 443), "{dst}");
        }
        assert!(!allowed(&m, WEB, DB, 443));
        assert!(!allowed(&m, WEB, "10.255.255.255", 443));
        for dst in [EXT6, "fc00::1", "fd12::1", "fe80::1", "::1", "ff02::1"] {
            let v = tcp(&m, WEB6, dst, 443);
            assert!(v.allowed, "{dst}");
            assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        }
    }

    // ---- 4.4 Ports and protocols ----

    #[test]
    fn t1_protocol_defaults_to_tcp() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 80}, {port: 9, protocol: SCTP}]}]}",
        )]);
        assert!(allowed(&m, EXT, WEB, 80));
        assert!(!eval(&m, EXT, WEB, Protocol::Udp, 80).allowed);
        assert!(!eval(&m, EXT, WEB, Protocol::Sctp, 80).allowed);
        assert!(eval(&m, EXT, WEB, Protocol::Sctp, 9).allowed);
        assert!(!allowed(&m, EXT, WEB, 9));
        let problems = rejected(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: 80, protocol: tcp}]}]}",
        )]);
        assert!(problems.iter().any(|p| p.contains("unsupported protocol")));
        rejected(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: 80, protocol: ICMP}]}]}",
        )]);
    }

    #[test]
    fn t2_port_omitted_means_every_port_of_the_protocol() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{}]}, {ports: [{protocol: UDP}]}]}",
        )]);
        for port in [1, 80, 65535] {
            assert_eq!(tcp(&m, EXT, WEB, port).ingress.allowed_by, by("prod/p", 0));
            assert_eq!(
                eval(&m, EXT, WEB, Protocol::Udp, port).ingress.allowed_by,
                by("prod/p", 1)
            );
            assert!(!eval(&m, EXT, WEB, Protocol::Sctp, port).allowed);
        }
    }

    #[test]
    fn t3_end_port_is_inclusive() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 8000, endPort: 8010}, {port: 9000, endPort: 9000}]}]}",
        )]);
        for port in [8000, 8005, 8010, 9000] {
            assert!(allowed(&m, EXT, WEB, port), "{port}");
        }
        for port in [7999, 8011, 8999, 9001] {
            assert!(!allowed(&m, EXT, WEB, port), "{port}");
        }
        for bad in [
            "{port: 8010, endPort: 8000}",
            "{endPort: 8000}",
            "{port: http, endPort: 8000}",
        ] {
            rejected(&[np(
                "prod",
                "p",
                &format!("{{podSelector: {{}}, ingress: [{{ports: [{bad}]}}]}}"),
            )]);
        }
    }

    #[test]
    fn t4_named_ports_resolve_on_the_destination() {
        // Ingress: on the enforced endpoint itself (web: http=80/TCP, dns=53/UDP).
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {}, ingress: [{ports: [{port: http}, {port: dns, protocol: UDP}]}]}",
        )]);
        assert!(allowed(&m, EXT, WEB, 80));
        assert!(!allowed(&m, EXT, WEB, 8080));
        assert!(allowed(&m, EXT, DB, 8080));
        assert!(!allowed(&m, EXT, DB, 80));
        assert!(eval(&m, EXT, WEB, Protocol::Udp, 53).allowed);
        // The name with another protocol does not resolve.
        assert!(!allowed(&m, EXT, WEB, 53));
        assert!(!eval(&m, EXT, WEB, Protocol::Udp, 80).allowed);
        // No such name on cache: nothing matches.
        assert!(!allowed(&m, EXT, CACHE, 80));
        assert!(!allowed(&m, EXT, CACHE, 8080));

        // Egress: on the destination endpoint, remote ones included.
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{\
             to: [{podSelector: {}}, {ipBlock: {cidr: 0.0.0.0/0}}], ports: [{port: http}]}]}",
        )]);
        let v = tcp(&m, WEB, DB, 8080);
        assert!(v.allowed);
        assert_eq!(v.egress.allowed_by, by("prod/p", 0));
        assert!(!allowed(&m, WEB, DB, 80));
        assert!(!allowed(&m, WEB, DB, 9090));
        assert!(allowed(&m, WEB, DB_FAR, 9090));
        assert!(!allowed(&m, WEB, DB_FAR, 8080));
        // The web's own name does not carry over to other destinations.
        assert!(!allowed(&m, WEB, CACHE, 80));
        // An outside address or the host has no named ports, even inside the ipBlock.
        assert!(!allowed(&m, WEB, EXT, 80));
        assert!(!allowed(&m, WEB, HOST, 80));
        // Neither has an endpoint that declares no such name (other/client).
        assert!(!allowed(&m, WEB, CLIENT, 80));
    }

    #[test]
    fn t4_named_port_through_ip_block_peer() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, policyTypes: [Egress], egress: [{\
             to: [{ipBlock: {cidr: 10.0.0.0/16}}], ports: [{port: http}]}]}",
        )]);
        // db is inside the CIDR and has http=8080; db-far too, with 9090.
        assert!(allowed(&m, WEB, DB, 8080));
        assert!(allowed(&m, WEB, DB_FAR, 9090));
        // dev/tool is outside the CIDR; 10.0.0.9 is inside but no endpoint.
        assert!(!allowed(&m, WEB, DEV_TOOL, 80));
        assert!(!allowed(&m, WEB, "10.0.0.9", 80));
    }

    #[test]
    fn t5_ports_are_ored_and_anded_with_peers() {
        let m = model(&[np(
            "prod",
            "p",
            "{podSelector: {matchLabels: {app: web}}, ingress: [{\
             from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: client}}}, {ipBlock: {cidr: 192.0.2.0/24}}], \
             ports: [{port: 80}, {port: 443}, {port: 53, protocol: UDP}]}]}",
        )]);
        for src in [CLIENT, EXT] {
            assert!(allowed(&m, src, WEB, 80), "{src}");
            assert!(allowed(&m, src, WEB, 443), "{src}");
            assert!(eval(&m, src, WEB, Protocol::Udp, 53).allowed, "{src}");
            assert!(!allowed(&m, src, WEB, 22), "{src}");
            assert!(!allowed(&m, src, WEB, 53), "{src}");
        }
        for src in [DB, DEV_WEB, "198.51.100.7"] {
            assert!(!allowed(&m, src, WEB, 80), "{src}");
        }
    }
}
