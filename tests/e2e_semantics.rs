//! NetworkPolicy semantics, end to end: for each scenario, workload namespaces behind a
//! host namespace, the real `netpold` programs the host from inline manifests, and real
//! TCP/UDP packets (IPv4 and IPv6) check what passes and what is dropped. Root only;
//! fails instead of skipping under `CI=true`.

mod common;
use common::netns::can_run;
use common::topology::*;

/// Builds the topology, writes `policy.yaml` and programs the host once.
fn setup(tag: &str, wls: Vec<Wl>, outside: &[&str], policy: &str) -> Option<Topology> {
    if !can_run(&TOOLS) {
        return None;
    }
    let topo = Topology::new(tag, wls, outside);
    topo.write("policy.yaml", policy);
    topo.program();
    Some(topo)
}

fn two() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ]
}

#[test]
fn no_policy_allows_everything() {
    let Some(t) = setup("nopol", two(), &[], "") else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("db", "web", "udp", 53, Both, PASS),
        ("outside", "db", "tcp", 5432, Both, PASS),
        ("web", "outside", "udp", 9000, Both, PASS),
    ]);
}

#[test]
fn default_deny_ingress() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ];
    let Some(t) = setup(
        "denyin",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, DROP),
        ("web", "db", "udp", 53, Both, DROP),
        ("db", "web", "tcp", 443, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, DROP),
        ("outside", "web", "udp", 53, Both, DROP),
        // Egress is not isolated, and the replies come back.
        ("web", "outside", "tcp", 80, Both, PASS),
        ("db", "outside", "udp", 53, Both, PASS),
    ]);
}

#[test]
fn default_deny_egress() {
    let Some(t) = setup(
        "denyout",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, DROP),
        ("web", "outside", "udp", 53, Both, DROP),
        ("db", "outside", "tcp", 443, Both, DROP),
        // Ingress is not isolated: new connections in, and their replies out, pass.
        ("outside", "web", "tcp", 80, Both, PASS),
        ("outside", "db", "udp", 53, Both, PASS),
    ]);
}

#[test]
fn allow_from_pod_selector() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
    ];
    let Some(t) = setup(
        "podsel",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "udp", 53, Both, PASS),
        ("cache", "db", "tcp", 5432, Both, DROP),
        ("cache", "db", "udp", 53, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, DROP),
        // Only db is selected: cache and web stay open.
        ("db", "cache", "tcp", 6379, Both, PASS),
        ("outside", "web", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn empty_pod_selector_selects_every_endpoint_of_its_namespace() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
        wl("b/other", "app: db", &["10.0.1.1", "fd00::1:1"]),
    ];
    let Some(t) = setup(
        "emptysel",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-from-web, namespace: a}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "cache", "udp", 6379, Both, PASS),
        ("cache", "db", "tcp", 5432, Both, DROP),
        ("db", "cache", "udp", 6379, Both, DROP),
        ("db", "web", "tcp", 80, Both, DROP),
        // Namespace b is not selected (its pod has the same label as a's db).
        ("cache", "other", "tcp", 5432, Both, PASS),
        ("outside", "other", "udp", 53, Both, PASS),
    ]);
}

const TEAMS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: red}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: blue}}
---
apiVersion: v1
kind: Namespace
metadata: {name: c, labels: {team: green}}
";

fn teams() -> Vec<Wl> {
    vec![
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/db2", "app: db2", &["10.0.0.3", "fd00::3"]),
        wl("a/client", "app: client", &["10.0.0.4", "fd00::4"]),
        wl("b/client", "app: client", &["10.0.1.4", "fd00::1:4"]),
        wl("b/other", "app: other", &["10.0.1.5", "fd00::1:5"]),
        wl("c/client", "app: client", &["10.0.2.4", "fd00::2:4"]),
    ]
}

