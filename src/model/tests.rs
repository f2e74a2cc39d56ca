//! Table-driven tests of manifest validation (CONTRACT §2, feature-anchors §4).
//!
//! Every rule has failing cases, asserted as the exact diagnostics printed
//! (`path:line:col: error: message`), and passing cases, asserted on the model built.
//! The `np!`/`wep!` macros put a four-line header in front of a spec body, so the
//! body's first line is line 5 of the file.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;
use crate::manifest::parse_bytes;
use crate::selector::{Op, Requirement};

/// A NetworkPolicy `default/p` whose `spec:` body starts on line 5.
macro_rules! np {
    ($body:expr) => {
        concat!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n",
            $body
        )
    };
}

/// A WorkloadEndpoint `default/w` whose `spec:` body starts on line 5.
macro_rules! wep {
    ($body:expr) => {
        concat!(
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec:\n",
            $body
        )
    };
}

/// Parses one file `f.yaml` and builds the model; diagnostics rendered as printed.
fn load(text: &str) -> (Model, Vec<String>) {
    let mut problems = Vec::new();
    let objects = parse_bytes("f.yaml", text.as_bytes(), &mut problems);
    let (model, more) = Model::build(&objects);
    problems.extend(more);
    (model, problems.iter().map(ToString::to_string).collect())
}

/// The model of a text that must be valid.
fn valid(text: &str) -> Model {
    let (model, problems) = load(text);
    assert!(
        problems.is_empty(),
        "unexpected errors for\n{text}\n{problems:#?}"
    );
    model
}

/// Each text must yield exactly these diagnostics, in this order, and no object
/// of a failing document may reach the model.
/// Every mismatch of the table is listed before the test fails.
fn assert_failing(cases: &[(&str, &[&str])]) {
    let mut mismatches = Vec::new();
    for (text, expected) in cases {
        let (_, got) = load(text);
        if got != *expected {
            mismatches.push(format!(
                "--- input ---\n{text}--- expected ---\n{expected:#?}\n--- got ---\n{got:#?}\n"
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

fn the_policy(model: &Model) -> &NetworkPolicy {
    assert_eq!(model.policies.len(), 1, "{model:#?}");
    model.policies.values().next().unwrap()
}

fn the_endpoint(model: &Model) -> &Endpoint {
    assert_eq!(model.endpoints.len(), 1, "{model:#?}");
    model.endpoints.values().next().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn req(key: &str, op: Op) -> Requirement {
    Requirement {
        key: key.to_owned(),
        op,
    }
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sel(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector::from_match_labels(pairs.iter().copied())
}

fn tcp(port: PortMatch) -> PortSpec {
    PortSpec {
        protocol: Protocol::Tcp,
        port,
    }
}

// ---------------------------------------------------------------------------
// apiVersion and kind

#[test]
fn api_version_and_kind_failing() {
    assert_failing(&[
        (
            "apiVersion: v2\nkind: Namespace\nmetadata: {name: x}\n",
            &[r#"f.yaml:1:13: error: apiVersion: Namespace is served as apiVersion v1, not "v2""#],
        ),
        (
            "apiVersion: networking.k8s.io/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n",
            &[
                r#"f.yaml:1:13: error: apiVersion: NetworkPolicy is served as apiVersion networking.k8s.io/v1 or netpold.io/v1, not "networking.k8s.io/v1beta1""#,
            ],
        ),
        (
            "apiVersion: v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\n",
            &[
                r#"f.yaml:1:13: error: apiVersion: WorkloadEndpoint is served as apiVersion netpold.io/v1, not "v1""#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
            &[
                r#"f.yaml:2:7: error: kind: unknown kind "Pod": one of Namespace (v1), Node (v1), NetworkPolicy (networking.k8s.io/v1 or netpold.io/v1), GlobalNetworkPolicy (netpold.io/v1), WorkloadEndpoint (netpold.io/v1), HostEndpoint (netpold.io/v1), AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)"#,
            ],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: networkpolicy\n",
            &[
                r#"f.yaml:2:7: error: kind: unknown kind "networkpolicy": one of Namespace (v1), Node (v1), NetworkPolicy (networking.k8s.io/v1 or netpold.io/v1), GlobalNetworkPolicy (netpold.io/v1), WorkloadEndpoint (netpold.io/v1), HostEndpoint (netpold.io/v1), AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1)"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {interfaceName: eth0}\n",
            &[
                r#"f.yaml:1:13: error: apiVersion: HostEndpoint is served as apiVersion netpold.io/v1, not "v1""#,
            ],
        ),
        (
            "apiVersion: v1\nkind: 5\n",
            &["f.yaml:2:7: error: kind: expected a string, got a number; quote it"],
        ),
    ]);
}

#[test]
fn each_kind_at_its_api_version_loads() {
    let model = valid(concat!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        "---\n",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: shop}\n",
        "spec: {interfaceName: eth0, ips: [10.0.0.1]}\n",
    ));
    assert_eq!(model.namespaces.keys().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(
        model.policies.keys().collect::<Vec<_>>(),
        [&("shop".to_owned(), "p".to_owned())]
    );
    assert_eq!(
        model.endpoints.keys().collect::<Vec<_>>(),
        [&("shop".to_owned(), "w".to_owned())]
    );
    // Origins are the documents' first lines.
    assert_eq!(
        model.namespaces["shop"].origin.as_ref().unwrap().pos.line,
        1
    );
    assert_eq!(the_policy(&model).origin.to_string(), "f.yaml:5:1");
    assert_eq!(the_endpoint(&model).origin.to_string(), "f.yaml:10:1");
}

// ---------------------------------------------------------------------------
// Required fields

#[test]
fn required_fields_failing() {
    assert_failing(&[
        (
            "kind: Namespace\nmetadata: {name: x}\n",
            &["f.yaml:1:1: error: apiVersion: required"],
        ),
        (
            "apiVersion: v1\nmetadata: {name: x}\n",
            &["f.yaml:1:1: error: kind: required"],
        ),
        (
            "metadata: {name: x}\n",
            &[
                "f.yaml:1:1: error: apiVersion: required",
                "f.yaml:1:1: error: kind: required",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\n",
            &["f.yaml:1:1: error: metadata: required"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n",
            &["f.yaml:1:1: error: metadata: required"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: shop\n",
            &["f.yaml:3:11: error: metadata: expected a mapping, got a string"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n",
            &["f.yaml:4:3: error: metadata.name: required"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {generateName: ns-}\n",
            &[
                "f.yaml:3:11: error: metadata.name: required (generateName is not supported: name the object)",
            ],
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n",
            &["f.yaml:1:1: error: spec: required"],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\n",
            &["f.yaml:1:1: error: spec: required"],
        ),
        (
            np!("  policyTypes: [Ingress]\n"),
            &[
                "f.yaml:5:3: error: spec.podSelector: required (use {} to select every endpoint of the namespace)",
            ],
        ),
        (
            "hello\n",
            &["f.yaml:1:1: error: expected a mapping, got a string"],
        ),
        (
            "- apiVersion: v1\n",
            &["f.yaml:1:1: error: expected a mapping, got a list"],
        ),
        // Missing name and spec together: both are reported.
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: a}\n",
            &[
                "f.yaml:3:11: error: metadata.name: required",
                "f.yaml:1:1: error: spec: required",
            ],
        ),
    ]);
}

#[test]
fn minimal_objects_load() {
    // A Namespace needs no spec; a policy needs only podSelector.
    let model = valid("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    assert_eq!(
        model.namespaces["shop"].labels,
        labels(&[("kubernetes.io/metadata.name", "shop")])
    );
    let model = valid(np!("  podSelector: {}\n"));
    let p = the_policy(&model);
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("default", "p"));
    assert!(p.pod_selector.is_everything());
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress, None);
}

// ---------------------------------------------------------------------------
// Unknown fields

#[test]
fn unknown_fields_failing() {
    assert_failing(&[
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nspecs: {}\n",
            &["f.yaml:4:1: error: specs: unknown field (did you mean spec?)"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nbogus: 1\n",
            &["f.yaml:4:1: error: bogus: unknown field"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n1: x\n",
            &["f.yaml:4:1: error: field name 1 is not a string"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  lables: {a: b}\n",
            &["f.yaml:5:3: error: metadata.lables: unknown field (did you mean labels?)"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  NameSpace: y\n",
            &["f.yaml:5:3: error: metadata.NameSpace: unknown field (did you mean namespace?)"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\nspec: {finalizer: [kubernetes]}\n",
            &["f.yaml:4:8: error: spec.finalizer: unknown field (did you mean finalizers?)"],
        ),
        (
            np!("  podSelector: {}\n  ingres: []\n"),
            &["f.yaml:6:3: error: spec.ingres: unknown field (did you mean ingress?)"],
        ),
        (
            np!("  podSelector: {}\n  policyType: [Egress]\n"),
            &["f.yaml:6:3: error: spec.policyType: unknown field (did you mean policyTypes?)"],
        ),
        (
            wep!("  nodes: edge-1\n  interfaceName: eth0\n  ips: [10.0.0.1]\n"),
            &["f.yaml:5:3: error: spec.nodes: unknown field (did you mean node?)"],
        ),
        // Rules.
        (
            np!("  podSelector: {}\n  ingress:\n  - form: []\n"),
            &["f.yaml:7:5: error: spec.ingress[0].form: unknown field (did you mean from?)"],
        ),
        (
            np!("  podSelector: {}\n  egress:\n  - from: []\n"),
            &["f.yaml:7:5: error: spec.egress[0].from: unknown field"],
        ),
        (
            np!("  podSelector: {}\n  egress:\n  - {to: [], port: [{}]}\n"),
            &["f.yaml:7:14: error: spec.egress[0].port: unknown field (did you mean ports?)"],
        ),
        // Peers: the typo leaves the peer empty, which is reported too.
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - podSelectr: {}\n"),
            &[
                "f.yaml:8:7: error: spec.ingress[0].from[0].podSelectr: unknown field (did you mean podSelector?)",
                "f.yaml:8:7: error: spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - {podSelector: {}, namespaceSelecter: {}}\n"
            ),
            &[
                "f.yaml:8:25: error: spec.ingress[0].from[0].namespaceSelecter: unknown field (did you mean namespaceSelector?)",
            ],
        ),
        // ipBlock.
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, excpt: []}\n"
            ),
            &[
                "f.yaml:8:35: error: spec.ingress[0].from[0].ipBlock.excpt: unknown field (did you mean except?)",
            ],
        ),
        // Ports.
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, endport: 90}\n"),
            &[
                "f.yaml:8:18: error: spec.ingress[0].ports[0].endport: unknown field (did you mean endPort?)",
            ],
        ),
        // Selectors.
        (
            np!("  podSelector: {matchLabel: {app: web}}\n"),
            &[
                "f.yaml:5:17: error: spec.podSelector.matchLabel: unknown field (did you mean matchLabels?)",
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: a, operator: Exists, value: [x]}\n"
            ),
            &[
                "f.yaml:7:34: error: spec.podSelector.matchExpressions[0].value: unknown field (did you mean values?)",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  egress:\n  - to:\n    - namespaceSelector: {matchlabels: {a: b}}\n"
            ),
            &[
                "f.yaml:8:27: error: spec.egress[0].to[0].namespaceSelector.matchlabels: unknown field (did you mean matchLabels?)",
            ],
        ),
        // Endpoint ports.
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: 80, protocl: TCP}\n"
            ),
            &["f.yaml:8:28: error: spec.ports[0].protocl: unknown field (did you mean protocol?)"],
        ),
    ]);
}

// ---------------------------------------------------------------------------
// kubectl output: `kind: List`, server-set metadata and status

const KUBECTL_OUTPUT: &str = r#"apiVersion: v1
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    creationTimestamp: "2024-05-01T10:00:00Z"
    labels:
      kubernetes.io/metadata.name: shop
      team: web
    name: shop
    resourceVersion: "123"
    uid: 0b4f3f0e-6c3c-4a4e-9d7e-7e0f6a1d2c3b
  spec:
    finalizers:
    - kubernetes
  status:
    phase: Active
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy"}
    creationTimestamp: "2024-05-01T10:00:01Z"
    generation: 1
    managedFields:
    - apiVersion: networking.k8s.io/v1
      fieldsType: FieldsV1
      fieldsV1:
        f:spec:
          f:podSelector: {}
      manager: kubectl-client-side-apply
      operation: Update
      time: "2024-05-01T10:00:01Z"
    name: allow-web
    namespace: shop
    resourceVersion: "456"
    uid: 3c1d2e4f-0000-4000-8000-000000000001
  spec:
    ingress:
    - from:
      - podSelector:
          matchLabels:
            role: frontend
      ports:
      - port: 80
        protocol: TCP
    podSelector:
      matchLabels:
        app: web
    policyTypes:
    - Ingress
  status: {}
kind: List
metadata:
  resourceVersion: ""
"#;

#[test]
fn kubectl_get_output_loads() {
    let model = valid(KUBECTL_OUTPUT);
    let shop = &model.namespaces["shop"];
    assert_eq!(
        shop.labels,
        labels(&[("kubernetes.io/metadata.name", "shop"), ("team", "web")])
    );
    assert_eq!(shop.origin.as_ref().unwrap().to_string(), "f.yaml:3:3");
    let p = the_policy(&model);
    assert_eq!(p.id(), "shop/allow-web");
    assert_eq!(p.origin.to_string(), "f.yaml:18:3");
    assert_eq!(p.pod_selector, sel(&[("app", "web")]));
    assert_eq!(
        p.ingress,
        Some(vec![Rule {
            peers: vec![Peer::Pods {
                namespaces: NamespaceScope::Own,
                pods: sel(&[("role", "frontend")]),
            }],
            ports: vec![tcp(PortMatch::Range(80, 80))],
        }])
    );
    assert_eq!(p.egress, None);
}

#[test]
fn list_errors() {
    assert_failing(&[
        (
            "apiVersion: v2\nkind: List\nitems: []\n",
            &["f.yaml:1:13: error: apiVersion: a List must have apiVersion v1"],
        ),
        (
            "apiVersion: v1\nkind: List\n",
            &["f.yaml:1:1: error: items: a List needs items"],
        ),
        (
            "apiVersion: v1\nkind: List\nitems: shop\n",
            &["f.yaml:3:8: error: items: expected a list, got a string"],
        ),
        (
            "apiVersion: v1\nkind: List\nfoo: 1\nitems: []\n",
            &["f.yaml:3:1: error: foo: unknown field"],
        ),
        (
            "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n",
            &["f.yaml:4:3: error: items[0]: a List cannot contain a List"],
        ),
        // An item's errors carry the item's own lines.
        (
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: Bad}\n",
            &[
                r#"f.yaml:9:20: error: metadata.name: "Bad" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            ],
        ),
    ]);
    // `items: []` and `items: null` are an empty list.
    for text in [
        "apiVersion: v1\nkind: List\nitems: []\n",
        "apiVersion: v1\nkind: List\nitems:\n",
    ] {
        assert_eq!(valid(text), Model::default(), "{text}");
    }
}

// ---------------------------------------------------------------------------
// Names and namespaces

#[test]
fn names_failing() {
    assert_failing(&[
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: Web_Policy}\nspec: {podSelector: {}}\n",
            &[
                r#"f.yaml:3:18: error: metadata.name: "Web_Policy" is not a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: web.}\nspec: {interfaceName: eth0, ips: [10.0.0.1]}\n",
            &[
                r#"f.yaml:3:18: error: metadata.name: "web." is not a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: my.ns}\n",
            &[
                r#"f.yaml:3:18: error: metadata.name: "my.ns" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"\"}\n",
            &["f.yaml:3:18: error: metadata.name: must not be empty"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: 42}\n",
            &["f.yaml:3:18: error: metadata.name: expected a string, got a number; quote it"],
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: Shop}\nspec: {podSelector: {}}\n",
            &[
                r#"f.yaml:3:32: error: metadata.namespace: "Shop" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w, namespace: a.b}\nspec: {interfaceName: eth0, ips: [10.0.0.1]}\n",
            &[
                r#"f.yaml:3:32: error: metadata.namespace: "a.b" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            ],
        ),
        (
            wep!("  node: Edge_1\n  interfaceName: eth0\n  ips: [10.0.0.1]\n"),
            &[
                r#"f.yaml:5:9: error: spec.node: "Edge_1" is not a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"#,
            ],
        ),
    ]);
}

#[test]
fn names_and_default_namespace() {
    let model = valid(concat!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow.web-1}\nspec: {podSelector: {}}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: web-1.v2, namespace: shop-2}\n",
        "spec: {interfaceName: eth0, ips: [10.0.0.1], node: edge-1.example.com}\n",
    ));
    // A policy without a namespace is in "default".
    assert_eq!(the_policy(&model).id(), "default/allow.web-1");
    let ep = the_endpoint(&model);
    assert_eq!(ep.id(), "shop-2/web-1.v2");
    assert_eq!(ep.node.as_deref(), Some("edge-1.example.com"));
    // Both namespaces exist, undeclared, carrying only the name label.
    for ns in ["default", "shop-2"] {
        assert_eq!(
            model.namespaces[ns],
            Namespace {
                name: ns.to_owned(),
                labels: labels(&[("kubernetes.io/metadata.name", ns)]),
                origin: None,
            }
        );
    }
    let model = valid(wep!("  interfaceName: eth0\n  ips: [10.0.0.1]\n"));
    assert_eq!(the_endpoint(&model).id(), "default/w");
    assert_eq!(the_endpoint(&model).node, None);
}

#[test]
fn namespace_objects_failing() {
    assert_failing(&[
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n",
            &[
                "f.yaml:3:32: error: metadata.namespace: a Namespace is cluster-scoped and has no namespace",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    team: web\n    kubernetes.io/metadata.name: other\n",
            &[
                "f.yaml:7:34: error: metadata.labels.kubernetes.io/metadata.name: must equal metadata.name",
            ],
        ),
        // An invalid name is reported once, not again as a label mismatch.
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Shop\n  labels: {kubernetes.io/metadata.name: Shop}\n",
            &[
                r#"f.yaml:4:9: error: metadata.name: "Shop" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            ],
        ),
    ]);
}

#[test]
fn namespace_label_is_synthesised() {
    let model = valid(concat!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: web}}\n",
        "---\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: db, labels: {kubernetes.io/metadata.name: db}}\n",
        "---\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bare}\nspec: {finalizers: [kubernetes]}\nstatus: {phase: Active}\n",
    ));
    assert_eq!(
        model.namespaces["shop"].labels,
        labels(&[("kubernetes.io/metadata.name", "shop"), ("team", "web")])
    );
    assert_eq!(
        model.namespaces["db"].labels,
        labels(&[("kubernetes.io/metadata.name", "db")])
    );
    assert_eq!(
        model.namespaces["bare"].labels,
        labels(&[("kubernetes.io/metadata.name", "bare")])
    );
    assert_eq!(
        model.namespaces["bare"]
            .origin
            .as_ref()
            .unwrap()
            .to_string(),
        "f.yaml:9:1"
    );
}

