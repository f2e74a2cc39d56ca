//! The netpold.io/v1 NetworkPolicy and GlobalNetworkPolicy, end to end: workload
//! namespaces behind a host namespace, the real `netpold` programs the host, and real
//! TCP/UDP packets (IPv4 and IPv6) check the order of policies and each action. Root
//! only; fails instead of skipping under `CI=true`.

mod common;
use common::netns::can_run;
use common::topology::*;

fn three() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/client", "app: client", &["10.0.0.2", "fd00::2"]),
        wl("b/other", "app: client", &["10.0.1.3", "fd00::1:3"]),
    ]
}

#[test]
fn a_deny_at_low_order_beats_an_allow_at_higher_order() {
    let Some(t) = setup(
        "tord",
        three(),
        &[],
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: a}
spec:
  order: 200
  selector: app == 'web'
  ingress: [{action: Allow}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: deny-clients, namespace: a}
spec:
  order: 100
  selector: app == 'web'
  ingress:
  - {action: Deny, protocol: TCP, source: {selector: app == 'client'}, destination: {ports: [80]}}
",
    ) else {
        return;
    };
    t.check(&[
        // The Deny at order 100 comes first.
        ("client", "web", "tcp", 80, Both, DROP),
        // Not its port or protocol: the Allow at order 200 decides.
        ("client", "web", "tcp", 443, Both, PASS),
        ("client", "web", "udp", 80, Both, PASS),
        // A namespaced rule selector means the policy's namespace: b/other is allowed.
        ("other", "web", "tcp", 80, Both, PASS),
        ("outside", "web", "tcp", 80, Both, PASS),
        // web's egress is not governed.
        ("web", "client", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn pass_falls_through_to_the_kubernetes_policies_and_log_changes_nothing() {
    let Some(t) = setup(
        "tpass",
        three(),
        &[],
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: gate, namespace: a}
spec:
  order: 10
  selector: app == 'web'
  ingress:
  - action: Log
  - action: Pass
    source: {selector: app == 'client'}
  - action: Deny
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: deny-everything-later, namespace: a}
spec:
  order: 20
  selector: all()
  ingress: [{action: Deny}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-80, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
",
    ) else {
        return;
    };
    t.check(&[
        // Passed (skipping the Deny at order 20): the Kubernetes policy allows TCP 80 only.
        ("client", "web", "tcp", 80, Both, PASS),
        ("client", "web", "tcp", 443, Both, DROP),
        ("client", "web", "udp", 80, Both, DROP),
        // Not passed: the Deny after the Pass.
        ("other", "web", "tcp", 80, Both, DROP),
        ("outside", "web", "tcp", 80, Both, DROP),
        // client is selected by deny-everything-later only.
        ("web", "client", "tcp", 80, Both, DROP),
    ]);
}

#[test]
fn a_global_policy_selects_endpoints_across_namespaces() {
    let Some(t) = setup(
        "tglob",
        three(),
        &[],
        "
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: clients-egress}
spec:
  order: 1
  selector: app == 'client'
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination: {selector: app == 'web', ports: [80]}
  - action: Allow
    protocol: UDP
    destination: {namespaceSelector: team == 'b'}
",
    ) else {
        return;
    };
    t.check(&[
        // Selected in both namespaces: only TCP 80 to web, and UDP into namespace b.
        ("client", "web", "tcp", 80, Both, PASS),
        ("other", "web", "tcp", 80, Both, PASS),
        ("client", "web", "tcp", 443, Both, DROP),
        ("other", "web", "udp", 80, Both, DROP),
        ("client", "other", "udp", 53, Both, PASS),
        ("client", "other", "tcp", 53, Both, DROP),
        ("client", "outside", "tcp", 80, Both, DROP),
        // web is not selected.
        ("web", "outside", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn nets_and_not_nets() {
    let Some(t) = setup(
        "tnets",
        three(),
        &["198.51.100.10", "198.51.100.200", "203.0.113.5"],
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: web-egress, namespace: a}
spec:
  order: 5
  selector: app == 'web'
  egress:
  - action: Allow
    destination: {nets: [198.51.100.0/24], notNets: [198.51.100.128/25]}
  - action: Deny
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: a}
spec:
  order: 5
  selector: app == 'web'
  ingress:
  - action: Deny
    source: {notNets: [10.0.0.0/24, 'fd00::/120']}
  - action: Allow
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "198.51.100.10", "tcp", 80, V4, PASS),
        ("web", "198.51.100.10", "udp", 53, V4, PASS),
        ("web", "198.51.100.200", "tcp", 80, V4, DROP),
        ("web", "203.0.113.5", "tcp", 80, V4, DROP),
        ("web", "client", "tcp", 80, Both, DROP),
        // Ingress: from inside 10.0.0.0/24 (fd00::/120) allowed, from anywhere else denied.
        ("client", "web", "tcp", 80, Both, PASS),
        ("other", "web", "tcp", 80, Both, DROP),
        ("outside", "web", "tcp", 80, Both, DROP),
        ("outside@198.51.100.10", "web", "udp", 53, V4, DROP),
    ]);
}

/// The daemon follows edits of ordered policies: the first netpold.io policy (the Pass
/// maps appear: the whole table is replaced), a change of order (only what differs is
/// changed), and the last one removed (the maps go).
#[test]
fn the_daemon_follows_orders_edited_live() {
    use std::time::Duration;
    if !can_run(&TOOLS) {
        return;
    }
    const SYNC: Duration = Duration::from_secs(20);
    const SHOW: Duration = Duration::from_secs(10);
    let t = Topology::new("tlive", three(), &[]);
    t.write(
        "k8s.yaml",
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-80, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
",
    );
    let d = Daemon::start(&t, "debounce_ms = 100\nresync_interval_s = 3600\n");
    let line = d.wait_sync(1, SYNC);
    assert!(!line.contains("not programmed"), "first sync: {line}");
    t.check(&[
        ("client", "web", "tcp", 80, Both, PASS),
        ("client", "web", "tcp", 443, Both, DROP),
    ]);
    let tiered = |deny_order: u32| {
        format!(
            "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: deny-clients, namespace: a}}
spec:
  order: {deny_order}
  selector: app == 'web'
  ingress: [{{action: Deny, source: {{selector: app == 'client'}}}}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: allow-443, namespace: a}}
spec:
  order: 500
  selector: app == 'web'
  ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [443]}}}}]
