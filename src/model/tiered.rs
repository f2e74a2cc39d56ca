//! The `netpold.io/v1` policy kinds, `NetworkPolicy` (namespaced) and
//! `GlobalNetworkPolicy` (cluster-wide), as Calico defines them: ordered policies with
//! selector expressions and rules that `Allow`, `Deny`, `Log` or `Pass`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use ipnet::IpNet;

use super::{Direction, Protocol};
use crate::diag::Origin;
use crate::selector::expr::Expr;

/// A policy's `order`: lower runs first. Always finite.
#[derive(Clone, Copy, Debug)]
pub struct Order(f64);

impl Order {
    /// Where the Kubernetes NetworkPolicies sit among the ordered policies (Calico's).
    pub const KUBERNETES: Order = Order(1000.0);

    /// `None` for NaN and the infinities.
    pub fn new(value: f64) -> Option<Order> {
        // -0.0 and 0.0 are one order.
        value.is_finite().then_some(Order(value + 0.0))
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

impl PartialEq for Order {
    fn eq(&self, other: &Order) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Order {}
impl PartialOrd for Order {
    fn partial_cmp(&self, other: &Order) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Order {
    fn cmp(&self, other: &Order) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl Hash for Order {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Accept: final for this direction.
    Allow,
    /// Drop: final.
    Deny,
    /// Log the packet and go on with the next rule.
    Log,
    /// Skip the remaining netpold.io policies; the Kubernetes NetworkPolicies decide.
    Pass,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "Allow" => Some(Action::Allow),
            "Deny" => Some(Action::Deny),
            "Log" => Some(Action::Log),
            "Pass" => Some(Action::Pass),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "Allow",
            Action::Deny => "Deny",
            Action::Log => "Log",
            Action::Pass => "Pass",
        })
    }
}

/// A rule's `protocol`. Numbers with a name are read as the name (6 is TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleProtocol {
    /// TCP, UDP or SCTP: the protocols with ports.
    Ported(Protocol),
    Icmp,
    Icmpv6,
    /// Any other IP protocol number (1-255).
    Number(u8),
}

impl RuleProtocol {
    pub fn from_number(n: u8) -> RuleProtocol {
        match n {
            1 => RuleProtocol::Icmp,
            6 => RuleProtocol::Ported(Protocol::Tcp),
            17 => RuleProtocol::Ported(Protocol::Udp),
            58 => RuleProtocol::Icmpv6,
            132 => RuleProtocol::Ported(Protocol::Sctp),
            n => RuleProtocol::Number(n),
        }
    }

    pub fn parse(s: &str) -> Option<RuleProtocol> {
        match s {
            "ICMP" => Some(RuleProtocol::Icmp),
            "ICMPv6" => Some(RuleProtocol::Icmpv6),
            other => Protocol::parse(other).map(RuleProtocol::Ported),
        }
    }

    pub fn number(self) -> u8 {
        match self {
            RuleProtocol::Icmp => 1,
            RuleProtocol::Ported(Protocol::Tcp) => 6,
            RuleProtocol::Ported(Protocol::Udp) => 17,
            RuleProtocol::Icmpv6 => 58,
            RuleProtocol::Ported(Protocol::Sctp) => 132,
            RuleProtocol::Number(n) => n,
        }
    }

    /// The only address family this protocol is carried in, if one.
    pub fn version(self) -> Option<IpVersion> {
        match self {
            RuleProtocol::Icmp => Some(IpVersion::V4),
            RuleProtocol::Icmpv6 => Some(IpVersion::V6),
            _ => None,
        }
    }
}

impl fmt::Display for RuleProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleProtocol::Ported(p) => write!(f, "{p}"),
            RuleProtocol::Icmp => f.write_str("ICMP"),
            RuleProtocol::Icmpv6 => f.write_str("ICMPv6"),
            RuleProtocol::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

impl IpVersion {
    pub fn of(net: &IpNet) -> IpVersion {
        match net {
            IpNet::V4(_) => IpVersion::V4,
            IpNet::V6(_) => IpVersion::V6,
        }
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpVersion::V4 => "4",
            IpVersion::V6 => "6",
        })
    }
}

/// An ICMP (or ICMPv6) type, and a code within it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

/// One item of `ports` or `notPorts`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortItem {
    /// Inclusive; a single port is `Range(p, p)`.
    Range(u16, u16),
    Named(String),
}

/// A rule's `source` or `destination`: every field given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entity {
    /// Endpoints by labels; `None`: any address (subject to the other fields).
    pub selector: Option<Expr>,
    /// Namespaces by labels, for `selector` (or, alone, every endpoint in them).
    pub namespace_selector: Option<Expr>,
    /// The address is in one of these (empty: no condition).
    pub nets: Vec<IpNet>,
    /// The address is in none of these.
    pub not_nets: Vec<IpNet>,
    /// The port is one of these (empty: no condition).
    pub ports: Vec<PortItem>,
    /// The port is none of these.
    pub not_ports: Vec<PortItem>,
}

