//! NetworkPolicy semantics, end to end: for each scenario, workload namespaces behind a
//! host namespace, the real `netpold` programs the host from inline manifests, and real
//! TCP/UDP packets (IPv4 and IPv6) check what passes and what is dropped. Root only;
//! fails instead of skipping under `CI=true`.

// Public: tests/e2e_fleet.rs compiles this file in and uses the same topology.
pub(crate) mod common;
use common::topology::*;

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
        ("web", "db", "icmp", 0, Both, PASS),
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
        ("web", "db", "icmp", 0, Both, DROP),
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
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
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
---
# /0 in both families; an ipBlock matches endpoints' addresses too.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-egress-everywhere-but, namespace: a}
spec:
  podSelector: {matchLabels: {app: cache}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [198.51.100.0/24]}
    - ipBlock: {cidr: '::/0', except: ['2001:db8:1::/48']}
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
        ("cache", "203.0.113.5", "tcp", 80, V4, PASS),
        ("cache", "198.51.100.10", "tcp", 80, V4, DROP),
        ("cache", "2001:db8:2::5", "udp", 53, V6, PASS),
        ("cache", "2001:db8:1::1:5", "udp", 53, V6, DROP),
        ("cache", "web", "tcp", 80, Both, PASS),
        ("cache", "host", "udp", 53, Both, PASS),
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

fn three() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
    ]
}

#[test]
fn policy_types_egress_only_ignores_ingress_rules() {
    let Some(t) = setup(
        "typeseg",
        three(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress-only, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  ingress: []
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "udp", 53, Both, PASS),
        ("web", "cache", "tcp", 6379, Both, DROP),
        ("web", "outside", "udp", 53, Both, DROP),
        // `ingress: []` is ignored: the types leave Ingress out.
        ("outside", "web", "tcp", 80, Both, PASS),
        ("cache", "web", "udp", 80, Both, PASS),
    ]);
}

#[test]
fn policy_types_ingress_only_ignores_egress_rules() {
    let Some(t) = setup(
        "typesin",
        three(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress-only, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
  egress: []
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("cache", "db", "tcp", 5432, Both, DROP),
        ("outside", "db", "udp", 53, Both, DROP),
        // `egress: []` is ignored: db's egress stays open.
        ("db", "outside", "tcp", 443, Both, PASS),
        ("db", "cache", "udp", 6379, Both, PASS),
    ]);
}

#[test]
fn policy_types_default_when_absent() {
    let Some(t) = setup(
        "typesdef",
        three(),
        &[],
        "
# No policyTypes, egress rules present: [Ingress, Egress]; no ingress rules: deny all in.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-egress-to-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
---
# No policyTypes, only `egress: []`: [Ingress] alone, so egress stays open.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-empty-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: cache}}
  egress: []
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "outside", "tcp", 80, Both, DROP),
        ("outside", "web", "tcp", 80, Both, DROP),
        ("db", "web", "udp", 80, Both, DROP),
        ("cache", "outside", "udp", 53, Both, PASS),
        ("cache", "db", "tcp", 5432, Both, PASS),
        ("outside", "cache", "tcp", 6379, Both, DROP),
        ("db", "cache", "udp", 6379, Both, DROP),
    ]);
}

#[test]
fn both_policy_types_listed() {
    let Some(t) = setup(
        "typesboth",
        three(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-both, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
  egress: [{to: [{podSelector: {matchLabels: {app: cache}}}], ports: [{protocol: UDP, port: 6379}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "udp", 5432, Both, DROP),
        ("cache", "db", "tcp", 5432, Both, DROP),
        ("db", "cache", "udp", 6379, Both, PASS),
        ("db", "cache", "tcp", 6379, Both, DROP),
        ("db", "web", "udp", 6379, Both, DROP),
        ("db", "outside", "tcp", 443, Both, DROP),
    ]);
}

#[test]
fn several_policies_add_up() {
    let Some(t) = setup(
        "union",
        three(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-http-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-dns-from-cache, namespace: a}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [db]}]}
  ingress: [{from: [{podSelector: {matchLabels: {app: cache}}}], ports: [{protocol: UDP, port: 53}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("web", "db", "udp", 53, Both, DROP),
        ("cache", "db", "udp", 53, Both, PASS),
        ("cache", "db", "tcp", 80, Both, DROP),
        ("outside", "db", "tcp", 80, Both, DROP),
    ]);
}

#[test]
fn a_policy_selects_only_its_own_namespace() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("b/web", "app: web", &["10.0.1.1", "fd00::1:1"]),
    ];
    let Some(t) = setup(
        "nsscope",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
",
    ) else {
        return;
    };
    t.check(&[
        ("outside", "a/web", "tcp", 80, Both, DROP),
        ("a/web", "outside", "udp", 53, Both, DROP),
        ("outside", "b/web", "tcp", 80, Both, PASS),
        ("b/web", "outside", "udp", 53, Both, PASS),
        ("b/web", "a/web", "tcp", 80, Both, DROP),
    ]);
}

