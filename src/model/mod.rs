//! Validated domain objects. `convert` turns raw trees into these, collecting every
//! error; `Model::build` adds the cross-object rules (duplicates, address clashes)
//! and the namespaces that are named but not declared. `Model::patch` (in `changes`)
//! applies the same rules to a few objects replacing others in a valid model.

mod changes;
mod convert;
pub mod syntax;
#[cfg(test)]
mod tests;
pub mod tiered;

/// The model of one YAML text that must be valid, for unit tests across the crate.
#[cfg(test)]
pub fn from_valid_yaml(yaml: &str) -> Model {
    let mut problems = Vec::new();
    let raw = crate::manifest::parse_bytes("t.yaml", yaml.as_bytes(), &mut problems);
    let (model, more) = Model::build(&raw);
    assert!(
        problems.is_empty() && more.is_empty(),
        "{problems:?} {more:?}"
    );
    model
}

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diag::{Diagnostic, Origin};
use crate::manifest::RawObject;
use crate::manifest::node::{Node, Pos};
use crate::selector::{LabelSelector, Labels};

pub use changes::{Changes, Claims};
pub use convert::convert_object;
pub use tiered::TieredPolicy;

/// The label every namespace carries, as the API server sets it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// The label every node carries, as the kubelet sets it.
pub const NODE_HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The namespace of a namespaced object that names none, as kubectl would use.
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The nft keyword (`tcp dport`, `meta l4proto udp`).
    pub fn keyword(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Includes the synthesised `kubernetes.io/metadata.name`.
    pub labels: Labels,
    /// `None` for a namespace that objects name but no file declares.
    pub origin: Option<Origin>,
}

impl Namespace {
    /// The namespace as objects naming it imply it when no file declares it.
    pub fn implied(name: &str) -> Namespace {
        Namespace {
            labels: Labels::from([(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned())]),
            name: name.to_owned(),
            origin: None,
        }
    }

    /// Whether two versions compile alike: only labels count.
    pub fn compiles_like(&self, other: &Namespace) -> bool {
        self.labels == other.labels
    }
}

/// A `v1 Node`: the labels policies' `nodeSelector` sees for a node of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub name: String,
    /// Includes `kubernetes.io/hostname` (the name) unless the file sets it.
    pub labels: Labels,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// `None`: the node of whoever loads it.
    pub node: Option<String>,
    pub interface: String,
    pub ips: Vec<IpAddr>,
    pub ports: Vec<NamedPort>,
    pub origin: Origin,
    /// Where each of `ips` and `interface` was written, for cross-object errors.
    pub ip_pos: Vec<Pos>,
    pub interface_pos: Pos,
}

impl Endpoint {
    pub fn is_local(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }

    /// The port number a named port resolves to on this endpoint, for one protocol.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether two versions compile alike: they differ at most in where they were written.
    pub fn compiles_like(&self, other: &Endpoint) -> bool {
        (
            &self.labels,
            &self.node,
            &self.interface,
            &self.ips,
            &self.ports,
        ) == (
            &other.labels,
            &other.node,
            &other.interface,
            &other.ips,
            &other.ports,
        )
    }
}

/// A host endpoint's `spec.interfaceName`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostInterface {
    Named(String),
    /// `*`: every interface of the host that is not a workload endpoint's, nor `lo`.
    All,
}

impl fmt::Display for HostInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostInterface::Named(n) => f.write_str(n),
            HostInterface::All => f.write_str("*"),
        }
    }
}

/// A `netpold.io/v1 HostEndpoint`: an interface of the host itself (or all of them),
/// protected by the GlobalNetworkPolicies that select it. Cluster-scoped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostEndpoint {
    pub name: String,
    pub labels: Labels,
    /// `None`: the node of whoever loads it.
    pub node: Option<String>,
    pub interface: HostInterface,
    /// Members of the selector sets of GlobalNetworkPolicy rules that match its labels.
    pub expected_ips: Vec<IpAddr>,
    pub origin: Origin,
    pub ip_pos: Vec<Pos>,
    pub interface_pos: Pos,
}

