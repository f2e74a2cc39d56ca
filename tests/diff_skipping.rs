//! `netpold diff` skips the pairs whose verdict cannot differ; random scenarios, edited
//! at random (labels, nodes, addresses, policies, new endpoints), must give the same
//! changes as deciding every pair. `NETPOLD_DIFF_SCENARIOS` sets how many (default 60).

mod common;
use common::{NODE, Rng, edited, scenario};

use netpold::diff::diff_with;
use netpold::explain::Explainer;

fn load(dir: &std::path::Path, yaml: &str) -> Option<netpold::model::Model> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("all.yaml"), yaml).unwrap();
    let loaded = netpold::load::load_dir(dir).unwrap();
    loaded.problems.is_empty().then_some(loaded.model)
}

#[test]
fn skipping_alike_pairs_changes_nothing() {
    let n: u64 = std::env::var("NETPOLD_DIFF_SCENARIOS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::Builder::new()
        .prefix("npd-diff-skip-")
        .tempdir()
        .unwrap();
    let (mut compared, mut changed, mut skipped) = (0, 0, 0);
    for seed in 0..n {
        let mut rng = Rng(0x5eed_d1ff ^ seed);
        let old_yaml = scenario(&mut rng).yaml;
        let mut new_yaml = old_yaml.clone();
        for _ in 0..=rng.below(4) {
            new_yaml = edited(&new_yaml, &mut rng);
        }
        // Different directories: positions differ, as between two checkouts.
        let old = load(&dir.path().join(format!("{seed}-old")), &old_yaml);
        let new = load(&dir.path().join(format!("{seed}-new")), &new_yaml);
        let (Some(old), Some(new)) = (old, new) else {
            continue;
        };
        let decide = |skip: bool, node: Option<&str>| {
            let mut a = Explainer::new(&old, NODE, "netpold");
            let mut b = Explainer::new(&new, NODE, "netpold");
            diff_with(&mut a, &mut b, NODE, node, &[], skip)
        };
        for node in [None, Some(NODE), Some("n2")] {
            let (fast, every) = (decide(true, node), decide(false, node));
            assert_eq!(
                fast.changes, every.changes,
                "seed {seed}, node {node:?}:\n--- old\n{old_yaml}\n--- new\n{new_yaml}"
            );
            assert_eq!((fast.added, fast.removed), (every.added, every.removed));
            skipped += fast.pairs - fast.pairs_decided;
            changed += usize::from(!fast.changes.is_empty());
        }
        compared += 1;
    }
    eprintln!(
        "{compared} scenarios compared: {changed} diffs with changes, {skipped} pairs skipped"
    );
    assert!(
        compared >= n / 2,
        "only {compared} of {n} edited scenarios are valid"
    );
    assert!(changed > 0 && skipped > 0);
}