// ---------------------------------------------------------------------------
// Labels (on objects; the same rules apply to matchLabels)

#[test]
fn labels_failing() {
    // Labels sit on line 5: `  labels: {` puts the first key in column 12.
    assert_failing(&[
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {\"-x\": a}\n",
            &[
                r#"f.yaml:5:12: error: metadata.labels.-x: label key "-x" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a DNS prefix and '/'"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {Example.com/x: a}\n",
            &[
                r#"f.yaml:5:12: error: metadata.labels.Example.com/x: label key "Example.com/x": prefix "Example.com" is not a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {a/b/c: a}\n",
            &[
                r#"f.yaml:5:12: error: metadata.labels.a/b/c: label key "a/b/c" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a DNS prefix and '/'"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {app: \"a b\"}\n",
            &[
                r#"f.yaml:5:17: error: metadata.labels.app: label value "a b" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {version: 1.0}\n",
            &[
                "f.yaml:5:21: error: metadata.labels.version: expected a string, got a number; quote it",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {enabled: true}\n",
            &[
                "f.yaml:5:21: error: metadata.labels.enabled: expected a string, got a boolean; quote it",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {app: [a]}\n",
            &["f.yaml:5:17: error: metadata.labels.app: expected a string, got a list"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {1: a}\n",
            &["f.yaml:5:12: error: metadata.labels: label key 1 is not a string; quote it"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: [app]\n",
            &["f.yaml:5:11: error: metadata.labels: expected a mapping, got a list"],
        ),
        // Every bad label is reported, not only the first.
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {a: 1, b: -b}\n",
            &[
                "f.yaml:5:15: error: metadata.labels.a: expected a string, got a number; quote it",
                r#"f.yaml:5:21: error: metadata.labels.b: label value "-b" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"#,
            ],
        ),
    ]);
}

#[test]
fn labels_load() {
    let model = valid(concat!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\n",
        "metadata:\n  name: w\n  labels:\n    app: web\n    version: \"1.0\"\n    empty: \"\"\n",
        "    example.com/tier: Front_End.v2\n",
        "spec: {interfaceName: eth0, ips: [10.0.0.1]}\n",
    ));
    assert_eq!(
        the_endpoint(&model).labels,
        labels(&[
            ("app", "web"),
            ("empty", ""),
            ("example.com/tier", "Front_End.v2"),
            ("version", "1.0"),
        ])
    );
}

// ---------------------------------------------------------------------------
// Label selectors

#[test]
fn selectors_failing() {
    // The expression sits on line 7; `    - {key: tier, operator: ` puts the operator's
    // value in column 29.
    assert_failing(&[
        (
            np!("  podSelector:\n    matchExpressions:\n    - {key: tier, operator: In}\n"),
            &[
                "f.yaml:7:29: error: spec.podSelector.matchExpressions[0].values: operator In needs at least one value",
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: NotIn, values: []}\n"
            ),
            &[
                "f.yaml:7:44: error: spec.podSelector.matchExpressions[0].values: operator NotIn needs at least one value",
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: Exists, values: [a]}\n"
            ),
            &[
                "f.yaml:7:45: error: spec.podSelector.matchExpressions[0].values: operator Exists takes no values",
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: DoesNotExist, values: [a]}\n"
            ),
            &[
                "f.yaml:7:51: error: spec.podSelector.matchExpressions[0].values: operator DoesNotExist takes no values",
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: in, values: [a]}\n"
            ),
            &[
                r#"f.yaml:7:29: error: spec.podSelector.matchExpressions[0].operator: unknown operator "in": one of In, NotIn, Exists, DoesNotExist"#,
            ],
        ),
        (
            np!("  podSelector:\n    matchExpressions:\n    - {key: tier}\n"),
            &[
                "f.yaml:7:7: error: spec.podSelector.matchExpressions[0].operator: required: one of In, NotIn, Exists, DoesNotExist",
            ],
        ),
        (
            np!("  podSelector:\n    matchExpressions:\n    - {operator: Exists}\n"),
            &["f.yaml:7:7: error: spec.podSelector.matchExpressions[0].key: required"],
        ),
        (
            np!("  podSelector:\n    matchExpressions:\n    - {key: \"a b\", operator: Exists}\n"),
            &[
                r#"f.yaml:7:13: error: spec.podSelector.matchExpressions[0].key: label key "a b" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a DNS prefix and '/'"#,
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: In, values: [ok, \"not ok\"]}\n"
            ),
            &[
                r#"f.yaml:7:46: error: spec.podSelector.matchExpressions[0].values[1]: label value "not ok" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"#,
            ],
        ),
        (
            np!(
                "  podSelector:\n    matchExpressions:\n    - {key: tier, operator: In, values: [80]}\n"
            ),
            &[
                "f.yaml:7:42: error: spec.podSelector.matchExpressions[0].values[0]: expected a string, got a number; quote it",
            ],
        ),
        (
            np!("  podSelector:\n    matchExpressions: {key: tier, operator: Exists}\n"),
            &[
                "f.yaml:6:23: error: spec.podSelector.matchExpressions: expected a list, got a mapping",
            ],
        ),
        (
            np!("  podSelector: app=web\n"),
            &["f.yaml:5:16: error: spec.podSelector: expected a mapping, got a string"],
        ),
        (
            np!("  podSelector: {matchLabels: {port: 80}}\n"),
            &[
                "f.yaml:5:37: error: spec.podSelector.matchLabels.port: expected a string, got a number; quote it",
            ],
        ),
        (
            np!("  podSelector: {matchLabels: {app: web/x}}\n"),
            &[
                r#"f.yaml:5:36: error: spec.podSelector.matchLabels.app: label value "web/x" is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"#,
            ],
        ),
    ]);
}

#[test]
fn selectors_load() {
    let model = valid(np!(concat!(
        "  podSelector:\n",
        "    matchLabels: {app: web}\n",
        "    matchExpressions:\n",
        "    - {key: tier, operator: In, values: [front, edge]}\n",
        "    - {key: env, operator: NotIn, values: [prod]}\n",
        "    - {key: example.com/owner, operator: Exists}\n",
        "    - {key: legacy, operator: DoesNotExist, values: []}\n",
    )));
    let expected = LabelSelector::new([
        req("app", Op::In(set(&["web"]))),
        req("tier", Op::In(set(&["front", "edge"]))),
        req("env", Op::NotIn(set(&["prod"]))),
        req("example.com/owner", Op::Exists),
        req("legacy", Op::DoesNotExist),
    ]);
    assert_eq!(the_policy(&model).pod_selector, expected);
    // matchLabels and a one-value In are the same selector.
    let a = valid(np!("  podSelector: {matchLabels: {app: web}}\n"));
    let b = valid(np!(
        "  podSelector: {matchExpressions: [{key: app, operator: In, values: [web]}]}\n"
    ));
    assert_eq!(the_policy(&a).pod_selector, the_policy(&b).pod_selector);
    // `{}`, `{matchLabels: {}}` and `{matchExpressions: []}` select everything.
    for text in [
        np!("  podSelector: {}\n"),
        np!("  podSelector: {matchLabels: {}}\n"),
        np!("  podSelector: {matchExpressions: []}\n"),
    ] {
        assert!(
            the_policy(&valid(text)).pod_selector.is_everything(),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// policyTypes defaulting (S3, S4)

#[test]
fn policy_types_defaulting() {
    // (spec body, number of ingress rules kept, number of egress rules kept);
    // None: the policy does not govern that direction.
    let cases: &[(&str, Option<usize>, Option<usize>)] = &[
        // No types: Ingress only…
        (np!("  podSelector: {}\n"), Some(0), None),
        (np!("  podSelector: {}\n  ingress: [{}]\n"), Some(1), None),
        // …plus Egress iff there are egress rules.
        (
            np!("  podSelector: {}\n  egress: [{}, {}]\n"),
            Some(0),
            Some(2),
        ),
        (np!("  podSelector: {}\n  egress: []\n"), Some(0), None),
        (np!("  podSelector: {}\n  egress:\n"), Some(0), None),
        // An explicit empty list defaults like an absent one.
        (np!("  podSelector: {}\n  policyTypes: []\n"), Some(0), None),
        (
            np!("  podSelector: {}\n  policyTypes: []\n  egress: [{}]\n"),
            Some(0),
            Some(1),
        ),
        // Explicit types are kept; rules of an ungoverned direction are dropped.
        (
            np!("  podSelector: {}\n  policyTypes: [Egress]\n"),
            None,
            Some(0),
        ),
        (
            np!("  podSelector: {}\n  policyTypes: [Egress]\n  ingress: [{}]\n"),
            None,
            Some(0),
        ),
        (
            np!("  podSelector: {}\n  policyTypes: [Ingress]\n  egress: [{}]\n"),
            Some(0),
            None,
        ),
        (
            np!("  podSelector: {}\n  policyTypes: [Ingress, Egress]\n"),
            Some(0),
            Some(0),
        ),
        (
            np!(
                "  podSelector: {}\n  policyTypes: [Egress, Ingress]\n  ingress: [{}]\n  egress: [{}]\n"
            ),
            Some(1),
            Some(1),
        ),
    ];
    for (text, ingress, egress) in cases {
        let model = valid(text);
        let p = the_policy(&model);
        assert_eq!(
            p.ingress.as_ref().map(Vec::len),
            *ingress,
            "ingress of\n{text}"
        );
        assert_eq!(
            p.egress.as_ref().map(Vec::len),
            *egress,
            "egress of\n{text}"
        );
    }
}

#[test]
fn policy_types_failing() {
    assert_failing(&[
        (
            np!("  podSelector: {}\n  policyTypes: [Ingress, Ingress]\n"),
            &["f.yaml:6:26: error: spec.policyTypes[1]: Ingress is listed twice"],
        ),
        (
            np!("  podSelector: {}\n  policyTypes:\n  - Egress\n  - Ingress\n  - Egress\n"),
            &["f.yaml:9:5: error: spec.policyTypes[2]: Egress is listed twice"],
        ),
        (
            np!("  podSelector: {}\n  policyTypes: [ingress]\n"),
            &[
                r#"f.yaml:6:17: error: spec.policyTypes[0]: unknown policy type "ingress": Ingress or Egress"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  policyTypes: Ingress\n"),
            &["f.yaml:6:16: error: spec.policyTypes: expected a list, got a string"],
        ),
    ]);
}

// ---------------------------------------------------------------------------
// Rules and peers (P1–P3, S7, S8)

#[test]
fn peers_failing() {
    assert_failing(&[
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - {}\n"),
            &[
                "f.yaml:8:7: error: spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock",
            ],
        ),
        (
            np!("  podSelector: {}\n  egress:\n  - to:\n    - podSelector: null\n"),
            &[
                "f.yaml:8:7: error: spec.egress[0].to[0]: a peer needs podSelector, namespaceSelector or ipBlock",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n"
            ),
            &[
                "f.yaml:9:7: error: spec.ingress[0].from[1]: ipBlock cannot be combined with podSelector or namespaceSelector in one peer; make them separate peers",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  egress:\n  - to:\n    - {namespaceSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}\n"
            ),
            &[
                "f.yaml:8:7: error: spec.egress[0].to[0]: ipBlock cannot be combined with podSelector or namespaceSelector in one peer; make them separate peers",
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from: {podSelector: {}}\n"),
            &["f.yaml:7:11: error: spec.ingress[0].from: expected a list, got a mapping"],
        ),
        (
            np!("  podSelector: {}\n  ingress: {from: []}\n"),
            &["f.yaml:6:12: error: spec.ingress: expected a list, got a mapping"],
        ),
        (
            np!("  podSelector: {}\n  egress:\n  - to\n"),
            &["f.yaml:7:5: error: spec.egress[0]: expected a mapping, got a string"],
        ),
    ]);
}

#[test]
fn peers_load() {
    let model = valid(np!(concat!(
        "  podSelector: {matchLabels: {app: db}}\n",
        "  ingress:\n",
        "  - from:\n",
        "    - podSelector: {matchLabels: {app: web}}\n",
        "    - namespaceSelector: {matchLabels: {team: a}}\n",
        "    - namespaceSelector: {matchLabels: {team: b}}\n",
        "      podSelector: {matchLabels: {app: api}}\n",
        "    - namespaceSelector: {}\n",
        "    - ipBlock: {cidr: 192.168.0.0/16}\n",
        "  - from: []\n",
        "    ports: []\n",
        "  - {}\n",
    )));
    let p = the_policy(&model);
    assert_eq!(p.pod_selector, sel(&[("app", "db")]));
    assert_eq!(
        p.ingress,
        Some(vec![
            Rule {
                peers: vec![
                    Peer::Pods {
                        namespaces: NamespaceScope::Own,
                        pods: sel(&[("app", "web")]),
                    },
                    Peer::Pods {
                        namespaces: NamespaceScope::Matching(sel(&[("team", "a")])),
                        pods: LabelSelector::everything(),
                    },
                    Peer::Pods {
                        namespaces: NamespaceScope::Matching(sel(&[("team", "b")])),
                        pods: sel(&[("app", "api")]),
                    },
                    Peer::Pods {
                        namespaces: NamespaceScope::Matching(LabelSelector::everything()),
                        pods: LabelSelector::everything(),
                    },
                    Peer::IpBlock(IpBlock {
                        cidr: net("192.168.0.0/16"),
                        except: vec![],
                    }),
                ],
                ports: vec![],
            },
            // `from: []`, `ports: []` and `{}`: every peer, every port.
            Rule {
                peers: vec![],
                ports: vec![],
            },
            Rule {
                peers: vec![],
                ports: vec![],
            },
        ])
    );
}

// ---------------------------------------------------------------------------
// ipBlock (B1, B4, B6)

#[test]
fn ip_block_failing() {
    // Each block sits on line 8: `    - ipBlock: {cidr: ` puts the cidr in column 23.
    assert_failing(&[
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {except: [10.0.0.0/8]}\n"
            ),
            &["f.yaml:8:16: error: spec.ingress[0].from[0].ipBlock.cidr: required"],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/33}\n"),
            &[
                r#"f.yaml:8:23: error: spec.ingress[0].from[0].ipBlock.cidr: "10.0.0.0/33" is not a valid CIDR"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: internal}\n"),
            &[
                r#"f.yaml:8:23: error: spec.ingress[0].from[0].ipBlock.cidr: "internal" is not a valid CIDR"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.2.3}\n"),
            &[
                r#"f.yaml:8:23: error: spec.ingress[0].from[0].ipBlock.cidr: "10.1.2.3" is not a valid CIDR (a CIDR needs a prefix length, e.g. /32)"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: \"fd00::1\"}\n"),
            &[
                r#"f.yaml:8:23: error: spec.ingress[0].from[0].ipBlock.cidr: "fd00::1" is not a valid CIDR (a CIDR needs a prefix length, e.g. /32)"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.2.3/16}\n"),
            &[
                "f.yaml:8:23: error: spec.ingress[0].from[0].ipBlock.cidr: 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?",
            ],
        ),
        // The example of the brief: the second peer's except lies outside its cidr.
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.2.0.0/16]}\n"
            ),
            &[
                "f.yaml:9:45: error: spec.ingress[0].from[1].ipBlock.except[0]: 10.2.0.0/16 is not inside cidr 10.1.0.0/16",
            ],
        ),
        // Equal prefix is not strictly inside.
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.0.0/16]}\n"
            ),
            &[
                "f.yaml:8:45: error: spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/16 is not inside cidr 10.1.0.0/16",
            ],
        ),
        // A wider except contains the cidr rather than lying inside it.
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.0.0.0/8]}\n"
            ),
            &[
                "f.yaml:8:45: error: spec.ingress[0].from[0].ipBlock.except[0]: 10.0.0.0/8 is not inside cidr 10.1.0.0/16",
            ],
        ),
        // The other family is never inside.
        (
            np!(
                "  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, \"fd00::/8\"]}\n"
            ),
            &[
                "f.yaml:8:55: error: spec.egress[0].to[0].ipBlock.except[1]: fd00::/8 is not inside cidr 0.0.0.0/0",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.1.2.3/24]}\n"
            ),
            &[
                "f.yaml:8:45: error: spec.ingress[0].from[0].ipBlock.except[0]: 10.1.2.3/24 has host bits set; did you mean 10.1.2.0/24?",
            ],
        ),
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: 10.1.2.0/24}\n"
            ),
            &[
                "f.yaml:8:44: error: spec.ingress[0].from[0].ipBlock.except: expected a list, got a string",
            ],
        ),
        // Every bad except is reported.
        (
            np!(
                "  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.1.0.0/16, except: [10.9.0.0/24, x]}\n"
            ),
            &[
                "f.yaml:8:45: error: spec.ingress[0].from[0].ipBlock.except[0]: 10.9.0.0/24 is not inside cidr 10.1.0.0/16",
                r#"f.yaml:8:58: error: spec.ingress[0].from[0].ipBlock.except[1]: "x" is not a valid CIDR"#,
            ],
        ),
    ]);
}

