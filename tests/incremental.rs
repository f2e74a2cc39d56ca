//! The incremental compiler against compilation from scratch: over random sequences
//! of edits (objects added, removed, relabelled, moved between nodes and addresses,
//! ports and policy types changed, namespaces relabelled), the ruleset kept up to date
//! equals `compile` of the same model at every step, and the delta it reports turns
//! the previous ruleset into the new one.

use netpold::compile::{DropLog, Incremental, Options, compile, compile_with, explainable};
use netpold::ir::diff;
use netpold::load::load_dir;
use netpold::model::{Changes, Model};

mod common;
use common::{NODE, Rng, admin_policies, edited, edited_tiered, scenario, tiered_policies};

fn model(yaml: &str) -> Option<Model> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), yaml).unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    loaded.problems.is_empty().then_some(loaded.model)
}

/// The same changes listed in one order.
fn normalized(mut d: diff::Delta) -> diff::Delta {
    for v in [
        &mut d.added_sets,
        &mut d.removed_sets,
        &mut d.added_maps,
        &mut d.removed_maps,
        &mut d.added_chains,
        &mut d.removed_chains,
        &mut d.changed_chains,
    ] {
        v.sort();
    }
    for c in &mut d.changed_sets {
        c.add.sort();
        c.remove.sort();
    }
    d.changed_sets.sort_by(|a, b| a.name.cmp(b.name));
    for c in &mut d.changed_maps {
        c.add.sort();
        c.remove.sort();
    }
    d.changed_maps.sort_by(|a, b| a.name.cmp(b.name));
    d
}

#[test]
fn incremental_updates_equal_a_compilation_from_scratch() {
    let mut rng = Rng(2024);
    let (mut steps, mut touched) = (0, 0);
    for n in 0..60 {
        let mut yaml = scenario(&mut rng).yaml;
        let Some(first) = model(&yaml) else { continue };
        // Drop logs to an NFLOG group, to the kernel log, or none.
        let options = Options {
            drop_log: (n % 3 != 2).then_some(DropLog {
                group: (n % 3 == 0).then_some(5),
                rate: 10,
                burst: 20,
            }),
            ..Default::default()
        };
        let mut inc = Incremental::with_options(&first, NODE, "netpold", &options);
        let mut previous = first;
        for step in 0..25 {
            let next_yaml = if step == 12 {
                scenario(&mut rng).yaml
            } else {
                edited(&yaml, &mut rng)
            };
            let Some(next) = model(&next_yaml) else {
                continue;
            };
            let expected = compile_with(&next, NODE, "netpold", &options);
            let before = inc.ruleset().clone();
            inc.update(&next, &Changes::between(&previous, &next))
                .unwrap();
            assert!(
                *inc.ruleset() == expected,
                "scenario {n} step {step}: incremental and from-scratch differ\n--- from\n{yaml}\n--- to\n{next_yaml}\n--- incremental\n{}\n--- from scratch\n{}",
                netpold::render::render(inc.ruleset()),
                netpold::render::render(&expected)
            );
            let (delta, _) = inc.delta().unwrap();
            if !delta.is_empty() {
                touched += 1;
            }
            assert_eq!(
                diff::apply(&before, &delta, &expected),
                expected,
                "scenario {n} step {step}: the delta ({}) does not lead to the new ruleset",
                delta.summary()
            );
            assert_eq!(
                normalized(delta),
                normalized(diff::diff(&before, &expected).unwrap()),
                "scenario {n} step {step}: the logged delta differs from the computed one"
            );
            assert_eq!(inc.rule_count(), expected.rule_count());
            assert_eq!(inc.local_endpoints(), next.local_endpoints(NODE));
            let (_, origins) = explainable(&next, NODE, "netpold", &options);
            assert_eq!(inc.enforced_policies(), origins.policies.len());
            steps += 1;
            yaml = next_yaml;
            previous = next;
        }
    }
    assert!(steps > 800, "only {steps} steps");
    assert!(
        touched > steps / 3,
        "only {touched} of {steps} edits changed the ruleset"
    );
    eprintln!("{steps} edits, {touched} changed the ruleset");
}

