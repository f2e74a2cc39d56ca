//! Why a flow is allowed or denied, from the rules the kernel gets: the model is
//! compiled for the node that enforces each side (the sender's node for its egress,
//! the receiver's node for its ingress), the packet runs through that ruleset with
//! `ir::eval`, and `compile::Origins` names the endpoint, policies and policy rule
//! behind the rules it took. No second implementation of the semantics: what this
//! says is what the kernel does. `netpold explain` prints one `Explanation`;
//! `netpold matrix` (`crate::matrix`) asks for one per pair of endpoints.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::compile::{self, ChainOrigin, ObjectKey, Origins};
use crate::ir::eval::{self, CtInfo, Packet, RuleRef};
use crate::ir::{Hook, Ruleset, Verdict};
use crate::model::{Direction, Endpoint, HostEndpoint, HostInterface, Model, Protocol};

/// One end of a flow, as the command line names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Party {
    /// A WorkloadEndpoint, `namespace/name`.
    Endpoint(String, String),
    /// An address: an endpoint's (which stands for that endpoint) or any other.
    Ip(IpAddr),
    /// A HostEndpoint, `host:name`: the host itself, by that interface.
    Host(String),
}

impl FromStr for Party {
    type Err = String;

    fn from_str(s: &str) -> Result<Party, String> {
        if let Some(name) = s.strip_prefix("host:") {
            if name.is_empty() {
                return Err("host: needs the name of a HostEndpoint, host:<name>".to_owned());
            }
            return Ok(Party::Host(name.to_owned()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Party::Ip(ip));
        }
        if s.parse::<ipnet::IpNet>().is_ok() {
            return Err(format!("{s} is a network: give one address"));
        }
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Party::Endpoint(ns.to_owned(), name.to_owned()))
            }
            _ => Err(format!(
                "{s:?} is neither namespace/name of an endpoint nor an IP address"
            )),
        }
    }
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Endpoint(ns, name) => write!(f, "{ns}/{name}"),
            Party::Ip(ip) => write!(f, "{ip}"),
            Party::Host(name) => write!(f, "host:{name}"),
        }
    }
}

/// A destination port and its protocol: `N` (TCP) or `N/tcp`, `N/udp`, `N/sctp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub protocol: Protocol,
    pub number: u16,
}

impl FromStr for Port {
    type Err = String;

    fn from_str(s: &str) -> Result<Port, String> {
        let (number, protocol) = match s.split_once('/') {
            None => (s, Protocol::Tcp),
            Some((n, p)) => (
                n,
                Protocol::parse(&p.to_ascii_uppercase())
                    .ok_or_else(|| format!("protocol {p:?}: one of tcp, udp, sctp"))?,
            ),
        };
        match number.parse::<u16>() {
            Ok(n) if n > 0 && number.bytes().all(|b| b.is_ascii_digit()) => Ok(Port {
                protocol,
                number: n,
            }),
            _ => Err(format!(
                "port {number:?}: a number 1-65535, optionally followed by /tcp, /udp or /sctp"
            )),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.number)
    }
}

/// The source port of a flow when none is given: an ephemeral port, inside Linux's
/// default range (32768-60999), as a client's connection has.
pub const DEFAULT_SOURCE_PORT: u16 = 40000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    #[error("no WorkloadEndpoint {0} in the manifests")]
    UnknownEndpoint(String),
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("no HostEndpoint {0} in the manifests")]
    UnknownHost(String),
    #[error("{from} and {to} have no address family in common")]
    NoCommonFamily { from: String, to: String },
    #[error("{0} to itself never passes through the host: there is nothing to explain")]
    Itself(String),
}

/// One end of a flow once resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    /// `namespace/name`, when the address is an endpoint's.
    pub endpoint: Option<String>,
    pub ip: IpAddr,
    /// The node that enforces this endpoint's policy.
    pub node: Option<String>,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(id) => write!(f, "{id} ({})", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// The rule of a policy that allows a flow: `policy direction[rule]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRuleRef {
    pub policy: String,
    pub direction: Direction,
    pub rule: usize,
}

impl fmt::Display for PolicyRuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.policy, self.direction, self.rule)
    }
}

/// What one side's policy (the sender's egress or the receiver's ingress) does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub direction: Direction,
    /// `None`: the address is no endpoint's, so no policy of this side applies.
    pub endpoint: Option<String>,
    pub node: Option<String>,
    /// At least one policy selects the endpoint and governs this direction.
    pub isolated: bool,
    /// Those policies, in the order the endpoint's chain jumps to them.
    pub policies: Vec<String>,
    pub allowed: bool,
    /// The policy rule that allows the flow, when one does.
    pub allowed_by: Option<PolicyRuleRef>,
    /// The netpold.io policy rule (`Deny`) that denies the flow, when one does.
    pub denied_by: Option<PolicyRuleRef>,
    /// The netpold.io policy rule (`Pass`) that handed the flow to the Kubernetes
    /// NetworkPolicies, when one did.
    pub passed_by: Option<PolicyRuleRef>,
    /// Why, in one line.
    pub reason: String,
    /// The rules whose verdicts were taken, `chain[index]`.
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub from: End,
    pub to: End,
    pub port: Port,
    /// The sender's port.
    pub source_port: u16,
    pub allowed: bool,
    /// The direction whose policy drops the flow in the kernel (the first on the
    /// packet's way); `None` when allowed, or dropped by a rule of no endpoint.
    pub decided_by: Option<Direction>,
    /// The host endpoint (`host:NAME`) whose applyOnForward policy drops the
    /// forwarded flow in the kernel, when one does (`decided_by` is then `None`).
    pub decided_by_host: Option<String>,
    pub egress: Side,
    pub ingress: Side,
    /// The applyOnForward policies of host endpoints the forwarded packet passes, in
    /// order: the ingress of the one it enters by, the egress of the one it leaves by.
    pub hosts: Vec<Side>,
}

impl Explanation {
    pub fn side(&self, direction: Direction) -> &Side {
        match direction {
            Direction::Egress => &self.egress,
            Direction::Ingress => &self.ingress,
        }
    }