#[test]
fn ip_block_load() {
    let model = valid(np!(concat!(
        "  podSelector: {}\n",
        "  egress:\n",
        "  - to:\n",
        "    - ipBlock: {cidr: 10.0.0.0/8, except: [10.2.0.0/16, 10.1.0.0/16, 10.2.0.0/16, 10.3.4.5/32]}\n",
        "    - ipBlock: {cidr: 0.0.0.0/0}\n",
        "    - ipBlock: {cidr: \"::/0\"}\n",
        "    - ipBlock: {cidr: \"fd00::/8\", except: [\"fd00:1::/32\"]}\n",
        "    - ipBlock: {cidr: 192.168.1.1/32}\n",
    )));
    let block = |cidr: &str, except: &[&str]| {
        Peer::IpBlock(IpBlock {
            cidr: net(cidr),
            except: except.iter().map(|e| net(e)).collect(),
        })
    };
    let p = the_policy(&model);
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(
        p.egress.as_ref().unwrap()[0].peers,
        [
            // Excepts are sorted and deduplicated.
            block("10.0.0.0/8", &["10.1.0.0/16", "10.2.0.0/16", "10.3.4.5/32"]),
            block("0.0.0.0/0", &[]),
            block("::/0", &[]),
            block("fd00::/8", &["fd00:1::/32"]),
            block("192.168.1.1/32", &[]),
        ]
    );
}

