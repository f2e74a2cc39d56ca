//! Raw YAML tree → validated object, doing the API server's defaulting and
//! validation. Every problem is reported with the manifest's own field path; a
//! conversion never stops at the first problem, but an object with any problem
//! is not returned.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

mod admin;
mod tiered;

use super::syntax;
use super::tiered::TieredPolicy;
use super::*;
use crate::manifest::key_text;
use crate::manifest::node::{Node, Value};
use crate::selector::{Op, Requirement};

const API_CORE: &str = "v1";
const API_NETWORKING: &str = "networking.k8s.io/v1";
const API_NETPOLD: &str = NETPOLD_API;

/// ObjectMeta fields that `kubectl get -o yaml` may print; all but name, namespace
/// and labels are accepted and ignored. Anything else is a typo and an error.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

struct Ctx<'a> {
    file: &'a str,
    problems: &'a mut Vec<Diagnostic>,
    failed: bool,
}

/// The fields of one mapping, after unknown keys were reported.
struct Fields<'n> {
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    /// The field's value; an explicit `null` counts as absent, as in the API.
    fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .filter(|v| !v.is_null())
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

impl Ctx<'_> {
    fn error(&mut self, pos: Pos, path: &str, message: impl AsRef<str>) {
        self.failed = true;
        let message = message.as_ref();
        let text = if path.is_empty() {
            message.to_owned()
        } else {
            format!("{path}: {message}")
        };
        self.problems.push(Diagnostic::new(self.file, pos, text));
    }

    /// Checks that `node` is a mapping with only `known` keys.
    fn fields<'n>(&mut self, node: &'n Node, path: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!("expected a mapping, got {}", node.kind_name()),
            );
            return None;
        };
        let mut fields = Fields {
            entries: Vec::new(),
        };
        for (key, value) in entries {
            match key.as_str() {
                Some(name) if known.contains(&name) => fields.entries.push((name, value)),
                Some(name) => {
                    let hint = closest(name, known)
                        .map(|k| format!(" (did you mean {k}?)"))
                        .unwrap_or_default();
                    self.error(key.pos, &join(path, name), format!("unknown field{hint}"));
                }
                None => self.error(
                    key.pos,
                    path,
                    format!("field name {} is not a string", key_text(key)),
                ),
            }
        }
        Some(fields)
    }

    fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a string, got {}; quote it", node.kind_name()),
                );
                None
            }
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a string, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a list, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn check(&mut self, node: &Node, path: &str, result: Result<(), String>) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error(node.pos, path, e);
                false
            }
        }
    }

    fn labels(&mut self, node: &Node, path: &str) -> Labels {
        let mut labels = Labels::new();
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                path,
                format!("expected a mapping, got {}", node.kind_name()),
            );
            return labels;
        };
        for (key, value) in entries {
            let Some(k) = key.as_str() else {
                self.error(
                    key.pos,
                    path,
                    format!("label key {} is not a string; quote it", key_text(key)),
                );
                continue;
            };
            let item = join(path, k);
            let key_ok = self.check(key, &item, syntax::label_key(k));
            if let Some(v) = self.string(value, &item)
                && self.check(value, &item, syntax::label_value(v))
                && key_ok
            {
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        labels
    }

    fn selector(&mut self, node: &Node, path: &str) -> LabelSelector {
        let Some(f) = self.fields(node, path, &["matchLabels", "matchExpressions"]) else {
            return LabelSelector::everything();
        };
        let mut reqs = Vec::new();
        if let Some(ml) = f.get("matchLabels") {
            for (k, v) in self.labels(ml, &join(path, "matchLabels")) {
                reqs.push(Requirement {
                    key: k,
                    op: Op::In(BTreeSet::from([v])),
                });
            }
        }
        if let Some(me) = f.get("matchExpressions") {
            let me_path = join(path, "matchExpressions");
            for (i, expr) in self
                .list(me, &me_path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                if let Some(r) = self.requirement(expr, &format!("{me_path}[{i}]")) {
                    reqs.push(r);
                }
            }
        }
        LabelSelector::new(reqs)
    }

    fn requirement(&mut self, node: &Node, path: &str) -> Option<Requirement> {
        let f = self.fields(node, path, &["key", "operator", "values"])?;
        let key = match f.get("key") {
            Some(k) => {
                let kp = join(path, "key");
                let s = self.string(k, &kp);
                s.filter(|s| self.check(k, &kp, syntax::label_key(s)))
            }
            None => {
                self.error(node.pos, &join(path, "key"), "required");
                None
            }
        };
        let mut values = BTreeSet::new();
        let values_node = f.get("values");
        let vp = join(path, "values");
        if let Some(vn) = values_node {
            for (i, v) in self.list(vn, &vp).unwrap_or_default().iter().enumerate() {
                let ip = format!("{vp}[{i}]");
                if let Some(s) = self.string(v, &ip)
                    && self.check(v, &ip, syntax::label_value(s))
                {
                    values.insert(s.to_owned());
                }
            }
        }
        let op_path = join(path, "operator");
        let op = match f.get("operator") {
            None => {
                self.error(
                    node.pos,
                    &op_path,
                    "required: one of In, NotIn, Exists, DoesNotExist",
                );
                None
            }
            Some(o) => match self.string(o, &op_path)? {
                op @ ("In" | "NotIn") => {
                    if values_node.is_none_or(|v| matches!(&v.value, Value::Seq(s) if s.is_empty()))
                    {
                        self.error(
                            values_node.map_or(o.pos, |v| v.pos),
                            &vp,
                            format!("operator {op} needs at least one value"),
                        );
                        None
                    } else if op == "In" {
                        Some(Op::In(values))
                    } else {
                        Some(Op::NotIn(values))
                    }
                }
                op @ ("Exists" | "DoesNotExist") => {
                    if let Some(vn) =
                        values_node.filter(|v| !matches!(&v.value, Value::Seq(s) if s.is_empty()))
                    {
                        self.error(vn.pos, &vp, format!("operator {op} takes no values"));
                        None
                    } else if op == "Exists" {
                        Some(Op::Exists)
                    } else {
                        Some(Op::DoesNotExist)
                    }
                }
                other => {
                    self.error(
                        o.pos,
                        &op_path,
                        format!(
                            "unknown operator {other:?}: one of In, NotIn, Exists, DoesNotExist"
                        ),
                    );
                    None
                }
            },
        };
        Some(Requirement {
            key: key?.to_owned(),
            op: op?,
        })
    }

    fn port_number(&mut self, node: &Node, path: &str) -> Option<u16> {
        match &node.value {
            Value::Int(n) if (1..=65535).contains(n) => Some(*n as u16),
            Value::Int(n) => {
                self.error(node.pos, path, format!("port {n} is out of range 1-65535"));
                None
            }
            Value::Float(_) => {
                self.error(
                    node.pos,
                    path,
                    "a port is a plain integer 1-65535, without leading zeros, decimal point or exponent",
                );
                None
            }
            _ => {
                self.error(
                    node.pos,
                    path,
                    format!("expected a port number, got {}", node.kind_name()),
                );
                None
            }
        }
    }

    fn protocol(&mut self, node: Option<&Node>, path: &str) -> Option<Protocol> {
        let Some(node) = node else {
            return Some(Protocol::Tcp);
        };
        let s = self.string(node, path)?;
        match Protocol::parse(s) {
            Some(p) => Some(p),
            None => {
                let hint = Protocol::parse(&s.to_ascii_uppercase())
                    .map(|p| format!(" (protocols are upper-case: {p})"))
                    .unwrap_or_default();
                self.error(
                    node.pos,
                    path,
                    format!("unsupported protocol {s:?}: one of TCP, UDP, SCTP{hint}"),
                );
                None
            }
        }
    }

    fn cidr(&mut self, node: &Node, path: &str) -> Option<IpNet> {
        let s = self.string(node, path)?;
        if !self.check(node, path, syntax::unambiguous_ip_text(s)) {
            return None;
        }
        let Ok(net) = s.parse::<IpNet>() else {
            let hint = if s.parse::<IpAddr>().is_ok() {
                " (a CIDR needs a prefix length, e.g. /32)"
            } else {
                ""
            };
            self.error(node.pos, path, format!("{s:?} is not a valid CIDR{hint}"));
            return None;
        };
        if net.trunc() != net {
            self.error(
                node.pos,
                path,
                format!("{s} has host bits set; did you mean {}?", net.trunc()),
            );
            return None;
        }
        Some(net)
    }
}