impl HostEndpoint {
    pub fn is_local(&self, node: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node)
    }

    /// How explain, comments and logs name it.
    pub fn id(&self) -> String {
        format!("host:{}", self.name)
    }

    /// Whether two versions compile alike: they differ at most in where they were written.
    pub fn compiles_like(&self, other: &HostEndpoint) -> bool {
        (
            &self.labels,
            &self.node,
            &self.interface,
            &self.expected_ips,
        ) == (
            &other.labels,
            &other.node,
            &other.interface,
            &other.expected_ips,
        )
    }
}

/// Which namespaces a pod peer looks in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceScope {
    /// The policy's own namespace (a peer with only `podSelector`).
    Own,
    Matching(LabelSelector),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl IpBlock {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    Pods {
        namespaces: NamespaceScope,
        pods: LabelSelector,
    },
    IpBlock(IpBlock),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortMatch {
    /// Every port of the protocol.
    Any,
    /// Inclusive range; a single port is `Range(p, p)`.
    Range(u16, u16),
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Empty: every peer, inside the cluster and out.
    pub peers: Vec<Peer>,
    /// Empty: every port of every protocol.
    pub ports: Vec<PortSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// `Some` exactly when the effective policyTypes contain Ingress (after defaulting);
    /// rules of a direction the policy does not govern are dropped (upstream semantics).
    pub ingress: Option<Vec<Rule>>,
    pub egress: Option<Vec<Rule>>,
    pub origin: Origin,
}

impl NetworkPolicy {
    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether two versions compile alike: they differ at most in where they were written.
    pub fn compiles_like(&self, other: &NetworkPolicy) -> bool {
        (&self.pod_selector, &self.ingress, &self.egress)
            == (&other.pod_selector, &other.ingress, &other.egress)
    }
}

/// The apiVersion of netpold's own kinds.
pub const NETPOLD_API: &str = "netpold.io/v1";
/// How identities and messages name the `netpold.io/v1` NetworkPolicy kind.
pub const NETPOLD_NETWORK_POLICY: &str = "netpold.io/v1 NetworkPolicy";

/// The identity kind of a `netpold.io/v1` policy.
pub fn tiered_kind(global: bool) -> &'static str {
    if global {
        "GlobalNetworkPolicy"
    } else {
        NETPOLD_NETWORK_POLICY
    }
}

/// (kind, namespace, name) as a raw document spells them.
pub type Identity = (String, String, String);

/// (kind, namespace, name) as the raw document spells them, when it does.
fn raw_identity(raw: &RawObject) -> Option<Identity> {
    let kind = raw.node.get("kind")?.as_str()?;
    let meta = raw.node.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    // The two NetworkPolicy kinds are told apart by their group, so both can share a name.
    let api = raw.node.get("apiVersion").and_then(Node::as_str);
    let kind = match (kind, api) {
        ("NetworkPolicy", Some(NETPOLD_API)) => NETPOLD_NETWORK_POLICY,
        (kind, _) => kind,
    };
    let namespace = match (kind, meta.get("namespace")) {
        (
            "Namespace"
            | "GlobalNetworkPolicy"
            | "HostEndpoint"
            | "Node"
            | "AdminNetworkPolicy"
            | "BaselineAdminNetworkPolicy",
            _,
        ) => String::new(),
        (_, None) => DEFAULT_NAMESPACE.to_owned(),
        (_, Some(n)) if n.is_null() => DEFAULT_NAMESPACE.to_owned(),
        // A namespace that is not a string is an error of its own, not an identity.
        (_, Some(n)) => n.as_str()?.to_owned(),
    };
    Some((kind.to_owned(), namespace, name.to_owned()))
}

/// One raw object converted on its own, with what `Model::assemble` needs of it.
/// Conversion depends on the raw object alone, so this can be kept per file content
/// and an unchanged file is never converted again.
#[derive(Clone, Debug)]
pub struct Converted {
    pub identity: Option<Identity>,
    /// Where the document starts.
    pub origin: Origin,
    /// `None` exactly when `problems` is not empty.
    pub object: Option<Object>,
    pub problems: Vec<Diagnostic>,
}