// ---------------------------------------------------------------------------
// Ports (T1–T3)

#[test]
fn ports_failing() {
    // Each port sits on line 8: `    - {` puts the first field in column 8.
    assert_failing(&[
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: tcp, port: 80}\n"),
            &[
                r#"f.yaml:8:18: error: spec.ingress[0].ports[0].protocol: unsupported protocol "tcp": one of TCP, UDP, SCTP (protocols are upper-case: TCP)"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: ICMP}\n"),
            &[
                r#"f.yaml:8:18: error: spec.ingress[0].ports[0].protocol: unsupported protocol "ICMP": one of TCP, UDP, SCTP"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 0}\n"),
            &["f.yaml:8:14: error: spec.ingress[0].ports[0].port: port 0 is out of range 1-65535"],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 65536}\n"),
            &[
                "f.yaml:8:14: error: spec.ingress[0].ports[0].port: port 65536 is out of range 1-65535",
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: -1}\n"),
            &["f.yaml:8:14: error: spec.ingress[0].ports[0].port: port -1 is out of range 1-65535"],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: \"80\"}\n"),
            &[
                r#"f.yaml:8:14: error: spec.ingress[0].ports[0].port: "80" is a string; write 80 without quotes for a port number"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: true}\n"),
            &[
                "f.yaml:8:14: error: spec.ingress[0].ports[0].port: expected a port number, got a boolean",
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: HTTP}\n"),
            &[
                r#"f.yaml:8:14: error: spec.ingress[0].ports[0].port: port name "HTTP" may contain only lower-case letters, digits and '-'"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: web-server-port-1}\n"),
            &[
                r#"f.yaml:8:14: error: spec.ingress[0].ports[0].port: port name "web-server-port-1" is longer than 15 characters"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: grpc--web}\n"),
            &[
                r#"f.yaml:8:14: error: spec.ingress[0].ports[0].port: port name "grpc--web" must not start or end with '-' or contain '--'"#,
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {endPort: 90}\n"),
            &["f.yaml:8:17: error: spec.ingress[0].ports[0].endPort: endPort needs a numeric port"],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: http, endPort: 90}\n"),
            &[
                "f.yaml:8:29: error: spec.ingress[0].ports[0].endPort: endPort cannot be used with a named port",
            ],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, endPort: 79}\n"),
            &["f.yaml:8:27: error: spec.ingress[0].ports[0].endPort: endPort 79 is below port 80"],
        ),
        (
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {port: 80, endPort: 70000}\n"),
            &[
                "f.yaml:8:27: error: spec.ingress[0].ports[0].endPort: port 70000 is out of range 1-65535",
            ],
        ),
        // Protocol and port problems of one entry are both reported.
        (
            np!("  podSelector: {}\n  egress:\n  - ports:\n    - {protocol: udp, port: 0}\n"),
            &[
                r#"f.yaml:8:18: error: spec.egress[0].ports[0].protocol: unsupported protocol "udp": one of TCP, UDP, SCTP (protocols are upper-case: UDP)"#,
                "f.yaml:8:29: error: spec.egress[0].ports[0].port: port 0 is out of range 1-65535",
            ],
        ),
    ]);
}

#[test]
fn ports_load() {
    let model = valid(np!(concat!(
        "  podSelector: {}\n",
        "  ingress:\n",
        "  - ports:\n",
        "    - {}\n",
        "    - {protocol: UDP}\n",
        "    - {port: 80}\n",
        "    - {port: 1, protocol: TCP}\n",
        "    - {port: 65535}\n",
        "    - {port: http}\n",
        "    - {port: dns, protocol: UDP}\n",
        "    - {port: 8000, endPort: 9000, protocol: SCTP}\n",
        "    - {port: 443, endPort: 443}\n",
    )));
    let p = the_policy(&model);
    assert_eq!(
        p.ingress.as_ref().unwrap()[0].ports,
        [
            // T2: `{}` is every TCP port, not every protocol.
            tcp(PortMatch::Any),
            PortSpec {
                protocol: Protocol::Udp,
                port: PortMatch::Any,
            },
            tcp(PortMatch::Range(80, 80)),
            tcp(PortMatch::Range(1, 1)),
            tcp(PortMatch::Range(65535, 65535)),
            tcp(PortMatch::Named("http".to_owned())),
            PortSpec {
                protocol: Protocol::Udp,
                port: PortMatch::Named("dns".to_owned()),
            },
            PortSpec {
                protocol: Protocol::Sctp,
                port: PortMatch::Range(8000, 9000),
            },
            // endPort == port is a range of one.
            tcp(PortMatch::Range(443, 443)),
        ]
    );
}

// ---------------------------------------------------------------------------
// WorkloadEndpoint

#[test]
fn endpoint_failing() {
    assert_failing(&[
        (
            wep!("  ips: [10.0.0.1]\n"),
            &["f.yaml:5:3: error: spec.interfaceName: required"],
        ),
        (
            wep!("  interfaceName: veth0123456789ab\n  ips: [10.0.0.1]\n"),
            &[
                r#"f.yaml:5:18: error: spec.interfaceName: interface name "veth0123456789ab" is longer than 15 bytes"#,
            ],
        ),
        (
            wep!("  interfaceName: eth/0\n  ips: [10.0.0.1]\n"),
            &[
                r#"f.yaml:5:18: error: spec.interfaceName: interface name "eth/0" must not contain '/', ':', '"', '\', whitespace or control characters"#,
            ],
        ),
        (
            wep!("  interfaceName: \"eth 0\"\n  ips: [10.0.0.1]\n"),
            &[
                r#"f.yaml:5:18: error: spec.interfaceName: interface name "eth 0" must not contain '/', ':', '"', '\', whitespace or control characters"#,
            ],
        ),
        (
            wep!("  interfaceName: \"\"\n  ips: [10.0.0.1]\n"),
            &[r#"f.yaml:5:18: error: spec.interfaceName: interface name "" must not be empty"#],
        ),
        (
            wep!("  interfaceName: \"..\"\n  ips: [10.0.0.1]\n"),
            &[r#"f.yaml:5:18: error: spec.interfaceName: interface name ".." is reserved"#],
        ),
        (
            wep!("  interfaceName: eth0\n"),
            &["f.yaml:5:3: error: spec.ips: required: the endpoint's addresses"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: []\n"),
            &["f.yaml:6:8: error: spec.ips: an endpoint needs at least one address"],
        ),
        // Not a list: one message, not also "needs at least one address".
        (
            wep!("  interfaceName: eth0\n  ips: 10.0.0.1\n"),
            &["f.yaml:6:8: error: spec.ips: expected a list, got a string"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [10.0.0.300]\n"),
            &[
                r#"f.yaml:6:9: error: spec.ips[0]: "10.0.0.300" is not an IP address (a /32 or /128 suffix is allowed)"#,
            ],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [10.0.0.5/24]\n"),
            &[
                r#"f.yaml:6:9: error: spec.ips[0]: "10.0.0.5/24" is not an IP address (a /32 or /128 suffix is allowed)"#,
            ],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [\"fd00::5/64\"]\n"),
            &[
                r#"f.yaml:6:9: error: spec.ips[0]: "fd00::5/64" is not an IP address (a /32 or /128 suffix is allowed)"#,
            ],
        ),
        (
            wep!("  interfaceName: eth0\n  ips:\n  - 10.0.0.5\n  - 10.0.0.6\n  - 10.0.0.5/32\n"),
            &["f.yaml:9:5: error: spec.ips[2]: 10.0.0.5 is already listed as spec.ips[0]"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [\"fd00::5\", \"fd00:0:0::5/128\"]\n"),
            &["f.yaml:6:20: error: spec.ips[1]: fd00::5 is already listed as spec.ips[0]"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [167772161]\n"),
            &["f.yaml:6:9: error: spec.ips[0]: expected a string, got a number; quote it"],
        ),
        // Named ports of the endpoint.
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: HTTP, port: 80}\n"
            ),
            &[
                r#"f.yaml:8:12: error: spec.ports[0].name: port name "HTTP" may contain only lower-case letters, digits and '-'"#,
            ],
        ),
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: \"8080\", port: 8080}\n"
            ),
            &[
                r#"f.yaml:8:12: error: spec.ports[0].name: port name "8080" must contain at least one letter"#,
            ],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {port: 80}\n"),
            &["f.yaml:8:5: error: spec.ports[0].name: required"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: http}\n"),
            &["f.yaml:8:5: error: spec.ports[0].port: required"],
        ),
        (
            wep!("  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: 0}\n"),
            &["f.yaml:8:24: error: spec.ports[0].port: port 0 is out of range 1-65535"],
        ),
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: 65536}\n"
            ),
            &["f.yaml:8:24: error: spec.ports[0].port: port 65536 is out of range 1-65535"],
        ),
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: http, port: \"80\"}\n"
            ),
            &["f.yaml:8:24: error: spec.ports[0].port: expected a port number, got a string"],
        ),
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: dns, port: 53, protocol: udp}\n"
            ),
            &[
                r#"f.yaml:8:37: error: spec.ports[0].protocol: unsupported protocol "udp": one of TCP, UDP, SCTP (protocols are upper-case: UDP)"#,
            ],
        ),
        // A name is unique whatever the protocol, as for a pod's container ports.
        (
            wep!(
                "  interfaceName: eth0\n  ips: [10.0.0.1]\n  ports:\n  - {name: dns, port: 53, protocol: UDP}\n  - {name: dns, port: 53, protocol: TCP}\n"
            ),
            &[
                r#"f.yaml:9:12: error: spec.ports[1].name: "dns" is already the name of spec.ports[0]"#,
            ],
        ),
        // Every problem of an endpoint is reported at once.
        (
            wep!(
                "  interfaceName: eth/0\n  ips: [10.0.0.1, bad]\n  ports:\n  - {name: http, port: 0}\n"
            ),
            &[
                r#"f.yaml:5:18: error: spec.interfaceName: interface name "eth/0" must not contain '/', ':', '"', '\', whitespace or control characters"#,
                r#"f.yaml:6:19: error: spec.ips[1]: "bad" is not an IP address (a /32 or /128 suffix is allowed)"#,
                "f.yaml:8:24: error: spec.ports[0].port: port 0 is out of range 1-65535",
            ],
        ),
    ]);
}

