//! The netlink backend against the kernel: a ruleset programmed by `netpold apply`
//! (libnftnl over netlink, no `nft` binary) must be exactly what `nft -f` makes of
//! `netpold plan`'s text for the same directory — same `nft list`, same `nft -j
//! list`, same expressions in `nft --debug=netlink list` — for every example and
//! for random scenarios. Then the transaction's guarantees: replacing leaves other
//! tables alone, and a transaction the kernel refuses names the object it failed
//! on and changes nothing. Root only; fails instead of skipping under `CI=true`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use netpold::dataplane::Dataplane;
use netpold::ir::{
    AddrSide, AddrSource, BaseChain, Chain, CtState, Element, Family, Hook, IfSide, Log, Match,
    Rule, Ruleset, Set, SetKind, Verdict, VerdictMap,
};
use netpold::model::Protocol;
use netpold::nft::Kernel;

mod common;
use common::netns::{Netns, can_run, in_netns};
use common::topology::program_node;
use common::{NODE, Rng, scenario};

const BIN: &str = env!("CARGO_BIN_EXE_netpold");

fn plan(dir: &Path, node: &str) -> String {
    let out = Command::new(BIN)
        .args(["plan", "--config", "/dev/null", "--manifests"])
        .arg(dir)
        .args(["--node", node])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn list(ns: &Netns, flags: &[&str]) -> String {
    let mut args = flags.to_vec();
    args.extend(["list", "table", "inet", "netpold"]);
    let (ok, out, err) = ns.nft(&args, None);
    assert!(ok, "nft {args:?}: {err}");
    out
}

/// `nft --debug=netlink list` with what legitimately differs between two loads taken
/// out: rule handles, and the order of elements inside a hash set (each set hashes
/// with its own random seed).
fn expressions(ns: &Netns) -> String {
    let text = list(ns, &["--debug=netlink"]);
    let mut out = Vec::new();
    let mut elements: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\telement") {
            elements.push(line.to_owned());
            continue;
        }
        elements.sort();
        out.append(&mut elements);
        let line = match line.strip_prefix("inet netpold ") {
            // "inet netpold <chain> <handle> [<position>]" → the chain alone.
            Some(rest) if !rest.starts_with('@') && !line.contains("netpold 0") => {
                format!("inet netpold {}", rest.split(' ').next().unwrap_or(""))
            }
            _ => line.to_owned(),
        };
        out.push(line);
    }
    elements.sort();
    out.append(&mut elements);
    out.join("\n")
}

fn without_handles(json: &str) -> String {
    let mut out = String::new();
    let mut rest = json;
    while let Some(i) = rest.find("\"handle\": ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 10..];
        let end = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        rest = after[end..].trim_start_matches(", ");
    }
    out.push_str(rest);
    out
}

/// Equal texts, or a failure showing the first lines that differ.
fn assert_same_text(ours: &str, theirs: &str, what: &str) {
    if ours == theirs {
        return;
    }
    let a: Vec<&str> = ours.lines().collect();
    let b: Vec<&str> = theirs.lines().collect();
    let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let from = i.saturating_sub(3);
    panic!(
        "{what}: differs at line {}\n--- ours\n{}\n--- nft\n{}",
        i + 1,
        a[from..(i + 4).min(a.len())].join("\n"),
        b[from..(i + 4).min(b.len())].join("\n")
    );
}

fn assert_same_as_nft(dir: &Path, node: &str, what: &str) {
    let ours = Netns::new("nl-ours");
    let theirs = Netns::new("nl-nft");
    program_node(&ours, dir, node);
    let text = plan(dir, node);
    let (ok, _, err) = theirs.nft(&["-f", "-"], Some(&text));
    assert!(ok, "{what}: nft -f: {err}");
    assert_same_tables(&ours, &theirs, what);
}