#[test]
fn egress_to_dns() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl(
            "kube-system/dns",
            "k8s-app: kube-dns",
            &["10.0.9.53", "fd00::9:53"],
        ),
    ];
    let Some(t) = setup(
        "dns",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "dns", "udp", 53, Both, PASS),
        ("db", "dns", "tcp", 53, Both, PASS),
        ("web", "dns", "udp", 5000, Both, DROP),
        ("web", "outside", "udp", 53, Both, DROP),
        ("web", "db", "tcp", 5432, Both, DROP),
        ("web", "outside", "tcp", 443, Both, DROP),
    ]);
}

#[test]
fn local_traffic_needs_sender_egress_and_receiver_ingress() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
        wl("a/db2", "app: db, copy: two", &["10.0.0.4", "fd00::4"]),
    ];
    let Some(t) = setup(
        "bothends",
        wls,
        &[],
        "
# web may send only to app=db.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
---
# db takes only cache; db2 takes web.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-cache, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}, matchExpressions: [{key: copy, operator: DoesNotExist}]}
  ingress: [{from: [{podSelector: {matchLabels: {app: cache}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db2-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {copy: two}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        // Sender allows, receiver does not.
        ("web", "db", "tcp", 5432, Both, DROP),
        ("web", "db", "udp", 53, Both, DROP),
        // Receiver allows, sender does not.
        ("web", "cache", "tcp", 6379, Both, DROP),
        // Both allow.
        ("web", "db2", "tcp", 5432, Both, PASS),
        ("web", "db2", "udp", 53, Both, PASS),
        ("cache", "db", "tcp", 5432, Both, PASS),
    ]);
}

#[test]
fn replies_pass_but_reverse_connections_do_not() {
    let Some(t) = setup(
        "conntrack",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-db, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        // The replies pass db's denied egress and web's denied ingress.
        ("web", "db", "tcp", 5432, Both, PASS),
        ("web", "db", "udp", 53, Both, PASS),
        ("db", "web", "tcp", 80, Both, DROP),
        ("db", "web", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn anti_spoofing_drops_forged_sources() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/v4only", "app: v4", &["10.0.0.3"]),
        wl("a/stray", "", &["10.0.0.9", "fd00::9"]).unmanaged(),
    ];
    let Some(t) = setup("spoof", wls, &[], "") else {
        return;
    };
    // Forged addresses are routed back to the forger, so only the policy can stop them.
    t.forge("web", "10.0.0.99");
    t.forge("web", "fd00::99");
    t.forge("v4only", "fd00::3");
    t.forge("stray", "10.0.0.98");
    t.forge("stray", "fd00::98");
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("web@10.0.0.99", "db", "tcp", 80, V4, DROP),
        ("web@10.0.0.99", "outside", "udp", 53, V4, DROP),
        ("web@fd00::99", "db", "udp", 53, V6, DROP),
        ("web@fd00::99", "host", "tcp", 80, V6, DROP),
        // An IPv4-only endpoint sends no routed IPv6.
        ("v4only", "db", "tcp", 80, V4, PASS),
        ("v4only@fd00::3", "db", "tcp", 80, V6, DROP),
        // The same forgery from an interface no endpoint claims is not netpold's business.
        ("stray@10.0.0.98", "db", "tcp", 80, V4, PASS),
        ("stray@fd00::98", "outside", "udp", 53, V6, PASS),
    ]);
}

#[test]
fn unclaimed_interface_is_untouched() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/stray", "app: web", &["10.0.0.9", "fd00::9"]).unmanaged(),
    ];
    let Some(t) = setup(
        "unclaimed",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
",
    ) else {
        return;
    };
    t.check(&[
        ("stray", "outside", "tcp", 80, Both, PASS),
        ("outside", "stray", "udp", 53, Both, PASS),
        ("stray", "host", "tcp", 80, Both, PASS),
        // Between it and a managed endpoint, the endpoint's own policy decides.
        ("stray", "web", "tcp", 80, Both, DROP),
        ("web", "stray", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn workload_to_host_follows_egress_policy() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/cache", "app: cache", &["10.0.0.3", "fd00::3"]),
        wl("a/free", "app: free", &["10.0.0.4", "fd00::4"]),
    ];
    let Some(t) = setup(
        "tohost",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-no-egress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
---
# ipBlocks match the host's addresses.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-to-host-block, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.255.0.1/32}}, {ipBlock: {cidr: 'fd00:ff::1/128'}}], ports: [{port: 80}]}]
---
# Selectors never match the host, not even the widest.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cache-to-all-pods, namespace: a}
spec:
  podSelector: {matchLabels: {app: cache}}
  policyTypes: [Egress]
  egress: [{to: [{namespaceSelector: {}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "host", "tcp", 80, Both, DROP),
        ("web", "host", "udp", 53, Both, DROP),
        ("db", "host", "tcp", 80, Both, PASS),
        ("db", "host", "tcp", 443, Both, DROP),
        ("cache", "host", "tcp", 80, Both, DROP),
        ("cache", "free", "tcp", 80, Both, PASS),
        ("free", "host", "udp", 53, Both, PASS),
        // The gateway address on the veth (IPv6: link-local, from a link-local source).
        ("free", "gw", "tcp", 80, Both, PASS),
        ("free", "gw", "udp", 53, Both, PASS),
        ("web", "gw", "tcp", 80, Both, DROP),
        ("db", "gw", "udp", 53, V4, DROP),
        // The host may always reach its workloads, even an isolated one.
        ("host", "web", "tcp", 80, Both, PASS),
        ("host", "web", "udp", 53, Both, PASS),
    ]);
}

#[test]
fn remote_endpoints_are_selector_members() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
        wl("a/client", "app: client", &["10.9.0.1", "fd00:9::1"]).remote(),
        wl("a/other", "app: other", &["10.9.0.2", "fd00:9::2"]).remote(),
    ];
    let Some(t) = setup(
        "remote",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-clients, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-clients, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: client}}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("client", "db", "tcp", 5432, Both, PASS),
        ("client", "db", "udp", 53, Both, PASS),
        ("other", "db", "tcp", 5432, Both, DROP),
        ("outside", "db", "tcp", 5432, Both, DROP),
        ("web", "client", "tcp", 80, Both, PASS),
        ("web", "client", "udp", 53, Both, PASS),
        ("web", "other", "tcp", 80, Both, DROP),
        ("web", "outside", "udp", 53, Both, DROP),
    ]);
}