#[test]
fn endpoint_loads() {
    let model = valid(concat!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\n",
        "metadata: {name: web-1, namespace: shop, labels: {app: web}}\n",
        "spec:\n",
        "  node: edge-1\n",
        "  interfaceName: veth-web1234567\n",
        "  ips: [10.1.0.5/32, \"fd00::5/128\", 10.1.0.6, \"fd00::6\"]\n",
        "  ports:\n",
        "  - {name: http, port: 80, protocol: TCP}\n",
        "  - {name: dns, port: 53, protocol: UDP}\n",
        "  - {name: metrics, port: 9090}\n",
        "status: {}\n",
    ));
    let ep = the_endpoint(&model);
    assert_eq!(ep.id(), "shop/web-1");
    assert_eq!(ep.labels, labels(&[("app", "web")]));
    assert_eq!(ep.node.as_deref(), Some("edge-1"));
    assert_eq!(ep.interface, "veth-web1234567");
    assert_eq!(ep.interface_pos.line, 6);
    assert_eq!(
        ep.ips,
        [ip("10.1.0.5"), ip("fd00::5"), ip("10.1.0.6"), ip("fd00::6")]
    );
    assert_eq!(ep.ip_pos.len(), 4);
    assert_eq!(
        ep.ports,
        [
            NamedPort {
                name: "http".to_owned(),
                port: 80,
                protocol: Protocol::Tcp,
            },
            NamedPort {
                name: "dns".to_owned(),
                port: 53,
                protocol: Protocol::Udp,
            },
            NamedPort {
                name: "metrics".to_owned(),
                port: 9090,
                protocol: Protocol::Tcp,
            },
        ]
    );
    assert_eq!(ep.named_port("dns", Protocol::Udp), Some(53));
    assert_eq!(ep.named_port("dns", Protocol::Tcp), None);
}

// ---------------------------------------------------------------------------
// Cross-object rules: address and interface clashes, duplicate identities

/// A WorkloadEndpoint document of 4 lines.
fn endpoint_doc(name: &str, ns: &str, node: &str, iface: &str, ips: &str) -> String {
    format!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{node: {node}, interfaceName: {iface}, ips: [{ips}]}}\n"
    )
}

#[test]
fn endpoint_clashes() {
    // Line 4 of each document: `spec: {node: n1, interfaceName: ` puts the
    // interface in column 33 and the first address in column 45.
    let text = [
        endpoint_doc("a", "shop", "n1", "eth1", "10.0.0.1"),
        endpoint_doc("b", "shop", "n2", "eth2", "10.0.0.2, 10.0.0.1"),
    ]
    .join("---\n");
    let (model, problems) = load(&text);
    assert_eq!(
        problems,
        [
            "f.yaml:9:55: error: spec.ips[1]: 10.0.0.1 is already an address of WorkloadEndpoint shop/a (f.yaml:4:45)"
        ]
    );
    // The first owner stays; the clashing endpoint is left out.
    assert_eq!(
        model.endpoints.keys().collect::<Vec<_>>(),
        [&("shop".to_owned(), "a".to_owned())]
    );

    // The endpoint written later is the one refused, whatever the names' order.
    let text = [
        endpoint_doc("z", "shop", "n1", "eth1", "10.0.0.1"),
        endpoint_doc("a", "shop", "n1", "eth2", "10.0.0.1"),
    ]
    .join("---\n");
    let (model, problems) = load(&text);
    assert_eq!(
        problems,
        [
            "f.yaml:9:45: error: spec.ips[0]: 10.0.0.1 is already an address of WorkloadEndpoint shop/z (f.yaml:4:45)"
        ]
    );
    assert_eq!(
        model.endpoints.keys().collect::<Vec<_>>(),
        [&("shop".to_owned(), "z".to_owned())]
    );

    // The same address written differently, across namespaces.
    let text = [
        endpoint_doc("a", "one", "n1", "eth1", "\"fd00::1\""),
        endpoint_doc("a", "two", "n2", "eth1", "\"fd00:0::1/128\""),
    ]
    .join("---\n");
    assert_eq!(
        load(&text).1,
        [
            "f.yaml:9:45: error: spec.ips[0]: fd00::1 is already an address of WorkloadEndpoint one/a (f.yaml:4:45)"
        ]
    );

    // One interface on one node: both places named.
    let text = [
        endpoint_doc("a", "shop", "n1", "eth1", "10.0.0.1"),
        endpoint_doc("b", "shop", "n1", "eth1", "10.0.0.2"),
    ]
    .join("---\n");
    assert_eq!(
        load(&text).1,
        [
            "f.yaml:9:33: error: spec.interfaceName: eth1 is already the interface of WorkloadEndpoint shop/a (f.yaml:4:33) on the same node"
        ]
    );

    // Without `node`, both are on the daemon's own node.
    let text = concat!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: a}\n",
        "spec: {interfaceName: eth1, ips: [10.0.0.1]}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: b}\n",
        "spec: {interfaceName: eth1, ips: [10.0.0.2]}\n",
    );
    assert_eq!(
        load(text).1,
        [
            "f.yaml:9:23: error: spec.interfaceName: eth1 is already the interface of WorkloadEndpoint default/a (f.yaml:4:23) on the same node"
        ]
    );

    // An endpoint without `node` runs on whichever node loads it: it clashes with any node's.
    let text = concat!(
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: a}\n",
        "spec: {node: n1, interfaceName: eth1, ips: [10.0.0.1]}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: b}\n",
        "spec: {interfaceName: eth1, ips: [10.0.0.2]}\n",
    );
    assert_eq!(
        load(text).1,
        [
            "f.yaml:9:23: error: spec.interfaceName: eth1 is already the interface of WorkloadEndpoint default/a (f.yaml:4:33) on the same node"
        ]
    );

    // The same interface name on different nodes is fine.
    let text = [
        endpoint_doc("a", "shop", "n1", "eth1", "10.0.0.1"),
        endpoint_doc("b", "shop", "n2", "eth1", "10.0.0.2"),
    ]
    .join("---\n");
    let model = valid(&text);
    assert_eq!(
        model
            .endpoints
            .values()
            .map(|e| (e.id(), e.node.clone().unwrap(), e.interface.clone()))
            .collect::<Vec<_>>(),
        [
            ("shop/a".to_owned(), "n1".to_owned(), "eth1".to_owned()),
            ("shop/b".to_owned(), "n2".to_owned(), "eth1".to_owned()),
        ]
    );
}

#[test]
fn duplicate_identities() {
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n";
    let policy_in_default = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {podSelector: {}, policyTypes: [Egress]}\n";
    let namespace = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";
    let cases: &[(String, &[&str])] = &[
        // Omitted namespace and "default" are the same identity.
        (
            [policy, policy_in_default].join("---\n"),
            &["f.yaml:6:1: error: duplicate NetworkPolicy default/p: also defined at f.yaml:1:1"],
        ),
        (
            [namespace, namespace, namespace].join("---\n"),
            &[
                "f.yaml:5:1: error: duplicate Namespace shop: also defined at f.yaml:1:1",
                "f.yaml:9:1: error: duplicate Namespace shop: also defined at f.yaml:1:1",
            ],
        ),
        (
            [
                endpoint_doc("w", "shop", "n1", "eth1", "10.0.0.1"),
                endpoint_doc("w", "shop", "n2", "eth2", "10.0.0.2"),
            ]
            .join("---\n"),
            &["f.yaml:6:1: error: duplicate WorkloadEndpoint shop/w: also defined at f.yaml:1:1"],
        ),
    ];
    for (text, expected) in cases {
        let (model, got) = load(text);
        assert_eq!(got, *expected, "\n{text}");
        // The first definition is kept.
        assert!(model.policies.values().all(|p| p.egress.is_none()));
        assert!(
            model
                .endpoints
                .values()
                .all(|e| e.node.as_deref() == Some("n1"))
        );
    }

    // The same name in other namespaces, or for another kind, is another identity.
    let model = valid(
        &[
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: a}\nspec: {podSelector: {}}\n".to_owned(),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: b}\nspec: {podSelector: {}}\n".to_owned(),
            endpoint_doc("web", "a", "n1", "eth1", "10.0.0.1"),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n".to_owned(),
        ]
        .join("---\n"),
    );
    assert_eq!(
        model
            .policies
            .values()
            .map(NetworkPolicy::id)
            .collect::<Vec<_>>(),
        ["a/web", "b/web"]
    );
    assert_eq!(the_endpoint(&model).id(), "a/web");
    assert_eq!(
        model.namespaces.keys().collect::<Vec<_>>(),
        ["a", "b", "web"]
    );
}

// ---------------------------------------------------------------------------
// YAML syntax

