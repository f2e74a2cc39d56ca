//! The pipeline without the kernel, at the standard scenario sizes: loading (parse and
//! validate), compiling from scratch, the incremental update for one-object edits,
//! diffing whole rulesets, and building the netlink batches. Needs no privileges.
//!
//! `cargo bench --bench pipeline -- [--sizes small,medium,large,xl] [--rounds N]`
//! (`cargo test` runs it once at `small` as a check).
//!
//! Scenarios come from `bench/gen.py` (cached under `$TMPDIR/netpold-bench/<size>`).
//! Each edit is applied and then undone, `rounds` times; the tables give medians. The
//! edits are timed again with one `netpold.io/v1` GlobalNetworkPolicy added: while an
//! ordered policy exists every update compiles the whole model again.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netpold::compile::{Incremental, compile};
use netpold::ir::diff::diff;
use netpold::load::load_dir;
use netpold::manifest::parse_bytes;
use netpold::model::{Changes, Model, PortMatch, PortSpec, Protocol};
use netpold::nft::{encode_replace, encode_update};

const NODE: &str = "node-0";
const TABLE: &str = "netpold";

fn scenario(size: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("netpold-bench").join(size);
    if !dir.join("manifests").is_dir() {
        let gen_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/gen.py");
        let ok = Command::new("python3")
            .arg(&gen_py)
            .args(["--size", size, "--out"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 {} --size {size} failed", gen_py.display());
    }
    dir.join("manifests")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Peak resident memory of this process so far (VmHWM), in MB.
fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// One-object edits of the model: (name, edited model).
fn edits(model: &Model) -> Vec<(&'static str, Model)> {
    let mut out = Vec::new();
    let (key, template) = model
        .endpoints
        .iter()
        .find(|(_, e)| e.is_local(NODE) && e.name.starts_with("bench-server"))
        .or_else(|| model.endpoints.iter().find(|(_, e)| e.is_local(NODE)))
        .expect("a local endpoint");

    let mut added = model.clone();
    let mut fresh = template.clone();
    fresh.name = "bench-extra".to_owned();
    fresh.interface = "benchextra0".to_owned();
    fresh.ips = vec!["198.18.255.250".parse::<IpAddr>().unwrap()];
    added
        .endpoints
        .insert((fresh.namespace.clone(), fresh.name.clone()), fresh);
    out.push(("endpoint added", added));

    // An ordinary endpoint takes another endpoint's `app`: it leaves the sets and
    // policies of its old app and joins those of the new one.
    let (ordinary, _) = model
        .endpoints
        .iter()
        .find(|(_, e)| {
            e.is_local(NODE) && e.labels.contains_key("app") && !e.name.starts_with("bench-")
        })
        .expect("an endpoint with an app label");
    let app = &model.endpoints[ordinary].labels["app"];
    let other_app = model
        .endpoints
        .values()
        .filter_map(|e| e.labels.get("app"))
        .find(|a| *a != app)
        .cloned()
        .unwrap_or_else(|| format!("{app}-x"));
    let mut relabelled = model.clone();
    let ep = relabelled.endpoints.get_mut(ordinary).unwrap();
    ep.labels.insert("app".to_owned(), other_app);
    out.push(("endpoint relabelled", relabelled));

    let mut removed = model.clone();
    removed.endpoints.remove(key);
    out.push(("endpoint removed", removed));

    // The ingress policy that selects the most endpoints gets one more port.
    let mut changed = model.clone();
    let busiest = policy_selecting_most(model);
    let policy = changed.policies.get_mut(&busiest).unwrap();
    if let Some(rule) = policy.ingress.as_mut().and_then(|r| r.first_mut()) {
        rule.ports.push(PortSpec {
            protocol: Protocol::Tcp,
            port: PortMatch::Range(12345, 12345),
        });
    }
    out.push(("policy changed", changed));

    let mut ns_relabelled = model.clone();
    let ns = ns_relabelled
        .namespaces
        .get_mut(&template.namespace)
        .unwrap();
    let team = ns.labels.get("team").cloned().unwrap_or_default();
    ns.labels.insert("team".to_owned(), format!("{team}-x"));
    out.push(("namespace relabelled", ns_relabelled));
    out
}

/// `model` with one GlobalNetworkPolicy (order 100, selecting one app's endpoints,
/// a Deny and an Allow), as an operator adds the first ordered policy.
fn with_ordered_policy(model: &Model) -> Model {
    let app = model
        .endpoints
        .values()
        .find_map(|e| e.labels.get("app"))
        .expect("an endpoint with an app label");
    let yaml = format!(
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {{name: bench-ordered}}\nspec:\n  order: 100\n  selector: app == '{app}'\n  ingress:\n  - {{action: Deny, source: {{nets: [192.0.2.0/24]}}}}\n  - {{action: Allow, protocol: TCP, destination: {{ports: [443]}}}}\n"
    );
    let mut problems = Vec::new();
    let raw = parse_bytes("bench-ordered.yaml", yaml.as_bytes(), &mut problems);
    let (policy, more) = Model::build(&raw);
    assert!(
        problems.is_empty() && more.is_empty(),
        "{problems:?} {more:?}"
    );
    let mut out = model.clone();
    out.tiered.extend(policy.tiered);
    out
}

/// The median time of each edit, applied to `model` and undone, `rounds` times:
/// (edit, median, messages of the last delta).
fn time_edits(model: &Model, rounds: usize) -> Vec<(&'static str, Duration, usize)> {
    let mut inc = Incremental::new(model, NODE, TABLE);
    let mut out = Vec::new();
    for (name, edited) in edits(model) {
        // The daemon learns what changed from the files that changed; here it is
        // found by comparing, untimed.
        let forward = Changes::between(model, &edited);
        let back = Changes::between(&edited, model);
        let mut times = Vec::new();
        let mut delta_messages = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            inc.update(&edited, &forward).unwrap();
            let (delta, desired) = inc.delta().unwrap();
            let (n, _) = encode_update(TABLE, desired, &delta).unwrap();
            times.push(started.elapsed());
            delta_messages = n;
            // Undone, untimed.
            inc.update(model, &back).unwrap();
            let _ = inc.delta().unwrap();
        }
        out.push((name, median(times), delta_messages));
    }
    out
}

fn policy_selecting_most(model: &Model) -> (String, String) {
    let mut count: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for (key, p) in &model.policies {
        if p.ingress.as_ref().is_none_or(|r| r.is_empty()) {
            continue;
        }
        let n = model
            .endpoints
            .values()
            .filter(|e| e.namespace == p.namespace && p.pod_selector.matches(&e.labels))
            .count();
        count.insert(key, n);
    }
    count
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| k.clone())
        .expect("an ingress policy")
}

struct Row {
    size: String,
    cells: Vec<String>,
}

fn print(title: &str, header: &[&str], rows: &[Row]) {
    println!("\n{title}");
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    widths[0] = widths[0].max(rows.iter().map(|r| r.size.len()).max().unwrap_or(0));
    for r in rows {
        for (i, c) in r.cells.iter().enumerate() {
            widths[i + 1] = widths[i + 1].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:>w$}", w = widths[i]))
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(header.to_vec());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in rows {
        let mut cells = vec![r.size.as_str()];
        cells.extend(r.cells.iter().map(String::as_str));
        line(cells);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary
    // without it, as a quick check that every step works.
    let benching = args.iter().any(|a| a == "--bench");
    let sizes = value("--sizes").unwrap_or_else(|| {
        if benching {
            "small,medium,large"
        } else {
            "small"
        }
        .to_owned()
    });
    let rounds: usize = value("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(if benching { 5 } else { 1 });
    println!(
        "netpold pipeline benchmark: sizes {sizes}, {rounds} rounds per edit, {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut full_rows = Vec::new();
    let mut edit_rows = Vec::new();
    let mut ordered_rows = Vec::new();
    for size in sizes.split(',') {
        let dir = scenario(size);
        let started = Instant::now();
        let loaded = load_dir(&dir).expect("scenario directory");
        let load = started.elapsed();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let model = loaded.model;

        let started = Instant::now();
        let ruleset = compile(&model, NODE, TABLE);
        let compile_time = started.elapsed();
        let started = Instant::now();
        let delta = diff(&ruleset, &ruleset).unwrap();
        let diff_time = started.elapsed();
        assert!(delta.is_empty());
        let started = Instant::now();
        let (messages, bytes) = encode_replace(TABLE, &ruleset).unwrap();
        let encode_time = started.elapsed();
        full_rows.push(Row {
            size: size.to_owned(),
            cells: vec![
                model.endpoints.len().to_string(),
                model.policies.len().to_string(),
                ruleset.rule_count().to_string(),
                ms(load),
                ms(compile_time),
                ms(diff_time),
                ms(encode_time),
                format!("{messages} / {} MB", bytes / (1 << 20)),
            ],
        });

        for (name, time, messages) in time_edits(&model, rounds) {
            edit_rows.push(Row {
                size: size.to_owned(),
                cells: vec![name.to_owned(), ms(time), messages.to_string()],
            });
        }
        let ordered = with_ordered_policy(&model);
        for (name, time, messages) in time_edits(&ordered, rounds) {
            ordered_rows.push(Row {
                size: size.to_owned(),
                cells: vec![name.to_owned(), ms(time), messages.to_string()],
            });
        }
        println!("{size}: done, peak RSS so far {} MB", peak_rss_mb());
    }
    print(
        "Whole directory (one round; load = parse + validate):",
        &[
            "size",
            "endpoints",
            "policies",
            "rules",
            "load",
            "compile",
            "diff",
            "encode batch",
            "messages / size",
        ],
        &full_rows,
    );
    print(
        "One-object edit, incremental (update + delta + encode; median):",
        &["size", "edit", "time", "messages"],
        &edit_rows,
    );
    print(
        "The same with one netpold.io GlobalNetworkPolicy (every update compiles from scratch; median):",
        &["size", "edit", "time", "messages"],
        &ordered_rows,
    );
}
