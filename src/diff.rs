//! Which flows change verdict between two manifest trees, per node: the reviewer's
//! view of a policy change. Every verdict is `explain::Explainer`'s (the compiled
//! rules of each side's node, as `matrix` decides them); a pair is only decided again
//! when something its verdict depends on differs between the trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::explain::{ExplainError, Explainer, Explanation, Party, Port, verdict_word};
use crate::matrix;
use crate::model::tiered::TieredPolicy;
use crate::model::{Endpoint, HostEndpoint, Model, NetworkPolicy};

/// A flow's verdict in one tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `None`: no flow to decide (no address family in common).
    pub allowed: Option<bool>,
    /// The rules that allow it, or the policies that deny it.
    pub by: Vec<String>,
    pub reason: String,
}

impl Verdict {
    pub fn word(&self) -> &'static str {
        self.allowed.map_or("n/a", verdict_word)
    }
}

/// One flow whose verdict differs, on one node whose part of it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    pub from: String,
    pub to: String,
    pub port: Port,
    pub old: Verdict,
    pub new: Verdict,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Sorted by node, source, destination, port.
    pub changes: Vec<Change>,
    /// Endpoints of one tree only (their flows are not compared).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Pairs of endpoints in both trees, and how many of them were decided again.
    pub pairs: usize,
    pub pairs_decided: usize,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// An end of the flows compared: a workload endpoint or a host endpoint with addresses.
struct End {
    party: Party,
    id: String,
    /// Something its flows depend on differs between the trees.
    touched: bool,
    /// Its node in either tree (`None`: a host endpoint of every node).
    nodes: BTreeSet<String>,
}

/// The ends present in both trees, and the ids of those in one only.
fn ends(old: &Model, new: &Model, default_node: &str) -> (Vec<End>, Vec<String>, Vec<String>) {
    // Policies that are not namespaced (netpold.io) and host endpoints can concern any
    // flow: when they differ, every pair is decided again.
    // (Objects are compared as they compile: the two trees are in different files.)
    let global = !alike(&old.tiered, &new.tiered, TieredPolicy::compiles_like)
        || !alike(&old.hosts, &new.hosts, HostEndpoint::compiles_like);
    // The NetworkPolicies that select an endpoint, with their names (the order of its
    // chain): what governs its ingress and egress.
    let selecting = |m: &'_ Model, ep: &Endpoint| {
        m.policies
            .range((ep.namespace.clone(), String::new())..)
            .take_while(|((n, _), _)| *n == ep.namespace)
            .filter(|(_, p)| p.pod_selector.matches(&ep.labels))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let mut ns_touched: BTreeMap<&str, bool> = BTreeMap::new();
    let mut out = Vec::new();
    for (key, before) in &old.endpoints {
        let Some(after) = new.endpoints.get(key) else {
            continue;
        };
        let ns = key.0.as_str();
        // A flow's verdict depends on the two endpoints (labels, addresses, node,
        // ports), their namespaces' labels (namespaceSelector peers) and the
        // NetworkPolicies that select each of them (the sender's egress, the receiver's
        // ingress); not on other endpoints, whose addresses are their own.
        let ns_differs = *ns_touched.entry(ns).or_insert_with(|| {
            match (old.namespaces.get(ns), new.namespaces.get(ns)) {
                (Some(a), Some(b)) => !a.compiles_like(b),
                (a, b) => a.is_some() || b.is_some(),
            }
        });
        let touched = global
            || ns_differs
            || !before.compiles_like(after)
            || !alike(
                &selecting(old, before),
                &selecting(new, after),
                NetworkPolicy::compiles_like,
            );
        let nodes = [before, after]
            .iter()
            .map(|ep| ep.node.clone().unwrap_or_else(|| default_node.to_owned()))
            .collect();
        out.push(End {
            party: Party::Endpoint(key.0.clone(), key.1.clone()),
            id: before.id(),
            touched,
            nodes,
        });
    }
    for (name, before) in &old.hosts {
        match new.hosts.get(name) {
            Some(after) if !before.expected_ips.is_empty() && !after.expected_ips.is_empty() => out
                .push(End {
                    party: Party::Host(name.clone()),
                    id: before.id(),
                    touched: global,
                    nodes: [before.node.clone(), after.node.clone()]
                        .into_iter()
                        .flatten()
                        .collect(),
                }),
            _ => {}
        }
    }
    let only = |a: &Model, b: &Model| -> Vec<String> {
        let mut ids: Vec<String> = a
            .endpoints
            .iter()
            .filter(|(k, _)| !b.endpoints.contains_key(k))
            .map(|(_, ep)| ep.id())
            .collect();
        ids.extend(
            a.hosts
                .iter()
                .filter(|(k, h)| !h.expected_ips.is_empty() && !b.hosts.contains_key(*k))
                .map(|(_, h)| h.id()),
        );
        ids
    };
    (out, only(new, old), only(old, new))
}