fn assert_same_tables(ours: &Netns, theirs: &Netns, what: &str) {
    assert_same_text(
        &list(ours, &[]),
        &list(theirs, &[]),
        &format!("{what}: nft list"),
    );
    assert_same_text(
        &without_handles(&list(ours, &["-j"])).replace("}, {", "},\n{"),
        &without_handles(&list(theirs, &["-j"])).replace("}, {", "},\n{"),
        &format!("{what}: nft -j list"),
    );
    assert_same_text(
        &expressions(ours),
        &expressions(theirs),
        &format!("{what}: nft --debug=netlink list"),
    );
}

#[test]
fn every_example_programs_exactly_what_nft_would() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        if dir.is_dir() {
            assert_same_as_nft(&dir, "edge-1", &dir.display().to_string());
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} examples");
}

#[test]
fn random_scenarios_program_exactly_what_nft_would() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let mut rng = Rng(4242);
    for n in 0..60 {
        let s = scenario(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.yaml"), &s.yaml).unwrap();
        assert_same_as_nft(dir.path(), NODE, &format!("scenario {n}:\n{}", s.yaml));
    }
}

/// Long port lists at both ends of a netpold.io rule, and in a Kubernetes and an admin
/// policy rule, become one `{ … }` set per end, as nft makes of `tcp sport { … }`.
#[test]
fn long_port_lists_program_exactly_what_nft_would() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let odd: Vec<String> = (1..400).step_by(2).map(|p| p.to_string()).collect();
    let odd = odd.join(", ");
    let k8s: Vec<String> = (1..400)
        .step_by(2)
        .map(|p| format!("{{port: {p}}}"))
        .collect();
    let named: Vec<String> = (0..12).map(|i| format!("n{i}")).collect();
    let named = named.join(", ");
    let yaml = format!(
        "apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {{name: web, namespace: default, labels: {{app: web}}}}
spec: {{node: {NODE}, interfaceName: veth-web, ips: [10.1.0.5, fd00::5]}}
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: many, namespace: default}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: UDP
    source: {{ports: [{odd}, '1000:2000']}}
    destination: {{ports: [{odd}, '60000:65535']}}
  - action: Allow
    protocol: TCP
    source: {{selector: app == 'web', ports: [7, 9, 11, 13, 15]}}
  # The most notPorts at both ends, all named, with every address condition: within
  # the kernel's 128 expressions a rule.
  - action: Deny
    protocol: TCP
    source: {{selector: app == 'web', nets: [10.0.0.0/8], notNets: [10.9.0.0/16], notPorts: [{named}]}}
    destination: {{selector: app == 'web', nets: [10.0.0.0/8], notNets: [10.9.0.0/16], notPorts: [{named}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: many, namespace: default}}
spec:
  podSelector: {{}}
  ingress:
  - ports: [{}, {{port: 5000, endPort: 5100, protocol: SCTP}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: many}}
spec:
  priority: 5
  subject: {{namespaces: {{}}}}
  egress:
  - action: Deny
    to: [{{networks: [10.9.0.0/16]}}]
    ports: [{}]
",
        k8s.join(", "),
        (5001..5040)
            .step_by(2)
            .map(|p| format!("{{portNumber: {{port: {p}, protocol: UDP}}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), &yaml).unwrap();
    let text = plan(dir.path(), NODE);
    assert!(text.contains("udp sport { 1, 3, 5,"), "{text}");
    assert!(text.contains("tcp dport { 1, 3, 5,"), "{text}");
    assert!(text.contains("udp dport { 5001, 5003,"), "{text}");
    assert_eq!(text.matches(" . tcp sport != @").count(), 2 * 12, "{text}");
    assert_same_as_nft(dir.path(), NODE, "long port lists");
}

#[test]
fn apply_replaces_our_table_and_leaves_others_alone() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("nl-replace");
    let foreign = "table ip other {\n\tchain c {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr 192.0.2.1 drop\n\t}\n}\n";
    let (ok, _, err) = ns.nft(&["-f", "-"], Some(foreign));
    assert!(ok, "{err}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/named-port");
    program_node(&ns, &dir, "edge-1");
    // A rule added behind our back is gone after the next apply: the table is
    // replaced, not appended to.
    let (ok, _, err) = ns.nft(
        &["add", "rule", "inet", "netpold", "forward_egress", "drop"],
        None,
    );
    assert!(ok, "{err}");
    program_node(&ns, &dir, "edge-1");
    let ours = list(&ns, &[]);
    assert!(!ours.contains("\t\tdrop\n"), "{ours}");
    let (ok, other, err) = ns.nft(&["list", "table", "ip", "other"], None);
    assert!(ok, "{err}");
    assert!(other.contains("ip saddr 192.0.2.1 drop"), "{other}");
}

fn tiny_ruleset(chain_rules: Vec<Rule>) -> Ruleset {
    let mut chains = BTreeMap::new();
    chains.insert(
        "c".to_owned(),
        Chain {
            base: None,
            rules: chain_rules,
            comment: "test chain".to_owned(),
        },
    );
    Ruleset {
        table: "netpold".to_owned(),
        chains,
        ..Ruleset::default()
    }
}

#[test]
fn a_refused_transaction_names_the_object_and_changes_nothing() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("nl-refused");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default-deny-web");
    program_node(&ns, &dir, "edge-1");
    let before = list(&ns, &[]);
    // The second rule looks up a set the transaction never declares.
    let broken = tiny_ruleset(vec![
        Rule::new(vec![], Verdict::Accept).with_comment("first"),
        Rule::new(
            vec![Match::Addr {
                side: AddrSide::Src,
                family: Family::V4,
                negate: false,
                source: AddrSource::Set("no_such_set".to_owned()),
            }],
            Verdict::Drop,
        )
        .with_comment("the broken one"),
    ]);
    let err = in_netns(&ns, move || {
        let mut kernel = Kernel::open("netpold").unwrap();
        kernel.replace(&broken).unwrap_err()
    });
    let msg = err.to_string();
    assert!(
        msg.contains("add rule 2 of chain c (the broken one)")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(list(&ns, &[]), before, "the kernel must keep the old table");
}

#[test]
fn a_transaction_larger_than_the_socket_buffers_goes_in_whole() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("nl-big");
    // 20,000 rules with comments: well over a megabyte, many batch pages.
    let rules: Vec<Rule> = (0..20_000u32)
        .map(|i| {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            Rule::new(
                vec![Match::Addr {
                    side: AddrSide::Src,
                    family: Family::V4,
                    negate: false,
                    source: AddrSource::List(vec![ipnet::IpNet::from(std::net::IpAddr::V4(ip))]),
                }],
                Verdict::Accept,
            )
            .with_comment(format!(
                "rule number {i} with a comment long enough to matter"
            ))
        })
        .collect();
    let applied = in_netns(&ns, move || {
        let mut kernel = Kernel::open("netpold").unwrap();
        kernel.replace(&tiny_ruleset(rules)).unwrap()
    });
    assert!(applied.bytes > 1_000_000, "{applied:?}");
    let listed = list(&ns, &[]);
    assert_eq!(listed.matches(" accept comment ").count(), 20_000);
    assert!(listed.contains("ip saddr 10.0.78.31 accept comment \"rule number 19999 "));
}