/// Edit distance ≤ 2 (case-insensitive), for "did you mean" hints.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    fn distance(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.to_lowercase().chars().collect();
        let b: Vec<char> = b.to_lowercase().chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                let cost = usize::from(ca != cb);
                cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Labels,
}

/// Converts one raw object; problems go to `problems`, and `None` is returned
/// when there was any.
pub fn convert_object(raw: &RawObject, problems: &mut Vec<Diagnostic>) -> Option<Object> {
    let mut cx = Ctx {
        file: &raw.file,
        problems,
        failed: false,
    };
    let node = &raw.node;
    let top = cx.fields(
        node,
        "",
        &["apiVersion", "kind", "metadata", "spec", "status"],
    )?;
    let api = match top.get("apiVersion") {
        Some(n) => cx.string(n, "apiVersion"),
        None => {
            cx.error(node.pos, "apiVersion", "required");
            None
        }
    };
    let kind = match top.get("kind") {
        Some(n) => cx.string(n, "kind"),
        None => {
            cx.error(node.pos, "kind", "required");
            None
        }
    };
    let (api, kind) = (api?, kind?);
    let kind_node = top.get("kind").expect("kind was read above");
    let api_node = top.get("apiVersion").expect("apiVersion was read above");
    let expected_api: &[&str] = match kind {
        "Namespace" | "Node" => &[API_CORE],
        "NetworkPolicy" => &[API_NETWORKING, API_NETPOLD],
        "WorkloadEndpoint" | "GlobalNetworkPolicy" | "HostEndpoint" => &[API_NETPOLD],
        "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => &[admin::API_POLICY],
        other => {
            cx.error(
                kind_node.pos,
                "kind",
                format!("unknown kind {other:?}: one of Namespace (v1), Node (v1), NetworkPolicy ({API_NETWORKING} or {API_NETPOLD}), GlobalNetworkPolicy ({API_NETPOLD}), WorkloadEndpoint ({API_NETPOLD}), HostEndpoint ({API_NETPOLD}), AdminNetworkPolicy and BaselineAdminNetworkPolicy ({})", admin::API_POLICY),
            );
            return None;
        }
    };
    if !expected_api.contains(&api) {
        cx.error(
            api_node.pos,
            "apiVersion",
            format!(
                "{kind} is served as apiVersion {}, not {api:?}",
                expected_api.join(" or ")
            ),
        );
        return None;
    }
    let meta = match top.get("metadata") {
        Some(m) => meta(&mut cx, m, kind),
        None => {
            cx.error(node.pos, "metadata", "required");
            None
        }
    };
    let spec = top.get("spec");
    let object = match kind {
        "Namespace" => {
            if let Some(spec) = spec {
                cx.fields(spec, "spec", &["finalizers"]);
            }
            let meta = meta?;
            let name = meta.name?;
            let mut labels = meta.labels;
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
            Some(Object::Namespace(Namespace {
                name,
                labels,
                origin: Some(Origin {
                    file: raw.file.clone(),
                    pos: node.pos,
                }),
            }))
        }
        "Node" => {
            // What a Node's spec and status say (addresses, taints, capacity) is the
            // kubelet's business: only the labels matter, so `kubectl get node -o yaml`
            // output loads as it is.
            let meta = meta?;
            let name = meta.name?;
            let mut labels = meta.labels;
            labels
                .entry(NODE_HOSTNAME_LABEL.to_owned())
                .or_insert_with(|| name.clone());
            Some(Object::Node(ClusterNode {
                name,
                labels,
                origin: Origin {
                    file: raw.file.clone(),
                    pos: node.pos,
                },
            }))
        }
        "NetworkPolicy" | "GlobalNetworkPolicy" if api == API_NETPOLD => {
            let global = kind == "GlobalNetworkPolicy";
            let parts = match spec {
                Some(spec) => tiered::tiered_spec(&mut cx, spec, global),
                None => {
                    cx.error(node.pos, "spec", "required");
                    None
                }
            };
            let (meta, parts) = (meta?, parts?);
            let policy = TieredPolicy {
                global,
                namespace: match global {
                    true => String::new(),
                    false => meta
                        .namespace
                        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                },
                name: meta.name?,
                order: parts.order,
                selector: parts.selector,
                namespace_selector: parts.namespace_selector,
                node_selector: parts.node_selector,
                ingress: parts.ingress,
                egress: parts.egress,
                apply_on_forward: parts.apply_on_forward,
                admin: None,
                origin: Origin {
                    file: raw.file.clone(),
                    pos: node.pos,
                },
            };
            Some(Object::Tiered(policy))
        }
        "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => {
            let baseline = kind == "BaselineAdminNetworkPolicy";
            let parts = match spec {
                Some(spec) => admin::admin_spec(&mut cx, spec, baseline),
                None => {
                    cx.error(node.pos, "spec", "required");
                    None
                }
            };
            let meta = meta?;
            let name = meta.name?;
            if baseline && name != "default" {
                let pos = top
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .map_or(node.pos, |n| n.pos);
                cx.error(
                    pos,
                    "metadata.name",
                    format!(
                        "{name:?}: the BaselineAdminNetworkPolicy is a singleton named default"
                    ),
                );
                return None;
            }
            let (ns, pods, ingress, egress, admin) = parts?;
            Some(Object::Tiered(TieredPolicy {
                global: true,
                namespace: String::new(),
                name,
                order: None,
                selector: pods,
                namespace_selector: Some(ns),
                node_selector: None,
                ingress: (!ingress.is_empty()).then_some(ingress),
                egress: (!egress.is_empty()).then_some(egress),
                apply_on_forward: false,
                admin: Some(admin),
                origin: Origin {
                    file: raw.file.clone(),
                    pos: node.pos,
                },
            }))
        }
        "HostEndpoint" => {
            let host = match spec {
                Some(spec) => host_endpoint_spec(&mut cx, spec),
                None => {
                    cx.error(node.pos, "spec", "required");
                    None
                }
            };
            let (meta, mut host) = (meta?, host?);
            host.name = meta.name?;
            host.labels = meta.labels;
            host.origin = Origin {
                file: raw.file.clone(),
                pos: node.pos,
            };
            Some(Object::Host(host))
        }
        "NetworkPolicy" => {
            let policy = match spec {
                Some(spec) => policy_spec(&mut cx, spec),
                None => {
                    cx.error(node.pos, "spec", "required");
                    None
                }
            };
            let (meta, (pod_selector, ingress, egress)) = (meta?, policy?);
            Some(Object::Policy(NetworkPolicy {
                namespace: meta
                    .namespace
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
                name: meta.name?,
                pod_selector,
                ingress,
                egress,
                origin: Origin {
                    file: raw.file.clone(),
                    pos: node.pos,
                },
            }))
        }
        _ => {
            let ep = match spec {
                Some(spec) => endpoint_spec(&mut cx, spec),
                None => {
                    cx.error(node.pos, "spec", "required");
                    None
                }
            };
            let (meta, mut ep) = (meta?, ep?);
            ep.namespace = meta
                .namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
            ep.name = meta.name?;
            ep.labels = meta.labels;
            ep.origin = Origin {
                file: raw.file.clone(),
                pos: node.pos,
            };
            Some(Object::Endpoint(ep))
        }
    };
    if cx.failed { None } else { object }
}