#[test]
fn match_expressions_in_notin_exists_doesnotexist() {
    let wls = vec![
        wl(
            "a/front",
            "tier: front, env: prod",
            &["10.0.0.1", "fd00::1"],
        ),
        wl("a/back", "tier: back, env: dev", &["10.0.0.2", "fd00::2"]),
        wl("a/notier", "env: prod", &["10.0.0.3", "fd00::3"]),
        wl("a/cache", "tier: cache", &["10.0.0.4", "fd00::4"]),
        wl("a/t-in", "target: in", &["10.0.1.1", "fd00::1:1"]),
        wl("a/t-notin", "target: notin", &["10.0.1.2", "fd00::1:2"]),
        wl("a/t-exists", "target: exists", &["10.0.1.3", "fd00::1:3"]),
        wl("a/t-dne", "target: dne", &["10.0.1.4", "fd00::1:4"]),
        wl("a/t-and", "target: and", &["10.0.1.5", "fd00::1:5"]),
    ];
    let policy = |target: &str, expr: &str| {
        format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {target}, namespace: a}}\nspec:\n  podSelector: {{matchLabels: {{target: {target}}}}}\n  ingress: [{{from: [{{podSelector: {{matchExpressions: [{expr}]}}}}]}}]\n"
        )
    };
    let manifests = [
        policy("in", "{key: tier, operator: In, values: [front, back]}"),
        policy("notin", "{key: tier, operator: NotIn, values: [front]}"),
        policy("exists", "{key: tier, operator: Exists}"),
        policy("dne", "{key: tier, operator: DoesNotExist}"),
        policy(
            "and",
            "{key: tier, operator: Exists}, {key: env, operator: In, values: [prod]}",
        ),
    ]
    .concat();
    let Some(t) = setup("matchexpr", wls, &[], &manifests) else {
        return;
    };
    let mut rows = Vec::new();
    // (target, sources that match its selector)
    let expect: [(&str, &[&str]); 5] = [
        ("t-in", &["front", "back"]),
        ("t-notin", &["back", "notier", "cache"]),
        ("t-exists", &["front", "back", "cache"]),
        ("t-dne", &["notier"]),
        ("t-and", &["front"]),
    ];
    for (target, allowed) in expect {
        for src in ["front", "back", "notier", "cache"] {
            let v = if allowed.contains(&src) { PASS } else { DROP };
            rows.push((src, target, "tcp", 80, Both, v));
        }
    }
    // The targets themselves: NotIn and DoesNotExist match endpoints without the key.
    rows.push(("t-in", "t-notin", "udp", 53, Both, PASS));
    rows.push(("t-in", "t-dne", "udp", 53, Both, PASS));
    rows.push(("t-in", "t-exists", "udp", 53, Both, DROP));
    t.check(&rows);
}