#[test]
fn an_endpoint_with_many_addresses_programs_and_matches_nft() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    // More addresses than fit in one rule's expressions: the anti-spoofing rule
    // switches to a named set, which nft and netpold must program alike.
    let v4: Vec<String> = (1..=70).map(|i| format!("10.9.0.{i}")).collect();
    let v6: Vec<String> = (1..=20).map(|i| format!("fd00:9::{i:x}")).collect();
    let ips: Vec<String> = v4.iter().chain(&v6).map(|ip| format!("\"{ip}\"")).collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("router.yaml"),
        format!(
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: router, namespace: edge}}\nspec: {{node: n1, interfaceName: veth-r, ips: [{}]}}\n",
            ips.join(", ")
        ),
    )
    .unwrap();
    assert_same_as_nft(dir.path(), "n1", "an endpoint with 90 addresses");
    let text = plan(dir.path(), "n1");
    assert!(text.contains("ip saddr != @a4_"), "{text}");
    assert!(text.contains("ip6 saddr != @a6_"), "{text}");
}

#[test]
fn a_rule_beyond_the_kernels_expression_limit_is_refused_before_sending() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ns = Netns::new("nl-toolong");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default-deny-web");
    program_node(&ns, &dir, "edge-1");
    let before = list(&ns, &[]);
    let matches: Vec<Match> = (0..70u32)
        .map(|i| Match::Addr {
            side: AddrSide::Src,
            family: Family::V4,
            negate: true,
            source: AddrSource::List(vec![ipnet::IpNet::from(std::net::IpAddr::V4(
                std::net::Ipv4Addr::from(0x0a00_0000 + i),
            ))]),
        })
        .collect();
    let too_long = tiny_ruleset(vec![
        Rule::new(matches, Verdict::Drop).with_comment("seventy addresses"),
    ]);
    let err = in_netns(&ns, move || {
        let mut kernel = Kernel::open("netpold").unwrap();
        kernel.replace(&too_long).unwrap_err()
    });
    let msg = err.to_string();
    assert!(
        msg.contains("rule 1 of chain c (seventy addresses) needs 143 expressions")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(list(&ns, &[]), before);
}

