//! `netpold explain` agrees with the kernel: random scenarios are built as real
//! workload namespaces behind a host namespace that `netpold apply` programs for
//! node n1, every probe is sent as real TCP/UDP traffic, and `netpold explain --json`
//! (the binary) is asked about the same flow. The kernel here enforces node n1 only,
//! so the verdict expected of it is that of the sides explain says n1 enforces; when
//! both ends are n1's, explain's overall verdict must be the kernel's too. Root only;
//! fails instead of skipping under `CI=true`. `NETPOLD_EXPLAIN_SCENARIOS` sets the
//! number of scenarios (default 20).

use std::net::IpAddr;
use std::process::Command;
use std::time::Instant;

use netpold::manifest::parse_bytes;
use netpold::model::Model;

mod common;
use common::netns::can_run;
use common::topology::*;
use common::{NODE, Rng, scenario};

/// Addresses behind the uplink besides the outside namespace's own: one inside the
/// scenarios' 10.0.0.0/8 blocks, one in 192.0.2.0/24, one in fd00::/64.
const EXTRA: [&str; 3] = ["10.0.0.200", "192.0.2.7", "fd00::99"];
const PORTS_PROBED: [(&str, u16); 3] = [("tcp", 80), ("tcp", 8080), ("udp", 53)];

fn workloads(model: &Model) -> Vec<Wl> {
    model
        .endpoints
        .values()
        .map(|ep| {
            let labels: Vec<String> = ep.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let ips: Vec<String> = ep.ips.iter().map(ToString::to_string).collect();
            let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
            let ports: Vec<String> = ep
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{{name: {}, port: {}, protocol: {}}}",
                        p.name, p.port, p.protocol
                    )
                })
                .collect();
            let w = wl(&ep.id(), &labels.join(", "), &ips).ports(&ports.join(", "));
            if ep.node.as_deref() == Some(NODE) {
                w
            } else {
                w.remote()
            }
        })
        .collect()
}

/// One end of a probe: how the topology names it (`from`/`to` of a row), how explain
/// is told (`ns/name` or an address), its address, and whether its traffic is the
/// host's to forward (a local workload) or the outside's.
#[derive(Clone)]
struct End {
    row: String,
    /// How a row names it as the destination.
    to_row: String,
    arg: String,
    ip: IpAddr,
    local: bool,
}

fn ends(topo: &Topology, v6: bool) -> Vec<End> {
    let mut out = Vec::new();
    for w in &topo.wls {
        let fam = if v6 { V6 } else { V4 };
        let Some(ip) = w.ip(fam) else { continue };
        out.push(End {
            row: w.id(),
            to_row: w.id(),
            // IPv4 by name (explain picks the first IPv4 address), IPv6 by address.
            arg: if v6 { ip.to_owned() } else { w.id() },
            ip: ip.parse().unwrap(),
            local: topo.nets.contains_key(&w.id()),
        });
    }
    let outside = if v6 { OUTSIDE6 } else { OUTSIDE4 };
    out.push(End {
        row: "outside".into(),
        to_row: "outside".into(),
        arg: outside.into(),
        ip: outside.parse().unwrap(),
        local: false,
    });
    for a in EXTRA.iter().filter(|a| a.contains(':') == v6) {
        out.push(End {
            row: format!("outside@{a}"),
            to_row: (*a).into(),
            arg: (*a).into(),
            ip: a.parse().unwrap(),
            local: false,
        });
    }
    out
}