impl Entity {
    /// Whether it selects endpoints (as opposed to any address).
    pub fn selects_endpoints(&self) -> bool {
        self.selector.is_some() || self.namespace_selector.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TierRule {
    pub action: Action,
    pub protocol: Option<RuleProtocol>,
    pub ip_version: Option<IpVersion>,
    pub icmp: Option<IcmpMatch>,
    pub not_icmp: Option<IcmpMatch>,
    pub source: Entity,
    pub destination: Entity,
}

/// A `netpold.io/v1` NetworkPolicy (`global` false) or GlobalNetworkPolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TieredPolicy {
    pub global: bool,
    /// Empty for a GlobalNetworkPolicy.
    pub namespace: String,
    pub name: String,
    /// `None`: after every ordered policy (Calico's "infinite" order).
    pub order: Option<Order>,
    /// The endpoints it applies to: of its namespace, or (global) of every namespace
    /// `namespace_selector` matches.
    pub selector: Expr,
    /// GlobalNetworkPolicy only; `None`: every namespace.
    pub namespace_selector: Option<Expr>,
    /// The nodes that enforce it, by their labels; `None`: every node.
    pub node_selector: Option<Expr>,
    /// `Some` exactly when the effective `types` contain Ingress.
    pub ingress: Option<Vec<TierRule>>,
    pub egress: Option<Vec<TierRule>>,
    /// GlobalNetworkPolicy only: it also filters traffic forwarded through the
    /// interfaces of the host endpoints it selects.
    pub apply_on_forward: bool,
    /// `Some` for a `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy or
    /// BaselineAdminNetworkPolicy lowered to this form (`global`, with a
    /// `namespace_selector`, so it never selects host endpoints).
    pub admin: Option<Admin>,
    pub origin: Origin,
}

/// What an admin policy adds to its lowered form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// BaselineAdminNetworkPolicy (the singleton `default`).
    pub baseline: bool,
    /// 0-1000, lower first; 0 for the baseline.
    pub priority: u32,
    /// For each lowered rule of `ingress`, the index of the manifest rule and its name
    /// (a manifest rule with several peers or ports becomes several lowered rules).
    pub ingress_rules: Vec<(usize, String)>,
    pub egress_rules: Vec<(usize, String)>,
}

impl Admin {
    pub fn kind(&self) -> &'static str {
        if self.baseline {
            "BaselineAdminNetworkPolicy"
        } else {
            "AdminNetworkPolicy"
        }
    }
}

impl TieredPolicy {
    /// Whether it selects the host endpoint `host`: a GlobalNetworkPolicy without
    /// `namespaceSelector` whose selector matches the host endpoint's labels.
    pub fn selects_host(&self, host: &super::HostEndpoint) -> bool {
        self.global && self.namespace_selector.is_none() && self.selector.matches(&host.labels)
    }

    /// The kind as manifests and messages name it.
    pub fn kind(&self) -> &'static str {
        if let Some(a) = &self.admin {
            a.kind()
        } else if self.global {
            "GlobalNetworkPolicy"
        } else {
            "netpold.io/v1 NetworkPolicy"
        }
    }

    /// `ns/name`, or the name alone for a global policy.
    pub fn id(&self) -> String {
        if self.global {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }

    /// The kind and id, as explain and comments name the policy.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind(), self.id())
    }

    pub fn rules(&self, direction: Direction) -> Option<&[TierRule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// The key of `Model::tiered`: (namespace, name), or for an admin policy ("",
    /// `Kind:name`), which no netpold.io policy's name can be.
    pub fn key(&self) -> (String, String) {
        match &self.admin {
            Some(a) => (String::new(), format!("{}:{}", a.kind(), self.name)),
            None => (self.namespace.clone(), self.name.clone()),
        }
    }

    /// The manifest rule (index) a lowered rule of `direction` was written as.
    pub fn source_rule(&self, direction: Direction, lowered: usize) -> usize {
        match &self.admin {
            Some(a) => match direction {
                Direction::Ingress => a.ingress_rules[lowered].0,
                Direction::Egress => a.egress_rules[lowered].0,
            },
            None => lowered,
        }
    }

    /// Whether it is one of the ordered policies (not an admin policy).
    pub fn is_ordered(&self) -> bool {
        self.admin.is_none()
    }

    /// Where the policy runs: by order (absent last), then name, then namespace.
    pub fn sort_key(&self) -> (bool, Option<Order>, &str, &str) {
        (
            self.order.is_none(),
            self.order,
            &self.name,
            &self.namespace,
        )
    }

    /// Whether two versions compile alike: they differ at most in where they were written.
    pub fn compiles_like(&self, other: &TieredPolicy) -> bool {
        let strip = |p: &TieredPolicy| {
            let mut p = p.clone();
            p.origin = Origin::default();
            p
        };
        strip(self) == strip(other)
    }
}
