//! The incremental compiler against compilation from scratch where it matters that a
//! policy is compiled only on the nodes where it selects an endpoint: a fleet of three
//! nodes, most endpoints remote, and every step changing one to three objects at once
//! (an endpoint moved between nodes, relabelled, renamed or moved to another namespace;
//! a policy's selector, peers or ports changed, the policy renamed or removed; a
//! namespace relabelled), so that a policy gains and loses its chains and sets in the
//! same update as its endpoints and other policies change.

use std::collections::BTreeMap;

use netpold::compile::{Incremental, Options, compile_with, explainable};
use netpold::ir::{AddrSource, Match, Ruleset, Verdict, diff};
use netpold::load::load_dir;
use netpold::model::{Changes, Model};

mod common;
use common::{NODE, Rng};

const APPS: [&str; 3] = ["web", "db", "api"];
const NAMESPACES: [&str; 3] = ["a", "b", "c"];
const NODES: [Option<&str>; 4] = [Some(NODE), Some("n2"), Some("n3"), None];

#[derive(Clone)]
struct Endpoint {
    ns: &'static str,
    app: &'static str,
    node: Option<&'static str>,
    port: u16,
}

#[derive(Clone)]
struct Policy {
    ns: &'static str,
    app: &'static str,
    peer: &'static str,
    /// 0: podSelector, 1: namespaceSelector, 2: both, 3: ipBlock.
    peer_kind: usize,
    named_port: bool,
    /// 0: ingress rules, 1: egress rules, 2: both, 3: isolated for ingress, no rule.
    types: usize,
}

#[derive(Clone)]
struct World {
    teams: [&'static str; 3],
    /// By index: the index names the endpoint's interface and address, so no two
    /// endpoints ever claim one.
    endpoints: BTreeMap<usize, (String, Endpoint)>,
    policies: BTreeMap<String, Policy>,
}

impl World {
    fn yaml(&self) -> String {
        let mut out = String::new();
        for (ns, team) in NAMESPACES.iter().zip(self.teams) {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: {team}}}}}\n"
            ));
        }
        for (i, (name, ep)) in &self.endpoints {
            let node = ep.node.map(|n| format!("node: {n}, ")).unwrap_or_default();
            out.push_str(&format!(
                "---\napiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: {}, labels: {{app: {}}}}}\nspec: {{{node}interfaceName: veth{i}, ips: [10.0.0.{}, 'fd00::{}'], ports: [{{name: http, port: {}}}]}}\n",
                ep.ns,
                ep.app,
                i + 1,
                i + 1,
                ep.port
            ));
        }
        for (name, p) in &self.policies {
            let peer = match p.peer_kind {
                0 => format!("{{podSelector: {{matchLabels: {{app: {}}}}}}}", p.peer),
                1 => "{namespaceSelector: {matchLabels: {team: red}}}".to_owned(),
                2 => format!(
                    "{{namespaceSelector: {{matchLabels: {{team: blue}}}}, podSelector: {{matchLabels: {{app: {}}}}}}}",
                    p.peer
                ),
                _ => "{ipBlock: {cidr: 10.0.0.0/28}}".to_owned(),
            };
            let port = if p.named_port { "http" } else { "80" };
            let rule = |side: &str| format!("[{{{side}: [{peer}], ports: [{{port: {port}}}]}}]");
            let rules = match p.types {
                0 => format!("ingress: {}", rule("from")),
                1 => format!("egress: {}", rule("to")),
                2 => format!("ingress: {}, egress: {}", rule("from"), rule("to")),
                _ => "policyTypes: [Ingress]".to_owned(),
            };
            out.push_str(&format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {}}}\nspec: {{podSelector: {{matchLabels: {{app: {}}}}}, {rules}}}\n",
                p.ns, p.app
            ));
        }
        out
    }

    fn random(rng: &mut Rng) -> World {
        let mut w = World {
            teams: ["red", "blue", "red"],
            endpoints: BTreeMap::new(),
            policies: BTreeMap::new(),
        };
        for i in 0..6 + rng.below(5) {
            w.endpoints
                .insert(i, (format!("e{i}"), random_endpoint(rng)));
        }
        for i in 0..2 + rng.below(4) {
            w.policies.insert(format!("p{i}"), random_policy(rng));
        }
        w
    }

    /// One object changed, added or removed.
    fn edit(&mut self, rng: &mut Rng) {
        match rng.below(10) {
            0..=4 => {
                let i = rng.below(12);
                let Some((name, ep)) = self.endpoints.get_mut(&i) else {
                    self.endpoints
                        .insert(i, (format!("e{i}"), random_endpoint(rng)));
                    return;
                };
                match rng.below(6) {
                    0 => ep.node = NODES[rng.below(NODES.len())],
                    1 => ep.app = rng.pick(&APPS),
                    2 => {
                        *name = if name.starts_with('e') {
                            format!("r{i}")
                        } else {
                            format!("e{i}")
                        }
                    }
                    3 => ep.ns = rng.pick(&NAMESPACES),
                    4 => ep.port = if ep.port == 80 { 8080 } else { 80 },
                    _ => {
                        self.endpoints.remove(&i);
                    }
                }
            }
            5..=8 => {
                let name = format!("p{}", rng.below(6));
                let Some(p) = self.policies.get_mut(&name) else {
                    self.policies.insert(name, random_policy(rng));
                    return;
                };
                match rng.below(6) {
                    0 => p.app = rng.pick(&APPS),
                    1 => p.peer = rng.pick(&APPS),
                    2 => p.peer_kind = rng.below(4),
                    3 if rng.chance(50) => p.named_port = !p.named_port,
                    3 => p.types = rng.below(4),
                    4 => {
                        let p = self.policies.remove(&name).expect("present");
                        self.policies.insert(format!("p{}", rng.below(6)), p);
                    }
                    _ => {
                        self.policies.remove(&name);
                    }
                }
            }
            _ => {
                let i = rng.below(3);
                self.teams[i] = if self.teams[i] == "red" {
                    "blue"
                } else {
                    "red"
                };
            }
        }
    }
}