#[test]
fn sctp_rules_load_and_their_tcp_udp_parts_hold() {
    let Some(t) = setup(
        "sctp",
        two(),
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-sctp, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{protocol: SCTP, port: 9000}, {protocol: SCTP, port: 5000, endPort: 5002}, {port: 80}]
",
    ) else {
        return;
    };
    // SCTP rows run only where the kernel has SCTP sockets (noted otherwise).
    t.check(&[
        ("web", "db", "tcp", 80, Both, PASS),
        ("web", "db", "udp", 80, Both, DROP),
        ("web", "db", "tcp", 9000, Both, DROP),
        ("web", "db", "udp", 9000, Both, DROP),
        ("web", "db", "tcp", 5001, Both, DROP),
        ("web", "db", "sctp", 9000, Both, PASS),
        ("web", "db", "sctp", 5001, Both, PASS),
        ("web", "db", "sctp", 80, Both, DROP),
    ]);
}

#[test]
fn rules_without_ports_allow_every_protocol_and_rules_with_ports_no_icmp() {
    let wls = vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/any", "app: any", &["10.0.0.2", "fd00::2"]),
        wl("a/http", "app: http", &["10.0.0.3", "fd00::3"]),
        wl("a/none", "app: none", &["10.0.0.4", "fd00::4"]),
    ];
    let Some(t) = setup(
        "icmp",
        wls,
        &[],
        "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: any-from-web, namespace: a}
spec:
  podSelector: {matchLabels: {app: any}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-only, namespace: a}
spec:
  podSelector: {matchLabels: {app: http}}
  ingress: [{ports: [{port: 80}]}]
---
# A selector that matches nothing is valid and allows nothing.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: none-from-nowhere, namespace: a}
spec:
  podSelector: {matchLabels: {app: none}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: no-such-namespace}}}]}]
",
    ) else {
        return;
    };
    t.check(&[
        ("web", "any", "icmp", 0, Both, PASS),
        ("web", "any", "udp", 9000, Both, PASS),
        ("web", "any", "sctp", 9000, Both, PASS),
        ("outside", "any", "icmp", 0, Both, DROP),
        ("web", "http", "tcp", 80, Both, PASS),
        ("web", "http", "icmp", 0, Both, DROP),
        ("web", "none", "icmp", 0, Both, DROP),
        ("web", "none", "tcp", 80, Both, DROP),
        ("outside", "none", "udp", 53, Both, DROP),
    ]);
}