"
        )
    };
    let line = d.after(|| t.write("tiered.yaml", &tiered(100)), SYNC);
    assert!(line.contains("programmed"), "{line}");
    t.eventually(
        &[
            ("client", "web", "tcp", 80, Both, DROP),
            ("client", "web", "tcp", 443, Both, DROP),
            ("other", "web", "tcp", 443, Both, PASS),
            ("other", "web", "tcp", 80, Both, PASS),
        ],
        SHOW,
    );
    // After the Allow and the Kubernetes policy: those decide first.
    let line = d.after(|| t.write("tiered.yaml", &tiered(2000)), SYNC);
    assert!(
        line.contains("(changed:"),
        "an order change is a small change: {line}"
    );
    t.eventually(
        &[
            ("client", "web", "tcp", 443, Both, PASS),
            ("client", "web", "tcp", 80, Both, PASS),
            ("client", "web", "udp", 53, Both, DROP),
        ],
        SHOW,
    );
    let line = d.after(|| t.remove("tiered.yaml"), SYNC);
    assert!(line.contains("programmed"), "{line}");
    t.eventually(
        &[
            ("client", "web", "tcp", 80, Both, PASS),
            ("client", "web", "tcp", 443, Both, DROP),
        ],
        SHOW,
    );
}

#[test]
fn icmp_types_and_not_ports() {
    let Some(t) = setup(
        "ticmp",
        three(),
        &[],
        "
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: web-in}
spec:
  order: 1
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: ICMP
    icmp: {type: 8, code: 0}
    source: {selector: app == 'client', namespaceSelector: kubernetes.io/metadata.name == 'a'}
  - action: Allow
    protocol: ICMPv6
    icmp: {type: 128}
    source: {selector: app == 'client', namespaceSelector: kubernetes.io/metadata.name == 'a'}
  # Not echo request code 1 (a ping is code 0): other's pings pass.
  - action: Allow
    protocol: ICMP
    notICMP: {type: 8, code: 1}
    source: {nets: [10.0.1.0/24]}
  # Not echo request code 0: the outside's pings do not.
  - action: Allow
    protocol: ICMP
    notICMP: {type: 8, code: 0}
    source: {nets: [192.168.50.0/24]}
  - action: Deny
    protocol: ICMP
  - action: Deny
    protocol: ICMPv6
    notICMP: {type: 135}
  - action: Allow
    protocol: TCP
    destination: {notPorts: [443, '5000:5003']}
",
    ) else {
        return;
    };
    t.check(&[
        // Echo requests of the client in namespace a, and (IPv4) of b/other by notICMP.
        ("client", "web", "icmp", 0, Both, PASS),
        ("other", "web", "icmp", 0, V4, PASS),
        ("other", "web", "icmp", 0, V6, DROP),
        ("outside", "web", "icmp", 0, Both, DROP),
        // TCP except 443 and 5000-5003.
        ("other", "web", "tcp", 80, Both, PASS),
        ("client", "web", "tcp", 8080, Both, PASS),
        ("client", "web", "tcp", 443, Both, DROP),
        ("client", "web", "tcp", 5001, Both, DROP),
        ("client", "web", "tcp", 5003, Both, DROP),
        // Selected, and no rule for UDP: denied.
        ("client", "web", "udp", 53, Both, DROP),
    ]);
}