/// Both maps have the same keys, and their values compile alike.
fn alike<K: Ord, V>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>, same: fn(&V, &V) -> bool) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
}

/// The ports a destination is checked on: `ports`, else the ports either tree's
/// policies name and the destination declares (as `matrix` chooses them).
fn ports_of(old: &Model, new: &Model, to: &Party, ports: &[Port]) -> Vec<Port> {
    if !ports.is_empty() {
        return ports.to_vec();
    }
    let mut out = BTreeSet::new();
    for m in [old, new] {
        let own = match to {
            Party::Endpoint(ns, name) => m.endpoints.get(&(ns.clone(), name.clone())),
            _ => None,
        };
        match own {
            Some(ep) => out.extend(matrix::default_ports(m, ep)),
            None => out.extend(matrix::policy_ports(m)),
        }
    }
    out.into_iter().collect()
}

/// One flow in one tree, and the explanation of the family that decides it (the first
/// denied, else the first; none when there is no flow); `None` for an end and itself.
fn decide(
    x: &mut Explainer,
    from: &Party,
    to: &Party,
    port: Port,
) -> Option<(Verdict, Option<Explanation>)> {
    match x.explain_each_family(from, to, port) {
        Ok(each) => {
            let e = each.iter().find(|e| !e.allowed).unwrap_or(&each[0]).clone();
            let verdict = Verdict {
                allowed: Some(e.allowed),
                by: e.deciding(),
                reason: matrix::reason(&e),
            };
            Some((verdict, Some(e)))
        }
        Err(err @ (ExplainError::NoCommonFamily { .. } | ExplainError::NoAddress(_))) => {
            let verdict = Verdict {
                allowed: None,
                by: Vec::new(),
                reason: err.to_string(),
            };
            Some((verdict, None))
        }
        Err(_) => None,
    }
}

/// The nodes whose part of a flow differs: the sender's (egress), the receiver's
/// (ingress), those of host endpoints on the way; both ends' nodes when that is
/// unknown (no flow in one tree).
fn nodes_changed(
    old: Option<&Explanation>,
    new: Option<&Explanation>,
    ends: [&End; 2],
) -> BTreeSet<String> {
    let mut nodes = BTreeSet::new();
    if let (Some(a), Some(b)) = (old, new) {
        for (sa, sb) in [(&a.egress, &b.egress), (&a.ingress, &b.ingress)]
            .into_iter()
            .chain(a.hosts.iter().zip(&b.hosts))
        {
            if sa.allowed != sb.allowed
                && let Some(n) = sb.node.as_ref().or(sa.node.as_ref())
            {
                nodes.insert(n.clone());
            }
        }
    }
    if nodes.is_empty() {
        nodes.extend(ends.iter().flat_map(|e| e.nodes.iter().cloned()));
    }
    nodes
}

/// Compares every ordered pair of ends present in both trees on `ports` (default: as
/// `matrix`), keeping the changes on `node` only when given.
pub fn diff(
    old: &mut Explainer,
    new: &mut Explainer,
    default_node: &str,
    node: Option<&str>,
    ports: &[Port],
) -> Diff {
    diff_with(old, new, default_node, node, ports, true)
}

