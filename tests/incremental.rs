//! The incremental compiler against compilation from scratch: over random sequences
//! of edits (objects added, removed, relabelled, moved between nodes and addresses,
//! ports and policy types changed, namespaces relabelled), the ruleset kept up to date
//! equals `compile` of the same model at every step, and the delta it reports turns
//! the previous ruleset into the new one.

use netpold::compile::{Incremental, compile};
use netpold::ir::diff;
use netpold::load::load_dir;
use netpold::model::Model;

mod common;
use common::{NODE, Rng, edited, scenario};

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
        let mut inc = Incremental::new(first, NODE, "netpold");
        for step in 0..25 {
            let next_yaml = if step == 12 {
                scenario(&mut rng).yaml
            } else {
                edited(&yaml, &mut rng)
            };
            let Some(next) = model(&next_yaml) else {
                continue;
            };
            let expected = compile(&next, NODE, "netpold");
            let before = inc.ruleset().clone();
            inc.update(next).unwrap();
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
            steps += 1;
            yaml = next_yaml;
        }
    }
    assert!(steps > 800, "only {steps} steps");
    assert!(
        touched > steps / 3,
        "only {touched} of {steps} edits changed the ruleset"
    );
    eprintln!("{steps} edits, {touched} changed the ruleset");
}