fn meta(cx: &mut Ctx, node: &Node, kind: &str) -> Option<Meta> {
    let namespaced = !matches!(
        kind,
        "Namespace"
            | "Node"
            | "GlobalNetworkPolicy"
            | "HostEndpoint"
            | "AdminNetworkPolicy"
            | "BaselineAdminNetworkPolicy"
    );
    let is_namespace = kind == "Namespace";
    let f = cx.fields(node, "metadata", METADATA_FIELDS)?;
    let name = match f.get("name") {
        Some(n) => cx.string(n, "metadata.name").and_then(|s| {
            let rule = if is_namespace {
                syntax::dns1123_label(s)
            } else {
                syntax::dns1123_subdomain(s)
            };
            cx.check(n, "metadata.name", rule).then(|| s.to_owned())
        }),
        None => {
            let hint = if f.get("generateName").is_some() {
                " (generateName is not supported: name the object)"
            } else {
                ""
            };
            cx.error(node.pos, "metadata.name", format!("required{hint}"));
            None
        }
    };
    let namespace = match f.get("namespace") {
        Some(n) if !namespaced => {
            cx.error(
                n.pos,
                "metadata.namespace",
                format!(
                    "{} {kind} is cluster-scoped and has no namespace",
                    if kind.starts_with('A') { "an" } else { "a" }
                ),
            );
            None
        }
        Some(n) => cx
            .string(n, "metadata.namespace")
            .filter(|s| cx.check(n, "metadata.namespace", syntax::dns1123_label(s)))
            .map(str::to_owned),
        None => None,
    };
    let labels = match f.get("labels") {
        Some(l) => cx.labels(l, "metadata.labels"),
        None => Labels::new(),
    };
    // Compared with the name as written, so an invalid name is not reported twice.
    let written_name = f.get("name").and_then(Node::as_str);
    if is_namespace
        && labels
            .get(NAMESPACE_NAME_LABEL)
            .is_some_and(|v| Some(v.as_str()) != written_name)
    {
        let pos = f
            .get("labels")
            .and_then(|l| l.get(NAMESPACE_NAME_LABEL))
            .map_or(node.pos, |v| v.pos);
        cx.error(
            pos,
            &format!("metadata.labels.{NAMESPACE_NAME_LABEL}"),
            "must equal metadata.name",
        );
    }
    Some(Meta {
        name,
        namespace,
        labels,
    })
}

