//! `plan` output loads with `nft -f` into an empty network namespace, reloads over
//! itself, leaves other tables alone, and `nft` lists it back in text and JSON.
//! Needs root, `ip` and `nft`. Skips without them, except under `CI=true`, where an
//! end-to-end test that cannot run must fail.

use netpold::{compile::compile, manifest::parse_bytes, model::Model, render::render};

mod common;
use common::netns::{Netns, can_run};
use common::{NODE, Rng, scenario};

#[test]
fn plans_load_reload_and_list_back() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("load");
    let (ok, _, err) = ns.nft(&["-f", "-"], Some("table ip other {\n chain c {\n  type filter hook forward priority 0; policy accept;\n }\n}\n"));
    assert!(ok, "{err}");
    let mut rng = Rng(99);
    let mut rules = 0;
    for n in 0..25 {
        let s = scenario(&mut rng);
        let mut problems = Vec::new();
        let raw = parse_bytes("s.yaml", s.yaml.as_bytes(), &mut problems);
        let (model, more) = Model::build(&raw);
        assert!(problems.is_empty() && more.is_empty());
        let ruleset = compile(&model, NODE, "netpold");
        rules += ruleset.rule_count();
        let text = render(&ruleset);
        // Twice: the second load replaces the first in one transaction.
        for round in 0..2 {
            let (ok, _, err) = ns.nft(&["-f", "-"], Some(&text));
            assert!(
                ok,
                "scenario {n} round {round}: nft -f failed: {err}\n{text}"
            );
        }
        let (ok, listed, err) = ns.nft(&["-a", "list", "table", "inet", "netpold"], None);
        assert!(ok, "{err}");
        let is_object = |l: &str| {
            ["table ", "chain ", "set ", "map "]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        };
        let listed_rules = listed
            .lines()
            .filter(|l| l.contains("# handle") && !is_object(l))
            .count();
        assert_eq!(listed_rules, ruleset.rule_count(), "scenario {n}\n{listed}");
        let (ok, json, err) = ns.nft(&["-j", "list", "table", "inet", "netpold"], None);
        assert!(
            ok && json.starts_with("{\"nftables\": ["),
            "scenario {n}: {err}\n{json}"
        );
        assert!(
            !json.contains("\"unknown\""),
            "scenario {n}: nft could not decode an expression\n{json}"
        );
    }
    // Another tool's table is untouched by every replace.
    let (ok, listed, _) = ns.nft(&["list", "table", "ip", "other"], None);
    assert!(ok && listed.contains("chain c"), "{listed}");
    assert!(rules > 100, "the scenarios compiled to only {rules} rules");
}

#[test]
fn examples_load() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("ex");
    let mut loaded = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let l = netpold::load::load_dir(&dir).unwrap();
        assert!(l.problems.is_empty(), "{}: {:?}", dir.display(), l.problems);
        let text = render(&compile(&l.model, "edge-1", "netpold"));
        let (ok, _, err) = ns.nft(&["-f", "-"], Some(&text));
        assert!(ok, "{}: {err}", dir.display());
        loaded += 1;
    }
    assert!(loaded >= 7, "only {loaded} examples");
}