#[test]
fn yaml_syntax_errors() {
    assert_failing(&[
        (
            np!("  podSelector: {}\n  policyTypes: [Ingress\n"),
            &["f.yaml:6:16: error: invalid YAML: unclosed bracket '['"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n",
            &["f.yaml:5:3: error: invalid YAML: duplicate mapping key: name"],
        ),
        (
            np!("  podSelector:\n    matchLabels: {app: web, app: db}\n"),
            &["f.yaml:6:29: error: invalid YAML: duplicate mapping key: app"],
        ),
        // A syntax error anywhere refuses the whole file, earlier documents too.
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b\n",
            &["f.yaml:7:11: error: invalid YAML: unclosed bracket '{'"],
        ),
        // The position of a tab is reported one column after it, as the parser does.
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: a\n",
            &[
                "f.yaml:4:2: error: invalid YAML: tabs disallowed within this context (block indentation)",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n labels: {}\n",
            &[
                "f.yaml:5:2: error: invalid YAML: while parsing a block mapping, did not find expected key",
            ],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}: b\n",
            &["f.yaml:3:20: error: invalid YAML: mapping values are not allowed in this context"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: 'a}\n",
            &["f.yaml:3:18: error: invalid YAML: unclosed quote"],
        ),
        (
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: *common}\n",
            &["f.yaml:3:29: error: invalid YAML: alias references unknown anchor"],
        ),
    ]);
}

#[test]
fn a_failing_document_does_not_hide_the_others() {
    let text = concat!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad}\n",
        "---\n",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: good}\n",
        "---\n",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: good}\n",
        "spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n",
    );
    let (model, problems) = load(text);
    assert_eq!(
        problems,
        [
            r#"f.yaml:3:18: error: metadata.name: "Bad" is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"#,
            "f.yaml:12:51: error: spec.ingress[0].ports[0].port: port 0 is out of range 1-65535",
        ]
    );
    // Only the valid object reaches the model; the failing policy is not half-applied.
    assert_eq!(model.namespaces.keys().collect::<Vec<_>>(), ["good"]);
    assert!(model.policies.is_empty());
}

// ---------------------------------------------------------------------------
// A directory: every problem of every file at once

#[test]
fn directory_reports_every_file_at_once() {
    use crate::manifest::{read_file, scan_dir};
    use std::fs;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("policies")).unwrap();
    let files = [
        (
            "00-namespaces.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        ),
        (
            "endpoints.json",
            "{\"apiVersion\": \"netpold.io/v1\", \"kind\": \"WorkloadEndpoint\",\n \"metadata\": {\"name\": \"w\", \"namespace\": \"shop\"},\n \"spec\": {\"interfaceName\": \"eth0\", \"ips\": [\"10.0.0.300\"]}}\n",
        ),
        (
            "policies/a.yaml",
            np!("  podSelector: {}\n  ingress:\n  - ports:\n    - {protocol: tcp}\n"),
        ),
        (
            "policies/b.yml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\nkind: Pod\n",
        ),
        ("policies/broken.yaml", "a: [1\n"),
        // Debris and other files are never read.
        ("policies/a.yaml~", "garbage: [\n"),
        ("notes.txt", "garbage: [\n"),
        (".hidden.yaml", "garbage: [\n"),
    ];
    for (name, text) in files {
        fs::write(root.join(name), text).unwrap();
    }
    let (sources, problems) = scan_dir(root).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    for source in &sources {
        objects.extend(read_file(source, &mut problems));
    }
    let (model, more) = Model::build(&objects);
    problems.extend(more);
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "policies/broken.yaml:1:4: error: invalid YAML: unclosed bracket '['",
            r#"endpoints.json:3:44: error: spec.ips[0]: "10.0.0.300" is not an IP address (a /32 or /128 suffix is allowed)"#,
            r#"policies/a.yaml:8:18: error: spec.ingress[0].ports[0].protocol: unsupported protocol "tcp": one of TCP, UDP, SCTP (protocols are upper-case: TCP)"#,
            "policies/b.yml:1:1: error: duplicate Namespace shop: also defined at 00-namespaces.yaml:1:1",
            "policies/b.yml:5:1: error: apiVersion: required",
        ]
    );
    assert_eq!(model.namespaces.keys().collect::<Vec<_>>(), ["shop"]);
    assert!(model.endpoints.is_empty() && model.policies.is_empty());
}

#[test]
fn duplicate_of_an_invalid_object_is_still_reported() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}, ingres: []}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}}
";
    assert_eq!(
        load(text).1,
        [
            "f.yaml:4:25: error: spec.ingres: unknown field (did you mean ingress?)",
            "f.yaml:6:1: error: duplicate NetworkPolicy a/p: also defined at f.yaml:1:1",
        ]
    );
}

#[test]
fn addresses_and_interfaces_a_workload_cannot_own() {
    let ep = |iface: &str, ips: &str| {
        format!(
            "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: w}}\nspec: {{interfaceName: \"{iface}\", ips: [{ips}]}}\n"
        )
    };
    let cases: &[(String, &str)] = &[
        (
            ep("lo", "10.0.0.1"),
            "f.yaml:4:23: error: spec.interfaceName: interface name \"lo\" is the host's loopback, not a workload's interface",
        ),
        (
            ep("veth*", "10.0.0.1"),
            "f.yaml:4:23: error: spec.interfaceName: interface name \"veth*\" must not contain '*' (wildcards are not interface names)",
        ),
        (
            ep("veth0", "\"010.0.0.1\""),
            "f.yaml:4:38: error: spec.ips[0]: \"010.0.0.1\" has a zero-padded octet, which some tools read as octal; write it without leading zeros",
        ),
        (
            ep("veth0", "0.0.0.0"),
            "f.yaml:4:38: error: spec.ips[0]: 0.0.0.0 is the unspecified address, not a workload's address",
        ),
        (
            ep("veth0", "224.0.0.1"),
            "f.yaml:4:38: error: spec.ips[0]: 224.0.0.1 is a multicast address, not a workload's address",
        ),
        (
            ep("veth0", "\"::ffff:10.0.0.1\""),
            "f.yaml:4:38: error: spec.ips[0]: ::ffff:10.0.0.1 is an IPv4-mapped IPv6 address; write the IPv4 address, not a workload's address",
        ),
        (
            ep("veth0", "\"fe80::1\""),
            "f.yaml:4:38: error: spec.ips[0]: fe80::1 is link-local (fe80::/10), not a workload's address",
        ),
        (
            ep("veth0", "169.254.1.1"),
            "f.yaml:4:38: error: spec.ips[0]: 169.254.1.1 is link-local (169.254.0.0/16), not a workload's address",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(load(text).1, [*expected], "{text}");
    }
    let block = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 010.0.0.0/8}}]}]}\n";
    assert_eq!(
        load(block).1,
        [
            "f.yaml:4:60: error: spec.ingress[0].from[0].ipBlock.cidr: \"010.0.0.0/8\" has a zero-padded octet, which some tools read as octal; write it without leading zeros"
        ]
    );
}

#[test]
fn a_namespace_that_is_not_a_string_is_no_identity() {
    let text = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: 123}
spec: {podSelector: {}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p}
spec: {podSelector: {}}
";
    assert_eq!(
        load(text).1,
        ["f.yaml:3:32: error: metadata.namespace: expected a string, got a number; quote it"]
    );
}

// ---------------------------------------------------------------------------
// netpold.io/v1 NetworkPolicy and GlobalNetworkPolicy

/// A netpold.io/v1 NetworkPolicy `default/t` whose `spec:` body starts on line 5.
macro_rules! tnp {
    ($body:expr) => {
        concat!(
            "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {name: t}\nspec:\n",
            $body
        )
    };
}

/// A GlobalNetworkPolicy `g` whose `spec:` body starts on line 5.
macro_rules! gnp {
    ($body:expr) => {
        concat!(
            "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n",
            $body
        )
    };
}

/// The one object of a one-document text, converted on its own (it must be valid).
fn the_tiered(text: &str) -> tiered::TieredPolicy {
    let mut problems = Vec::new();
    let objects = parse_bytes("f.yaml", text.as_bytes(), &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let converted = Converted::new(&objects[0]);
    assert!(
        converted.problems.is_empty(),
        "unexpected errors for\n{text}\n{:#?}",
        converted
            .problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    match converted.object {
        Some(Object::Tiered(p)) => p,
        other => panic!("not a tiered policy: {other:?}"),
    }
}

#[test]
fn tiered_policies_convert() {
    use crate::model::tiered::*;
    use crate::selector::expr::Expr;
    let p = the_tiered(tnp!(concat!(
        "  order: 10\n",
        "  selector: app == 'web'\n",
        "  ingress:\n",
        "  - action: Deny\n",
        "    protocol: TCP\n",
        "    source: {selector: \"role == 'bad'\", namespaceSelector: has(team), nets: [10.0.0.0/8], notNets: [10.1.0.0/16]}\n",
        "    destination: {ports: [80, \"8000:8080\", 80]}\n",
        "  - action: Log\n",
        "  - action: Pass\n",
        "    protocol: 17\n",
        "  - action: Allow\n",
        "    ipVersion: 6\n",
    )));
    assert!(!p.global);
    assert_eq!((p.namespace.as_str(), p.name.as_str()), ("default", "t"));
    assert_eq!(p.order.map(Order::value), Some(10.0));
    assert_eq!(p.selector, Expr::parse("app == 'web'").unwrap());
    assert!(p.egress.is_none());
    let rules = p.ingress.as_ref().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(rules[0].action, Action::Deny);
    assert_eq!(rules[0].protocol, Some(RuleProtocol::Ported(Protocol::Tcp)));
    assert_eq!(
        rules[0].source.selector,
        Some(Expr::parse("role == 'bad'").unwrap())
    );
    assert_eq!(
        rules[0].source.namespace_selector,
        Some(Expr::Has("team".into()))
    );
    assert_eq!(rules[0].source.nets, vec![net("10.0.0.0/8")]);
    assert_eq!(rules[0].source.not_nets, vec![net("10.1.0.0/16")]);
    assert_eq!(
        rules[0].destination.ports,
        vec![PortItem::Range(80, 80), PortItem::Range(8000, 8080)]
    );
    assert_eq!(rules[1].action, Action::Log);
    assert_eq!(rules[1].source, tiered::Entity::default());
    assert_eq!(rules[2].action, Action::Pass);
    assert_eq!(rules[2].protocol, Some(RuleProtocol::Ported(Protocol::Udp)));
    assert_eq!(rules[3].ip_version, Some(IpVersion::V6));

    let icmp = the_tiered(tnp!(concat!(
        "  egress:\n",
        "  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}\n",
        "  - {action: Deny, protocol: ICMPv6, notICMP: {type: 135}}\n",
        "  - {action: Allow, protocol: 47}\n",
        "  - {action: Allow, protocol: TCP, destination: {ports: [http, 80], notPorts: [\"22:23\"]}}\n",
        "  - {action: Allow, protocol: UDP, source: {ports: [53, dns], notPorts: [ssh, 54]}, destination: {notPorts: [http]}}\n",
    )));
    let rules = icmp.egress.as_ref().unwrap();
    assert_eq!(
        (rules[0].protocol, rules[0].icmp),
        (
            Some(RuleProtocol::Icmp),
            Some(IcmpMatch {
                icmp_type: 8,
                code: Some(0)
            })
        )
    );
    assert_eq!(
        (rules[1].protocol, rules[1].not_icmp),
        (
            Some(RuleProtocol::Icmpv6),
            Some(IcmpMatch {
                icmp_type: 135,
                code: None
            })
        )
    );
    assert_eq!(rules[2].protocol, Some(RuleProtocol::Number(47)));
    assert_eq!(
        rules[3].destination.ports,
        vec![PortItem::Range(80, 80), PortItem::Named("http".into())]
    );
    assert_eq!(
        rules[3].destination.not_ports,
        vec![PortItem::Range(22, 23)]
    );
    assert_eq!(
        (&rules[4].source.ports, &rules[4].source.not_ports),
        (
            &vec![PortItem::Range(53, 53), PortItem::Named("dns".into())],
            &vec![PortItem::Range(54, 54), PortItem::Named("ssh".into())]
        )
    );
    assert_eq!(
        rules[4].destination.not_ports,
        vec![PortItem::Named("http".into())]
    );

    let g = the_tiered(gnp!(concat!(
        "  order: 0.5\n",
        "  namespaceSelector: team == 'a'\n",
        "  egress: [{action: Allow}]\n",
    )));
    assert!(g.global);
    assert_eq!(g.namespace, "");
    assert_eq!(g.id(), "g");
    assert_eq!(g.selector, Expr::All);
    assert_eq!(
        g.namespace_selector,
        Some(Expr::parse("team == 'a'").unwrap())
    );
    assert!(g.ingress.is_none(), "only egress rules: Egress alone");
    assert_eq!(g.egress.as_ref().unwrap().len(), 1);
}

#[test]
fn orders_are_finite_and_total() {
    use crate::model::tiered::Order;
    assert!(Order::new(f64::NAN).is_none());
    assert!(Order::new(f64::INFINITY).is_none());
    assert_eq!(Order::new(-0.0), Order::new(0.0));
    assert!(Order::new(-1.5) < Order::new(0.0));
    assert!(Order::new(999.9) < Some(Order::KUBERNETES));
}

#[test]
fn tiered_types_default_as_calico_says() {
    let types = |body: &str| {
        let text = format!(
            "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {{name: t}}\nspec:\n{body}"
        );
        let p = the_tiered(&text);
        (p.ingress.is_some(), p.egress.is_some(), p.order.is_none())
    };
    assert_eq!(types("  selector: all()\n"), (true, false, true));
    assert_eq!(types("  ingress: [{action: Deny}]\n"), (true, false, true));
    assert_eq!(types("  egress: [{action: Deny}]\n"), (false, true, true));
    assert_eq!(
        types("  ingress: [{action: Deny}]\n  egress: [{action: Deny}]\n"),
        (true, true, true)
    );
    assert_eq!(types("  egress: []\n"), (true, false, true));
    assert_eq!(types("  types: [Egress]\n"), (false, true, true));
    assert_eq!(
        types("  types: [Ingress, Egress]\n  order: -3\n"),
        (true, true, false)
    );
}

#[test]
fn tiered_and_kubernetes_policies_may_share_a_name() {
    let (_, problems) = load(concat!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\nspec: {}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: default}\nspec: {}\n",
    ));
    assert_eq!(
        problems,
        [
            "f.yaml:16:1: error: duplicate netpold.io/v1 NetworkPolicy default/p: also defined at f.yaml:6:1"
        ]
    );
}