type PolicyParts = (LabelSelector, Option<Vec<Rule>>, Option<Vec<Rule>>);

fn policy_spec(cx: &mut Ctx, node: &Node) -> Option<PolicyParts> {
    let f = cx.fields(
        node,
        "spec",
        &["podSelector", "policyTypes", "ingress", "egress"],
    )?;
    let pod_selector = match f.get("podSelector") {
        Some(s) => cx.selector(s, "spec.podSelector"),
        None => {
            cx.error(
                node.pos,
                "spec.podSelector",
                "required (use {} to select every endpoint of the namespace)",
            );
            LabelSelector::everything()
        }
    };
    let ingress = f
        .get("ingress")
        .map(|n| rules(cx, n, "spec.ingress", Direction::Ingress));
    let egress = f
        .get("egress")
        .map(|n| rules(cx, n, "spec.egress", Direction::Egress));
    let (mut has_ingress, mut has_egress) = (false, false);
    match f.get("policyTypes") {
        Some(types) => {
            let items = cx.list(types, "spec.policyTypes").unwrap_or_default();
            for (i, t) in items.iter().enumerate() {
                let path = format!("spec.policyTypes[{i}]");
                let (flag, name) = match cx.string(t, &path) {
                    Some("Ingress") => (&mut has_ingress, "Ingress"),
                    Some("Egress") => (&mut has_egress, "Egress"),
                    Some(other) => {
                        cx.error(
                            t.pos,
                            &path,
                            format!("unknown policy type {other:?}: Ingress or Egress"),
                        );
                        continue;
                    }
                    None => continue,
                };
                if *flag {
                    cx.error(t.pos, &path, format!("{name} is listed twice"));
                }
                *flag = true;
            }
            // An explicit empty list defaults like an absent one, as upstream.
            if items.is_empty() {
                has_ingress = true;
                has_egress = egress.as_ref().is_some_and(|e| !e.is_empty());
            }
        }
        None => {
            // S3: Ingress always; Egress only when there are egress rules.
            has_ingress = true;
            has_egress = egress.as_ref().is_some_and(|e| !e.is_empty());
        }
    }
    let ingress = has_ingress.then(|| ingress.unwrap_or_default());
    let egress = has_egress.then(|| egress.unwrap_or_default());
    Some((pod_selector, ingress, egress))
}

