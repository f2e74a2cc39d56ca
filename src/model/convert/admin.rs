//! `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy: raw tree → a `TieredPolicy` with `admin` set.
//!
//! The upstream schema (kubernetes-sigs/network-policy-api, `apis/v1alpha1`):
//! `spec.priority` (ANP only, 0-1000), `spec.subject` (`namespaces` or `pods`, exactly
//! one), `spec.ingress[]` / `spec.egress[]` (at most 100 each) with `name`, `action`
//! (ANP: Allow, Deny, Pass; BANP: Allow, Deny), `from[]` / `to[]` peers (`namespaces`,
//! `pods`; egress also `networks`; `nodes` is refused as not enforced) and `ports[]`
//! (`portNumber`, `namedPort`, `portRange`). Each manifest rule is lowered to one
//! `TierRule` per (peer × protocol) holding that protocol's ports, with the same
//! action; `Admin::*_rules` maps them back.

use super::*;
use crate::model::tiered::*;
use crate::selector::expr::Expr;

pub(super) const API_POLICY: &str = "policy.networking.k8s.io/v1alpha1";
const MAX_RULES: usize = 100;

/// A Kubernetes label selector as a selector expression (same meaning).
pub fn selector_expr(sel: &LabelSelector) -> Expr {
    let mut parts: Vec<Expr> = sel
        .requirements()
        .iter()
        .map(|r| match &r.op {
            Op::In(values) if values.len() == 1 => Expr::Eq(
                r.key.clone(),
                values.iter().next().expect("one value").clone(),
            ),
            Op::In(values) => Expr::In(r.key.clone(), values.clone()),
            Op::NotIn(values) => Expr::NotIn(r.key.clone(), values.clone()),
            Op::Exists => Expr::Has(r.key.clone()),
            Op::DoesNotExist => Expr::Not(Box::new(Expr::Has(r.key.clone()))),
        })
        .collect();
    match parts.len() {
        0 => Expr::All,
        1 => parts.pop().expect("one part").canonical(),
        _ => Expr::And(parts).canonical(),
    }
}

/// `namespaces: LabelSelector` or `pods: {namespaceSelector, podSelector}`, as
/// (namespace expression, pod expression).
fn namespaces_or_pods(
    cx: &mut Ctx,
    f: &Fields,
    path: &str,
    extra: &str,
) -> Option<Option<(Expr, Option<Expr>)>> {
    match (f.get("namespaces"), f.get("pods")) {
        (Some(n), None) => {
            let sel = cx.selector(n, &join(path, "namespaces"));
            Some(Some((selector_expr(&sel), None)))
        }
        (None, Some(p)) => {
            let pp = join(path, "pods");
            let pf = cx.fields(p, &pp, &["namespaceSelector", "podSelector"])?;
            let ns = match pf.get("namespaceSelector") {
                Some(n) => selector_expr(&cx.selector(n, &join(&pp, "namespaceSelector"))),
                None => {
                    cx.error(
                        p.pos,
                        &join(&pp, "namespaceSelector"),
                        "required (use {} for every namespace)",
                    );
                    return None;
                }
            };
            let pods = match pf.get("podSelector") {
                Some(n) => selector_expr(&cx.selector(n, &join(&pp, "podSelector"))),
                None => {
                    cx.error(
                        p.pos,
                        &join(&pp, "podSelector"),
                        "required (use {} for every pod)",
                    );
                    return None;
                }
            };
            Some(Some((ns, Some(pods))))
        }
        (Some(_), Some(p)) => {
            cx.error(
                p.pos,
                path,
                format!("exactly one of namespaces, pods{extra}"),
            );
            None
        }
        (None, None) => Some(None),
    }
}