fn random_endpoint(rng: &mut Rng) -> Endpoint {
    Endpoint {
        ns: rng.pick(&NAMESPACES),
        app: rng.pick(&APPS),
        // Mostly remote: a third of the fleet's endpoints are this node's.
        node: NODES[rng.below(NODES.len())],
        port: if rng.chance(50) { 80 } else { 8080 },
    }
}

fn random_policy(rng: &mut Rng) -> Policy {
    Policy {
        ns: rng.pick(&NAMESPACES),
        app: rng.pick(&APPS),
        peer: rng.pick(&APPS),
        peer_kind: rng.below(4),
        named_port: rng.chance(50),
        types: rng.below(4),
    }
}

fn model(yaml: &str) -> Model {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), yaml).unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    assert!(loaded.problems.is_empty(), "{:?}\n{yaml}", loaded.problems);
    loaded.model
}

/// Jumps to chains, and lookups in sets, that are not there.
fn dangling(rs: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for (name, chain) in &rs.chains {
        for rule in &chain.rules {
            for m in &rule.matches {
                if let Match::Addr {
                    source: AddrSource::Set(set),
                    ..
                }
                | Match::AddrPort { set, .. } = m
                    && !rs.sets.contains_key(set)
                {
                    out.push(format!("{name} looks up {set}"));
                }
            }
            if let Some(Verdict::Jump(to) | Verdict::Goto(to)) = &rule.verdict
                && !rs.chains.contains_key(to)
            {
                out.push(format!("{name} -> {to}"));
            }
        }
    }
    out
}

/// What the kernel would refuse in `delta` against the table holding `before`: an
/// object created that exists, removed or changed that does not, an element added
/// that is there or removed that is not.
fn refused(before: &Ruleset, delta: &diff::Delta, after: &Ruleset) -> Vec<String> {
    let mut out = Vec::new();
    for name in delta.added_sets.iter().chain(&delta.added_chains) {
        if before.sets.contains_key(*name) || before.chains.contains_key(*name) {
            out.push(format!("{name} created but exists"));
        }
    }
    for name in &delta.removed_sets {
        if !before.sets.contains_key(*name) || after.sets.contains_key(*name) {
            out.push(format!("set {name} removed but absent or still wanted"));
        }
    }
    for name in delta.removed_chains.iter().chain(&delta.changed_chains) {
        if !before.chains.contains_key(*name) {
            out.push(format!("chain {name} removed or rewritten but absent"));
        }
    }
    for change in &delta.changed_sets {
        let Some(set) = before.sets.get(change.name) else {
            out.push(format!("set {} changed but absent", change.name));
            continue;
        };
        if change.refill {
            continue;
        }
        out.extend(
            change
                .add
                .iter()
                .filter(|e| set.elements.contains(**e))
                .map(|e| format!("{e:?} added to {} holding it", change.name)),
        );
        out.extend(
            change
                .remove
                .iter()
                .filter(|e| !set.elements.contains(**e))
                .map(|e| format!("{e:?} removed from {} lacking it", change.name)),
        );
    }
    out
}