/// With netpold.io policies too: the first one arriving, orders, actions and selectors
/// edited, the last one removed. A change of the verdict maps (the first policy, the
/// last removed) needs a whole-table replacement; every other update's delta leads to
/// the ruleset compiled from scratch.
#[test]
fn incremental_updates_with_ordered_policies_equal_a_compilation_from_scratch() {
    let mut rng = Rng(77);
    let (mut steps, mut replaced, mut with_tiers) = (0, 0, 0);
    for n in 0..40 {
        let base = scenario(&mut rng).yaml;
        let mut yaml = if n % 4 == 0 {
            base
        } else {
            format!("{base}{}", tiered_policies(&mut rng))
        };
        let Some(first) = model(&yaml) else { continue };
        let options = drop_log_every_other(n);
        let mut inc = Incremental::with_options(&first, NODE, "netpold", &options);
        let mut previous = first;
        for step in 0..20 {
            let next_yaml = match step {
                5 => format!("{yaml}{}", tiered_policies(&mut rng)),
                // Admin policies arriving (and, at 10, leaving with the scenario).
                7 if n % 3 == 1 => format!("{yaml}{}", admin_policies(&mut rng)),
                10 => scenario(&mut rng).yaml,
                _ => edited_tiered(&yaml, &mut rng),
            };
            let Some(next) = model(&next_yaml) else {
                continue;
            };
            let expected = compile_with(&next, NODE, "netpold", &options);
            let context = format!("scenario {n} step {step}, from\n{yaml}\n--- to\n{next_yaml}");
            replaced += usize::from(step_matches(
                &mut inc, &previous, &next, &expected, &options, &context,
            ));
            assert_eq!(inc.local_endpoints(), next.local_endpoints(NODE));
            with_tiers += usize::from(!next.tiered.is_empty());
            steps += 1;
            yaml = next_yaml;
            previous = next;
        }
    }
    assert!(steps > 400, "only {steps} steps");
    assert!(
        with_tiers > steps / 3,
        "only {with_tiers} of {steps} with ordered policies"
    );
    assert!(
        replaced < steps / 4,
        "{replaced} of {steps} replaced the whole table"
    );
    eprintln!(
        "{steps} edits, {with_tiers} with ordered policies, {replaced} whole-table replacements"
    );
}

/// One to three host endpoints with random labels, interfaces, nodes and addresses.
/// Updates `inc` from `previous` to `next` and checks it equals `expected` (the compile
/// from scratch) and that its delta leads there; when the update asks for a replace, does
/// what the daemon does and compiles from scratch. Returns whether it replaced.
fn step_matches(
    inc: &mut Incremental,
    previous: &Model,
    next: &Model,
    expected: &netpold::ir::Ruleset,
    options: &netpold::compile::Options,
    context: &str,
) -> bool {
    let before = inc.ruleset().clone();
    if inc.update(next, &Changes::between(previous, next)).is_err() {
        *inc = Incremental::with_options(next, NODE, "netpold", options);
        return true;
    }
    assert!(
        inc.ruleset() == expected,
        "{context}: incremental and from-scratch differ"
    );
    let (delta, _) = inc.delta().unwrap();
    assert_eq!(
        &diff::apply(&before, &delta, expected),
        expected,
        "{context}: the delta ({}) does not lead to the new ruleset",
        delta.summary()
    );
    assert_eq!(inc.rule_count(), expected.rule_count());
    let (_, origins) = explainable(next, NODE, "netpold", options);
    assert_eq!(inc.enforced_policies(), origins.policies.len(), "{context}");
    false
}

fn host_endpoints(rng: &mut Rng) -> String {
    let mut yaml = String::new();
    let mut interfaces = vec!["uplink0", "eth7", "*"];
    for i in 0..1 + rng.below(3) {
        let interface = interfaces.remove(rng.below(interfaces.len()));
        let app = rng.pick(&["web", "db", "api", "none"]);
        let node = rng
            .pick(&["", "node: n2, ", "node: n1, "])
            .replace("n1", NODE);
        let ips = match rng.below(3) {
            0 => String::new(),
            n => format!(
                ", expectedIPs: [192.0.2.{}{}]",
                10 + i,
                if n == 2 { ", 'fd00:2::9'" } else { "" }
            ),
        };
        yaml.push_str(&format!(
            "---\napiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {{name: h{i}, labels: {{app: {app}}}}}\nspec: {{{node}interfaceName: '{interface}'{ips}}}\n"
        ));
    }
    yaml
}