fn explain(dir: &std::path::Path, from: &str, to: &str, port: &str) -> serde_json::Value {
    let out = Command::new(NETPOLD)
        .args(["explain", "--config", "/dev/null", "--manifests"])
        .arg(dir)
        .args(["--from", from, "--to", to, "--port", port, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netpold explain --from {from} --to {to} --port {port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn explain_agrees_with_the_kernel_on_random_scenarios() {
    if !can_run(&TOOLS) {
        return;
    }
    let scenarios: usize = std::env::var("NETPOLD_EXPLAIN_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let started = Instant::now();
    let mut rng = Rng(0x0065_7870_6c61_696e);
    let (mut probes, mut allowed, mut whole) = (0usize, 0usize, 0usize);
    for n in 0..scenarios {
        let s = scenario(&mut rng);
        let mut problems = Vec::new();
        let raw = parse_bytes("scenario.yaml", s.yaml.as_bytes(), &mut problems);
        let (model, more) = Model::build(&raw);
        assert!(
            problems.is_empty() && more.is_empty(),
            "scenario {n}: {problems:?} {more:?}"
        );
        // Namespaces and policies as generated; the topology writes the endpoints.
        let policies: String = s
            .yaml
            .split("---\n")
            .filter(|d| !d.trim().is_empty() && !d.contains("kind: WorkloadEndpoint"))
            .map(|d| format!("---\n{d}"))
            .collect();
        let topo = Topology::new(&format!("ex{n}"), workloads(&model), &EXTRA);
        topo.write("policy.yaml", &policies);
        topo.program();

        // Every flow the host forwards: at least one end is a local workload.
        let mut flows: Vec<(End, End, &str, u16)> = Vec::new();
        for v6 in [false, true] {
            let ends = ends(&topo, v6);
            for a in &ends {
                for b in &ends {
                    if a.row == b.row || !(a.local || b.local) {
                        continue;
                    }
                    for (proto, port) in PORTS_PROBED {
                        flows.push((a.clone(), b.clone(), proto, port));
                    }
                }
            }
        }
        // Two at a time: each call loads and compiles the directory afresh.
        let dir = topo.manifests();
        let half = flows.len().div_ceil(2);
        let told: Vec<serde_json::Value> = std::thread::scope(|scope| {
            let workers: Vec<_> = flows
                .chunks(half.max(1))
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(a, b, proto, port)| {
                                explain(dir, &a.arg, &b.arg, &format!("{port}/{proto}"))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let mut expected = Vec::new();
        for ((a, b, proto, port), e) in flows.iter().zip(told) {
            let what = format!("scenario {n}: {} -> {} {proto}/{port}", a.row, b.row);
            assert_eq!(e["from"]["ip"], a.ip.to_string(), "{what}: {e:#}");
            assert_eq!(e["to"]["ip"], b.ip.to_string(), "{what}: {e:#}");
            // The part of the verdict node n1 enforces.
            let sides = [&e["egress"], &e["ingress"]];
            let here = sides
                .iter()
                .filter(|s| s["node"] == NODE)
                .all(|s| s["verdict"] == "allowed");
            // An address's side has no node; no side enforced elsewhere: the kernel
            // here sees the whole verdict.
            if sides
                .iter()
                .all(|s| s["node"].is_null() || s["node"] == NODE)
            {
                assert_eq!(e["verdict"] == "allowed", here, "{what}: {e:#}");
                whole += 1;
            }
            let overall = e["verdict"] == "allowed";
            assert_eq!(
                overall,
                sides.iter().all(|s| s["verdict"] == "allowed"),
                "{what}: the verdict is both sides' verdicts: {e:#}"
            );
            // The packet meets the sender's egress first.
            if !overall {
                let first = if e["egress"]["verdict"] == "denied" {
                    "egress"
                } else {
                    "ingress"
                };
                assert_eq!(e["decided_by"], first, "{what}: {e:#}");
            }
            expected.push(if here { PASS } else { DROP });
        }
        let rows: Vec<Row> = flows
            .iter()
            .zip(&expected)
            .map(|((a, b, proto, port), want)| {
                let fam = if a.ip.is_ipv6() { V6 } else { V4 };
                (a.row.as_str(), b.to_row.as_str(), *proto, *port, fam, *want)
            })
            .collect();
        if let Some(table) = topo.mismatches(&rows) {
            panic!(
                "scenario {n}: explain and the kernel disagree:\n{table}\n--- manifests ---\n{}{}",
                topo.endpoints_yaml(),
                policies
            );
        }
        probes += rows.len();
        allowed += expected.iter().filter(|v| **v == PASS).count();
    }
    eprintln!(
        "explain vs kernel: {scenarios} scenarios, {probes} probes ({allowed} allowed, {} denied; {whole} decided wholly by this node), 0 disagreements, in {:.0?}",
        probes - allowed,
        started.elapsed()
    );
    assert!(
        allowed * 10 > probes && (probes - allowed) * 10 > probes,
        "{allowed} of {probes} allowed: both outcomes must be well represented"
    );
}