#[test]
fn namespace_selector() {
    let policy = format!(
        "{TEAMS}---
# db: every pod of blue namespaces.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-from-blue, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: blue}}}}}}]}}]
---
# db2: every pod of every namespace (namespaceSelector {{}}), never the outside.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db2-from-all-namespaces, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db2}}}}
  ingress: [{{from: [{{namespaceSelector: {{}}}}]}}]
"
    );
    let Some(t) = setup("nssel", teams(), &[], &policy) else {
        return;
    };
    t.check(&[
        ("b/client", "db", "tcp", 5432, Both, PASS),
        ("b/other", "db", "udp", 5432, Both, PASS),
        ("c/client", "db", "tcp", 5432, Both, DROP),
        // The policy's own namespace is red: not selected by team=blue.
        ("a/client", "db", "tcp", 5432, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, DROP),
        ("a/client", "db2", "tcp", 80, Both, PASS),
        ("c/client", "db2", "udp", 53, Both, PASS),
        ("outside", "db2", "tcp", 80, Both, DROP),
    ]);
}

#[test]
fn pod_and_namespace_selector_in_one_peer_means_both() {
    let policy = format!(
        "{TEAMS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-from-blue-clients, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {{matchLabels: {{team: blue}}}}
      podSelector: {{matchLabels: {{app: client}}}}
"
    );
    let Some(t) = setup("andpeer", teams(), &[], &policy) else {
        return;
    };
    t.check(&[
        ("b/client", "db", "tcp", 5432, Both, PASS),
        ("b/client", "db", "udp", 53, Both, PASS),
        ("b/other", "db", "tcp", 5432, Both, DROP),
        ("c/client", "db", "tcp", 5432, Both, DROP),
        ("a/client", "db", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn pod_and_namespace_selector_in_two_peers_means_either() {
    let policy = format!(
        "{TEAMS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-from-blue-or-clients, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {{matchLabels: {{team: blue}}}}
    - podSelector: {{matchLabels: {{app: client}}}}
"
    );
    let Some(t) = setup("orpeer", teams(), &[], &policy) else {
        return;
    };
    t.check(&[
        ("b/client", "db", "tcp", 5432, Both, PASS),
        ("b/other", "db", "udp", 53, Both, PASS),
        // A podSelector alone means pods of the policy's own namespace.
        ("a/client", "db", "tcp", 5432, Both, PASS),
        ("c/client", "db", "tcp", 5432, Both, DROP),
        ("db2", "db", "udp", 53, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, DROP),
    ]);
}

#[test]
fn empty_peer_list_allows_all_and_empty_rule_list_denies_all() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/open", "app: open", &["10.0.0.2", "fd00::2"]),
        wl("a/open2", "app: open2", &["10.0.0.3", "fd00::3"]),
        wl("a/closed", "app: closed", &["10.0.0.4", "fd00::4"]),
    ];
    let Some(t) = setup(
        "emptypeer",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open-from-empty-list, namespace: a}
spec:
  podSelector: {matchLabels: {app: open}}
  ingress: [{from: []}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open2-from-empty-rule, namespace: a}
spec:
  podSelector: {matchLabels: {app: open2}}
  ingress: [{}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: closed-by-empty-rules, namespace: a}
spec:
  podSelector: {matchLabels: {app: closed}}
  policyTypes: [Ingress]
  ingress: []
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "open", "tcp", 80, Both, PASS),
        ("outside", "open", "udp", 9000, Both, PASS),
        ("web", "open2", "udp", 53, Both, PASS),
        ("outside", "open2", "tcp", 443, Both, PASS),
        ("web", "closed", "tcp", 80, Both, DROP),
        ("outside", "closed", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn ip_block_with_except() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ];
    let outside = [
        "198.51.100.10",
        "198.51.100.200",
        "203.0.113.5",
        "2001:db8:1::1:5",
        "2001:db8:1::5",
        "2001:db8:2::5",
    ];
    let Some(t) = setup(
        "ipblock",
        wls,
        &outside,
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress-to-blocks, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 198.51.100.0/24, except: [198.51.100.128/25]}
    - ipBlock: {cidr: '2001:db8:1::/64', except: ['2001:db8:1::/120']}
---
# An IPv4 block only: it never matches IPv6.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-uplink-net, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{ipBlock: {cidr: 192.168.50.0/24}}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "198.51.100.10", "tcp", 80, V4, PASS),
        ("web", "198.51.100.10", "udp", 53, V4, PASS),
        ("web", "198.51.100.200", "tcp", 80, V4, DROP),
        ("web", "203.0.113.5", "udp", 53, V4, DROP),
        ("web", "2001:db8:1::1:5", "tcp", 80, V6, PASS),
        ("web", "2001:db8:1::1:5", "udp", 53, V6, PASS),
        ("web", "2001:db8:1::5", "tcp", 80, V6, DROP),
        ("web", "2001:db8:2::5", "udp", 53, V6, DROP),
        // ipBlocks match endpoints' addresses too, and db is in neither block.
        ("web", "db", "tcp", 5432, Both, DROP),
        ("outside", "db", "tcp", 5432, V4, PASS),
        ("outside@198.51.100.10", "db", "udp", 53, V4, DROP),
        ("outside", "db", "tcp", 5432, V6, DROP),
    ]);
}