fn rules(cx: &mut Ctx, node: &Node, path: &str, direction: Direction) -> Vec<Rule> {
    let peers_field = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    for (i, r) in cx.list(node, path).unwrap_or_default().iter().enumerate() {
        let rp = format!("{path}[{i}]");
        let Some(f) = cx.fields(r, &rp, &[peers_field, "ports"]) else {
            continue;
        };
        let mut rule = Rule {
            peers: Vec::new(),
            ports: Vec::new(),
        };
        if let Some(peers) = f.get(peers_field) {
            let pp = join(&rp, peers_field);
            for (j, p) in cx.list(peers, &pp).unwrap_or_default().iter().enumerate() {
                if let Some(peer) = peer(cx, p, &format!("{pp}[{j}]")) {
                    rule.peers.push(peer);
                }
            }
        }
        if let Some(ports) = f.get("ports") {
            let pp = join(&rp, "ports");
            for (j, p) in cx.list(ports, &pp).unwrap_or_default().iter().enumerate() {
                if let Some(port) = port_spec(cx, p, &format!("{pp}[{j}]")) {
                    rule.ports.push(port);
                }
            }
        }
        total = total.saturating_add(too_many_alternatives(
            cx,
            r,
            &rp,
            crate::compile::policy_rule_alternatives(&rule),
        ));
        out.push(rule);
    }
    too_many_in_list(cx, node, path, total);
    out
}