    /// The policies behind the verdict: the rules that allow it, or the policies
    /// of the direction that denies it (none: no endpoint chain decided).
    pub fn deciding(&self) -> Vec<String> {
        if let (false, Some(host)) = (self.allowed, &self.decided_by_host)
            && let Some(side) = self
                .hosts
                .iter()
                .find(|s| !s.allowed && s.endpoint.as_ref() == Some(host))
        {
            return match &side.denied_by {
                Some(r) => vec![r.to_string()],
                None => side.policies.clone(),
            };
        }
        match (self.allowed, self.decided_by) {
            (true, _) => [&self.egress, &self.ingress]
                .into_iter()
                .chain(&self.hosts)
                .filter_map(|s| s.allowed_by.as_ref().map(ToString::to_string))
                .collect(),
            (false, Some(d)) => match &self.side(d).denied_by {
                Some(r) => vec![r.to_string()],
                None => self.side(d).policies.clone(),
            },
            (false, None) => Vec::new(),
        }
    }

    /// The stable JSON form `netpold explain --json` prints (see the README).
    pub fn to_json(&self) -> serde_json::Value {
        let end = |e: &End| {
            serde_json::json!({
                "endpoint": e.endpoint,
                "ip": e.ip.to_string(),
                "node": e.node,
            })
        };
        let side = |s: &Side| {
            serde_json::json!({
                "endpoint": s.endpoint,
                "node": s.node,
                "isolated": s.isolated,
                "policies": s.policies,
                "verdict": verdict_word(s.allowed),
                "allowed_by": s.allowed_by.as_ref().map(|r| serde_json::json!({
                    "policy": r.policy,
                    "rule": r.rule,
                })),
                "denied_by": s.denied_by.as_ref().map(|r| serde_json::json!({
                    "policy": r.policy,
                    "rule": r.rule,
                })),
                "passed_by": s.passed_by.as_ref().map(|r| serde_json::json!({
                    "policy": r.policy,
                    "rule": r.rule,
                })),
                "reason": s.reason,
                "rules": s.rules,
            })
        };
        serde_json::json!({
            "from": end(&self.from),
            "to": end(&self.to),
            "protocol": self.port.protocol.to_string(),
            "port": self.port.number,
            "source_port": self.source_port,
            "verdict": verdict_word(self.allowed),
            "decided_by": self.decided_by.map(|d| d.to_string()),
            "decided_by_host": self.decided_by_host,
            "egress": side(&self.egress),
            "ingress": side(&self.ingress),
            "hosts": self.hosts.iter().map(|s| {
                let mut v = side(s);
                v["direction"] = serde_json::json!(s.direction.to_string());
                v
            }).collect::<Vec<_>>(),
        })
    }
}

pub fn verdict_word(allowed: bool) -> &'static str {
    if allowed { "allowed" } else { "denied" }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sport = if self.source_port == DEFAULT_SOURCE_PORT {
            String::new()
        } else {
            format!(" from port {}", self.source_port)
        };
        write!(
            f,
            "{} -> {}, {}{sport}: {}",
            self.from,
            self.to,
            self.port,
            verdict_word(self.allowed)
        )?;
        match (self.allowed, self.decided_by, &self.decided_by_host) {
            (true, _, _) => writeln!(f)?,
            (false, _, Some(host)) => {
                writeln!(f, " by the forwarding policy of {host} (applyOnForward)")?
            }
            (false, Some(Direction::Egress), None) => {
                writeln!(f, " by the sender's egress policy")?
            }
            (false, Some(Direction::Ingress), None) => {
                writeln!(f, " by the receiver's ingress policy")?
            }
            (false, None, None) => writeln!(f)?,
        }
        for side in [&self.egress, &self.ingress] {
            let address = match side.direction {
                Direction::Egress => self.from.ip,
                Direction::Ingress => self.to.ip,
            };
            let who = match (&side.endpoint, &side.node) {
                (Some(id), Some(node)) => format!("{id} (node {node})"),
                (Some(id), None) => id.clone(),
                (None, _) => address.to_string(),
            };
            let of = match side.direction {
                Direction::Egress => "egress ",
                Direction::Ingress => "ingress",
            };
            write!(f, "  {of} of {who}: {}", side.reason)?;
            if self.decided_by == Some(Direction::Egress) && side.direction == Direction::Ingress {
                write!(f, " (not reached: the egress drop comes first)")?;
            }
            writeln!(f)?;
        }
        for side in &self.hosts {
            let who = match (&side.endpoint, &side.node) {
                (Some(id), Some(node)) => format!("{id} (node {node})"),
                (Some(id), None) => id.clone(),
                (None, _) => "a host endpoint".to_owned(),
            };
            writeln!(
                f,
                "  forwarded {} by {who}: {}",
                side.direction, side.reason
            )?;
        }
        Ok(())
    }
}

/// Answers questions about one model: compiles it for each node on first use and
/// keeps the result, so that a matrix of many flows compiles once per node.
pub struct Explainer<'m> {
    model: &'m Model,
    /// The node of endpoints that name none (the node that loads them).
    default_node: String,
    table: String,
    by_ip: HashMap<IpAddr, &'m Endpoint>,
    by_host_ip: HashMap<IpAddr, &'m HostEndpoint>,
    compiled: HashMap<String, (Ruleset, Origins)>,
    options: compile::Options,
    source_port: u16,
    /// The interface an end that is no local endpoint is reached by; `None`: the one
    /// host endpoint of the node that names an interface, if exactly one does.
    via: Option<String>,
}

/// An end during explanation: the endpoint, when it is one, and its candidate addresses.
struct Resolved<'m> {
    endpoint: Option<&'m Endpoint>,
    host: Option<&'m HostEndpoint>,
    ips: Vec<IpAddr>,
}

/// The first address of each family both ends have, IPv4 first.
fn address_pairs(src: &Resolved<'_>, dst: &Resolved<'_>) -> Vec<(IpAddr, IpAddr)> {
    [true, false]
        .into_iter()
        .filter_map(|v4| {
            let s = src.ips.iter().find(|ip| ip.is_ipv4() == v4)?;
            let d = dst.ips.iter().find(|ip| ip.is_ipv4() == v4)?;
            Some((*s, *d))
        })
        .collect()
}

impl<'m> Explainer<'m> {
    pub fn new(model: &'m Model, default_node: &str, table: &str) -> Explainer<'m> {
        let by_ip = model
            .endpoints
            .values()
            .flat_map(|ep| ep.ips.iter().map(move |ip| (*ip, ep)))
            .collect();
        let by_host_ip = model
            .hosts
            .values()
            .flat_map(|h| h.expected_ips.iter().map(move |ip| (*ip, h)))
            .collect();
        Explainer {
            model,
            default_node: default_node.to_owned(),
            table: table.to_owned(),
            by_ip,
            by_host_ip,
            compiled: HashMap::new(),
            options: compile::Options::default(),
            source_port: DEFAULT_SOURCE_PORT,
            via: None,
        }
    }

    /// Compiles as `run` would with this configuration (drop logs), so the rules
    /// explained are the kernel's to the rule.
    pub fn with_options(mut self, options: compile::Options) -> Explainer<'m> {
        self.options = options;
        self
    }