#[test]
fn incremental_updates_with_host_endpoints_equal_a_compilation_from_scratch() {
    let mut rng = Rng(4242);
    let (mut steps, mut replaced, mut with_hosts) = (0, 0, 0);
    for n in 0..25 {
        // A policy that selects most host endpoints (and workloads), with a Pass.
        let hosts_policy = format!(
            "---\napiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: hosts}}\nspec:\n  order: 500\n  selector: \"app in {{'web', 'db'}}\"\n  applyOnForward: {}\n  types: [Ingress, Egress]\n  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [22, 80]}}}}, {{action: Pass, protocol: UDP}}]\n  egress: [{{action: Deny, protocol: TCP, destination: {{ports: [25]}}}}]\n",
            rng.chance(50)
        );
        let base = format!(
            "{}{}{hosts_policy}",
            scenario(&mut rng).yaml,
            tiered_policies(&mut rng)
        );
        let hosts = host_endpoints(&mut rng);
        let mut yaml = format!("{base}{hosts}");
        let Some(first) = model(&yaml) else { continue };
        let options = drop_log_every_other(n);
        let mut inc = Incremental::with_options(&first, NODE, "netpold", &options);
        let mut previous = first;
        for step in 0..12 {
            let next_yaml = match step {
                3 => base.clone(),
                4 | 8 => format!("{base}{}", host_endpoints(&mut rng)),
                6 => yaml.replacen("app: ", "app: x", 1),
                _ => edited_tiered(&yaml, &mut rng),
            };
            let Some(next) = model(&next_yaml) else {
                continue;
            };
            let expected = compile_with(&next, NODE, "netpold", &options);
            let context = format!("scenario {n} step {step}, from\n{yaml}\n--- to\n{next_yaml}");
            replaced += usize::from(step_matches(
                &mut inc, &previous, &next, &expected, &options, &context,
            ));
            with_hosts += usize::from(expected.chains.contains_key(netpold::compile::HOST_INPUT));
            steps += 1;
            yaml = next_yaml;
            previous = next;
        }
    }
    assert!(steps > 150, "only {steps} steps");
    assert!(
        with_hosts > steps / 4,
        "only {with_hosts} of {steps} with selected host endpoints"
    );
    eprintln!(
        "{steps} edits, {with_hosts} with selected host endpoints, {replaced} whole-table replacements"
    );
}

// The daemon's source: a change patched into the model (`Model::patch`) against a
// full build of every file, over random edits of a directory.

use std::collections::BTreeMap;
use std::path::Path;

use netpold::daemon::source::{Before, Load, Reload, Source};

#[derive(Clone, Debug)]
enum Obj {
    Namespace {
        name: String,
        team: String,
    },
    Endpoint {
        /// `None`: no namespace written (`default`).
        ns: Option<String>,
        name: String,
        app: String,
        node: Option<String>,
        interface: String,
        ips: Vec<String>,
        port: u16,
    },
    Policy {
        ns: String,
        name: String,
        app: String,
        peer: String,
        team: String,
    },
}