/// `diff`; with `skip_alike` false every pair is decided again (to test the skipping).
pub fn diff_with(
    old: &mut Explainer,
    new: &mut Explainer,
    default_node: &str,
    node: Option<&str>,
    ports: &[Port],
    skip_alike: bool,
) -> Diff {
    let (old_m, new_m) = (old.model(), new.model());
    let (ends, added, removed) = ends(old_m, new_m, default_node);
    let mut out = Diff {
        added,
        removed,
        ..Diff::default()
    };
    let mut dst_ports: BTreeMap<usize, Vec<Port>> = BTreeMap::new();
    for from in &ends {
        for (j, to) in ends.iter().enumerate() {
            if std::ptr::eq(from, to) {
                continue;
            }
            // A node sees the flows of its own endpoints (and of host endpoints, which
            // may be anywhere).
            if let Some(n) = node
                && !(from.nodes.contains(n)
                    || to.nodes.contains(n)
                    || from.nodes.is_empty()
                    || to.nodes.is_empty())
            {
                continue;
            }
            out.pairs += 1;
            if skip_alike && !from.touched && !to.touched {
                continue;
            }
            out.pairs_decided += 1;
            let ports = dst_ports
                .entry(j)
                .or_insert_with(|| ports_of(old_m, new_m, &to.party, ports))
                .clone();
            for port in ports {
                let before = decide(old, &from.party, &to.party, port);
                let after = decide(new, &from.party, &to.party, port);
                let (Some((vo, eo)), Some((vn, en))) = (before, after) else {
                    continue;
                };
                if vo.allowed == vn.allowed {
                    continue;
                }
                for n in nodes_changed(eo.as_ref(), en.as_ref(), [from, to]) {
                    if node.is_some_and(|want| want != n) {
                        continue;
                    }
                    out.changes.push(Change {
                        node: n,
                        from: from.id.clone(),
                        to: to.id.clone(),
                        port,
                        old: vo.clone(),
                        new: vn.clone(),
                    });
                }
            }
        }
    }
    out.changes
        .sort_by(|a, b| (&a.node, &a.from, &a.to, a.port).cmp(&(&b.node, &b.from, &b.to, b.port)));
    out
}