#[test]
fn tiered_policies_failing() {
    assert_failing(&[
        (
            tnp!("  selector: app = 'web'\n"),
            &[
                "f.yaml:5:17: error: spec.selector: selector at character 5: '=' is not an operator: write '=='",
            ],
        ),
        (
            tnp!("  selector: \"app == 'web' &&\"\n"),
            &[
                "f.yaml:5:29: error: spec.selector: selector at character 16: expected a label key, has(…), all(), '!' or '(', found the end of the selector",
            ],
        ),
        (
            tnp!("  namespaceSelector: all()\n"),
            &["f.yaml:5:3: error: spec.namespaceSelector: unknown field"],
        ),
        (
            gnp!("  order: high\n  doNotTrack: true\n"),
            &[
                "f.yaml:6:3: error: spec.doNotTrack: unknown field",
                "f.yaml:5:10: error: spec.order: expected a number, got a string",
            ],
        ),
        (
            tnp!("  types: []\n"),
            &[
                "f.yaml:5:10: error: spec.types: list Ingress, Egress or both, or leave types out for the default",
            ],
        ),
        (
            tnp!("  types: [Ingress, ingress]\n  egress: [{action: Allow}]\n"),
            &[
                "f.yaml:5:20: error: spec.types[1]: unknown type \"ingress\": Ingress or Egress",
                "f.yaml:6:11: error: spec.egress: has rules but spec.types does not list Egress",
            ],
        ),
        (
            tnp!("  ingress:\n  - {}\n  - action: allow\n  - action: Drop\n"),
            &[
                "f.yaml:6:5: error: spec.ingress[0].action: required: one of Allow, Deny, Log, Pass",
                "f.yaml:7:13: error: spec.ingress[1].action: unknown action \"allow\": one of Allow, Deny, Log, Pass (actions are capitalised: Allow)",
                "f.yaml:8:13: error: spec.ingress[2].action: unknown action \"Drop\": one of Allow, Deny, Log, Pass",
            ],
        ),
        (
            tnp!(concat!(
                "  ingress:\n",
                "  - {action: Allow, protocol: tcp}\n",
                "  - {action: Allow, protocol: 256}\n",
                "  - {action: Allow, protocol: ICMP, ipVersion: 6}\n",
                "  - {action: Allow, ipVersion: 5}\n",
            )),
            &[
                "f.yaml:6:31: error: spec.ingress[0].protocol: unsupported protocol \"tcp\": one of TCP, UDP, SCTP, ICMP, ICMPv6 or a number 1-255 (write TCP)",
                "f.yaml:7:31: error: spec.ingress[1].protocol: protocol number 256 is out of range 1-255",
                "f.yaml:8:48: error: spec.ingress[2].ipVersion: protocol ICMP is not carried in IPv6",
                "f.yaml:9:32: error: spec.ingress[3].ipVersion: must be 4 or 6",
            ],
        ),
        (
            tnp!(concat!(
                "  ingress:\n",
                "  - {action: Allow, destination: {ports: [80]}}\n",
                "  - {action: Allow, protocol: ICMP, source: {notPorts: [80]}}\n",
                "  - {action: Allow, protocol: TCP, icmp: {type: 8}}\n",
                "  - {action: Allow, protocol: ICMP, icmp: {code: 1}, notICMP: {type: 255}}\n",
            )),
            &[
                "f.yaml:6:42: error: spec.ingress[0].destination.ports: needs protocol TCP, UDP or SCTP",
                "f.yaml:7:56: error: spec.ingress[1].source.notPorts: needs protocol TCP, UDP or SCTP",
                "f.yaml:8:42: error: spec.ingress[2].icmp: needs protocol ICMP or ICMPv6",
                "f.yaml:9:43: error: spec.ingress[3].icmp.type: required (a code alone matches nothing useful)",
                "f.yaml:9:70: error: spec.ingress[3].notICMP.type: must be an integer 0-254",
            ],
        ),
        (
            tnp!(concat!(
                "  egress:\n",
                "  - action: Allow\n",
                "    protocol: UDP\n",
                "    ipVersion: 4\n",
                "    destination:\n",
                "      nets: [10.0.0.1, fd00::/8, 10.0.0.0/8]\n",
                "      ports: [\"90:80\", \"53\", \"1:x\", 0, DNS]\n",
                "      selector: has(\n",
                "      notSelector: x == 'y'\n",
            )),
            &[
                "f.yaml:13:7: error: spec.egress[0].destination.notSelector: unknown field",
                "f.yaml:12:21: error: spec.egress[0].destination.selector: selector at character 5: expected a label key, found the end of the selector",
                "f.yaml:10:14: error: spec.egress[0].destination.nets[0]: \"10.0.0.1\" is not a valid CIDR (a CIDR needs a prefix length, e.g. /32)",
                "f.yaml:10:24: error: spec.egress[0].destination.nets[1]: fd00::/8 is not an IPv4 network, as the rule's ipVersion or protocol says",
                "f.yaml:11:15: error: spec.egress[0].destination.ports[0]: range \"90:80\" ends below its start",
                "f.yaml:11:24: error: spec.egress[0].destination.ports[1]: \"53\" is a string; write 53 without quotes for a port number",
                "f.yaml:11:30: error: spec.egress[0].destination.ports[2]: \"1:x\" is not a port range: write first:last, each 1-65535",
                "f.yaml:11:37: error: spec.egress[0].destination.ports[3]: port 0 is out of range 1-65535",
                "f.yaml:11:40: error: spec.egress[0].destination.ports[4]: port name \"DNS\" may contain only lower-case letters, digits and '-'",
            ],
        ),
        (
            tnp!(concat!(
                "  ingress:\n",
                "  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}}\n",
                "  - {action: Allow, protocol: ICMPv6, notICMP: {type: 128, code: 0}}\n",
                "  - {action: Allow, protocol: TCP, destination: {ports: [http], notPorts: [ssh]}}\n",
                "  - {action: Allow, protocol: TCP, destination: {notPorts: [22]}}\n",
                "  - {action: Allow, protocol: TCP, source: {ports: [1000, \"Ssh\"], notPorts: [0]}}\n",
            )),
            &[
                "f.yaml:10:59: error: spec.ingress[4].source.ports[1]: port name \"Ssh\" may contain only lower-case letters, digits and '-'",
                "f.yaml:10:78: error: spec.ingress[4].source.notPorts[0]: port 0 is out of range 1-65535",
            ],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g, namespace: x}\nspec: {}\n",
            &[
                "f.yaml:3:32: error: metadata.namespace: a GlobalNetworkPolicy is cluster-scoped and has no namespace",
            ],
        ),
        (
            "apiVersion: v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {}\n",
            &[
                r#"f.yaml:1:13: error: apiVersion: GlobalNetworkPolicy is served as apiVersion netpold.io/v1, not "v1""#,
            ],
        ),
    ]);
}

#[test]
fn host_endpoints_load_cluster_scoped_with_a_name_or_star() {
    let model = valid(concat!(
        "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: uplink, labels: {role: edge}}\n",
        "spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.1, \"2001:db8::1/128\"]}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: all}\nspec: {interfaceName: \"*\"}\n",
        "---\n",
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\n",
        "spec: {selector: role == 'edge', applyOnForward: true, ingress: [{action: Allow}]}\n",
    ));
    let h = &model.hosts["uplink"];
    assert_eq!(h.interface, HostInterface::Named("eth0".into()));
    assert_eq!(h.node.as_deref(), Some("n1"));
    assert_eq!(h.expected_ips.len(), 2);
    assert_eq!(h.id(), "host:uplink");
    assert_eq!(model.hosts["all"].interface, HostInterface::All);
    assert!(
        model.namespaces.is_empty(),
        "a host endpoint names no namespace"
    );
    let g = model.tiered.values().next().unwrap();
    assert!(g.apply_on_forward);
    assert!(g.selects_host(h));
    assert!(!g.selects_host(&model.hosts["all"]));
}