    /// The sender's port of the flows explained (default `DEFAULT_SOURCE_PORT`).
    pub fn with_source_port(mut self, port: u16) -> Explainer<'m> {
        self.source_port = port;
        self
    }

    /// The interface by which the end of a flow that is no local endpoint (an outside
    /// address, an endpoint of another node) is reached on the node explained.
    pub fn with_via(mut self, interface: Option<String>) -> Explainer<'m> {
        self.via = interface;
        self
    }

    /// The interface outside traffic comes in and goes out by on `node`: `with_via`'s,
    /// else the interface of the node's one host endpoint that names one (an edge box's
    /// uplink), else none (an interface no endpoint claims).
    fn via_interface(&self, node: &str) -> Option<String> {
        if self.via.is_some() {
            return self.via.clone();
        }
        let mut named = self
            .model
            .hosts
            .values()
            .filter_map(|h| match &h.interface {
                HostInterface::Named(name)
                    if h.is_local(node) && !self.is_workload_interface(node, name) =>
                {
                    Some(name)
                }
                _ => None,
            });
        match (named.next(), named.next()) {
            (Some(one), None) => Some(one.clone()),
            _ => None,
        }
    }

    fn is_workload_interface(&self, node: &str, interface: &str) -> bool {
        self.model
            .endpoints
            .values()
            .any(|ep| ep.interface == interface && ep.is_local(node))
    }

    /// The local host endpoint of `interface` on `node`: the one naming it, else the `*`
    /// one (which covers every interface no workload claims).
    fn host_of_interface(&self, node: &str, interface: &str) -> Option<&'m HostEndpoint> {
        if self.is_workload_interface(node, interface) {
            return None;
        }
        let local = || self.model.hosts.values().filter(|h| h.is_local(node));
        local()
            .find(|h| h.interface == HostInterface::Named(interface.to_owned()))
            .or_else(|| local().find(|h| h.interface == HostInterface::All))
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    fn node_of(&self, ep: &Endpoint) -> String {
        ep.node.clone().unwrap_or_else(|| self.default_node.clone())
    }

    fn compiled(&mut self, node: &str) -> &(Ruleset, Origins) {
        if !self.compiled.contains_key(node) {
            let c = compile::explainable(self.model, node, &self.table, &self.options);
            self.compiled.insert(node.to_owned(), c);
        }
        &self.compiled[node]
    }

    fn resolve(&self, party: &Party) -> Result<Resolved<'m>, ExplainError> {
        match party {
            Party::Endpoint(ns, name) => {
                let ep = self
                    .model
                    .endpoints
                    .get(&(ns.clone(), name.clone()))
                    .ok_or_else(|| ExplainError::UnknownEndpoint(party.to_string()))?;
                if ep.ips.is_empty() {
                    return Err(ExplainError::NoAddress(party.to_string()));
                }
                Ok(Resolved {
                    endpoint: Some(ep),
                    host: None,
                    ips: ep.ips.clone(),
                })
            }
            Party::Ip(ip) => Ok(Resolved {
                endpoint: self.by_ip.get(ip).copied(),
                host: self.by_host_ip.get(ip).copied(),
                ips: vec![*ip],
            }),
            Party::Host(name) => {
                let h = self
                    .model
                    .hosts
                    .get(name)
                    .ok_or_else(|| ExplainError::UnknownHost(party.to_string()))?;
                if h.expected_ips.is_empty() {
                    return Err(ExplainError::NoAddress(format!(
                        "{party} (give it expectedIPs, or name an address)"
                    )));
                }
                Ok(Resolved {
                    endpoint: None,
                    host: Some(h),
                    ips: h.expected_ips.clone(),
                })
            }
        }
    }

    /// Explains a flow from `from` to `to`. An endpoint named by `namespace/name`
    /// sends from (or is reached at) its first address of the first family, IPv4
    /// before IPv6, that both ends have.
    pub fn explain(
        &mut self,
        from: &Party,
        to: &Party,
        port: Port,
    ) -> Result<Explanation, ExplainError> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        if let (Some(a), Some(b)) = (src.endpoint, dst.endpoint)
            && std::ptr::eq(a, b)
        {
            return Err(ExplainError::Itself(a.id()));
        }
        if let (Some(a), Some(b)) = (src.host, dst.host)
            && self.host_node(a) == self.host_node(b)
        {
            return Err(ExplainError::Itself(format!("the host of {}", a.id())));
        }
        let (src_ip, dst_ip) = address_pairs(&src, &dst)
            .into_iter()
            .next()
            .ok_or_else(|| ExplainError::NoCommonFamily {
                from: from.to_string(),
                to: to.to_string(),
            })?;
        Ok(self.explain_pair(&src, src_ip, &dst, dst_ip, port))
    }

    /// One flow once both ends are resolved: through host endpoints when one end is one.
    fn explain_pair(
        &mut self,
        src: &Resolved<'m>,
        src_ip: IpAddr,
        dst: &Resolved<'m>,
        dst_ip: IpAddr,
        port: Port,
    ) -> Explanation {
        if src.host.is_some() || dst.host.is_some() {
            self.explain_host((src, src_ip), (dst, dst_ip), port)
        } else {
            self.explain_resolved((src.endpoint, src_ip), (dst.endpoint, dst_ip), port)
        }
    }

    /// `explain` for every address family both ends have (IPv4 first): policies can
    /// treat the families differently (an ipBlock is of one family).
    pub fn explain_each_family(
        &mut self,
        from: &Party,
        to: &Party,
        port: Port,
    ) -> Result<Vec<Explanation>, ExplainError> {
        let first = self.explain(from, to, port)?;
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        let mut all = vec![first];
        for (src_ip, dst_ip) in address_pairs(&src, &dst).into_iter().skip(1) {
            all.push(self.explain_pair(&src, src_ip, &dst, dst_ip, port));
        }
        Ok(all)
    }

    fn explain_resolved(
        &mut self,
        from: (Option<&'m Endpoint>, IpAddr),
        to: (Option<&'m Endpoint>, IpAddr),
        port: Port,
    ) -> Explanation {
        let end = |this: &Self, (ep, ip): (Option<&Endpoint>, IpAddr)| End {
            endpoint: ep.map(Endpoint::id),
            ip,
            node: ep.map(|e| this.node_of(e)),
        };
        let (from_end, to_end) = (end(self, from), end(self, to));
        // The kernel's verdict: the sender's node, then the receiver's, each running
        // the packet through its whole table as netfilter would.
        let mut nodes: Vec<String> = [&from_end.node, &to_end.node]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        nodes.dedup();
        let mut allowed = true;
        let mut decided_by = None;
        let mut decided_by_host = None;
        let mut hosts = Vec::new();
        for node in &nodes {
            let pkt = self.packet(node, from, to, port);
            // The applyOnForward policies of the host endpoints on the way, shown
            // whatever the kernel decides first.
            for (iface, direction) in [
                (&pkt.iif, Direction::Ingress),
                (&pkt.oif, Direction::Egress),
            ] {
                let Some(h) = iface
                    .as_deref()
                    .and_then(|i| self.host_of_interface(node, i))
                else {
                    continue;
                };
                if self
                    .compiled(node)
                    .1
                    .host_chain(&h.name, direction, true)
                    .is_some()
                {
                    hosts.push(self.host_side(direction, h, node, &pkt, true));
                }
            }
            if !allowed {
                continue;
            }
            let (rs, origins) = self.compiled(node);
            let trace = eval::run(rs, &pkt);
            if trace.accepted {
                continue;
            }
            allowed = false;
            // The endpoint (or host endpoint) chain that dropped it or called the
            // policy chain that did; none when a base chain's own rule dropped it.
            let deciding = trace
                .path
                .iter()
                .rev()
                // The copy of an endpoint chain an AdminNetworkPolicy's Pass goes to
                // decides for that endpoint chain.
                .map(|r| {
                    let chain = origins
                        .admin_rest
                        .get(&r.chain)
                        .map_or(&r.chain, |(endpoint_chain, _)| endpoint_chain);
                    origins.chains.get(chain)
                })
                .find(|o| {
                    !matches!(
                        o,
                        Some(ChainOrigin::Policy { .. } | ChainOrigin::Tiered { .. })
                    )
                })
                .flatten();
            match deciding {
                Some(ChainOrigin::Host {
                    host,
                    forward: true,
                    ..
                }) => decided_by_host = Some(format!("host:{host}")),
                Some(
                    ChainOrigin::Endpoint { direction, .. }
                    | ChainOrigin::Passed { direction, .. }
                    | ChainOrigin::Host { direction, .. },
                ) => decided_by = Some(*direction),
                _ => {}
            }
        }
        let egress = self.side(Direction::Egress, from, to, port);
        let ingress = self.side(Direction::Ingress, from, to, port);
        Explanation {
            from: from_end,
            to: to_end,
            port,
            source_port: self.source_port,
            allowed,
            decided_by,
            decided_by_host,
            egress,
            ingress,
            hosts,
        }
    }

    /// The packet as `node` sees it: forwarded, by the interfaces of the ends that
    /// are endpoints of that node (any other end is beyond `via_interface`).
    fn packet(
        &self,
        node: &str,
        from: (Option<&Endpoint>, IpAddr),
        to: (Option<&Endpoint>, IpAddr),
        port: Port,
    ) -> Packet {
        let via = self.via_interface(node);
        let iface = |ep: Option<&Endpoint>| match ep.filter(|e| e.is_local(node)) {
            Some(e) => Some(e.interface.clone()),
            None => via.clone(),
        };
        Packet {
            hook: Hook::Forward,
            iif: iface(from.0),
            oif: iface(to.0),
            src: from.1,
            dst: to.1,
            protocol: port.protocol,
            sport: self.source_port,
            dport: port.number,
            ct: CtInfo::New,
        }
    }

    /// One side's policy, evaluated on its own: the endpoint's chain on its node.
    fn side(
        &mut self,
        direction: Direction,
        from: (Option<&'m Endpoint>, IpAddr),
        to: (Option<&'m Endpoint>, IpAddr),
        port: Port,
    ) -> Side {
        let (ep, _) = match direction {
            Direction::Egress => from,
            Direction::Ingress => to,
        };
        let Some(ep) = ep else {
            return Side {
                direction,
                endpoint: None,
                node: None,
                isolated: false,
                policies: Vec::new(),
                allowed: true,
                allowed_by: None,
                denied_by: None,
                passed_by: None,
                reason: format!("no endpoint has this address: no {direction} policy applies"),
                rules: Vec::new(),
            };
        };
        let node = self.node_of(ep);
        let pkt = self.packet(&node, from, to, port);
        let key: ObjectKey = (ep.namespace.clone(), ep.name.clone());
        let (rs, origins) = self.compiled(&node);
        let chain = origins
            .endpoint_chain(&key, direction)
            .expect("an endpoint has chains on its own node");
        let trace = eval::run_chain(rs, chain, &pkt);
        let Some(ChainOrigin::Endpoint {
            order, last_rule, ..
        }) = origins.chains.get(chain)
        else {
            unreachable!("endpoint chains are recorded as such");
        };
        let (order, last_rule) = (order.clone(), *last_rule);
        judge(
            rs,
            origins,
            chain,
            &trace,
            order,
            &last_rule,
            direction,
            ep.id(),
            node,
        )
    }

    fn host_node(&self, h: &HostEndpoint) -> String {
        h.node.clone().unwrap_or_else(|| self.default_node.clone())
    }

    /// A side that no chain decides, with why.
    fn fixed_side(
        direction: Direction,
        endpoint: Option<String>,
        node: Option<String>,
        reason: String,
    ) -> Side {
        Side {
            direction,
            endpoint,
            node,
            isolated: false,
            policies: Vec::new(),
            allowed: true,
            allowed_by: None,
            denied_by: None,
            passed_by: None,
            reason,
            rules: Vec::new(),
        }
    }

    /// A flow from or to the host itself through a host endpoint: packets on the input
    /// and output hooks of the host endpoint's node, forwarded packets on a workload's.
    fn explain_host(
        &mut self,
        (src, src_ip): (&Resolved<'m>, IpAddr),
        (dst, dst_ip): (&Resolved<'m>, IpAddr),
        port: Port,
    ) -> Explanation {
        let end = |this: &Self, r: &Resolved<'m>, ip: IpAddr| match (r.endpoint, r.host) {
            (Some(ep), _) => End {
                endpoint: Some(ep.id()),
                ip,
                node: Some(this.node_of(ep)),
            },
            (None, Some(h)) => End {
                endpoint: Some(h.id()),
                ip,
                node: Some(this.host_node(h)),
            },
            (None, None) => End {
                endpoint: None,
                ip,
                node: None,
            },
        };
        let (from_end, to_end) = (end(self, src, src_ip), end(self, dst, dst_ip));
        // Any interface a "*" host endpoint covers: one no endpoint claims.
        let host_if = |h: &HostEndpoint| match &h.interface {
            HostInterface::Named(n) => n.clone(),
            HostInterface::All => "(any)".to_owned(),
        };
        fn local_to<'e>(ep: Option<&'e Endpoint>, node: &str) -> Option<&'e Endpoint> {
            ep.filter(|e| e.is_local(node))
        }
        let sport = self.source_port;
        let packet = |hook, iif: Option<String>, oif: Option<String>| Packet {
            hook,
            iif,
            oif,
            src: src_ip,
            dst: dst_ip,
            protocol: port.protocol,
            sport,
            dport: port.number,
            ct: CtInfo::New,
        };
        // The packets the kernel sees, in the order of the packet's way.
        let mut packets: Vec<(String, Packet)> = Vec::new();
        // The sender's side: its node's output hook, or a workload's forward path.
        if let Some(h) = src.host {
            let node = self.host_node(h);
            let oif = match local_to(dst.endpoint, &node) {
                Some(ep) => ep.interface.clone(),
                None => host_if(h),
            };
            packets.push((node, packet(Hook::Output, None, Some(oif))));
        } else if let Some(ep) = src.endpoint {
            let node = self.node_of(ep);
            let to_own_host = dst.host.is_some_and(|h| self.host_node(h) == node);
            if !to_own_host {
                packets.push((
                    node,
                    packet(Hook::Forward, Some(ep.interface.clone()), None),
                ));
            }
        }
        // The receiver's side: its node's input hook, or a workload's forward path.
        if let Some(h) = dst.host {
            let node = self.host_node(h);
            let iif = match local_to(src.endpoint, &node) {
                Some(ep) => ep.interface.clone(),
                None => host_if(h),
            };
            packets.push((node, packet(Hook::Input, Some(iif), None)));
        } else if let Some(ep) = dst.endpoint {
            let node = self.node_of(ep);
            let from_own_host = src.host.is_some_and(|h| self.host_node(h) == node);
            if !from_own_host {
                packets.push((
                    node,
                    packet(Hook::Forward, None, Some(ep.interface.clone())),
                ));
            }
        }
        let mut allowed = true;
        let mut decided_by = None;
        for (node, pkt) in packets {
            let (rs, origins) = self.compiled(&node);
            let trace = eval::run(rs, &pkt);
            if !trace.accepted {
                allowed = false;
                decided_by =
                    trace
                        .path
                        .iter()
                        .rev()
                        .find_map(|r| match origins.chains.get(&r.chain) {
                            Some(
                                ChainOrigin::Endpoint { direction, .. }
                                | ChainOrigin::Passed { direction, .. }
                                | ChainOrigin::Host { direction, .. },
                            ) => Some(*direction),
                            _ => None,
                        });
                break;
            }
        }
        let egress = match (src.host, src.endpoint) {
            (Some(h), _) => {
                let node = self.host_node(h);
                let pkt = packet(Hook::Output, None, Some(host_if(h)));
                if local_to(dst.endpoint, &node).is_some() {
                    Self::fixed_side(
                        Direction::Egress,
                        Some(h.id()),
                        Some(node),
                        "the host's traffic to its own workloads never passes a host endpoint's policy; allowed".to_owned(),
                    )
                } else {
                    self.host_side(Direction::Egress, h, &node, &pkt, false)
                }
            }
            (None, ep) => self.side(Direction::Egress, (ep, src_ip), (None, dst_ip), port),
        };
        let ingress = match (dst.host, dst.endpoint) {
            (Some(h), _) => {
                let node = self.host_node(h);
                let pkt = packet(Hook::Input, Some(host_if(h)), None);
                if local_to(src.endpoint, &node).is_some() {
                    Self::fixed_side(
                        Direction::Ingress,
                        Some(h.id()),
                        Some(node),
                        "traffic from a local workload is its own egress policy's, never a host endpoint's; allowed".to_owned(),
                    )
                } else {
                    self.host_side(Direction::Ingress, h, &node, &pkt, false)
                }
            }
            (None, Some(ep))
                if src
                    .host
                    .is_some_and(|h| self.host_node(h) == self.node_of(ep)) =>
            {
                Self::fixed_side(
                    Direction::Ingress,
                    Some(ep.id()),
                    Some(self.node_of(ep)),
                    "the host may always reach its own workloads; allowed".to_owned(),
                )
            }
            (None, ep) => self.side(Direction::Ingress, (None, src_ip), (ep, dst_ip), port),
        };
        Explanation {
            from: from_end,
            to: to_end,
            port,
            source_port: self.source_port,
            allowed,
            decided_by,
            decided_by_host: None,
            egress,
            ingress,
            hosts: Vec::new(),
        }
    }

    /// A host endpoint's chain for one direction, run on its own: of the host's own
    /// traffic, or (`forward`) of traffic forwarded through its interface.
    fn host_side(
        &mut self,
        direction: Direction,
        h: &HostEndpoint,
        node: &str,
        pkt: &Packet,
        forward: bool,
    ) -> Side {
        let (rs, origins) = self.compiled(node);
        let Some(chain) = origins.host_chain(&h.name, direction, forward) else {
            return Self::fixed_side(
                direction,
                Some(h.id()),
                Some(node.to_owned()),
                format!(
                    "not isolated: no GlobalNetworkPolicy selects the host endpoint for {direction}; allowed"
                ),
            );
        };
        let trace = eval::run_chain(rs, chain, pkt);
        let Some(ChainOrigin::Host {
            order, last_rule, ..
        }) = origins.chains.get(chain)
        else {
            unreachable!("host endpoint chains are recorded as such");
        };
        judge(
            rs,
            origins,
            chain,
            &trace,
            order.clone(),
            last_rule,
            direction,
            h.id(),
            node.to_owned(),
        )
    }
}

/// What one endpoint's chain, run on its own, says: the verdict, the policy rules
/// behind it, and why in one line.
#[allow(clippy::too_many_arguments)]
fn judge(
    rs: &Ruleset,
    origins: &Origins,
    chain: &str,
    trace: &eval::ChainTrace,
    order: Vec<String>,
    last_rule: &usize,
    direction: Direction,
    endpoint: String,
    node: String,
) -> Side {
    let policies = order;
    // A chain that falls through ends in its base chain, which accepts.
    let allowed = trace.verdict != Some(false);
    // The policy rule behind each rule taken, with the verdict it took.
    let decisions: Vec<(PolicyRuleRef, &Verdict)> = trace
        .path
        .iter()
        .filter_map(|r| {
            let (policy, direction, rules) = match origins.chains.get(&r.chain)? {
                ChainOrigin::Policy {
                    policy,
                    direction,
                    rules,
                } => (format!("{}/{}", policy.0, policy.1), direction, rules),
                ChainOrigin::Tiered {
                    policy,
                    direction,
                    rules,
                } => (policy.clone(), direction, rules),
                _ => return None,
            };
            let verdict = rs.chains[&r.chain].rules[r.index].verdict.as_ref()?;
            Some((
                PolicyRuleRef {
                    policy,
                    direction: *direction,
                    rule: rules[r.index],
                },
                verdict,
            ))
        })
        .collect();
    let by = |pick: fn(&Verdict) -> bool| {
        decisions
            .iter()
            .find(|(_, v)| pick(v))
            .map(|(r, _)| r.clone())
    };
    let allowed_by = by(|v| *v == Verdict::Accept);
    let denied_by = by(|v| *v == Verdict::Drop);
    let passed_by = by(|v| matches!(v, Verdict::Map { .. }));
    let isolated = !policies.is_empty();
    let taken = trace.path.last();
    let passed = passed_by
        .as_ref()
        .map(|r| format!("passed by {r}; "))
        .unwrap_or_default();
    // Admin policies decide before (and the baseline after) isolation is known.
    let isolated_by = if isolated {
        format!("isolated by {}; ", policies.join(", "))
    } else {
        String::new()
    };
    let reason = match (&allowed_by, &denied_by, taken) {
        (Some(r), _, _) => format!("{isolated_by}{passed}allowed by {r}"),
        (None, Some(r), _) => format!("{isolated_by}{passed}denied by {r}"),
        (None, None, Some(RuleRef { chain: c, index }))
            if (c == chain && index == last_rule)
                || origins
                    .admin_rest
                    .get(c)
                    .is_some_and(|(ep, from)| ep == chain && from + index == *last_rule) =>
        {
            if isolated {
                format!(
                    "isolated; {passed}no rule of {} allows this",
                    policies.join(", ")
                )
            } else {
                format!("not isolated: {passed}no policy selects it for {direction}; allowed")
            }
        }
        (None, None, Some(RuleRef { chain: c, index }))
            if matches!(
                origins.chains.get(c),
                Some(ChainOrigin::Passed { last_rule, .. }) if last_rule == index
            ) =>
        {
            let Some(ChainOrigin::Passed { policies: k8s, .. }) = origins.chains.get(c) else {
                unreachable!("matched above");
            };
            if k8s.is_empty() {
                format!(
                    "isolated by {}; {passed}no Kubernetes NetworkPolicy selects it for {direction}; allowed",
                    policies.join(", ")
                )
            } else {
                let k8s: Vec<String> = k8s.iter().map(|(n, p)| format!("{n}/{p}")).collect();
                format!(
                    "isolated by {}; {passed}no rule of {} allows this",
                    policies.join(", "),
                    k8s.join(", ")
                )
            }
        }
        (None, None, Some(r)) => {
            let rule = &rs.chains[&r.chain].rules[r.index];
            format!(
                "{} by rule {} of chain {} ({})",
                verdict_word(allowed),
                r.index,
                r.chain,
                rule.comment.as_deref().unwrap_or("no comment")
            )
        }
        (None, None, None) => format!("{} by the base chain's policy", verdict_word(allowed)),
    };
    Side {
        direction,
        endpoint: Some(endpoint),
        node: Some(node),
        isolated,
        policies,
        allowed,
        allowed_by,
        denied_by,
        passed_by,
        reason,
        rules: trace
            .path
            .iter()
            .map(|r| format!("{}[{}]", r.chain, r.index))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(yaml: &str) -> Model {
        crate::model::from_valid_yaml(yaml)
    }

    const SHOP: &str = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1, fd00::1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n2, interfaceName: veth-db, ips: [10.0.0.2], ports: [{name: pg, port: 5432}]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: batch, namespace: shop, labels: {app: batch}}
spec: {node: n1, interfaceName: veth-batch, ips: [10.0.0.3]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: 192.0.2.0/24}}]
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: pg}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: batch-no-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: batch}}
  policyTypes: [Egress]