fn subject(cx: &mut Ctx, node: &Node) -> Option<(Expr, Expr)> {
    let f = cx.fields(node, "spec.subject", &["namespaces", "pods"])?;
    match namespaces_or_pods(cx, &f, "spec.subject", "")? {
        Some((ns, pods)) => Some((ns, pods.unwrap_or(Expr::All))),
        None => {
            cx.error(node.pos, "spec.subject", "needs namespaces or pods");
            None
        }
    }
}

/// One peer as an entity (its addresses), or `None` after an error.
fn peer(cx: &mut Ctx, node: &Node, path: &str, egress: bool) -> Option<Entity> {
    let known: &[&str] = if egress {
        &["namespaces", "pods", "networks", "nodes", "domainNames"]
    } else {
        &["namespaces", "pods"]
    };
    let f = cx.fields(node, path, known)?;
    // Both are Extended in the upstream API (an implementation may leave them out).
    for (field, why) in [
        (
            "nodes",
            "netpold's Node objects carry labels, not the node addresses it would match",
        ),
        (
            "domainNames",
            "netpold has no view of DNS answers to match names with",
        ),
    ] {
        if let Some(n) = f.get(field) {
            cx.error(
                n.pos,
                &join(path, field),
                format!("refused: an Extended feature of AdminNetworkPolicy that netpold does not support ({why})"),
            );
            return None;
        }
    }
    let networks = f.get("networks");
    let extra = if egress { ", networks, nodes" } else { "" };
    let sel = namespaces_or_pods(cx, &f, path, extra)?;
    match (sel, networks) {
        (Some((ns, pods)), None) => Some(Entity {
            selector: pods,
            namespace_selector: Some(ns),
            ..Entity::default()
        }),
        (None, Some(n)) => {
            let np = join(path, "networks");
            let items = cx.list(n, &np)?;
            if items.is_empty() {
                cx.error(n.pos, &np, "needs at least one CIDR");
                return None;
            }
            let mut nets = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(net) = cx.cidr(item, &format!("{np}[{i}]")) {
                    nets.push(net);
                }
            }
            Some(Entity {
                nets,
                ..Entity::default()
            })
        }
        (Some(_), Some(n)) => {
            cx.error(
                n.pos,
                path,
                format!("exactly one of namespaces, pods{extra}"),
            );
            None
        }
        (None, None) => {
            cx.error(
                node.pos,
                path,
                format!("a peer needs one of namespaces, pods{extra}"),
            );
            None
        }
    }
}