#[test]
fn without_cap_net_admin_apply_says_so_at_once() {
    if !can_run(&["ip", "nft", "setpriv"]) {
        return;
    }
    let ns = Netns::new("nl-noperm");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/default-deny-web");
    let started = std::time::Instant::now();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
        ])
        .args([
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            BIN,
            "apply",
        ])
        .args(["--config", "/dev/null", "--node", "edge-1", "--manifests"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("starting the transaction") && err.contains("Operation not permitted"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Every construct the IR has, including those today's compiler does not emit
/// (anonymous port and address sets, logs, `return`, maps to accept/drop, the output
/// hook, a drop policy): the kernel backend must program each exactly as `nft -f`
/// programs `render`'s text for it.
#[test]
fn every_ir_construct_programs_exactly_what_nft_would() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let set = |kind, elements: Vec<Element>| Set {
        kind,
        elements: elements.into_iter().collect(),
        comment: "a set".to_owned(),
    };
    let mut rs = Ruleset {
        table: "netpold".to_owned(),
        ..Ruleset::default()
    };
    rs.sets.insert(
        "h4".into(),
        set(
            SetKind::Addr(Family::V4),
            vec![Element::Addr(ip("10.0.0.1"))],
        ),
    );
    rs.sets.insert(
        "h6".into(),
        set(
            SetKind::Addr(Family::V6),
            vec![Element::Addr(ip("fd00::1"))],
        ),
    );
    rs.sets.insert(
        "i4".into(),
        set(
            SetKind::Interval(Family::V4),
            vec![
                Element::Range(ip("10.0.0.0"), ip("10.0.0.255")),
                Element::Addr(ip("10.0.1.7")),
                Element::Range(ip("192.168.0.0"), ip("255.255.255.255")),
            ],
        ),
    );
    rs.sets.insert(
        "i6".into(),
        set(
            SetKind::Interval(Family::V6),
            vec![Element::Range(ip("fd00::"), ip("fd00::ffff"))],
        ),
    );
    rs.sets.insert(
        "p4".into(),
        set(
            SetKind::AddrPort(Family::V4),
            vec![Element::AddrPort(ip("10.0.0.1"), 80)],
        ),
    );
    rs.sets.insert(
        "p6".into(),
        set(
            SetKind::AddrPort(Family::V6),
            vec![Element::AddrPort(ip("fd00::1"), 443)],
        ),
    );
    let addr = |side, family, negate, source| Match::Addr {
        side,
        family,
        negate,
        source,
    };
    let rule = |matches: Vec<Match>, verdict: Option<Verdict>| Rule {
        matches,
        counter: false,
        log: None,
        verdict,
        comment: None,
    };
    let leaf_rules = vec![
        rule(
            vec![Match::Ct(CtState::EstablishedOrRelated)],
            Some(Verdict::Accept),
        ),
        rule(vec![Match::Ct(CtState::Invalid)], Some(Verdict::Drop)),
        rule(
            vec![Match::Family(Family::V4), Match::Protocol(Protocol::Udp)],
            Some(Verdict::Return),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V4,
                false,
                AddrSource::Set("h4".into()),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Dst,
                Family::V6,
                true,
                AddrSource::Set("h6".into()),
            )],
            Some(Verdict::Drop),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V4,
                false,
                AddrSource::Set("i4".into()),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V6,
                true,
                AddrSource::Set("i6".into()),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V4,
                false,
                AddrSource::List(vec![net("10.0.0.9/32")]),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Dst,
                Family::V4,
                true,
                AddrSource::List(vec![net("10.0.0.0/8")]),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Dst,
                Family::V6,
                false,
                AddrSource::List(vec![net("fe80::/10")]),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V4,
                false,
                AddrSource::List(vec![net("10.0.0.1/32"), net("10.0.0.3/32")]),
            )],
            Some(Verdict::Accept),
        ),
        rule(
            vec![addr(
                AddrSide::Src,
                Family::V6,
                true,
                AddrSource::List(vec![net("fd00::5/128"), net("fe80::/10")]),
            )],
            Some(Verdict::Drop),
        ),
        rule(
            vec![Match::DstPorts {
                protocol: Protocol::Tcp,
                ranges: vec![(22, 22)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::DstPorts {
                protocol: Protocol::Udp,
                ranges: vec![(5000, 5100)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::DstPorts {
                protocol: Protocol::Sctp,
                ranges: vec![(80, 80), (443, 443)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::DstPorts {
                protocol: Protocol::Tcp,
                ranges: vec![(80, 80), (8000, 8080)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![
                addr(
                    AddrSide::Src,
                    Family::V4,
                    false,
                    AddrSource::Set("h4".into()),
                ),
                Match::AddrPort {
                    side: AddrSide::Dst,
                    family: Family::V4,
                    protocol: Protocol::Tcp,
                    set: "p4".into(),
                    negate: false,
                },
            ],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::AddrPort {
                side: AddrSide::Dst,
                family: Family::V6,
                protocol: Protocol::Udp,
                set: "p6".into(),
                negate: false,
            }],
            Some(Verdict::Accept),
        ),
        // Source ports and negated named ports, as nft encodes `tcp sport`,
        // `ip saddr . tcp sport @set` and `ip daddr . tcp dport != @set`.
        rule(
            vec![Match::SrcPorts {
                protocol: Protocol::Tcp,
                ranges: vec![(53, 53)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::SrcPorts {
                protocol: Protocol::Udp,
                ranges: vec![(1024, 65535)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::SrcPorts {
                protocol: Protocol::Sctp,
                ranges: vec![(80, 80), (443, 443)],
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![
                Match::SrcPorts {
                    protocol: Protocol::Tcp,
                    ranges: vec![(1, 1), (3, 3), (5, 9), (1024, 65535)],
                },
                Match::DstPorts {
                    protocol: Protocol::Tcp,
                    ranges: vec![(1, 1), (3, 3), (5, 9)],
                },
            ],
            Some(Verdict::Accept),
        ),
        rule(
            vec![
                Match::SrcPortsNot {
                    protocol: Protocol::Tcp,
                    range: (22, 22),
                },
                Match::SrcPortsNot {
                    protocol: Protocol::Tcp,
                    range: (8000, 8080),
                },
            ],
            Some(Verdict::Drop),
        ),
        rule(
            vec![Match::AddrPort {
                side: AddrSide::Src,
                family: Family::V4,
                protocol: Protocol::Tcp,
                set: "p4".into(),
                negate: false,
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![Match::AddrPort {
                side: AddrSide::Src,
                family: Family::V6,
                protocol: Protocol::Udp,
                set: "p6".into(),
                negate: true,
            }],
            Some(Verdict::Accept),
        ),
        rule(
            vec![
                Match::DstPorts {
                    protocol: Protocol::Tcp,
                    ranges: vec![(80, 80)],
                },
                Match::AddrPort {
                    side: AddrSide::Dst,
                    family: Family::V4,
                    protocol: Protocol::Tcp,
                    set: "p4".into(),
                    negate: true,
                },
            ],
            Some(Verdict::Drop),
        ),
        rule(vec![Match::Icmpv6Types(vec![135])], Some(Verdict::Accept)),
        rule(
            vec![Match::Icmpv6Types(vec![133, 136])],
            Some(Verdict::Accept),
        ),
        Rule {
            counter: true,
            log: Some(Log {
                prefix: "netpold drop ".into(),
                group: None,
            }),
            ..rule(vec![Match::Protocol(Protocol::Tcp)], Some(Verdict::Drop))
        },
        Rule {
            log: Some(Log {
                prefix: "netpold log ".into(),
                group: Some(5),
            }),
            comment: Some("logs and goes on".into()),
            ..rule(vec![], None)
        },
        Rule {
            log: Some(Log {
                prefix: "netpold drop ingress shop/db isolated: ".into(),
                group: Some(7),
            }),
            comment: Some("a drop log to an NFLOG group".into()),
            ..rule(
                vec![Match::Limit {
                    rate: 10,
                    burst: 20,
                }],
                None,
            )
        },
        Rule {
            log: Some(Log {
                prefix: "netpold drop egress - spoofed: ".into(),
                group: None,
            }),
            ..rule(
                vec![
                    Match::Addr {
                        side: AddrSide::Src,
                        family: Family::V6,
                        negate: true,
                        source: AddrSource::List(vec!["fe80::/10".parse().unwrap()]),
                    },
                    // nft's default burst, which `nft list` leaves out.
                    Match::Limit { rate: 1, burst: 5 },
                ],
                None,
            )
        },
    ];
    let chain = |base, rules| Chain {
        base,
        rules,
        comment: "a chain".to_owned(),
    };
    rs.chains.insert("leaf".into(), chain(None, leaf_rules));
    rs.chains.insert(
        "other".into(),
        chain(None, vec![rule(vec![], Some(Verdict::Jump("leaf".into())))]),
    );
    let mut entries = std::collections::BTreeMap::new();
    entries.insert("veth-a".to_owned(), Verdict::Goto("leaf".into()));
    entries.insert("veth-b".to_owned(), Verdict::Jump("other".into()));
    entries.insert("veth-c".to_owned(), Verdict::Accept);
    entries.insert("veth-d".to_owned(), Verdict::Drop);
    rs.maps.insert(
        "m".into(),
        VerdictMap {
            entries,
            comment: "a map".into(),
        },
    );
    let base = |hook, priority, policy_accept| {
        Some(BaseChain {
            hook,
            priority,
            policy_accept,
        })
    };
    rs.chains.insert(
        "base_forward".into(),
        chain(
            base(Hook::Forward, -5, false),
            vec![
                rule(
                    vec![],
                    Some(Verdict::Map {
                        side: IfSide::In,
                        map: "m".into(),
                    }),
                ),
                rule(
                    vec![],
                    Some(Verdict::Map {
                        side: IfSide::Out,
                        map: "m".into(),
                    }),
                ),
                rule(vec![], Some(Verdict::Goto("other".into()))),
            ],
        ),
    );
    rs.chains.insert(
        "base_input".into(),
        chain(base(Hook::Input, 0, true), vec![]),
    );
    rs.chains.insert(
        "base_output".into(),
        chain(base(Hook::Output, 3, true), vec![]),
    );

    let ours = Netns::new("nl-ir-ours");
    let theirs = Netns::new("nl-ir-nft");
    let text = netpold::render::render(&rs);
    let (ok, _, err) = theirs.nft(&["-f", "-"], Some(&text));
    assert!(ok, "nft -f: {err}\n{text}");
    let mine = rs.clone();
    in_netns(&ours, move || {
        Kernel::open("netpold").unwrap().replace(&mine).unwrap();
    });
    assert_same_tables(&ours, &theirs, "every IR construct");
}