/// Refuses a rule list (one direction of a policy) that would compile to more nft
/// rules than this in all: each rule under its own cap, 10,000 of them would still make
/// tens of millions.
pub const MAX_LIST_ALTERNATIVES: usize = 65_536;

/// Refuses a rule list whose rules would compile to more than `MAX_LIST_ALTERNATIVES`.
fn too_many_in_list(cx: &mut Ctx, node: &Node, path: &str, total: usize) {
    if total > MAX_LIST_ALTERNATIVES {
        cx.error(
            node.pos,
            path,
            format!(
                "these rules compile to up to {total} nft rules in all; at most {MAX_LIST_ALTERNATIVES}: split the policy or list fewer ports and peers"
            ),
        );
    }
}

/// Refuses a rule that would compile to more nft rules than `MAX_RULE_ALTERNATIVES`;
/// returns its count for the list's total (0 when refused: one error is enough).
fn too_many_alternatives(cx: &mut Ctx, node: &Node, path: &str, alternatives: usize) -> usize {
    use crate::compile::MAX_RULE_ALTERNATIVES;
    if alternatives > MAX_RULE_ALTERNATIVES {
        cx.error(
            node.pos,
            path,
            format!(
                "compiles to up to {alternatives} nft rules (its port alternatives times its peers or the other end's, per address family); at most {MAX_RULE_ALTERNATIVES}: split the rule or list fewer named ports"
            ),
        );
        return 0;
    }
    alternatives
}

fn peer(cx: &mut Ctx, node: &Node, path: &str) -> Option<Peer> {
    let f = cx.fields(node, path, &["podSelector", "namespaceSelector", "ipBlock"])?;
    let (pods, namespaces, block) = (
        f.get("podSelector"),
        f.get("namespaceSelector"),
        f.get("ipBlock"),
    );
    if let Some(block) = block {
        if pods.is_some() || namespaces.is_some() {
            cx.error(node.pos, path, "ipBlock cannot be combined with podSelector or namespaceSelector in one peer; make them separate peers");
            return None;
        }
        return ip_block(cx, block, &join(path, "ipBlock")).map(Peer::IpBlock);
    }
    if pods.is_none() && namespaces.is_none() {
        cx.error(
            node.pos,
            path,
            "a peer needs podSelector, namespaceSelector or ipBlock",
        );
        return None;
    }
    let pods = pods.map_or_else(LabelSelector::everything, |p| {
        cx.selector(p, &join(path, "podSelector"))
    });
    let namespaces = match namespaces {
        Some(n) => NamespaceScope::Matching(cx.selector(n, &join(path, "namespaceSelector"))),
        None => NamespaceScope::Own,
    };
    Some(Peer::Pods { namespaces, pods })
}

fn ip_block(cx: &mut Ctx, node: &Node, path: &str) -> Option<IpBlock> {
    let f = cx.fields(node, path, &["cidr", "except"])?;
    let cidr = match f.get("cidr") {
        Some(c) => cx.cidr(c, &join(path, "cidr")),
        None => {
            cx.error(node.pos, &join(path, "cidr"), "required");
            None
        }
    };
    let mut except = Vec::new();
    let mut ok = true;
    if let Some(ex) = f.get("except") {
        let ep = join(path, "except");
        for (i, e) in cx.list(ex, &ep).unwrap_or_default().iter().enumerate() {
            let item = format!("{ep}[{i}]");
            let Some(net) = cx.cidr(e, &item) else {
                ok = false;
                continue;
            };
            if let Some(cidr) = cidr {
                // B1: strictly inside, i.e. contained and with a longer prefix.
                if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                    cx.error(e.pos, &item, format!("{net} is not inside cidr {cidr}"));
                    ok = false;
                    continue;
                }
            }
            except.push(net);
        }
    }
    except.sort();
    except.dedup();
    let cidr = cidr?;
    ok.then_some(IpBlock { cidr, except })
}