#[derive(Clone, Debug)]
enum File {
    Objects { comment: bool, objects: Vec<Obj> },
    Broken(&'static str),
}

const NAMESPACES: [&str; 4] = ["a", "b", "c", "d"];

impl Obj {
    fn yaml(&self) -> String {
        match self {
            Obj::Namespace { name, team } => format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}, labels: {{team: {team}}}}}\n"
            ),
            Obj::Endpoint {
                ns,
                name,
                app,
                node,
                interface,
                ips,
                port,
            } => {
                let ns = ns
                    .as_ref()
                    .map(|n| format!(", namespace: {n}"))
                    .unwrap_or_default();
                let node = node
                    .as_ref()
                    .map(|n| format!("node: {n}, "))
                    .unwrap_or_default();
                format!(
                    "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}{ns}, labels: {{app: {app}}}}}\nspec: {{{node}interfaceName: {interface}, ips: [{}], ports: [{{name: http, port: {port}}}]}}\n",
                    ips.join(", ")
                )
            }
            Obj::Policy {
                ns,
                name,
                app,
                peer,
                team,
            } => format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{podSelector: {{matchLabels: {{app: {app}}}}}, ingress: [{{from: [{{podSelector: {{matchLabels: {{app: {peer}}}}}}}, {{namespaceSelector: {{matchLabels: {{team: {team}}}}}}}], ports: [{{port: http}}]}}], egress: [{{to: [{{namespaceSelector: {{matchLabels: {{team: {team}}}}}, podSelector: {{matchLabels: {{app: {peer}}}}}}}]}}]}}\n"
            ),
        }
    }
}

impl File {
    fn text(&self) -> String {
        match self {
            File::Broken(text) => (*text).to_owned(),
            File::Objects { comment, objects } => {
                let mut out = String::new();
                if *comment {
                    out.push_str("# moved down a line\n");
                }
                for o in objects {
                    out.push_str("---\n");
                    out.push_str(&o.yaml());
                }
                out
            }
        }
    }
}

fn random_obj(rng: &mut Rng) -> Obj {
    let ns = rng.pick(&NAMESPACES).to_owned();
    match rng.below(10) {
        0 => Obj::Namespace {
            name: ns,
            team: rng.pick(&["red", "blue"]).to_owned(),
        },
        1..=6 => Obj::Endpoint {
            ns: (!rng.chance(10)).then_some(ns),
            name: format!("ep{}", rng.below(12)),
            app: rng.pick(&["web", "db", "api"]).to_owned(),
            node: match rng.below(5) {
                0 => None,
                1 => Some("n2".to_owned()),
                _ => Some(NODE.to_owned()),
            },
            interface: format!("veth{}", rng.below(30)),
            ips: if rng.chance(20) {
                vec![
                    format!("10.0.0.{}", 1 + rng.below(60)),
                    format!("fd00::{}", 1 + rng.below(60)),
                ]
            } else {
                vec![format!("10.0.0.{}", 1 + rng.below(60))]
            },
            port: if rng.chance(50) { 80 } else { 8080 },
        },
        _ => Obj::Policy {
            ns,
            name: format!("p{}", rng.below(6)),
            app: rng.pick(&["web", "db", "api"]).to_owned(),
            peer: rng.pick(&["web", "db", "api"]).to_owned(),
            team: rng.pick(&["red", "blue"]).to_owned(),
        },
    }
}

/// One object changed as an operator would: relabelled, renamed, moved to another
/// namespace, node, address or interface.
fn edit_obj(obj: &mut Obj, rng: &mut Rng) {
    match obj {
        Obj::Namespace { team, .. } => *team = rng.pick(&["red", "blue", "green"]).to_owned(),
        Obj::Endpoint {
            ns,
            name,
            app,
            node,
            interface,
            ips,
            port,
        } => match rng.below(7) {
            0 => *app = rng.pick(&["web", "db", "api", "cache"]).to_owned(),
            1 => *name = format!("ep{}", rng.below(12)),
            2 => *ns = Some(rng.pick(&NAMESPACES).to_owned()),
            3 => *node = [None, Some("n2".to_owned()), Some(NODE.to_owned())][rng.below(3)].clone(),
            4 => ips[0] = format!("10.0.0.{}", 1 + rng.below(60)),
            5 => *interface = format!("veth{}", rng.below(30)),
            _ => *port = if *port == 80 { 8080 } else { 80 },
        },
        Obj::Policy {
            ns,
            name,
            app,
            peer,
            team,
        } => match rng.below(5) {
            0 => *app = rng.pick(&["web", "db", "api"]).to_owned(),
            1 => *name = format!("p{}", rng.below(6)),
            2 => *ns = rng.pick(&NAMESPACES).to_owned(),
            3 => *peer = rng.pick(&["web", "db", "api"]).to_owned(),
            _ => *team = rng.pick(&["red", "blue", "green"]).to_owned(),
        },
    }
}