impl Converted {
    pub fn new(raw: &RawObject) -> Converted {
        let mut problems = Vec::new();
        let object = convert_object(raw, &mut problems);
        Converted {
            identity: raw_identity(raw),
            origin: Origin {
                file: raw.file.clone(),
                pos: raw.node.pos,
            },
            object,
            problems,
        }
    }
}

/// One validated manifest object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Namespace(Namespace),
    Endpoint(Endpoint),
    Policy(NetworkPolicy),
    /// A `netpold.io/v1` NetworkPolicy or GlobalNetworkPolicy.
    Tiered(TieredPolicy),
    Host(HostEndpoint),
    Node(ClusterNode),
}

impl Object {
    /// The identity a raw document that converts to this object spells.
    pub fn identity(&self) -> Identity {
        match self {
            Object::Namespace(n) => ("Namespace".to_owned(), String::new(), n.name.clone()),
            Object::Endpoint(e) => (
                "WorkloadEndpoint".to_owned(),
                e.namespace.clone(),
                e.name.clone(),
            ),
            Object::Policy(p) => (
                "NetworkPolicy".to_owned(),
                p.namespace.clone(),
                p.name.clone(),
            ),
            Object::Tiered(p) => match &p.admin {
                Some(a) => (a.kind().to_owned(), String::new(), p.name.clone()),
                None => (
                    tiered_kind(p.global).to_owned(),
                    p.namespace.clone(),
                    p.name.clone(),
                ),
            },
            Object::Host(h) => ("HostEndpoint".to_owned(), String::new(), h.name.clone()),
            Object::Node(n) => ("Node".to_owned(), String::new(), n.name.clone()),
        }
    }
}

/// Everything the manifests say, validated. Keyed maps give a deterministic order
/// whatever the order of files and documents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub namespaces: BTreeMap<String, Namespace>,
    pub endpoints: BTreeMap<(String, String), Endpoint>,
    pub policies: BTreeMap<(String, String), NetworkPolicy>,
    /// `netpold.io/v1` NetworkPolicies by (namespace, name) and GlobalNetworkPolicies
    /// by ("", name).
    pub tiered: BTreeMap<(String, String), TieredPolicy>,
    /// Host endpoints by name (cluster-scoped).
    pub hosts: BTreeMap<String, HostEndpoint>,
    /// `v1 Node`s by name: only their labels matter (to `nodeSelector`).
    pub nodes: BTreeMap<String, ClusterNode>,
}

impl Model {
    /// How many endpoints `node` enforces (the rest are selector members only).
    pub fn local_endpoints(&self, node: &str) -> usize {
        self.endpoints.values().filter(|e| e.is_local(node)).count()
    }