fn port_spec(cx: &mut Ctx, node: &Node, path: &str) -> Option<PortSpec> {
    let f = cx.fields(node, path, &["protocol", "port", "endPort"])?;
    let protocol = cx.protocol(f.get("protocol"), &join(path, "protocol"));
    let pp = join(path, "port");
    let port = match f.get("port") {
        None => None,
        Some(p) => match &p.value {
            Value::Str(s) if s.parse::<u32>().is_ok() => {
                cx.error(
                    p.pos,
                    &pp,
                    format!("{s:?} is a string; write {s} without quotes for a port number"),
                );
                return None;
            }
            Value::Str(s) => {
                if !cx.check(p, &pp, syntax::port_name(s)) {
                    return None;
                }
                Some(PortMatch::Named(s.clone()))
            }
            _ => Some(PortMatch::Range(cx.port_number(p, &pp)?, 0)),
        },
    };
    let ep = join(path, "endPort");
    let port = match (port, f.get("endPort")) {
        (None, None) => PortMatch::Any,
        (Some(PortMatch::Named(n)), None) => PortMatch::Named(n),
        (Some(PortMatch::Range(p, _)), None) => PortMatch::Range(p, p),
        (None, Some(e)) => {
            cx.error(e.pos, &ep, "endPort needs a numeric port");
            return None;
        }
        (Some(PortMatch::Named(_)), Some(e)) => {
            cx.error(e.pos, &ep, "endPort cannot be used with a named port");
            return None;
        }
        (Some(PortMatch::Range(p, _)), Some(e)) => {
            let end = cx.port_number(e, &ep)?;
            if end < p {
                cx.error(e.pos, &ep, format!("endPort {end} is below port {p}"));
                return None;
            }
            PortMatch::Range(p, end)
        }
        (Some(PortMatch::Any), _) => unreachable!("port is never Any here"),
    };
    Some(PortSpec {
        protocol: protocol?,
        port,
    })
}

fn endpoint_spec(cx: &mut Ctx, node: &Node) -> Option<Endpoint> {
    let f = cx.fields(node, "spec", &["node", "interfaceName", "ips", "ports"])?;
    let node_name = f.get("node").and_then(|n| {
        cx.string(n, "spec.node")
            .filter(|s| cx.check(n, "spec.node", syntax::dns1123_subdomain(s)))
            .map(str::to_owned)
    });
    let (interface, interface_pos) = match f.get("interfaceName") {
        Some(n) => (
            cx.string(n, "spec.interfaceName")
                .filter(|s| cx.check(n, "spec.interfaceName", syntax::interface_name(s)))
                .map(str::to_owned),
            n.pos,
        ),
        None => {
            cx.error(node.pos, "spec.interfaceName", "required");
            (None, node.pos)
        }
    };
    let (ips, ip_pos) = match f.get("ips") {
        Some(list) => {
            if matches!(&list.value, Value::Seq(items) if items.is_empty()) {
                cx.error(
                    list.pos,
                    "spec.ips",
                    "an endpoint needs at least one address",
                );
            }
            endpoint_ips(cx, list, "spec.ips")
        }
        None => {
            cx.error(node.pos, "spec.ips", "required: the endpoint's addresses");
            (Vec::new(), Vec::new())
        }
    };
    let mut ports = Vec::new();
    if let Some(list) = f.get("ports") {
        let mut names: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in cx
            .list(list, "spec.ports")
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let path = format!("spec.ports[{i}]");
            let Some(pf) = cx.fields(item, &path, &["name", "port", "protocol"]) else {
                continue;
            };
            let name = match pf.get("name") {
                Some(n) => cx
                    .string(n, &join(&path, "name"))
                    .filter(|s| cx.check(n, &join(&path, "name"), syntax::port_name(s)))
                    .map(str::to_owned),
                None => {
                    cx.error(item.pos, &join(&path, "name"), "required");
                    None
                }
            };
            let port = match pf.get("port") {
                Some(p) => cx.port_number(p, &join(&path, "port")),
                None => {
                    cx.error(item.pos, &join(&path, "port"), "required");
                    None
                }
            };
            let protocol = cx.protocol(pf.get("protocol"), &join(&path, "protocol"));
            if let (Some(name), Some(port), Some(protocol)) = (name, port, protocol) {
                if let Some(first) = names.insert(name.clone(), i) {
                    let pos = pf.get("name").map_or(item.pos, |n| n.pos);
                    cx.error(
                        pos,
                        &join(&path, "name"),
                        format!("{name:?} is already the name of spec.ports[{first}]"),
                    );
                    continue;
                }
                ports.push(NamedPort {
                    name,
                    port,
                    protocol,
                });
            }
        }
    }
    Some(Endpoint {
        namespace: String::new(),
        name: String::new(),
        labels: Labels::new(),
        node: node_name,
        interface: interface?,
        ips,
        ports,
        origin: Origin::default(),
        ip_pos,
        interface_pos,
    })
}

