//! What `netpold status` shows and the metrics endpoint exports: one `Report`, filled
//! by the daemon from its own bookkeeping and, at request time, from the kernel's
//! counters; or, with `--kernel`, from the table alone.
//!
//! Counters are attributed by the comments the compiler puts on chains (`policy ns/name
//! ingress`, `endpoint ns/name egress (iface)`), so the daemon and `--kernel` read them
//! the same way, and a table programmed by an older netpold still reads right. A name
//! longer than a comment holds (128 bytes) shows cut, ending in `...`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

pub use crate::nft::counters::RuleCounter;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `daemon` (from the running daemon) or `kernel` (read from the table alone).
    pub source: String,
    pub table: String,
    pub node: Option<String>,
    pub pid: Option<u32>,
    pub version: String,
    pub started_unix: Option<f64>,
    pub last_sync: Option<LastSync>,
    /// Syncs by result: `programmed`, `unchanged`, `failed`, `not_programmed`, `repaired`.
    pub syncs: BTreeMap<String, u64>,
    /// Errors by kind: `manifest` (problems reported), `transaction`, `directory`,
    /// `repair`, `readback`.
    pub errors: BTreeMap<String, u64>,
    pub drift_repairs: u64,
    /// What is enforced, by kind (`namespaces`, `endpoints`, `local_endpoints`,
    /// `policies`, `chains`, `rules`, `sets`, `maps`).
    pub objects: BTreeMap<String, u64>,
    pub files_in_error: Vec<FileInError>,
    pub sync_seconds: Option<Histogram>,
    pub transaction_messages: Option<Histogram>,
    /// Packets and bytes the rules of each policy allowed.
    pub policies: Vec<PolicyCounter>,
    /// Packets and bytes dropped at each endpoint, by cause.
    pub endpoints: Vec<EndpointDrops>,
    /// Why the counters could not be read, when they could not.
    pub counters_error: Option<String>,
    pub denied_flows: Option<DeniedFlows>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastSync {
    pub at_unix: f64,
    pub seconds: f64,
    /// `programmed`, `unchanged`, `failed`, `not_programmed` or `repaired`.
    pub result: String,
    /// The sync's log line.
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInError {
    pub file: String,
    /// Its last good content is enforced in its place; otherwise it contributes nothing.
    pub last_good: bool,
    /// `path:line:col: error: …`, one per problem.
    pub messages: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Upper bounds, ascending; the `+Inf` bucket is `count`.
    pub bounds: Vec<f64>,
    /// Observations at or below each bound (cumulative).
    pub cumulative: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            cumulative: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        for (bound, n) in self.bounds.iter().zip(&mut self.cumulative) {
            if value <= *bound {
                *n += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCounter {
    /// `NetworkPolicy` (Kubernetes), `netpold.io/NetworkPolicy`, `GlobalNetworkPolicy`,
    /// `AdminNetworkPolicy` or `BaselineAdminNetworkPolicy`.
    pub kind: String,
    /// Empty for a GlobalNetworkPolicy.
    pub namespace: String,
    pub name: String,
    pub direction: String,
    pub rules: u64,
    /// Allowed by its rules.
    pub packets: u64,
    pub bytes: u64,
    /// Dropped by its `Deny` rules.
    #[serde(default)]
    pub denied_packets: u64,
    #[serde(default)]
    pub denied_bytes: u64,
}

impl PolicyCounter {
    /// `ns/name`, or `name` for a cluster-wide policy.
    pub fn label(&self) -> String {
        if self.namespace.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.namespace, self.name)
        }
    }
}

/// What a counted rule of a policy chain did, by the action its comment ends with
/// (`… ingress[2] Deny`); a Kubernetes policy's rules all allow.
#[derive(PartialEq)]
enum Counted {
    Allowed,
    Denied,
    Other,
}

fn counted(rule_comment: &str) -> Counted {
    match rule_comment.rsplit(' ').next() {
        Some("Deny") => Counted::Denied,
        Some("Log" | "Pass") => Counted::Other,
        _ => Counted::Allowed,
    }
}

/// The kind, namespace, name and direction a policy chain's comment names:
/// `policy ns/name ingress`, `netpold.io/v1 NetworkPolicy ns/name ingress`,
/// `GlobalNetworkPolicy name egress`, `AdminNetworkPolicy name ingress`,
/// `BaselineAdminNetworkPolicy default egress`.
fn policy_owner(comment: &str) -> Option<(String, String, String, String)> {
    if let Some(rest) = comment.strip_prefix("policy ") {
        let (ns, name, dir) = owner(rest)?;
        return Some(("NetworkPolicy".to_owned(), ns, name, dir));
    }
    if let Some(rest) = comment.strip_prefix("netpold.io/v1 NetworkPolicy ") {
        let (ns, name, dir) = owner(rest)?;
        return Some(("netpold.io/NetworkPolicy".to_owned(), ns, name, dir));
    }
    let (kind, rest) = [
        "GlobalNetworkPolicy",
        "AdminNetworkPolicy",
        "BaselineAdminNetworkPolicy",
    ]
    .into_iter()
    .find_map(|k| Some((k, comment.strip_prefix(k)?.strip_prefix(' ')?)))?;
    let mut words = rest.split(' ');
    let name = words.next()?;
    let dir = words.next().filter(|d| *d == "ingress" || *d == "egress")?;
    Some((
        kind.to_owned(),
        String::new(),
        name.to_owned(),
        dir.to_owned(),
    ))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointDrops {
    pub namespace: String,
    pub name: String,
    pub direction: String,
    pub packets: u64,
    pub bytes: u64,
    /// Packets by cause: `isolated` (no rule allows), `spoofed` (source address not the
    /// endpoint's), `invalid` (no connection state), `other`.
    pub by_cause: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeniedFlows {
    /// The NFLOG group read.
    pub group: u16,
    /// Logged drops read since start (the log is rate-limited, so a sample).
    pub logged: u64,
    /// Logged drops the kernel could not deliver (the reader fell behind).
    pub lost: u64,
    /// The busiest flows, most packets first.
    pub top: Vec<DeniedFlow>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub dport: Option<u16>,
    /// The endpoint and direction the drop names, and why (`-` and `denied` for a
    /// policy's Deny rule).
    pub endpoint: String,
    pub direction: String,
    pub cause: String,
    /// The policy and rule of a Deny: `shop/gate ingress[2]`, `anp:tenants egress[0]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeniedFlow {
    #[serde(flatten)]
    pub key: FlowKey,
    pub packets: u64,
    pub last_unix: f64,
}

/// `ns/name dir` at the start of `rest`; the direction is the first of the words
/// after the name (the name has no spaces; a cut one ends in `...`).
fn owner(rest: &str) -> Option<(String, String, String)> {
    let mut words = rest.split(' ');
    let id = words.next()?;
    let direction = words.next()?;
    if direction != "ingress" && direction != "egress" {
        return None;
    }
    let (namespace, name) = id.split_once('/')?;
    Some((namespace.to_owned(), name.to_owned(), direction.to_owned()))
}

/// `("", "host:<name>", direction)` of a host endpoint's chain (`host endpoint <name>
/// [forwarded ]<direction>`): its own and forwarded traffic count as one.
fn host_owner(chain_comment: &str) -> Option<(String, String, String)> {
    let rest = chain_comment.strip_prefix("host endpoint ")?;
    let mut words = rest.split(' ');
    let name = words.next()?;
    let direction = words.find(|w| *w == "ingress" || *w == "egress")?;
    Some((String::new(), format!("host:{name}"), direction.to_owned()))
}

fn drop_cause(rule_comment: &str) -> &'static str {
    if rule_comment.contains("isolated for") || rule_comment.contains("no rule allows") {
        "isolated"
    } else if rule_comment.contains("spoofed") {
        "spoofed"
    } else if rule_comment.contains("no connection state") {
        "invalid"
    } else {
        "other"
    }
}

/// Sums counted rules per policy (allowed) and per endpoint (dropped).
pub fn attribute(rows: &[RuleCounter]) -> (Vec<PolicyCounter>, Vec<EndpointDrops>) {
    let mut policies: BTreeMap<(String, String, String, String), PolicyCounter> = BTreeMap::new();
    let mut endpoints: BTreeMap<(String, String, String), EndpointDrops> = BTreeMap::new();
    for row in rows {
        let rule_comment = row.rule_comment.as_deref().unwrap_or("");
        if let Some(key) = policy_owner(&row.chain_comment) {
            let p = policies
                .entry(key.clone())
                .or_insert_with(|| PolicyCounter {
                    kind: key.0,
                    namespace: key.1,
                    name: key.2,
                    direction: key.3,
                    rules: 0,
                    packets: 0,
                    bytes: 0,
                    denied_packets: 0,
                    denied_bytes: 0,
                });
            p.rules += 1;
            match counted(rule_comment) {
                Counted::Allowed => {
                    p.packets += row.packets;
                    p.bytes += row.bytes;
                }
                Counted::Denied => {
                    p.denied_packets += row.packets;
                    p.denied_bytes += row.bytes;
                }
                Counted::Other => {}
            }
        } else if let Some(key) = row
            .chain_comment
            .strip_prefix("endpoint ")
            .and_then(owner)
            .or_else(|| host_owner(&row.chain_comment))
        {
            let cause = drop_cause(rule_comment);
            // Only drops: a host endpoint's failsafe rules, for one, are counted accepts.
            if cause == "other" {
                continue;
            }
            let e = endpoints
                .entry(key.clone())
                .or_insert_with(|| EndpointDrops {
                    namespace: key.0,
                    name: key.1,
                    direction: key.2,
                    packets: 0,
                    bytes: 0,
                    by_cause: BTreeMap::new(),
                });
            e.packets += row.packets;
            e.bytes += row.bytes;
            *e.by_cause.entry(cause.to_owned()).or_default() += row.packets;
        }
    }
    (
        policies.into_values().collect(),
        endpoints.into_values().collect(),
    )
}

/// `3 s`, `5 min`, `2 h 10 min`, `3 d 4 h`.
pub fn duration_words(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How many policies and endpoints the text shows; `--json` has them all.
pub const SHOWN: usize = 20;

impl Report {
    /// The text `netpold status` prints; `now_unix` for the "ago"s.
    pub fn to_text(&self, now_unix: f64) -> String {
        let mut out = String::new();
        let node = self.node.as_deref().unwrap_or("?");
        match self.source.as_str() {
            "kernel" => {
                let _ = writeln!(
                    out,
                    "table inet {} (read from the kernel; no daemon history)",
                    self.table
                );
            }
            _ => {
                let _ = write!(
                    out,
                    "netpold {} on node {node}, table inet {}",
                    self.version, self.table
                );
                if let Some(pid) = self.pid {
                    let _ = write!(out, ", pid {pid}");
                }
                if let Some(at) = self.started_unix {
                    let _ = write!(out, ", up {}", duration_words(now_unix - at));
                }
                out.push('\n');
                match &self.last_sync {
                    Some(s) => {
                        let _ = writeln!(
                            out,
                            "last sync: {} ago, {} in {:.0} ms\n  {}",
                            duration_words(now_unix - s.at_unix),
                            s.result.replace('_', " "),
                            s.seconds * 1000.0,
                            s.line
                        );
                    }
                    None => out.push_str("last sync: none yet\n"),
                }
                let syncs: Vec<String> =
                    self.syncs.iter().map(|(k, v)| format!("{v} {k}")).collect();
                let errors: Vec<String> = self
                    .errors
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect();
                let _ = writeln!(
                    out,
                    "syncs: {}; errors: {}; drift repairs: {}",
                    if syncs.is_empty() {
                        "none".to_owned()
                    } else {
                        syncs.join(", ")
                    },
                    if errors.is_empty() {
                        "none".to_owned()
                    } else {
                        errors.join(", ")
                    },
                    self.drift_repairs
                );
            }
        }
        // What the model holds, then what the kernel holds; then anything else.
        const ORDER: [&str; 12] = [
            "namespaces",
            "endpoints",
            "local_endpoints",
            "policies",
            "policies_enforced",
            "chains",
            "rules",
            "sets",
            "maps",
            "policy_chains",
            "endpoint_chains",
            "counted_rules",
        ];
        let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
        let mut kinds: Vec<(&String, &u64)> = self.objects.iter().collect();
        kinds.sort_by_key(|(k, _)| rank(k));
        let objects: Vec<String> = kinds
            .iter()
            .map(|(k, v)| format!("{v} {}", k.replace('_', " ")))
            .collect();
        let _ = writeln!(
            out,
            "objects: {}",
            if objects.is_empty() {
                "none".to_owned()
            } else {
                objects.join(", ")
            }
        );
        if self.source != "kernel" {
            if self.files_in_error.is_empty() {
                out.push_str("files in error: none\n");
            } else {
                let _ = writeln!(out, "files in error: {}", self.files_in_error.len());
                for f in &self.files_in_error {
                    let _ = writeln!(
                        out,
                        "  {} ({})",
                        f.file,
                        if f.last_good {
                            "its last good content is enforced"
                        } else {
                            "not loaded"
                        }
                    );
                    for m in &f.messages {
                        let _ = writeln!(out, "    {m}");
                    }
                }
            }
        }
        if let Some(e) = &self.counters_error {
            let _ = writeln!(out, "counters: not read: {e}");
        } else {
            self.counters_text(&mut out);
        }
        match &self.denied_flows {
            Some(flows) => {
                let _ = writeln!(
                    out,
                    "top denied flows since start (NFLOG group {}, {} logged drops, rate-limited{}):",
                    flows.group,
                    flows.logged,
                    if flows.lost > 0 {
                        format!(", {} lost", flows.lost)
                    } else {
                        String::new()
                    }
                );
                if flows.top.is_empty() {
                    out.push_str("  none\n");
                }
                for f in &flows.top {
                    let port = f.key.dport.map(|p| format!("/{p}")).unwrap_or_default();
                    let why = match &f.key.rule {
                        Some(rule) => format!("{} by {rule}", f.key.cause),
                        None => format!("{} {} {}", f.key.endpoint, f.key.direction, f.key.cause),
                    };
                    let _ = writeln!(
                        out,
                        "  {:>7}  {} -> {} {}{port}  {why}",
                        f.packets, f.key.src, f.key.dst, f.key.protocol,
                    );
                }
            }
            None if self.source == "daemon" => {
                out.push_str("top denied flows: not collected (set log_group, and log_group_listen = true)\n");
            }
            None => {}
        }
        out
    }

    fn counters_text(&self, out: &mut String) {
        let mut policies: Vec<&PolicyCounter> = self.policies.iter().collect();
        policies.sort_by(|a, b| {
            b.packets
                .cmp(&a.packets)
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        let _ = writeln!(out, "allowed by policy ({} policy chains):", policies.len());
        for p in policies.iter().take(SHOWN) {
            let kind = match p.kind.as_str() {
                "NetworkPolicy" => String::new(),
                kind => format!("{kind} "),
            };
            let denied = if p.denied_packets > 0 {
                format!(
                    " (denied {} packets, {})",
                    p.denied_packets,
                    human_bytes(p.denied_bytes)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:>9} packets {:>10}  {kind}{} {}{denied}",
                p.packets,
                human_bytes(p.bytes),
                p.label(),
                p.direction
            );
        }
        if policies.len() > SHOWN {
            let _ = writeln!(
                out,
                "  … {} more (--json lists all)",
                policies.len() - SHOWN
            );
        }
        let mut drops: Vec<&EndpointDrops> =
            self.endpoints.iter().filter(|e| e.packets > 0).collect();
        drops.sort_by(|a, b| {
            b.packets
                .cmp(&a.packets)
                .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
        });
        let _ = writeln!(out, "dropped at endpoints ({} with drops):", drops.len());
        for e in drops.iter().take(SHOWN) {
            let causes: Vec<String> = e
                .by_cause
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            // A host endpoint has no namespace: `host:<name>`.
            let id = if e.namespace.is_empty() {
                e.name.clone()
            } else {
                format!("{}/{}", e.namespace, e.name)
            };
            let _ = writeln!(
                out,
                "  {:>9} packets {:>10}  {id} {} ({})",
                e.packets,
                human_bytes(e.bytes),
                e.direction,
                causes.join(", ")
            );
        }
        if drops.len() > SHOWN {
            let _ = writeln!(out, "  … {} more (--json lists all)", drops.len() - SHOWN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(chain: &str, rule: &str, packets: u64) -> RuleCounter {
        RuleCounter {
            chain: String::new(),
            index: 0,
            handle: 0,
            chain_comment: chain.into(),
            rule_comment: Some(rule.into()),
            packets,
            bytes: packets * 60,
        }
    }

    #[test]
    fn counters_are_attributed_by_chain_comments() {
        let rows = [
            row(
                "policy myns/backend-allow-frontend ingress",
                "myns/backend-allow-frontend ingress[0]",
                3,
            ),
            row(
                "policy myns/backend-allow-frontend ingress",
                "myns/backend-allow-frontend ingress[0]",
                2,
            ),
            row(
                "endpoint myns/backend-1 ingress (veth-back1)",
                "myns/backend-1: isolated for ingress, no rule allows",
                7,
            ),
            row(
                "endpoint myns/backend-1 egress (veth-back1)",
                "myns/backend-1: spoofed source",
                1,
            ),
            row(
                "forward_egress",
                "a local endpoint's address from another interface",
                9,
            ),
        ];
        let (policies, endpoints) = attribute(&rows);
        let hosts = [
            row("host endpoint uplink ingress", "failsafe inbound tcp:22", 4),
            row(
                "host endpoint uplink ingress",
                "host:uplink: isolated for ingress, no rule allows",
                5,
            ),
            row(
                "host endpoint uplink forwarded ingress",
                "no connection state",
                1,
            ),
        ];
        let (_, host_drops) = attribute(&hosts);
        assert_eq!(host_drops.len(), 1);
        assert_eq!(
            (
                host_drops[0].namespace.as_str(),
                host_drops[0].name.as_str()
            ),
            ("", "host:uplink")
        );
        assert_eq!(host_drops[0].packets, 6, "failsafe accepts are no drops");
        assert_eq!(host_drops[0].by_cause["isolated"], 5);
        assert_eq!(host_drops[0].by_cause["invalid"], 1);
        assert_eq!(
            policies,
            [PolicyCounter {
                kind: "NetworkPolicy".into(),
                namespace: "myns".into(),
                name: "backend-allow-frontend".into(),
                direction: "ingress".into(),
                rules: 2,
                packets: 5,
                bytes: 300,
                denied_packets: 0,
                denied_bytes: 0,
            }]
        );
        assert_eq!(endpoints.len(), 2);
        assert_eq!(endpoints[1].direction, "ingress");
        assert_eq!(endpoints[1].by_cause["isolated"], 7);
        assert_eq!(endpoints[0].by_cause["spoofed"], 1);
    }

    /// Names too long for a comment are cut, but the direction and cause words stay,
    /// so their counters are still attributed.
    #[test]
    fn long_names_keep_their_counters() {
        let long = "x".repeat(120);
        let yaml = format!(
            "apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: {long}, namespace: a, labels: {{app: db}}}}
spec: {{node: n1, interfaceName: veth-db, ips: [10.0.0.2]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {long}, namespace: a}}
spec:
  podSelector: {{}}
  ingress: [{{ports: [{{port: 80}}]}}]
"
        );
        let model = crate::model::from_valid_yaml(&yaml);
        let rs = crate::compile::compile(&model, "n1", "t");
        let rows: Vec<RuleCounter> = rs
            .chains
            .values()
            .flat_map(|c| {
                c.rules.iter().filter(|r| r.counter).map(|r| RuleCounter {
                    chain: String::new(),
                    chain_comment: c.comment.clone(),
                    index: 0,
                    handle: 0,
                    rule_comment: r.comment.clone(),
                    packets: 1,
                    bytes: 1,
                })
            })
            .collect();
        let (policies, endpoints) = attribute(&rows);
        assert_eq!(policies.len(), 1, "{rows:#?}");
        assert_eq!(policies[0].direction, "ingress");
        assert!(policies[0].name.ends_with("..."), "{}", policies[0].name);
        let ingress = endpoints.iter().find(|e| e.direction == "ingress").unwrap();
        assert_eq!(ingress.by_cause.get("isolated"), Some(&1), "{ingress:?}");
        assert!(endpoints.iter().any(|e| e.direction == "egress"));
    }

    /// The ordered policies' chains: allowed and denied by the action each rule names;
    /// an accept at the end of an endpoint chain is no drop.
    #[test]
    fn ordered_policies_count_allowed_and_denied() {
        let rows = [
            row(
                "GlobalNetworkPolicy baseline ingress",
                "GlobalNetworkPolicy baseline ingress[0] Log",
                9,
            ),
            row(
                "GlobalNetworkPolicy baseline ingress",
                "GlobalNetworkPolicy baseline ingress[1] Allow",
                4,
            ),
            row(
                "GlobalNetworkPolicy baseline ingress",
                "GlobalNetworkPolicy baseline ingress[2] Deny",
                2,
            ),
            row(
                "netpold.io/v1 NetworkPolicy shop/web-gate ingress",
                "netpold.io/v1 NetworkPolicy shop/web-gate ingress[0] Pass",
                3,
            ),
            row(
                "endpoint shop/web ingress after a Pass (veth-web)",
                "shop/web: passed, isolated for ingress, no rule allows",
                1,
            ),
            row(
                "endpoint shop/web ingress (veth-web)",
                "something that accepts",
                5,
            ),
        ];
        let (policies, endpoints) = attribute(&rows);
        let baseline = &policies[0];
        assert_eq!(
            (
                baseline.kind.as_str(),
                baseline.label(),
                baseline.packets,
                baseline.denied_packets
            ),
            ("GlobalNetworkPolicy", "baseline".to_owned(), 4, 2)
        );
        let gate = &policies[1];
        assert_eq!(
            (
                gate.kind.as_str(),
                gate.label(),
                gate.packets,
                gate.denied_packets
            ),
            ("netpold.io/NetworkPolicy", "shop/web-gate".to_owned(), 0, 0)
        );
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].packets, 1);
        assert_eq!(endpoints[0].by_cause["isolated"], 1);
    }

    #[test]
    fn admin_policies_count_allowed_and_denied() {
        let (policies, _) = attribute(&[
            row(
                "AdminNetworkPolicy guard ingress",
                "AdminNetworkPolicy guard ingress[0] 'ops may monitor' Allow",
                5,
            ),
            row(
                "AdminNetworkPolicy guard ingress",
                "AdminNetworkPolicy guard ingress[1] 'no-telnet' Deny",
                3,
            ),
            row(
                "BaselineAdminNetworkPolicy default egress",
                "BaselineAdminNetworkPolicy default egress[0] '' Deny",
                2,
            ),
        ]);
        let got: Vec<(&str, String, &str, u64, u64)> = policies
            .iter()
            .map(|p| {
                (
                    p.kind.as_str(),
                    p.label(),
                    p.direction.as_str(),
                    p.packets,
                    p.denied_packets,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("AdminNetworkPolicy", "guard".to_owned(), "ingress", 5, 3),
                (
                    "BaselineAdminNetworkPolicy",
                    "default".to_owned(),
                    "egress",
                    0,
                    2
                ),
            ]
        );
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 5.0] {
            h.observe(v);
        }
        assert_eq!(h.cumulative, [1, 2]);
        assert_eq!(h.count, 3);
        assert!((h.sum - 5.55).abs() < 1e-9);
    }

    #[test]
    fn text_names_files_in_error_and_counters() {
        let (policies, endpoints) = attribute(&[
            row("policy a/p ingress", "a/p ingress[0]", 4),
            row(
                "endpoint a/e ingress (v)",
                "a/e: isolated for ingress, no rule allows",
                2,
            ),
        ]);
        let report = Report {
            source: "daemon".into(),
            table: "netpold".into(),
            node: Some("n1".into()),
            version: "0.1.0".into(),
            started_unix: Some(100.0),
            files_in_error: vec![FileInError {
                file: "web.yaml".into(),
                last_good: true,
                messages: vec!["web.yaml:3:5: error: bad".into()],
            }],
            policies,
            endpoints,
            ..Report::default()
        };
        let text = report.to_text(3700.0);
        assert!(text.contains("up 1 h 0 min"), "{text}");
        assert!(
            text.contains("web.yaml (its last good content is enforced)"),
            "{text}"
        );
        assert!(text.contains("web.yaml:3:5: error: bad"), "{text}");
        assert!(text.contains("4 packets"), "{text}");
        assert!(text.contains("a/e ingress (isolated 2)"), "{text}");
        assert!(text.contains("top denied flows: not collected"), "{text}");
    }

    /// A policy Deny's drop names the policy and rule instead of an endpoint, in the
    /// text and the JSON; the old form is read back without the field.
    #[test]
    fn denied_flows_name_a_deny_rule() {
        let flow = |rule: Option<&str>, cause: &str, endpoint: &str| DeniedFlow {
            key: FlowKey {
                src: "10.0.0.2".into(),
                dst: "10.0.0.1".into(),
                protocol: "tcp".into(),
                dport: Some(443),
                endpoint: endpoint.into(),
                direction: "ingress".into(),
                cause: cause.into(),
                rule: rule.map(str::to_owned),
            },
            packets: 3,
            last_unix: 1.0,
        };
        let report = Report {
            source: "daemon".into(),
            denied_flows: Some(DeniedFlows {
                group: 7,
                logged: 5,
                lost: 0,
                top: vec![
                    flow(Some("a/audit ingress[2]"), "denied", "-"),
                    flow(None, "isolated", "a/web"),
                ],
            }),
            ..Report::default()
        };
        let text = report.to_text(10.0);
        assert!(
            text.contains("10.0.0.2 -> 10.0.0.1 tcp/443  denied by a/audit ingress[2]\n"),
            "{text}"
        );
        assert!(text.contains("tcp/443  a/web ingress isolated\n"), "{text}");
        let json = serde_json::to_value(&report.denied_flows).unwrap();
        assert_eq!(json["top"][0]["rule"], "a/audit ingress[2]");
        assert!(json["top"][1].get("rule").is_none(), "{json}");
        let back: DeniedFlow = serde_json::from_value(json["top"][1].clone()).unwrap();
        assert_eq!(back.key.rule, None);
    }
}
