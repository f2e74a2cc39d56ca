//! `netpold diff` agrees with the kernel: the flows it reports as changing verdict on
//! node n1 are exactly those whose real packets change fate when `netpold apply`
//! replaces the old tree by the new one in a host namespace. Root only; fails instead
//! of skipping under `CI=true`.

use std::collections::BTreeSet;
use std::process::Command;

mod common;
use common::NODE;
use common::netns::can_run;
use common::topology::*;

const OLD: &str = include_str!("fixtures/diff/old.yaml");

/// api may now reach db; web may send only to db.
const NEW: &str = include_str!("fixtures/diff/new.yaml");

const PROBED: [u16; 2] = [80, 5432];

/// (from, to, port) of every flow `diff --json` reports.
fn diff_flips(old: &std::path::Path, new: &std::path::Path) -> BTreeSet<(String, String, u16)> {
    let out = Command::new(NETPOLD)
        .args(["diff", "--config", "/dev/null", "--json", "--node", NODE])
        .args(
            PROBED
                .iter()
                .flat_map(|p| ["--port".to_owned(), p.to_string()]),
        )
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "diff exits 1 when flows change: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["node"], NODE);
            assert_eq!(c["protocol"], "TCP");
            (
                c["from"].as_str().unwrap().to_owned(),
                c["to"].as_str().unwrap().to_owned(),
                c["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

#[test]
fn the_flows_diff_reports_are_those_the_kernel_flips() {
    if !can_run(&TOOLS) {
        return;
    }
    let wls = vec![
        wl("shop/web", "app: web", &["10.20.0.1"]),
        wl("shop/api", "app: api", &["10.20.0.2"]),
        wl("shop/db", "app: db", &["10.20.0.3"]),
        wl("shop/tool", "app: tool", &["10.20.0.4"]),
    ];
    let topo = Topology::new("npd-diff", wls, &[]);
    let trees = tempfile::Builder::new()
        .prefix("npd-diff-trees-")
        .tempdir()
        .unwrap();
    let (old_dir, new_dir) = (trees.path().join("old"), trees.path().join("new"));
    for (dir, policy) in [(&old_dir, OLD), (&new_dir, NEW)] {
        std::fs::create_dir(dir).unwrap();
        std::fs::write(dir.join("endpoints.yaml"), topo.endpoints_yaml()).unwrap();
        std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    }
    let flips = diff_flips(&old_dir, &new_dir);
    eprintln!("diff reports: {flips:?}");
    assert!(!flips.is_empty());

    let ids: Vec<String> = topo.wls.iter().map(|w| w.id()).collect();
    let mut flows = Vec::new();
    for from in &ids {
        for to in ids.iter().filter(|to| *to != from) {
            for port in PROBED {
                flows.push((from.clone(), to.clone(), port));
            }
        }
    }
    let probe = |dir: &std::path::Path| -> Vec<bool> {
        program(&topo.host, dir);
        let rows: Vec<Row> = flows
            .iter()
            .map(|(f, t, p)| (f.as_str(), t.as_str(), "tcp", *p, V4, PASS))
            .collect();
        topo.probe(&rows)
            .into_iter()
            .map(|(label, _, got)| match got.as_str() {
                "allowed" => true,
                "blocked" => false,
                other => panic!("{label}: {other}"),
            })
            .collect()
    };
    let before = probe(&old_dir);
    let after = probe(&new_dir);
    let mut kernel_flips = BTreeSet::new();
    for (i, flow) in flows.iter().enumerate() {
        if before[i] != after[i] {
            kernel_flips.insert(flow.clone());
        }
    }
    eprintln!(
        "{} flows probed twice, {} flipped in the kernel",
        flows.len(),
        kernel_flips.len()
    );
    assert_eq!(flips, kernel_flips, "diff (left) vs the kernel (right)");
}