/// A random edit of the directory, some of which conflict (an identity defined twice,
/// an address or interface claimed twice) or break a file, and later ones that fix it.
fn edit_dir(files: &mut BTreeMap<String, File>, rng: &mut Rng, problems: &[String]) {
    let names: Vec<String> = files.keys().cloned().collect();
    let pick = |rng: &mut Rng| names[rng.below(names.len())].clone();
    let op = if names.is_empty() { 0 } else { rng.below(14) };
    // Held files are fixed more often than not: removed, or written anew.
    if !problems.is_empty() && rng.chance(40) {
        let file = problems[rng.below(problems.len())].clone();
        if rng.chance(50) {
            files.remove(&file);
        } else {
            files.insert(
                file,
                File::Objects {
                    comment: false,
                    objects: vec![random_obj(rng)],
                },
            );
        }
        return;
    }
    match op {
        0 | 1 => {
            let objects = (0..1 + rng.below(3)).map(|_| random_obj(rng)).collect();
            let name = format!("f{}.yaml", rng.below(12));
            files.insert(
                name,
                File::Objects {
                    comment: false,
                    objects,
                },
            );
        }
        2 => {
            files.remove(&pick(rng));
        }
        3 => {
            // A file renamed.
            let from = pick(rng);
            let file = files.remove(&from).unwrap();
            files.insert(format!("sub/r{}.yaml", rng.below(12)), file);
        }
        4 => {
            // An object moved to another file: two files change at once.
            let (from, to) = (pick(rng), pick(rng));
            if let Some(File::Objects { objects, .. }) = files.get_mut(&from)
                && !objects.is_empty()
            {
                let obj = objects.remove(rng.below(objects.len()));
                match files.get_mut(&to) {
                    Some(File::Objects { objects, .. }) => objects.push(obj),
                    _ => {
                        files.insert(
                            to,
                            File::Objects {
                                comment: false,
                                objects: vec![obj],
                            },
                        );
                    }
                }
            }
        }
        5 => {
            // An object copied: defined twice.
            let (from, to) = (pick(rng), pick(rng));
            if let Some(File::Objects { objects, .. }) = files.get(&from)
                && !objects.is_empty()
            {
                let obj = objects[rng.below(objects.len())].clone();
                if let Some(File::Objects { objects, .. }) = files.get_mut(&to) {
                    objects.push(obj);
                }
            }
        }
        6 => {
            files.insert(
                pick(rng),
                File::Broken(if rng.chance(50) {
                    "kind: [unclosed\n"
                } else {
                    "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: bad}\nspec: {interfaceName: vbad, ips: [10.0.0.300]}\n"
                }),
            );
        }
        7 => {
            if let Some(File::Objects { comment, .. }) = files.get_mut(&pick(rng)) {
                *comment = !*comment;
            }
        }
        8 => {
            if let Some(File::Objects { objects, .. }) = files.get_mut(&pick(rng))
                && !objects.is_empty()
            {
                objects.remove(rng.below(objects.len()));
            }
        }
        9 => {
            if let Some(File::Objects { objects, .. }) = files.get_mut(&pick(rng)) {
                objects.push(random_obj(rng));
            }
        }
        _ => {
            if let Some(File::Objects { objects, .. }) = files.get_mut(&pick(rng))
                && !objects.is_empty()
            {
                let i = rng.below(objects.len());
                edit_obj(&mut objects[i], rng);
            }
        }
    }
}