/// A named port in a destination resolves on each destination endpoint: `http` is 80
/// on web and 8080 on api, so one egress rule allows client → web:80 and → api:8080.
#[test]
fn named_destination_ports_resolve_per_endpoint() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]).ports("{name: http, port: 80}"),
        wl("a/api", "app: web", &["10.0.0.4", "fd00::4"]).ports("{name: http, port: 8080}"),
        wl("a/client", "app: client", &["10.0.0.2", "fd00::2"]),
    ];
    let Some(t) = setup(
        "tnamed",
        wls,
        &[],
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: client-out, namespace: a}
spec:
  selector: app == 'client'
  egress:
  - action: Allow
    protocol: TCP
    destination: {selector: app == 'web', ports: [http]}
",
    ) else {
        return;
    };
    t.check(&[
        ("client", "web", "tcp", 80, Both, PASS),
        ("client", "api", "tcp", 8080, Both, PASS),
        ("client", "web", "tcp", 8080, Both, DROP),
        ("client", "api", "tcp", 80, Both, DROP),
        ("client", "outside", "tcp", 80, Both, DROP),
    ]);
}

/// Log and Deny rules log to the NFLOG group with prefixes naming the policy and rule;
/// the Log rule changes no verdict, and the counters of each rule count.
#[test]
fn log_and_deny_rules_log_the_policy_and_rule_and_count() {
    use netpold::nft::counters::read_counters;
    use netpold::nft::nflog::NflogReader;
    use std::time::{Duration, Instant};
    const GROUP: u16 = 8;
    if !can_run(&TOOLS) {
        return;
    }
    let t = Topology::new("tlog", three(), &[]);
    t.write(
        "policy.yaml",
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: audit, namespace: a}
spec:
  order: 1
  selector: app == 'web'
  ingress:
  - action: Log
    protocol: TCP
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
  - action: Deny
",
    );
    let config = t.manifests().join("netpold.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"{NODE}\"\nlog_group = {GROUP}\n",
            NODE = common::NODE
        ),
    )
    .unwrap();
    let out = in_ns(&t.host.name, NETPOLD)
        .args(["apply", "--config"])
        .arg(&config)
        .arg("--manifests")
        .arg(t.manifests())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = common::netns::in_netns(&t.host, || NflogReader::bind(GROUP)).unwrap();
    t.check(&[
        ("client", "web", "tcp", 80, V4, PASS),
        ("client", "web", "tcp", 443, V4, DROP),
    ]);
    let end = Instant::now() + Duration::from_secs(2);
    let mut got = Vec::new();
    while Instant::now() < end && got.len() < 3 {
        got.extend(reader.read(Duration::from_millis(200)).unwrap());
    }
    // Distinct prefixes per port (a SYN sent again logs again).
    let prefixes = |port: u16| -> std::collections::BTreeSet<String> {
        got.iter()
            .filter(|p| p.dst_port == Some(port))
            .map(|p| p.prefix.clone())
            .collect()
    };
    let log = "netpold log ingress a/audit ingress[0]: ".to_owned();
    let deny = "netpold deny ingress a/audit ingress[2]: ".to_owned();
    assert_eq!(prefixes(80), [log.clone()].into(), "{got:?}");
    assert_eq!(prefixes(443), [log, deny].into(), "{got:?}");
    let rows = common::netns::in_netns(&t.host, || read_counters("netpold"))
        .unwrap()
        .unwrap();
    let count = |rule: &str| -> u64 {
        rows.iter()
            .filter(|r| r.rule_comment.as_deref() == Some(rule))
            .map(|r| r.packets)
            .sum()
    };
    assert!(count("netpold.io/v1 NetworkPolicy a/audit ingress[0] Log") >= 2);
    assert!(count("netpold.io/v1 NetworkPolicy a/audit ingress[1] Allow") >= 1);
    assert!(count("netpold.io/v1 NetworkPolicy a/audit ingress[2] Deny") >= 1);

    // The daemon reads the same group: `status` lists the Deny's drop among the top
    // denied flows, by policy and rule.
    drop(reader);
    let d = Daemon::start(&t, &format!("log_group = {GROUP}\n"));
    let first = d.wait_sync(1, Duration::from_secs(30));
    assert!(first.contains("programmed"), "{first}");
    t.check(&[("client", "web", "tcp", 443, V4, DROP)]);
    let socket = d.status_socket();
    let mut report = serde_json::Value::Null;
    let mut flow = None;
    for _ in 0..50 {
        let out = std::process::Command::new(NETPOLD)
            .args(["status", "--json", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        report = serde_json::from_slice(&out.stdout).unwrap_or_default();
        flow = report["denied_flows"]["top"]
            .as_array()
            .and_then(|top| top.iter().find(|f| f["dport"] == 443).cloned());
        if flow.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let flow = flow.unwrap_or_else(|| panic!("no denied flow to port 443: {report:#}"));
    assert_eq!(flow["src"], "10.0.0.2", "{flow}");
    assert_eq!(flow["dst"], "10.0.0.1", "{flow}");
    assert_eq!(flow["direction"], "ingress", "{flow}");
    assert_eq!(flow["cause"], "denied", "{flow}");
    assert_eq!(flow["rule"], "a/audit ingress[2]", "{flow}");
    // The allowed port's Log rule is no drop.
    assert!(
        report["denied_flows"]["top"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["dport"] != 80),
        "{report:#}"
    );
}

/// `netpold explain --json --sport` for a TCP flow, as the verdict word.
fn explain_verdict(t: &Topology, from: &str, to: &str, sport: u16, port: u16) -> String {
    let out = std::process::Command::new(NETPOLD)
        .args(["explain", "--config", "/dev/null", "--manifests"])
        .arg(t.manifests())
        .args(["--from", from, "--to", to, "--json"])
        .args(["--port", &port.to_string(), "--sport", &sport.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["source_port"], sport);
    json["verdict"].as_str().unwrap().to_owned()
}

#[test]
fn source_ports_numbered_named_and_negated_are_enforced() {
    let Some(t) = setup(
        "tsport",
        vec![
            wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
            wl("a/client", "app: client", &["10.0.0.2", "fd00::2"]),
            wl("a/relay", "app: relay", &["10.0.0.4", "fd00::4"]).ports("{name: src, port: 7000}"),
        ],
        &[],
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: sport, namespace: a}
spec:
  selector: app == 'web'
  ingress:
  - {action: Deny, protocol: TCP, source: {ports: ['1:1023']}}
  - {action: Allow, protocol: TCP, source: {notPorts: [src, '40000:40010']}, destination: {notPorts: [443]}}
  - {action: Allow, protocol: TCP, source: {selector: app == 'relay', ports: [src]}}
  - {action: Allow, protocol: UDP, source: {ports: [53]}}
",
    ) else {
        return;
    };
    let rows = [
        // A privileged source port: the Deny.
        ("client#1000", "web", "tcp", 80, Both, DROP),
        ("client#41000", "web", "tcp", 80, Both, PASS),
        // The destination's notPorts.
        ("client#41001", "web", "tcp", 443, Both, DROP),
        // The source's notPorts range, and nothing else allows it.
        ("client#40005", "web", "tcp", 80, Both, DROP),
        // a/client names no port `src`: not excluded by the negated name.
        ("client#7000", "web", "tcp", 80, Both, PASS),
        // a/relay's `src` is 7000 (no server listens on it): excluded from the notPorts rule, allowed by the named one.
        ("relay#7000", "web", "tcp", 80, Both, PASS),
        ("relay#7001", "web", "tcp", 80, Both, PASS),
        ("relay#40006", "web", "tcp", 80, Both, DROP),
        ("client#53", "web", "udp", 53, Both, PASS),
        ("client#54", "web", "udp", 53, Both, DROP),
        // An ephemeral source port.
        ("client", "web", "udp", 53, Both, DROP),
    ];
    t.check(&rows);
    // explain says what the kernel did, from the same source port.
    for (from, port, sport, verdict) in [
        ("a/client", 80, 1000, "denied"),
        ("a/client", 80, 41000, "allowed"),
        ("a/relay", 80, 7000, "allowed"),
        ("a/relay", 80, 40006, "denied"),
    ] {
        assert_eq!(
            explain_verdict(&t, from, "a/web", sport, port),
            verdict,
            "{from}:{sport}"
        );
    }
}

/// 1,000 source ports and a long destination list in one rule: each end is one set
/// (`tcp sport { … } tcp dport { … }`), and the kernel decides as the list says.
#[test]
fn long_source_and_destination_port_lists_are_enforced() {
    let odd = |from: u16, to: u16| -> String {
        (from..to)
            .step_by(2)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let policy = format!(
        "
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {{name: long, namespace: a}}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    source: {{ports: [{}, '40000:40010']}}
    destination: {{ports: [80, 5001, 5003, 6379, 9000, '20000:20010', {}]}}
  - action: Allow
    protocol: UDP
    source: {{ports: [{}]}}
    destination: {{ports: [53, 5001, 5003, 9000, 10001, 10003]}}
",
        odd(31001, 33000),
        odd(1001, 3000),
        odd(31001, 31100),
    );
    let Some(t) = setup(
        "tlongp",
        vec![
            wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
            wl("a/client", "app: client", &["10.0.0.2", "fd00::2"]),
        ],
        &[],
        &policy,
    ) else {
        return;
    };
    let plan = std::process::Command::new(NETPOLD)
        .args(["plan", "--config", "/dev/null", "--manifests"])
        .arg(t.manifests())
        .args(["--node", common::NODE])
        .output()
        .unwrap();
    let plan = String::from_utf8(plan.stdout).unwrap();
    // No address makes the family matter: one nft rule for each of the two.
    assert_eq!(
        plan.matches("tcp sport { 31001, 31003,").count(),
        1,
        "{plan}"
    );
    assert_eq!(
        plan.matches("udp sport { 31001, 31003,").count(),
        1,
        "{plan}"
    );
    let rows = [
        ("client#31001", "web", "tcp", 80, Both, PASS),
        ("client#32999", "web", "tcp", 9000, Both, PASS),
        ("client#40005", "web", "tcp", 5003, Both, PASS),
        // An even source port is not listed.
        ("client#31002", "web", "tcp", 80, Both, DROP),
        ("client#33001", "web", "tcp", 80, Both, DROP),
        // Destination ports not listed.
        ("client#31001", "web", "tcp", 443, Both, DROP),
        ("client#31001", "web", "tcp", 5002, Both, DROP),
        ("client#31099", "web", "udp", 53, Both, PASS),
        ("client#31101", "web", "udp", 53, Both, DROP),
        ("client#31001", "web", "udp", 5002, Both, DROP),
        ("client#31001", "web", "udp", 5003, Both, PASS),
    ];
    t.check(&rows);
}