/// One item of `ports`: (protocol, port item); a named port stands for each protocol.
fn port(cx: &mut Ctx, node: &Node, path: &str) -> Option<Vec<(Protocol, PortItem)>> {
    let f = cx.fields(node, path, &["portNumber", "namedPort", "portRange"])?;
    let given = ["portNumber", "namedPort", "portRange"]
        .iter()
        .filter(|k| f.get(k).is_some())
        .count();
    if given != 1 {
        cx.error(
            node.pos,
            path,
            "exactly one of portNumber, namedPort, portRange",
        );
        return None;
    }
    if let Some(n) = f.get("portNumber") {
        let pp = join(path, "portNumber");
        let pf = cx.fields(n, &pp, &["protocol", "port"])?;
        let protocol = cx.protocol(pf.get("protocol"), &join(&pp, "protocol"));
        let port = match pf.get("port") {
            Some(p) => cx.port_number(p, &join(&pp, "port")),
            None => {
                cx.error(n.pos, &join(&pp, "port"), "required");
                None
            }
        };
        return Some(vec![(protocol?, PortItem::Range(port?, port?))]);
    }
    if let Some(n) = f.get("namedPort") {
        let pp = join(path, "namedPort");
        let name = cx.string(n, &pp)?;
        if !cx.check(n, &pp, syntax::port_name(name)) {
            return None;
        }
        return Some(
            [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                .into_iter()
                .map(|p| (p, PortItem::Named(name.to_owned())))
                .collect(),
        );
    }
    let n = f.get("portRange")?;
    let pp = join(path, "portRange");
    let pf = cx.fields(n, &pp, &["protocol", "start", "end"])?;
    let protocol = cx.protocol(pf.get("protocol"), &join(&pp, "protocol"));
    let mut bound = |k: &str| match pf.get(k) {
        Some(p) => cx.port_number(p, &join(&pp, k)),
        None => {
            cx.error(n.pos, &join(&pp, k), "required");
            None
        }
    };
    let (start, end) = (bound("start"), bound("end"));
    let (start, end) = (start?, end?);
    if end <= start {
        let e = pf.get("end").map_or(n.pos, |e| e.pos);
        cx.error(
            e,
            &join(&pp, "end"),
            format!("end {end} must be above start {start}"),
        );
        return None;
    }
    Some(vec![(protocol?, PortItem::Range(start, end))])
}

/// A direction's rules, lowered.
fn rules(
    cx: &mut Ctx,
    node: &Node,
    path: &str,
    egress: bool,
    baseline: bool,
) -> (Vec<TierRule>, Vec<(usize, String)>) {
    let mut out = Vec::new();
    let mut names = Vec::new();
    let Some(items) = cx.list(node, path) else {
        return (out, names);
    };
    if items.len() > MAX_RULES {
        cx.error(
            node.pos,
            path,
            format!("{} rules; at most {MAX_RULES}", items.len()),
        );
    }
    let peers_field = if egress { "to" } else { "from" };
    let mut total = 0usize;
    for (i, item) in items.iter().enumerate() {
        let rp = format!("{path}[{i}]");
        let Some(f) = cx.fields(item, &rp, &["name", "action", peers_field, "ports"]) else {
            continue;
        };
        let name = match f.get("name") {
            Some(n) => cx.string(n, &join(&rp, "name")).map(str::to_owned),
            None => Some(String::new()),
        };
        if let Some(n) = &name
            && n.len() > 100
        {
            let pos = f.get("name").map_or(item.pos, |n| n.pos);
            cx.error(pos, &join(&rp, "name"), "longer than 100 characters");
        }
        let action = match f.get("action") {
            Some(a) => match cx.string(a, &join(&rp, "action")) {
                Some("Allow") => Some(Action::Allow),
                Some("Deny") => Some(Action::Deny),
                Some("Pass") if !baseline => Some(Action::Pass),
                Some(other) => {
                    let allowed = if baseline {
                        "Allow or Deny"
                    } else {
                        "Allow, Deny or Pass"
                    };
                    cx.error(
                        a.pos,
                        &join(&rp, "action"),
                        format!("unknown action {other:?}: {allowed}"),
                    );
                    None
                }
                None => None,
            },
            None => {
                cx.error(item.pos, &join(&rp, "action"), "required");
                None
            }
        };
        let pp = join(&rp, peers_field);
        let peers: Vec<Entity> = match f.get(peers_field) {
            Some(p) => {
                let list = cx.list(p, &pp).unwrap_or_default();
                if list.is_empty() && matches!(p.value, Value::Seq(_)) {
                    cx.error(p.pos, &pp, "needs at least one peer");
                }
                list.iter()
                    .enumerate()
                    .filter_map(|(j, n)| peer(cx, n, &format!("{pp}[{j}]"), egress))
                    .collect()
            }
            None => {
                cx.error(item.pos, &pp, "required: at least one peer");
                Vec::new()
            }
        };
        let ports: Option<Vec<(Protocol, PortItem)>> = f.get("ports").map(|p| {
            let list = cx.list(p, &join(&rp, "ports")).unwrap_or_default();
            if list.is_empty() && matches!(p.value, Value::Seq(_)) {
                cx.error(
                    p.pos,
                    &join(&rp, "ports"),
                    "needs at least one port (leave ports out for every port)",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(j, n)| port(cx, n, &format!("{rp}.ports[{j}]")))
                .flatten()
                .collect()
        });
        let (Some(action), Some(name)) = (action, name) else {
            continue;
        };
        // One lowered rule per peer and protocol, holding all of its ports: one per
        // port would multiply the peers by the ports.
        let by_protocol: Option<BTreeMap<Protocol, Vec<PortItem>>> = ports.map(|ports| {
            let mut grouped: BTreeMap<Protocol, Vec<PortItem>> = BTreeMap::new();
            for (protocol, item) in ports {
                grouped.entry(protocol).or_default().push(item);
            }
            for items in grouped.values_mut() {
                items.sort();
                items.dedup();
            }
            grouped
        });
        let first = out.len();
        for peer in &peers {
            let lowered = |protocol: Option<Protocol>, items: Vec<PortItem>| {
                let mut destination = Entity {
                    ports: items,
                    ..Entity::default()
                };
                let mut source = Entity::default();
                if egress {
                    destination.selector = peer.selector.clone();
                    destination.namespace_selector = peer.namespace_selector.clone();
                    destination.nets = peer.nets.clone();
                } else {
                    source = peer.clone();
                }
                TierRule {
                    action,
                    protocol: protocol.map(RuleProtocol::Ported),
                    ip_version: None,
                    icmp: None,
                    not_icmp: None,
                    source,
                    destination,
                }
            };
            match &by_protocol {
                None => {
                    out.push(lowered(None, Vec::new()));
                    names.push((i, name.clone()));
                }
                Some(ports) => {
                    for (protocol, items) in ports {
                        out.push(lowered(Some(*protocol), items.clone()));
                        names.push((i, name.clone()));
                    }
                }
            }
        }
        let alternatives = out[first..]
            .iter()
            .map(crate::compile::tier_rule_alternatives)
            .fold(0, usize::saturating_add);
        total = total.saturating_add(too_many_alternatives(cx, item, &rp, alternatives));
    }
    too_many_in_list(cx, node, path, total);
    (out, names)
}

/// The spec of an AdminNetworkPolicy (`baseline` false) or BaselineAdminNetworkPolicy:
/// (subject namespaces, subject pods, ingress, egress, admin).
#[allow(clippy::type_complexity)]
pub(super) fn admin_spec(
    cx: &mut Ctx,
    node: &Node,
    baseline: bool,
) -> Option<(Expr, Expr, Vec<TierRule>, Vec<TierRule>, Admin)> {
    let known: &[&str] = if baseline {
        &["subject", "ingress", "egress"]
    } else {
        &["priority", "subject", "ingress", "egress"]
    };
    let f = cx.fields(node, "spec", known)?;
    let priority = if baseline {
        Some(0)
    } else {
        match f.get("priority") {
            Some(p) => match &p.value {
                Value::Int(n) if (0..=1000).contains(n) => Some(*n as u32),
                Value::Int(n) => {
                    cx.error(
                        p.pos,
                        "spec.priority",
                        format!("{n} is out of range 0-1000"),
                    );
                    None
                }
                _ => {
                    cx.error(
                        p.pos,
                        "spec.priority",
                        format!("expected an integer 0-1000, got {}", p.kind_name()),
                    );
                    None
                }
            },
            None => {
                cx.error(node.pos, "spec.priority", "required: 0-1000, lower first");
                None
            }
        }
    };
    let subject = match f.get("subject") {
        Some(s) => subject(cx, s),
        None => {
            cx.error(node.pos, "spec.subject", "required");
            None
        }
    };
    let (ingress, ingress_rules) = match f.get("ingress") {
        Some(n) => rules(cx, n, "spec.ingress", false, baseline),
        None => (Vec::new(), Vec::new()),
    };
    let (egress, egress_rules) = match f.get("egress") {
        Some(n) => rules(cx, n, "spec.egress", true, baseline),
        None => (Vec::new(), Vec::new()),
    };
    let (ns, pods) = subject?;
    Some((
        ns,
        pods,
        ingress,
        egress,
        Admin {
            baseline,
            priority: priority?,
            ingress_rules,
            egress_rules,
        },
    ))
}