#[test]
fn host_endpoints_failing() {
    let he = "apiVersion: netpold.io/v1\nkind: HostEndpoint\n";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("{he}metadata: {{name: h, namespace: x}}\nspec: {{interfaceName: eth0}}\n"),
            vec!["f.yaml:3:32: error: metadata.namespace: a HostEndpoint is cluster-scoped and has no namespace"],
        ),
        (
            format!("{he}metadata: {{name: h}}\nspec: {{expectedIPs: [10.0.0.1]}}\n"),
            vec![r#"f.yaml:4:7: error: spec.interfaceName: required: an interface name, or "*" for every host interface (netpold does not find host endpoints by expectedIPs alone)"#],
        ),
        (
            format!("{he}metadata: {{name: h}}\nspec: {{interfaceName: lo}}\n"),
            vec!["f.yaml:4:23: error: spec.interfaceName: lo cannot be a host endpoint: the host's traffic with itself is never filtered"],
        ),
        (
            format!("{he}metadata: {{name: h}}\nspec: {{interfaceName: eth0, expectedIPs: [10.0.0.1, 10.0.0.1], profiles: [x]}}\n"),
            vec![
                "f.yaml:4:64: error: spec.profiles: unknown field",
                "f.yaml:4:53: error: spec.expectedIPs[1]: 10.0.0.1 is already listed as spec.expectedIPs[0]",
            ],
        ),
        (
            concat!(
                "apiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {name: w}\nspec: {interfaceName: eth0, ips: [10.0.0.1]}\n---\n",
                "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: h}\nspec: {interfaceName: eth0, expectedIPs: [10.0.0.1]}\n---\n",
                "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: s1}\nspec: {interfaceName: \"*\"}\n---\n",
                "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: s2}\nspec: {interfaceName: \"*\", node: other}\n---\n",
                "apiVersion: netpold.io/v1\nkind: HostEndpoint\nmetadata: {name: s3}\nspec: {interfaceName: \"*\"}\n",
            ).to_owned(),
            vec![
                "f.yaml:9:23: error: spec.interfaceName: eth0 is already the interface of WorkloadEndpoint default/w (f.yaml:1:1) on the same node",
                "f.yaml:9:43: error: spec.expectedIPs[0]: 10.0.0.1 is already an address of WorkloadEndpoint default/w (f.yaml:1:1)",
                // s1 names no node: it is on every node, s2's included.
                "f.yaml:19:23: error: spec.interfaceName: * is already the interface of HostEndpoint s1 (f.yaml:11:1) on the same node",
                "f.yaml:24:23: error: spec.interfaceName: * is already the interface of HostEndpoint s1 (f.yaml:11:1) on the same node",
            ],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {applyOnForward: 1}\n".to_owned(),
            vec!["f.yaml:4:24: error: spec.applyOnForward: expected true or false, got a number"],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {applyOnForward: true}\n".to_owned(),
            vec!["f.yaml:4:8: error: spec.applyOnForward: unknown field"],
        ),
    ];
    let cases: Vec<(&str, &[&str])> = cases
        .iter()
        .map(|(t, e)| (t.as_str(), e.as_slice()))
        .collect();
    assert_failing(&cases);
}

const ANP_HEAD: &str = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a}\n";

#[test]
fn admin_network_policies_are_lowered_and_checked_strictly() {
    let model = valid(&format!(
        "{ANP_HEAD}spec:
  priority: 3
  subject: {{namespaces: {{matchLabels: {{team: x}}}}}}
  ingress:
  - name: r0
    action: Deny
    from: [{{namespaces: {{}}}}, {{pods: {{namespaceSelector: {{}}, podSelector: {{matchExpressions: [{{key: app, operator: Exists}}]}}}}}}]
    ports: [{{portNumber: {{port: 80}}}}, {{namedPort: http}}]
  egress:
  - {{name: out, action: Pass, to: [{{networks: [10.0.0.0/8]}}]}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {{name: default}}
spec:
  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{}}}}}}
  egress: [{{action: Deny, to: [{{namespaces: {{}}}}]}}]
"
    ));
    let anp = &model.tiered[&(String::new(), "AdminNetworkPolicy:a".to_owned())];
    let admin = anp.admin.as_ref().unwrap();
    assert_eq!(admin.priority, 3);
    // 2 peers x one rule per protocol (TCP: 80 and http; UDP and SCTP: http).
    let ingress = anp.ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 6);
    assert_eq!(ingress[0].destination.ports.len(), 2);
    assert!(
        admin
            .ingress_rules
            .iter()
            .all(|(i, n)| *i == 0 && n == "r0")
    );
    assert_eq!(anp.egress.as_ref().unwrap()[0].destination.nets.len(), 1);
    assert_eq!(
        anp.namespace_selector.as_ref().unwrap().to_string(),
        "team == 'x'"
    );
    let banp = &model.tiered[&(
        String::new(),
        "BaselineAdminNetworkPolicy:default".to_owned(),
    )];
    assert!(banp.ingress.is_none() && banp.egress.is_some());

    let spec = |body: &str| format!("{ANP_HEAD}spec:\n{body}");
    let cases: Vec<(String, Vec<&str>)> = vec![
        (spec("  subject: {namespaces: {}}\n"), vec!["f.yaml:5:3: error: spec.priority: required: 0-1000, lower first"]),
        (spec("  priority: 1001\n  subject: {namespaces: {}}\n"), vec!["f.yaml:5:13: error: spec.priority: 1001 is out of range 0-1000"]),
        (spec("  priority: 1\n  subject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}\n"), vec!["f.yaml:6:35: error: spec.subject: exactly one of namespaces, pods"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Allow, to: [{domainNames: [a.example]}]}]\n"), vec!["f.yaml:7:47: error: spec.egress[0].to[0].domainNames: refused: an Extended feature of AdminNetworkPolicy that netpold does not support (netpold has no view of DNS answers to match names with)"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Allow, to: [{nodes: {}}]}]\n"), vec!["f.yaml:7:41: error: spec.egress[0].to[0].nodes: refused: an Extended feature of AdminNetworkPolicy that netpold does not support (netpold's Node objects carry labels, not the node addresses it would match)"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: allow, from: [{namespaces: {}}]}]\n"), vec!["f.yaml:7:22: error: spec.ingress[0].action: unknown action \"allow\": Allow, Deny or Pass"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow, from: [{networks: [10.0.0.0/8]}]}]\n"), vec!["f.yaml:7:37: error: spec.ingress[0].from[0].networks: unknown field", "f.yaml:7:36: error: spec.ingress[0].from[0]: a peer needs one of namespaces, pods"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  ingress: [{action: Allow}]\n"), vec!["f.yaml:7:13: error: spec.ingress[0].from: required: at least one peer"]),
        (spec("  priority: 1\n  subject: {namespaces: {}}\n  egress: [{action: Allow, to: [{networks: [10.0.0.1/8]}], ports: [{portRange: {start: 90, end: 80}}]}]\n"), vec!["f.yaml:7:45: error: spec.egress[0].to[0].networks[0]: 10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?", "f.yaml:7:97: error: spec.egress[0].ports[0].portRange.end: end 80 must be above start 90"]),
        ("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: other}\nspec: {subject: {namespaces: {}}, ingress: [{action: Pass, from: [{namespaces: {}}]}]}\n".to_owned(), vec!["f.yaml:4:54: error: spec.ingress[0].action: unknown action \"Pass\": Allow or Deny", "f.yaml:3:18: error: metadata.name: \"other\": the BaselineAdminNetworkPolicy is a singleton named default"]),
        ("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: a, namespace: x}\nspec: {priority: 1, subject: {namespaces: {}}}\n".to_owned(), vec!["f.yaml:3:32: error: metadata.namespace: an AdminNetworkPolicy is cluster-scoped and has no namespace"]),
    ];
    let mut mismatches = Vec::new();
    for (text, expected) in &cases {
        let (_, got) = load(text);
        if got != *expected {
            mismatches.push(format!(
                "--- input ---\n{text}--- expected ---\n{expected:#?}\n--- got ---\n{got:#?}\n"
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

const FLEET: &str = "
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: east}}
spec: {podCIDR: 10.0.0.0/24}
status: {addresses: [{type: InternalIP, address: 192.0.2.1}]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: vweb, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n2, interfaceName: vdb, ips: [10.0.0.2]}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: east-only}
spec:
  nodeSelector: zone == 'east'
  ingress: [{action: Deny}]
---
apiVersion: netpold.io/v1
kind: NetworkPolicy
metadata: {name: on-n2, namespace: a}
spec:
  nodeSelector: kubernetes.io/hostname == 'n2'
  egress: [{action: Deny}]
";

#[test]
fn nodes_carry_their_hostname_label_and_undeclared_nodes_have_only_that() {
    let m = valid(FLEET);
    assert_eq!(
        *m.node_labels("n1"),
        labels(&[("zone", "east"), ("kubernetes.io/hostname", "n1")])
    );
    assert_eq!(
        *m.node_labels("n2"),
        labels(&[("kubernetes.io/hostname", "n2")])
    );
    // A hostname label the file sets is kept.
    let m = valid(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {kubernetes.io/hostname: edge-1}}\n",
    );
    assert_eq!(
        *m.node_labels("n1"),
        labels(&[("kubernetes.io/hostname", "edge-1")])
    );
}

#[test]
fn node_selector_scopes_policies_to_the_nodes_it_selects() {
    let m = valid(FLEET);
    let on = |node: &str| -> Vec<String> {
        m.scoped(node)
            .tiered
            .values()
            .map(TieredPolicy::id)
            .collect()
    };
    assert_eq!(on("n1"), ["east-only"]);
    assert_eq!(on("n2"), ["a/on-n2"]);
    assert!(on("n3").is_empty());
    // Without nodeSelectors the model is not copied.
    let plain = valid(
        "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {}\n",
    );
    assert!(matches!(plain.scoped("n1"), Cow::Borrowed(_)));
    // The compiled ruleset of each node holds its own policies' chains only.
    let chains = |node: &str| -> String {
        let rs = crate::compile::compile(&m, node, "t");
        crate::render::render(&rs)
    };
    assert!(chains("n1").contains("east-only") && !chains("n1").contains("on-n2"));
    assert!(chains("n2").contains("on-n2") && !chains("n2").contains("east-only"));
    // Relabelling a node is a change (the daemon compiles again); rewriting it alike is not.
    let relabelled = valid(&FLEET.replace("zone: east", "zone: west"));
    let changes = Changes::between(&m, &relabelled);
    assert_eq!(changes.nodes.keys().collect::<Vec<_>>(), ["n1"]);
    assert!(Changes::between(&m, &valid(&format!("# moved\n{FLEET}"))).is_empty());
}

#[test]
fn node_and_node_selector_failing() {
    assert_failing(&[
        (
            "apiVersion: netpold.io/v1\nkind: Node\nmetadata: {name: n1}\n",
            &[
                r#"f.yaml:1:13: error: apiVersion: Node is served as apiVersion v1, not "netpold.io/v1""#,
            ],
        ),
        (
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1, namespace: a}\n",
            &[
                "f.yaml:3:33: error: metadata.namespace: a Node is cluster-scoped and has no namespace",
            ],
        ),
        (
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
            &["f.yaml:5:1: error: duplicate Node n1: also defined at f.yaml:1:1"],
        ),
        (
            "apiVersion: netpold.io/v1\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec: {nodeSelector: \"zone == \"}\n",
            &[
                "f.yaml:4:31: error: spec.nodeSelector: selector at character 9: expected a quoted value, found the end of the selector",
            ],
        ),
    ]);
}