#[test]
fn numeric_ports_protocols_and_tcp_default() {
    let Some(t) = setup(
        "ports",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ports, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{port: 80}, {protocol: UDP, port: 53}, {protocol: TCP, port: 5432}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("web", "db", "udp", 80, Both, DROP),
        ("web", "db", "udp", 53, Both, PASS),
        ("web", "db", "tcp", 53, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, PASS),
        ("outside", "db", "udp", 5432, Both, DROP),
        ("outside", "db", "tcp", 443, Both, DROP),
    ]);
}

#[test]
fn ports_with_empty_item_mean_every_tcp_port() {
    let Some(t) = setup(
        "portsempty",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-any-tcp, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{ports: [{}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("web", "db", "tcp", 9000, Both, PASS),
        ("web", "db", "udp", 53, Both, DROP),
        ("outside", "db", "udp", 9000, Both, DROP),
    ]);
}

#[test]
fn named_port_resolved_per_destination_endpoint() {
    let wls = vec![
        wl("a/client", "app: client", &["10.0.0.1", "fd00::1"]),
        wl("a/web1", "app: web", &["10.0.0.2", "fd00::2"])
            .ports("{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}"),
        wl("a/web2", "app: web", &["10.0.0.3", "fd00::3"])
            .ports("{name: http, port: 8080}, {name: dns, port: 5000, protocol: UDP}"),
        wl("a/web3", "app: web", &["10.0.0.4", "fd00::4"]),
    ];
    let Some(t) = setup(
        "named",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-http, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}, {protocol: UDP, port: dns}]
",
    ) else {
        return;
    };
    t.check(&[
        ("client", "web1", "tcp", 80, Both, PASS),
        ("client", "web1", "tcp", 8080, Both, DROP),
        ("client", "web1", "udp", 53, Both, PASS),
        ("client", "web1", "udp", 80, Both, DROP),
        ("client", "web2", "tcp", 8080, Both, PASS),
        ("outside", "web2", "tcp", 80, Both, DROP),
        ("outside", "web2", "udp", 5000, Both, PASS),
        ("client", "web2", "udp", 53, Both, DROP),
        // An endpoint without the name matches no named port.
        ("client", "web3", "tcp", 80, Both, DROP),
        ("client", "web3", "tcp", 8080, Both, DROP),
    ]);
}

#[test]
fn named_port_in_egress_resolved_on_the_destination() {
    let wls = vec![
        wl("a/client", "app: client", &["10.0.0.1", "fd00::1"]),
        wl("a/web1", "app: web", &["10.0.0.2", "fd00::2"]).ports("{name: http, port: 80}"),
        wl("a/web2", "app: web", &["10.0.0.3", "fd00::3"]).ports("{name: http, port: 8080}"),
    ];
    let Some(t) = setup(
        "namedout",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-to-http, namespace: a}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("client", "web1", "tcp", 80, Both, PASS),
        ("client", "web1", "tcp", 8080, Both, DROP),
        ("client", "web2", "tcp", 8080, Both, PASS),
        ("client", "web2", "tcp", 80, Both, DROP),
        // An address that is not an endpoint has no named ports.
        ("client", "outside", "tcp", 80, Both, DROP),
        ("client", "outside", "tcp", 8080, Both, DROP),
    ]);
}

#[test]
fn end_port_range() {
    let Some(t) = setup(
        "endport",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-range, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{protocol: TCP, port: 5000, endPort: 5002}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5000, Both, PASS),
        ("web", "db", "tcp", 5001, Both, PASS),
        ("outside", "db", "tcp", 5002, Both, PASS),
        ("web", "db", "tcp", 5003, Both, DROP),
        ("web", "db", "tcp", 443, Both, DROP),
        ("web", "db", "udp", 5001, Both, DROP),
    ]);
}