fn write_dir(dir: &Path, files: &BTreeMap<String, File>, written: &mut BTreeMap<String, String>) {
    for gone in written.keys().filter(|k| !files.contains_key(*k)) {
        std::fs::remove_file(dir.join(gone)).unwrap();
    }
    written.retain(|k, _| files.contains_key(k));
    for (name, file) in files {
        let text = file.text();
        if written.get(name) != Some(&text) {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // As editors and `mv` do: the new content under a temporary name, renamed.
            let tmp = dir.join(".tmp");
            std::fs::write(&tmp, &text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            written.insert(name.clone(), text);
        }
    }
}

fn held_files(load: &Load, dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    load.held
        .iter()
        .chain(&[])
        .map(|h| h.file.strip_prefix(&prefix).unwrap_or(&h.file).to_owned())
        .collect()
}

#[test]
fn patched_loads_equal_full_builds() {
    let mut rng = Rng(7);
    let (mut steps, mut patched, mut compiled_steps) = (0, 0, 0);
    for run in 0..40 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut files: BTreeMap<String, File> = BTreeMap::new();
        let mut written = BTreeMap::new();
        for i in 0..3 {
            let objects = (0..2 + rng.below(3))
                .map(|_| random_obj(&mut rng))
                .collect();
            files.insert(
                format!("f{i}.yaml"),
                File::Objects {
                    comment: false,
                    objects,
                },
            );
        }
        write_dir(dir, &files, &mut written);
        let mut fast = Source::new(dir, None);
        let mut full = Source::new(dir, None);
        let mut compiled: Option<Incremental> = None;
        let mut held: Vec<String> = Vec::new();
        for step in 0..40 {
            if step > 0 {
                for _ in 0..1 + usize::from(rng.chance(20)) {
                    edit_dir(&mut files, &mut rng, &held);
                }
                write_dir(dir, &files, &mut written);
            }
            let previous = fast.model().clone();
            let mut load = fast.reload().unwrap();
            let reference = full.reload_with(Reload::Everything).unwrap();
            let context = || {
                let listing: Vec<String> = files
                    .iter()
                    .map(|(name, f)| format!("--- {name}\n{}", f.text()))
                    .collect();
                format!("run {run} step {step}\n{}", listing.join(""))
            };
            assert_eq!(fast.model(), full.model(), "{}", context());
            assert_eq!(load.problems, reference.problems, "{}", context());
            assert_eq!(load.held, reference.held, "{}", context());
            assert_eq!(
                (&load.changed, &load.added, &load.removed),
                (&reference.changed, &reference.added, &reference.removed),
                "{}",
                context()
            );
            let model = fast.model();
            let changes =
                match std::mem::replace(&mut load.before, Before::Patched(Changes::default())) {
                    Before::Patched(changes) => {
                        patched += 1;
                        // The change list is exact: what a comparison of the models finds.
                        assert_eq!(changes, Changes::between(&previous, model), "{}", context());
                        changes
                    }
                    Before::Model(old) => {
                        assert_eq!(old, previous);
                        Changes::between(&old, model)
                    }
                };
            held = held_files(&load, dir);
            if !load.complete() && compiled.is_none() {
                continue;
            }
            let expected = compile(model, NODE, "netpold");
            match &mut compiled {
                None => compiled = Some(Incremental::new(model, NODE, "netpold")),
                Some(inc) => {
                    let before = inc.ruleset().clone();
                    inc.update(model, &changes).unwrap();
                    assert!(
                        *inc.ruleset() == expected,
                        "{}: incremental and from-scratch differ\n--- incremental\n{}\n--- from scratch\n{}",
                        context(),
                        netpold::render::render(inc.ruleset()),
                        netpold::render::render(&expected)
                    );
                    // A chain whose comment changes (an endpoint's interface) makes the
                    // reconciler replace the whole table.
                    if let Ok((delta, _)) = inc.delta() {
                        assert_eq!(diff::apply(&before, &delta, &expected), expected);
                    }
                    assert_eq!(inc.rule_count(), expected.rule_count());
                    assert_eq!(inc.local_endpoints(), model.local_endpoints(NODE));
                    compiled_steps += 1;
                }
            }
            steps += 1;
        }
    }
    eprintln!("{steps} loads, {patched} patched, {compiled_steps} compiled incrementally");
    assert!(steps > 1200, "only {steps} loads");
    assert!(
        patched > steps / 3,
        "only {patched} of {steps} loads were patched"
    );
    assert!(
        steps - patched > steps / 5,
        "only {} full builds",
        steps - patched
    );
}

/// Every other scenario compiles with drop logs, so both layouts are checked.
fn drop_log_every_other(n: usize) -> Options {
    Options {
        drop_log: n.is_multiple_of(2).then_some(DropLog {
            group: Some(5),
            rate: 10,
            burst: 20,
        }),
        ..Default::default()
    }
}