/// Addresses of `spec.ips` or `spec.expectedIPs`: valid endpoint addresses, none twice.
fn endpoint_ips(cx: &mut Ctx, list: &Node, field: &str) -> (Vec<IpAddr>, Vec<Pos>) {
    let mut ips = Vec::new();
    let mut ip_pos = Vec::new();
    let mut seen = BTreeMap::new();
    for (i, item) in cx.list(list, field).unwrap_or_default().iter().enumerate() {
        let path = format!("{field}[{i}]");
        let Some(s) = cx.string(item, &path) else {
            continue;
        };
        if !cx.check(item, &path, syntax::unambiguous_ip_text(s)) {
            continue;
        }
        let Some(ip) = endpoint_ip(s) else {
            cx.error(
                item.pos,
                &path,
                format!("{s:?} is not an IP address (a /32 or /128 suffix is allowed)"),
            );
            continue;
        };
        if let Err(e) = syntax::endpoint_address(ip) {
            cx.error(item.pos, &path, e);
            continue;
        }
        if let Some(first) = seen.insert(ip, i) {
            cx.error(
                item.pos,
                &path,
                format!("{ip} is already listed as {field}[{first}]"),
            );
            continue;
        }
        ips.push(ip);
        ip_pos.push(item.pos);
    }
    (ips, ip_pos)
}

fn host_endpoint_spec(cx: &mut Ctx, node: &Node) -> Option<HostEndpoint> {
    let f = cx.fields(node, "spec", &["node", "interfaceName", "expectedIPs"])?;
    let node_name = f.get("node").and_then(|n| {
        cx.string(n, "spec.node")
            .filter(|s| cx.check(n, "spec.node", syntax::dns1123_subdomain(s)))
            .map(str::to_owned)
    });
    let (interface, interface_pos) = match f.get("interfaceName") {
        Some(n) => (
            cx.string(n, "spec.interfaceName").and_then(|s| {
                if s == "*" {
                    return Some(HostInterface::All);
                }
                if s == "lo" {
                    cx.error(
                        n.pos,
                        "spec.interfaceName",
                        "lo cannot be a host endpoint: the host's traffic with itself is never filtered",
                    );
                    return None;
                }
                cx.check(n, "spec.interfaceName", syntax::interface_name(s))
                    .then(|| HostInterface::Named(s.to_owned()))
            }),
            n.pos,
        ),
        None => {
            cx.error(
                node.pos,
                "spec.interfaceName",
                "required: an interface name, or \"*\" for every host interface (netpold does not find host endpoints by expectedIPs alone)",
            );
            (None, node.pos)
        }
    };
    let (expected_ips, ip_pos) = match f.get("expectedIPs") {
        Some(list) => endpoint_ips(cx, list, "spec.expectedIPs"),
        None => (Vec::new(), Vec::new()),
    };
    Some(HostEndpoint {
        name: String::new(),
        labels: Labels::new(),
        node: node_name,
        interface: interface?,
        expected_ips,
        origin: Origin::default(),
        ip_pos,
        interface_pos,
    })
}

/// An address, optionally written as a host prefix (`/32`, `/128`).
fn endpoint_ip(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let net = s.parse::<IpNet>().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}