    /// The labels of node `node`: its `v1 Node`'s, or, for a node no file declares,
    /// `kubernetes.io/hostname` alone.
    pub fn node_labels(&self, node: &str) -> Cow<'_, Labels> {
        match self.nodes.get(node) {
            Some(n) => Cow::Borrowed(&n.labels),
            None => Cow::Owned(Labels::from([(
                NODE_HOSTNAME_LABEL.to_owned(),
                node.to_owned(),
            )])),
        }
    }

    /// Whether the netpold.io policy `policy` is enforced on node `node` (its
    /// `nodeSelector` matches the node's labels, or it has none).
    pub fn applies_on(&self, policy: &TieredPolicy, node: &str) -> bool {
        policy
            .node_selector
            .as_ref()
            .is_none_or(|s| s.matches(&self.node_labels(node)))
    }

    /// The model as node `node` enforces it: without the policies whose `nodeSelector`
    /// leaves the node out. Borrowed when no policy has one.
    pub fn scoped(&self, node: &str) -> Cow<'_, Model> {
        if self.tiered.values().all(|p| self.applies_on(p, node)) {
            return Cow::Borrowed(self);
        }
        let mut model = self.clone();
        model.tiered.retain(|_, p| self.applies_on(p, node));
        Cow::Owned(model)
    }

    /// Converts and validates raw objects; returns the model of everything that
    /// validated and the list of every problem found (empty when all is valid).
    pub fn build<'r>(raw: impl IntoIterator<Item = &'r RawObject>) -> (Model, Vec<Diagnostic>) {
        Model::assemble(raw.into_iter().map(|r| Cow::Owned(Converted::new(r))))
    }

    /// `build` from objects already converted, in file and document order.
    pub fn assemble<'c>(
        converted: impl IntoIterator<Item = Cow<'c, Converted>>,
    ) -> (Model, Vec<Diagnostic>) {
        let mut problems = Vec::new();
        // Duplicates are found on the raw identity, so that an object with other
        // problems still reveals that it is defined twice.
        let mut seen: BTreeMap<Identity, Origin> = BTreeMap::new();
        let mut objects = Vec::new();
        for c in converted {
            problems.extend(c.problems.iter().cloned());
            if let Some((kind, ns, name)) = &c.identity {
                let id = if ns.is_empty() {
                    name.clone()
                } else {
                    format!("{ns}/{name}")
                };
                let key = (kind.clone(), ns.clone(), name.clone());
                if let Some(first) = seen.get(&key) {
                    problems.push(Diagnostic::new(
                        &c.origin.file,
                        c.origin.pos,
                        format!("duplicate {kind} {id}: also defined at {first}"),
                    ));
                    continue;
                }
                seen.insert(key, c.origin.clone());
            }
            let object = match c {
                Cow::Owned(c) => c.object,
                Cow::Borrowed(c) => c.object.clone(),
            };
            objects.extend(object);
        }
        let model = Model::from_objects(objects, &mut problems);
        (model, problems)
    }

    /// Assembles converted objects (already free of duplicates) and reports address and
    /// interface clashes.
    fn from_objects(objects: Vec<Object>, problems: &mut Vec<Diagnostic>) -> Model {
        let mut model = Model::default();
        // `build` has already dropped duplicates, found on the raw identity.
        for object in objects {
            match object {
                Object::Namespace(n) => {
                    model.namespaces.insert(n.name.clone(), n);
                }
                Object::Endpoint(e) => {
                    model
                        .endpoints
                        .insert((e.namespace.clone(), e.name.clone()), e);
                }
                Object::Policy(p) => {
                    model
                        .policies
                        .insert((p.namespace.clone(), p.name.clone()), p);
                }
                Object::Tiered(p) => {
                    model.tiered.insert(p.key(), p);
                }
                Object::Host(h) => {
                    model.hosts.insert(h.name.clone(), h);
                }
                Object::Node(n) => {
                    model.nodes.insert(n.name.clone(), n);
                }
            }
        }
        let named: BTreeSet<String> = model
            .endpoints
            .keys()
            .chain(model.policies.keys())
            .chain(model.tiered.keys().filter(|(ns, _)| !ns.is_empty()))
            .map(|(ns, _)| ns.clone())
            .collect();
        for ns in named {
            if !model.namespaces.contains_key(&ns) {
                model.namespaces.insert(ns.clone(), Namespace::implied(&ns));
            }
        }
        model.check_endpoint_clashes(problems);
        model.check_host_clashes(problems);
        model
    }

    /// A host endpoint's interface is not a workload's, nor another host endpoint's on
    /// the same node (`*` at most once per node); its expected addresses are no
    /// workload's nor another host endpoint's. Clashing host endpoints are left out,
    /// as clashing workloads are, and their files fall back to their last good content.
    fn check_host_clashes(&mut self, problems: &mut Vec<Diagnostic>) {
        let same_node =
            |a: &Option<String>, b: &Option<String>| a.is_none() || b.is_none() || a == b;
        let mut clashing = BTreeSet::new();
        let mut ip_owner: BTreeMap<IpAddr, String> = BTreeMap::new();
        for ep in self.endpoints.values() {
            for ip in &ep.ips {
                ip_owner.insert(*ip, format!("WorkloadEndpoint {} ({})", ep.id(), ep.origin));
            }
        }
        let mut seen: Vec<(&HostEndpoint, &HostInterface)> = Vec::new();
        let mut written: Vec<_> = self.hosts.iter().collect();
        written.sort_by(|a, b| {
            (&a.1.origin.file, a.1.origin.pos).cmp(&(&b.1.origin.file, b.1.origin.pos))
        });
        for (name, h) in written {
            let here = |pos| Origin {
                file: h.origin.file.clone(),
                pos,
            };
            if let HostInterface::Named(iface) = &h.interface
                && let Some(ep) = self
                    .endpoints
                    .values()
                    .find(|ep| ep.interface == *iface && same_node(&ep.node, &h.node))
            {
                let at = here(h.interface_pos);
                problems.push(Diagnostic::new(
                    &at.file,
                    at.pos,
                    format!(
                        "spec.interfaceName: {iface} is already the interface of WorkloadEndpoint {} ({}) on the same node",
                        ep.id(),
                        ep.origin
                    ),
                ));
                clashing.insert(name.clone());
            }
            if let Some((other, _)) = seen
                .iter()
                .find(|(o, i)| **i == h.interface && same_node(&o.node, &h.node))
            {
                let at = here(h.interface_pos);
                problems.push(Diagnostic::new(
                    &at.file,
                    at.pos,
                    format!(
                        "spec.interfaceName: {} is already the interface of HostEndpoint {} ({}) on the same node",
                        h.interface, other.name, other.origin
                    ),
                ));
                clashing.insert(name.clone());
            }
            seen.push((h, &h.interface));
            for (i, ip) in h.expected_ips.iter().enumerate() {
                if let Some(owner) = ip_owner.get(ip) {
                    let at = here(h.ip_pos[i]);
                    problems.push(Diagnostic::new(
                        &at.file,
                        at.pos,
                        format!("spec.expectedIPs[{i}]: {ip} is already an address of {owner}"),
                    ));
                    clashing.insert(name.clone());
                } else {
                    ip_owner.insert(*ip, format!("HostEndpoint {} ({})", h.name, h.origin));
                }
            }
        }
        for name in clashing {
            self.hosts.remove(&name);
        }
    }

    /// An address belongs to one endpoint only, and an interface to one endpoint per node;
    /// otherwise the kernel could not tell whose rules apply. Both places are named.
    fn check_endpoint_clashes(&mut self, problems: &mut Vec<Diagnostic>) {
        let mut owner_of_ip: BTreeMap<IpAddr, (String, Origin)> = BTreeMap::new();
        // Interface → the endpoints using it, with their nodes. An endpoint without a
        // node runs on whichever node loads it, so it clashes with every node's.
        let mut users_of_if: BTreeMap<String, Vec<(Option<String>, String, Origin)>> =
            BTreeMap::new();
        let mut clashing = BTreeSet::new();
        // In the order they are written, so that of two clashing endpoints the later
        // one is refused, as of two definitions of one object: adding a file never
        // takes away what another file already holds.
        let mut written: Vec<_> = self.endpoints.iter().collect();
        written.sort_by(|a, b| {
            (&a.1.origin.file, a.1.origin.pos).cmp(&(&b.1.origin.file, b.1.origin.pos))
        });
        for (key, ep) in written {
            for (i, ip) in ep.ips.iter().enumerate() {
                let here = Origin {
                    file: ep.origin.file.clone(),
                    pos: ep.ip_pos[i],
                };
                match owner_of_ip.get(ip) {
                    Some((other, at)) => {
                        problems.push(Diagnostic::new(
                            &here.file,
                            here.pos,
                            format!(
                                "spec.ips[{i}]: {ip} is already an address of WorkloadEndpoint {other} ({at})"
                            ),
                        ));
                        clashing.insert(key.clone());
                    }
                    None => {
                        owner_of_ip.insert(*ip, (ep.id(), here));
                    }
                }
            }
            let here = Origin {
                file: ep.origin.file.clone(),
                pos: ep.interface_pos,
            };
            let users = users_of_if.entry(ep.interface.clone()).or_default();
            let same_node =
                |node: &Option<String>| node.is_none() || ep.node.is_none() || *node == ep.node;
            match users.iter().find(|(node, _, _)| same_node(node)) {
                Some((_, other, at)) => {
                    problems.push(Diagnostic::new(
                        &here.file,
                        here.pos,
                        format!(
                            "spec.interfaceName: {} is already the interface of WorkloadEndpoint {other} ({at}) on the same node",
                            ep.interface
                        ),
                    ));
                    clashing.insert(key.clone());
                }
                None => users.push((ep.node.clone(), ep.id(), here)),
            }
        }
        for key in clashing {
            self.endpoints.remove(&key);
        }
    }
}