#[test]
fn policies_gaining_and_losing_local_endpoints_update_like_a_compilation_from_scratch() {
    let mut rng = Rng(31337);
    let options = Options::default();
    let (mut steps, mut flips) = (0, 0);
    for run in 0..40 {
        let mut world = World::random(&mut rng);
        let mut yaml = world.yaml();
        let mut previous = model(&yaml);
        let mut inc = Incremental::with_options(&previous, NODE, "netpold", &options);
        for step in 0..30 {
            for _ in 0..1 + rng.below(3) {
                world.edit(&mut rng);
            }
            let next_yaml = world.yaml();
            let next = model(&next_yaml);
            let expected = compile_with(&next, NODE, "netpold", &options);
            let before = inc.ruleset().clone();
            let policy_chains =
                |rs: &Ruleset| rs.chains.keys().filter(|c| c.starts_with("pol_")).count();
            if policy_chains(&before) != policy_chains(&expected) {
                flips += 1;
            }
            let context = format!("run {run} step {step}\n--- from\n{yaml}\n--- to\n{next_yaml}");
            inc.update(&next, &Changes::between(&previous, &next))
                .unwrap_or_else(|e| panic!("{context}: {e:?}"));
            assert!(
                *inc.ruleset() == expected,
                "{context}\n--- incremental\n{}\n--- from scratch\n{}",
                netpold::render::render(inc.ruleset()),
                netpold::render::render(&expected)
            );
            assert_eq!(dangling(&expected), Vec::<String>::new(), "{context}");
            let (delta, _) = inc.delta().unwrap();
            assert_eq!(
                refused(&before, &delta, &expected),
                Vec::<String>::new(),
                "{context}"
            );
            assert_eq!(
                diff::apply(&before, &delta, &expected),
                expected,
                "{context}: the delta ({}) does not lead to the new ruleset",
                delta.summary()
            );
            assert_eq!(inc.rule_count(), expected.rule_count(), "{context}");
            let (_, origins) = explainable(&next, NODE, "netpold", &options);
            assert_eq!(inc.enforced_policies(), origins.policies.len(), "{context}");
            steps += 1;
            yaml = next_yaml;
            previous = next;
        }
    }
    eprintln!("{steps} updates, {flips} changed how many policies have chains here");
    assert!(flips > steps / 10, "only {flips} of {steps} updates");
}

/// Updates `inc` from `previous` to the model of `yaml` and checks it against a
/// compilation from scratch; returns the new model and the sets the delta added and
/// removed.
fn step(inc: &mut Incremental, previous: &Model, yaml: &str) -> (Model, Vec<String>, Vec<String>) {
    let next = model(yaml);
    let expected = compile_with(&next, NODE, "netpold", &Options::default());
    let before = inc.ruleset().clone();
    inc.update(&next, &Changes::between(previous, &next))
        .unwrap();
    assert!(*inc.ruleset() == expected, "{yaml}");
    let (delta, _) = inc.delta().unwrap();
    assert_eq!(refused(&before, &delta, &expected), Vec::<String>::new());
    let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let sets = (names(&delta.added_sets), names(&delta.removed_sets));
    (next, sets.0, sets.1)
}

#[test]
fn a_peer_set_shared_by_two_policies_stays_while_one_of_them_is_enforced_here() {
    // db-in and cache-in both take web: one set of web's addresses.
    let tree = |db: &str, cache: &str, cache_peer: &str| {
        format!(
            "---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: web, namespace: a, labels: {{app: web}}}}
spec: {{node: n2, interfaceName: vweb, ips: [10.0.0.1]}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: db, namespace: a, labels: {{app: db}}}}
spec: {{node: {db}, interfaceName: vdb, ips: [10.0.0.2]}}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: cache, namespace: a, labels: {{app: cache}}}}
spec: {{node: {cache}, interfaceName: vcache, ips: [10.0.0.3]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-in, namespace: a}}
spec: {{podSelector: {{matchLabels: {{app: db}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}]}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: cache-in, namespace: a}}
spec: {{podSelector: {{matchLabels: {{app: cache}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {cache_peer}}}}}}}]}}]}}
"
        )
    };
    let web_set = |rs: &Ruleset| -> Vec<String> {
        rs.sets
            .iter()
            .filter(|(_, s)| s.comment.contains("app=web") || s.comment.contains("app == web"))
            .map(|(n, _)| n.clone())
            .collect()
    };
    let first = model(&tree(NODE, NODE, "web"));
    let mut inc = Incremental::new(&first, NODE, "netpold");
    let shared = web_set(inc.ruleset());
    // One per address family.
    assert_eq!(shared.len(), 2, "{:?}", inc.ruleset().sets.keys());
    // cache leaves: cache-in goes, db-in keeps the set.
    let (m, added, removed) = step(&mut inc, &first, &tree(NODE, "n2", "web"));
    assert!(
        added.is_empty() && removed.is_empty(),
        "{added:?} {removed:?}"
    );
    assert_eq!(web_set(inc.ruleset()), shared);
    // db leaves while cache-in is edited: nothing here uses the set any more.
    let (m, _, removed) = step(&mut inc, &m, &tree("n2", "n2", "db"));
    assert_eq!(removed, shared);
    assert!(web_set(inc.ruleset()).is_empty());
    // db comes back: the set made anew, with web (remote) in it; web moving here
    // then changes no set.
    let (m, added, _) = step(&mut inc, &m, &tree(NODE, "n2", "db"));
    assert_eq!(added, shared);
    let (_, added, removed) = step(
        &mut inc,
        &m,
        &tree(NODE, "n2", "db").replacen("node: n2", &format!("node: {NODE}"), 1),
    );
    assert!(
        added.is_empty() && removed.is_empty(),
        "{added:?} {removed:?}"
    );
    assert!(shared.iter().any(|name| {
        inc.ruleset().sets[name]
            .elements
            .iter()
            .any(|e| format!("{e:?}").contains("10.0.0.1"))
    }));
}
