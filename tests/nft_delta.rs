//! Incremental transactions against the kernel: a table programmed whole and then
//! changed by a delta must hold exactly what programming the new ruleset whole gives,
//! for random sequences of scenarios, each step both a small edit (one object added,
//! removed or changed) and an unrelated scenario. The kernel refuses an add of an
//! element that exists and a removal of one that does not, so any delta that is not
//! exact fails here. Root only; fails instead of skipping under `CI=true`.

use netpold::compile::compile;
use netpold::dataplane::Dataplane;
use netpold::ir::Ruleset;
use netpold::ir::diff::diff;
use netpold::load::load_dir;
use netpold::nft::Kernel;

mod common;
use common::netns::{Netns, can_run, in_netns};
use common::{NODE, Rng, edited, scenario};

fn ruleset(yaml: &str) -> Ruleset {
    try_ruleset(yaml).unwrap_or_else(|problems| panic!("{problems}"))
}

/// The compiled ruleset, or the problems (an edit can make a scenario invalid, e.g.
/// two endpoints claiming one address).
fn try_ruleset(yaml: &str) -> Result<Ruleset, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), yaml).unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    if !loaded.problems.is_empty() {
        return Err(format!("{:?}", loaded.problems));
    }
    Ok(compile(&loaded.model, NODE, "netpold"))
}

/// `nft list` of our table with what legitimately depends on history taken out: the
/// order of chains and sets (creation order) and of elements in a set.
fn canonical(ns: &Netns) -> String {
    let (ok, text, err) = ns.nft(&["list", "table", "inet", "netpold"], None);
    assert!(ok, "nft list: {err}");
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\tchain ") || line.starts_with("\tset ") || line.starts_with("\tmap ")
        {
            current.clear();
        }
        current.push(line.trim().to_owned());
        if line == "\t}" {
            blocks.push(canonical_block(&current.join(" ")));
            current.clear();
        }
    }
    blocks.sort();
    blocks.join("\n")
}

fn canonical_block(block: &str) -> String {
    let Some(start) = block.find("elements = { ") else {
        return block.to_owned();
    };
    let rest = &block[start + 13..];
    let end = rest.find(" }").expect("elements end");
    let mut elements: Vec<&str> = rest[..end].split(',').map(str::trim).collect();
    elements.sort();
    format!(
        "{}elements = {{ {} }}{}",
        &block[..start],
        elements.join(", "),
        &rest[end + 2..]
    )
}

#[test]
fn deltas_leave_the_kernel_holding_the_new_ruleset() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let incremental = Netns::new("dl-inc");
    let whole = Netns::new("dl-whole");
    let mut rng = Rng(99);
    let mut yaml = scenario(&mut rng).yaml;
    let mut held = ruleset(&yaml);
    let first = held.clone();
    in_netns(&incremental, move || {
        Kernel::open("netpold").unwrap().replace(&first).unwrap();
    });
    let (mut deltas, mut messages) = (0, 0);
    for step in 0..80 {
        let next_yaml = if step % 4 == 3 {
            scenario(&mut rng).yaml
        } else {
            edited(&yaml, &mut rng)
        };
        let Ok(next) = try_ruleset(&next_yaml) else {
            continue;
        };
        let delta = diff(&held, &next);
        let Ok(delta) = delta else {
            // The few changes a delta cannot express are replacements, tested elsewhere.
            yaml = next_yaml;
            let (n, whole_table) = (next.clone(), next.clone());
            in_netns(&incremental, move || {
                Kernel::open("netpold").unwrap().replace(&n).unwrap();
            });
            held = whole_table;
            continue;
        };
        let (old, new) = (held.clone(), next.clone());
        let applied = in_netns(&incremental, move || {
            let delta = diff(&old, &new).unwrap();
            Kernel::open("netpold").unwrap().update(&new, &delta)
        });
        let applied = applied.unwrap_or_else(|e| {
            panic!(
                "step {step}: the delta ({}) was refused: {e}\n--- from\n{yaml}\n--- to\n{next_yaml}",
                delta.summary()
            )
        });
        deltas += 1;
        messages += applied.messages;
        let n = next.clone();
        in_netns(&whole, move || {
            Kernel::open("netpold").unwrap().replace(&n).unwrap();
        });
        assert_eq!(
            canonical(&incremental),
            canonical(&whole),
            "step {step}: after the delta ({}), from\n{yaml}\n--- to\n{next_yaml}",
            delta.summary()
        );
        yaml = next_yaml;
        held = next;
    }
    assert!(deltas >= 60, "only {deltas} of 80 steps were deltas");
    eprintln!("{deltas} deltas, {messages} messages in all");
}

#[test]
fn an_empty_delta_is_an_empty_transaction_and_a_stale_one_is_refused() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("dl-stale");
    let mut rng = Rng(5);
    let mut s = scenario(&mut rng);
    while !s.yaml.contains(&format!("node: {NODE}")) {
        s = scenario(&mut rng);
    }
    let rs = ruleset(&s.yaml);
    let (a, b) = (rs.clone(), rs.clone());
    let applied = in_netns(&ns, move || {
        let mut kernel = Kernel::open("netpold").unwrap();
        kernel.replace(&a).unwrap();
        kernel.update(&b, &diff(&b, &b).unwrap()).unwrap()
    });
    // Nothing to change: nothing is sent.
    assert_eq!(applied.messages, 0);

    // Someone removes an element; a delta that removes it too is refused whole.
    let before = canonical(&ns);
    let mut shrunk = rs.clone();
    let (name, set) = shrunk
        .sets
        .iter_mut()
        .find(|(n, s)| n.starts_with("local_addrs") && !s.elements.is_empty())
        .expect("a local address");
    let element = set.elements.pop_first().unwrap();
    let name = name.clone();
    let text = match element {
        netpold::ir::Element::Addr(ip) => ip.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    let (ok, _, err) = ns.nft(
        &[
            "delete",
            "element",
            "inet",
            "netpold",
            &name,
            &format!("{{ {text} }}"),
        ],
        None,
    );
    assert!(ok, "{err}");
    let (old, new) = (rs.clone(), shrunk.clone());
    let err = in_netns(&ns, move || {
        let delta = diff(&old, &new).unwrap();
        Kernel::open("netpold")
            .unwrap()
            .update(&new, &delta)
            .unwrap_err()
    });
    assert!(
        err.to_string()
            .contains(&format!("remove 1 elements from set {name}")),
        "{err}"
    );
    assert_ne!(canonical(&ns), before, "the foreign removal stays");
}