/// `node  from  to  port  old → new  deciding policy`, aligned, then a summary line.
pub fn table(d: &Diff) -> String {
    let mut rows = vec![[
        "NODE".to_owned(),
        "FROM".to_owned(),
        "TO".to_owned(),
        "PORT".to_owned(),
        "VERDICT".to_owned(),
        "DECIDED BY (NEW)".to_owned(),
    ]];
    for c in &d.changes {
        let by = if c.new.by.is_empty() {
            c.new.reason.clone()
        } else {
            c.new.by.join(", ")
        };
        rows.push([
            c.node.clone(),
            c.from.clone(),
            c.to.clone(),
            c.port.to_string(),
            format!("{} → {}", c.old.word(), c.new.word()),
            by,
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if !d.changes.is_empty() {
        for row in &rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    for (what, ids) in [("added", &d.added), ("removed", &d.removed)] {
        if !ids.is_empty() {
            let _ = writeln!(out, "endpoints {what}: {}", ids.join(", "));
        }
    }
    let nodes: BTreeSet<&str> = d.changes.iter().map(|c| c.node.as_str()).collect();
    let _ = writeln!(
        out,
        "{} flows change verdict on {} nodes ({} of {} pairs decided again)",
        d.changes.len(),
        nodes.len(),
        d.pairs_decided,
        d.pairs
    );
    out
}

/// The stable JSON form `netpold diff --json` prints (see the README).
pub fn json(d: &Diff) -> String {
    let verdict = |v: &Verdict| {
        serde_json::json!({
            "verdict": v.word(),
            "by": v.by,
            "reason": v.reason,
        })
    };
    let changes: Vec<_> = d
        .changes
        .iter()
        .map(|c| {
            serde_json::json!({
                "node": c.node,
                "from": c.from,
                "to": c.to,
                "protocol": c.port.protocol.to_string(),
                "port": c.port.number,
                "old": verdict(&c.old),
                "new": verdict(&c.new),
            })
        })
        .collect();
    let v = serde_json::json!({
        "changes": changes,
        "endpoints_added": d.added,
        "endpoints_removed": d.removed,
        "pairs": d.pairs,
        "pairs_decided": d.pairs_decided,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    const TREE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {node: n2, interfaceName: veth-db, ips: [10.0.0.2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: tool, namespace: other, labels: {app: tool}}
spec: {node: n3, interfaceName: veth-tool, ips: [10.0.0.3]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    ports:
    - {protocol: TCP, port: 5432}
";

    fn model(text: &str) -> Model {
        let dir = std::env::temp_dir().join(format!(
            "npd-diff-unit-{}-{}",
            std::process::id(),
            crate::diff::tests::COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("all.yaml"), text).unwrap();
        let loaded = crate::load::load_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        loaded.model
    }

    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    fn run(old: &str, new: &str, node: Option<&str>, ports: &[Port]) -> Diff {
        let (a, b) = (model(old), model(new));
        let mut xa = Explainer::new(&a, "n1", "netpold");
        let mut xb = Explainer::new(&b, "n1", "netpold");
        diff(&mut xa, &mut xb, "n1", node, ports)
    }

    fn tcp(number: u16) -> Port {
        Port {
            protocol: Protocol::Tcp,
            number,
        }
    }

    #[test]
    fn same_tree_has_no_change_and_decides_nothing_again() {
        let d = run(TREE, TREE, None, &[]);
        assert!(d.is_empty());
        assert_eq!(d.pairs, 6);
        assert_eq!(d.pairs_decided, 0);
    }

    #[test]
    fn widening_an_ingress_rule_flips_the_new_peer_on_the_receivers_node_only() {
        let new = TREE.replace(
            "    - podSelector: {matchLabels: {app: web}}\n",
            "    - podSelector: {matchLabels: {app: web}}\n    - namespaceSelector: {}\n      podSelector: {matchLabels: {app: tool}}\n",
        );
        let d = run(TREE, &new, None, &[]);
        let flips: Vec<_> = d
            .changes
            .iter()
            .map(|c| {
                (
                    c.node.as_str(),
                    c.from.as_str(),
                    c.to.as_str(),
                    c.port,
                    c.old.word(),
                    c.new.word(),
                )
            })
            .collect();
        assert_eq!(
            flips,
            vec![(
                "n2",
                "other/tool",
                "shop/db",
                tcp(5432),
                "denied",
                "allowed"
            )]
        );
        assert_eq!(
            d.changes[0].new.by,
            vec!["shop/db-in ingress[0]".to_owned()]
        );
        // Only the pairs of the endpoint the changed policy selects are decided again.
        assert_eq!(d.pairs_decided, 4);
        // Node n1 enforces none of it.
        assert!(run(TREE, &new, Some("n1"), &[]).changes.is_empty());
        assert_eq!(run(TREE, &new, Some("n2"), &[]).changes.len(), 1);
    }

    #[test]
    fn an_egress_policy_puts_the_change_on_the_senders_node() {
        let new = format!(
            "{TREE}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-out, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  policyTypes: [Egress]
"
        );
        let d = run(TREE, &new, None, &[tcp(5432), tcp(80)]);
        // web may no longer send anything: to db on 5432 (allowed before) only, as
        // db's ingress denied the rest already; to tool on both ports.
        let flips: Vec<_> = d
            .changes
            .iter()
            .map(|c| (c.node.as_str(), c.to.as_str(), c.port, c.new.word()))
            .collect();
        assert_eq!(
            flips,
            vec![
                ("n1", "other/tool", tcp(80), "denied"),
                ("n1", "other/tool", tcp(5432), "denied"),
                ("n1", "shop/db", tcp(5432), "denied"),
            ]
        );
        assert!(d.changes.iter().all(|c| c.from == "shop/web"));
        assert_eq!(d.changes[0].new.by, vec!["shop/web-out".to_owned()]);
        let text = table(&d);
        assert!(text.contains("allowed → denied"), "{text}");
        assert!(
            text.ends_with("3 flows change verdict on 1 nodes (4 of 6 pairs decided again)\n"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&json(&d)).unwrap();
        assert_eq!(v["changes"][2]["node"], "n1");
        assert_eq!(v["changes"][2]["old"]["verdict"], "allowed");
        assert_eq!(v["changes"][2]["port"], 5432);
    }

    #[test]
    fn an_endpoint_of_one_tree_is_listed_not_compared() {
        let new = TREE.replace(
            "metadata: {name: tool, namespace: other, labels: {app: tool}}",
            "metadata: {name: tool2, namespace: other, labels: {app: tool}}",
        );
        let d = run(TREE, &new, None, &[]);
        assert!(d.changes.is_empty());
        assert_eq!(d.added, vec!["other/tool2".to_owned()]);
        assert_eq!(d.removed, vec!["other/tool".to_owned()]);
        assert!(!d.is_empty());
        assert_eq!(d.pairs, 2);
    }
}