";

    fn ep(id: &str) -> Party {
        id.parse().unwrap()
    }

    fn tcp(n: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            number: n,
        }
    }

    /// With admin policies the first line still names the deciding direction and
    /// policy: a drop after an ANP's Pass (in the copy of the endpoint chain it goes
    /// to), by an ANP's Deny, and by the baseline.
    #[test]
    fn the_summary_names_direction_and_policy_with_admin_policies() {
        let m = model(&format!(
            "{SHOP}---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: x, namespace: other}}
spec: {{node: n1, interfaceName: veth-x, ips: [10.0.9.1]}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: guard}}
spec:
  priority: 5
  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: db}}}}}}}}
  ingress:
  - {{name: pass-pg, action: Pass, from: [{{namespaces: {{}}}}], ports: [{{portNumber: {{protocol: TCP, port: 5432}}}}]}}
  - {{name: no-ssh, action: Deny, from: [{{namespaces: {{}}}}], ports: [{{portNumber: {{protocol: TCP, port: 22}}}}]}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {{name: default}}
spec:
  subject: {{namespaces: {{}}}}
  ingress:
  - {{name: closed, action: Deny, from: [{{namespaces: {{}}}}]}}
"
        ));
        let mut ex = Explainer::new(&m, "n1", "netpold");
        let first_line = |ex: &mut Explainer, from: &str, to: &str, port: u16| {
            let e = ex
                .explain(&from.parse().unwrap(), &ep(to), tcp(port))
                .unwrap();
            assert!(!e.allowed, "{e}");
            assert_eq!(e.decided_by, Some(Direction::Ingress), "{e}");
            e.to_string().lines().next().unwrap().to_owned()
        };
        // Passed on by the ANP, then no rule of db-from-web allows other/x.
        assert_eq!(
            first_line(&mut ex, "other/x", "shop/db", 5432),
            "other/x (10.0.9.1) -> shop/db (10.0.0.2), TCP 5432: denied by the receiver's ingress policy"
        );
        let batch = ex
            .explain(&ep("shop/batch"), &ep("shop/db"), tcp(5432))
            .unwrap();
        assert_eq!(batch.decided_by, Some(Direction::Egress), "{batch}");
        let e = ex
            .explain(&ep("shop/web"), &ep("shop/db"), tcp(22))
            .unwrap();
        assert_eq!(e.decided_by, Some(Direction::Ingress), "{e}");
        assert_eq!(e.deciding(), ["AdminNetworkPolicy guard ingress[1]"], "{e}");
        // shop/batch: no NetworkPolicy isolates its ingress, so the baseline's Deny decides.
        let e = ex
            .explain(&ep("shop/web"), &ep("shop/batch"), tcp(80))
            .unwrap();
        assert_eq!(e.decided_by, Some(Direction::Ingress), "{e}");
        assert_eq!(
            e.deciding(),
            ["BaselineAdminNetworkPolicy default ingress[0]"],
            "{e}"
        );
        // Every denied flow names its direction.
        for from in [
            "shop/web",
            "shop/db",
            "shop/batch",
            "198.51.100.1",
            "192.0.2.9",
        ] {
            for to in ["shop/web", "shop/db", "shop/batch", "198.51.100.1"] {
                for port in [22, 80, 5432] {
                    let Ok(e) = ex.explain(&from.parse().unwrap(), &to.parse().unwrap(), tcp(port))
                    else {
                        continue;
                    };
                    assert!(e.allowed || e.decided_by.is_some(), "{e}");
                }
            }
        }
    }

    #[test]
    fn parties_and_ports_parse() {
        assert_eq!(
            "shop/web".parse::<Party>(),
            Ok(Party::Endpoint("shop".into(), "web".into()))
        );
        assert_eq!(
            "fd00::1".parse::<Party>(),
            Ok(Party::Ip("fd00::1".parse().unwrap()))
        );
        assert!("web".parse::<Party>().is_err());
        assert!("10.0.0.0/8".parse::<Party>().is_err());
        assert!("a/b/c".parse::<Party>().is_err());
        assert_eq!("80".parse::<Port>(), Ok(tcp(80)));
        assert_eq!(
            "53/UDP".parse::<Port>(),
            Ok(Port {
                protocol: Protocol::Udp,
                number: 53
            })
        );
        assert_eq!("9/sctp".parse::<Port>().unwrap().protocol, Protocol::Sctp);
        for bad in ["0", "65536", "+80", "80/icmp", "", "http"] {
            assert!(bad.parse::<Port>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_by_a_named_port_rule_on_the_receivers_node() {
        let m = model(SHOP);
        let mut x = Explainer::new(&m, "n1", "netpold");
        let e = x
            .explain(&ep("shop/web"), &ep("shop/db"), tcp(5432))
            .unwrap();
        assert!(e.allowed);
        assert_eq!(e.decided_by, None);
        assert_eq!(e.from.ip.to_string(), "10.0.0.1");
        assert!(!e.egress.isolated);
        assert_eq!(e.egress.node.as_deref(), Some("n1"));
        assert_eq!(e.ingress.node.as_deref(), Some("n2"));
        assert_eq!(e.ingress.policies, ["shop/db-from-web"]);
        assert_eq!(
            e.ingress.allowed_by.as_ref().map(ToString::to_string),
            Some("shop/db-from-web ingress[1]".to_owned())
        );
        assert_eq!(e.deciding(), ["shop/db-from-web ingress[1]"]);
        assert_eq!(
            e.to_string(),
            "shop/web (10.0.0.1) -> shop/db (10.0.0.2), TCP 5432: allowed
  egress  of shop/web (node n1): not isolated: no policy selects it for egress; allowed
  ingress of shop/db (node n2): isolated by shop/db-from-web; allowed by shop/db-from-web ingress[1]
"
        );
    }

    #[test]
    fn denied_by_ingress_and_an_address_that_is_no_endpoint() {
        let m = model(SHOP);
        let mut x = Explainer::new(&m, "n1", "netpold");
        let e = x.explain(&ep("shop/web"), &ep("shop/db"), tcp(22)).unwrap();
        assert!(!e.allowed);
        assert_eq!(e.decided_by, Some(Direction::Ingress));
        assert_eq!(
            e.ingress.reason,
            "isolated; no rule of shop/db-from-web allows this"
        );
        assert_eq!(e.deciding(), ["shop/db-from-web"]);
        // An address inside the ipBlock: every port, and no egress policy on its side.
        let e = x
            .explain(&ep("192.0.2.7"), &ep("10.0.0.2"), tcp(22))
            .unwrap();
        assert!(e.allowed);
        assert_eq!(e.egress.endpoint, None);
        assert_eq!(
            e.egress.reason,
            "no endpoint has this address: no egress policy applies"
        );
        assert_eq!(e.to.endpoint.as_deref(), Some("shop/db"));
        let json = e.to_json();
        assert_eq!(json["verdict"], "allowed");
        assert_eq!(json["from"]["endpoint"], serde_json::Value::Null);
        assert_eq!(json["ingress"]["allowed_by"]["rule"], 0);
        assert_eq!(json["ingress"]["allowed_by"]["policy"], "shop/db-from-web");
    }

    #[test]
    fn egress_decides_and_ingress_is_still_explained() {
        let m = model(SHOP);
        let mut x = Explainer::new(&m, "n1", "netpold");
        let e = x
            .explain(&ep("shop/batch"), &ep("shop/db"), tcp(5432))
            .unwrap();
        assert!(!e.allowed);
        assert_eq!(e.decided_by, Some(Direction::Egress));
        assert!(e.egress.isolated && !e.egress.allowed);
        assert!(!e.ingress.allowed);
        let text = e.to_string();
        assert!(
            text.starts_with(
                "shop/batch (10.0.0.3) -> shop/db (10.0.0.2), TCP 5432: denied by the sender's egress policy\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("(not reached: the egress drop comes first)"),
            "{text}"
        );
        let json = e.to_json();
        assert_eq!(json["decided_by"], "egress");
        assert_eq!(json["egress"]["isolated"], true);
        assert_eq!(json["egress"]["policies"][0], "shop/batch-no-egress");
    }

    #[test]
    fn errors_name_the_problem() {
        let m = model(SHOP);
        let mut x = Explainer::new(&m, "n1", "netpold");
        assert_eq!(
            x.explain(&ep("shop/nope"), &ep("shop/db"), tcp(1)),
            Err(ExplainError::UnknownEndpoint("shop/nope".into()))
        );
        // db has IPv4 only.
        assert!(matches!(
            x.explain(&ep("fd00::9"), &ep("shop/db"), tcp(1)),
            Err(ExplainError::NoCommonFamily { .. })
        ));
        assert_eq!(
            x.explain(&ep("shop/web"), &ep("fd00::1"), tcp(1)),
            Err(ExplainError::Itself("shop/web".into()))
        );
        // IPv6 to web works from an outside IPv6 address.
        let e = x.explain(&ep("fd00::9"), &ep("shop/web"), tcp(1)).unwrap();
        assert_eq!(e.to.ip.to_string(), "fd00::1");
        assert!(e.allowed);
    }

    const HOST: &str = "
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {name: uplink, labels: {role: uplink}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: host-in}
spec:
  selector: role == 'uplink'
  types: [Ingress, Egress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Deny, protocol: TCP, destination: {ports: [443]}}
";

    #[test]
    fn host_endpoints_are_explained_by_their_policy_rule_or_failsafe_port() {
        let m = model(HOST);
        let mut x = Explainer::new(&m, "n1", "netpold");
        let host = ep("host:uplink");
        assert_eq!(host, Party::Host("uplink".into()));
        assert!("host:".parse::<Party>().is_err());
        let outside = ep("203.0.113.9");
        let e = x.explain(&outside, &host, tcp(80)).unwrap();
        assert!(e.allowed, "{e}");
        assert_eq!(e.to.endpoint.as_deref(), Some("host:uplink"));
        assert_eq!(e.deciding(), ["GlobalNetworkPolicy host-in ingress[0]"]);
        let e = x.explain(&outside, &host, tcp(443)).unwrap();
        assert!(!e.allowed);
        assert_eq!(e.decided_by, Some(Direction::Ingress));
        assert_eq!(e.deciding(), ["GlobalNetworkPolicy host-in ingress[1]"]);
        let e = x.explain(&outside, &host, tcp(8080)).unwrap();
        assert!(!e.allowed);
        assert!(e.ingress.reason.starts_with("isolated; no rule of"), "{e}");
        let e = x.explain(&outside, &host, tcp(22)).unwrap();
        assert!(e.allowed);
        assert!(e.ingress.reason.contains("failsafe inbound tcp:22"), "{e}");
        // An expected address stands for the host endpoint.
        let e = x.explain(&outside, &ep("192.0.2.10"), tcp(8080)).unwrap();
        assert!(!e.allowed);
        // Egress: governed with no rule, so only the outbound failsafe ports.
        let e = x.explain(&host, &outside, tcp(80)).unwrap();
        assert_eq!(e.decided_by, Some(Direction::Egress), "{e}");
        let dns = Port {
            protocol: Protocol::Udp,
            number: 53,
        };
        assert!(x.explain(&host, &outside, dns).unwrap().allowed);
        // Between the host and its workloads, no host endpoint policy applies.
        let web = ep("shop/web");
        let e = x.explain(&web, &host, tcp(8080)).unwrap();
        assert!(e.allowed, "{e}");
        assert!(e.ingress.reason.contains("local workload"), "{e}");
        assert!(x.explain(&host, &web, tcp(8080)).unwrap().allowed);
        assert_eq!(
            x.explain(&host, &ep("192.0.2.10"), tcp(1)),
            Err(ExplainError::Itself("the host of host:uplink".into()))
        );
        assert_eq!(
            x.explain(&ep("host:nope"), &web, tcp(1)),
            Err(ExplainError::UnknownHost("host:nope".into()))
        );
    }

    /// Forwarded traffic from the outside enters by the uplink, whose applyOnForward
    /// policy shows and decides; `with_via` names another interface.
    #[test]
    fn forwarded_flows_show_the_apply_on_forward_policy_of_the_interface() {
        let m = model(&format!(
            "{HOST}---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {{name: fwd}}
spec:
  selector: role == 'uplink'
  applyOnForward: true
  ingress:
  - {{action: Allow, protocol: TCP, destination: {{ports: [80]}}}}
  - {{action: Deny, protocol: TCP, destination: {{ports: [8443]}}}}
"
        ));
        let mut x = Explainer::new(&m, "n1", "netpold");
        let outside = ep("203.0.113.9");
        let web = ep("shop/web");
        let e = x.explain(&outside, &web, tcp(80)).unwrap();
        assert!(e.allowed, "{e}");
        assert_eq!(e.hosts.len(), 1, "{e}");
        assert_eq!(e.hosts[0].endpoint.as_deref(), Some("host:uplink"));
        assert_eq!(e.hosts[0].direction, Direction::Ingress);
        assert!(
            e.deciding()
                .contains(&"GlobalNetworkPolicy fwd ingress[0]".to_owned()),
            "{e}"
        );
        let e = x.explain(&outside, &web, tcp(8443)).unwrap();
        assert!(!e.allowed, "{e}");
        assert_eq!(
            (e.decided_by, e.decided_by_host.as_deref()),
            (None, Some("host:uplink"))
        );
        assert_eq!(e.deciding(), ["GlobalNetworkPolicy fwd ingress[1]"]);
        let text = e.to_string();
        assert!(
            text.starts_with("203.0.113.9 -> shop/web (10.0.0.1), TCP 8443: denied by the forwarding policy of host:uplink (applyOnForward)\n"),
            "{text}"
        );
        assert!(
            text.contains("  forwarded ingress by host:uplink (node n1): isolated by GlobalNetworkPolicy fwd; denied by GlobalNetworkPolicy fwd ingress[1]"),
            "{text}"
        );
        // Matched by no rule: the host endpoint's default deny.
        assert_eq!(
            x.explain(&outside, &web, tcp(22))
                .unwrap()
                .decided_by_host
                .as_deref(),
            Some("host:uplink")
        );
        // Leaving by the uplink: egress, which no applyOnForward policy governs.
        let e = x.explain(&web, &outside, tcp(8443)).unwrap();
        assert!(e.allowed && e.hosts.is_empty(), "{e}");
        // By another interface than the host endpoint's: not its policy.
        let mut by_eth9 = Explainer::new(&m, "n1", "netpold").with_via(Some("eth9".into()));
        let e = by_eth9.explain(&outside, &web, tcp(8443)).unwrap();
        assert!(e.allowed && e.hosts.is_empty(), "{e}");
    }
}
