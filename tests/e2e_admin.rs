//! AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1),
//! end to end: workload namespaces behind a host namespace, the real `netpold` programs
//! the host, and real TCP/UDP packets (IPv4 and IPv6) check priorities, each action and
//! where the baseline applies. Root only; fails instead of skipping under `CI=true`.

mod common;
use common::topology::*;

fn three() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/client", "app: client", &["10.0.0.2", "fd00::2"]),
        wl("b/other", "app: client", &["10.0.1.3", "fd00::1:3"]),
    ]
}

const NAMESPACE_B: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
";

#[test]
fn admin_policies_decide_by_priority_before_the_network_policies() {
    let policy = format!(
        "{NAMESPACE_B}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-from-clients, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: pass-8080}}
spec:
  priority: 5
  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: web}}}}}}}}
  ingress:
  - name: to-the-network-policies
    action: Pass
    from: [{{namespaces: {{}}}}]
    ports: [{{portNumber: {{protocol: TCP, port: 8080}}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: team-b-https}}
spec:
  priority: 10
  subject: {{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: web}}}}}}}}
  ingress:
  - name: allow-b
    action: Allow
    from: [{{namespaces: {{matchLabels: {{team: b}}}}}}]
    ports: [{{portNumber: {{protocol: TCP, port: 443}}}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {{name: deny-clients}}
spec:
  priority: 20
  subject: {{namespaces: {{}}}}
  ingress:
  - name: no-clients-80-443-8080
    action: Deny
    from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: client}}}}}}}}]
    ports:
    - portRange: {{protocol: TCP, start: 80, end: 81}}
    - portNumber: {{protocol: TCP, port: 443}}
    - portNumber: {{protocol: TCP, port: 8080}}
  egress:
  - name: no-udp-5001-to-web
    action: Deny
    to: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{app: web}}}}}}}}]
    ports: [{{portNumber: {{protocol: UDP, port: 5001}}}}]
"
    );
    let Some(t) = setup("anpord", three(), &[], &policy) else {
        return;
    };
    t.check(&[
        // The ANP Deny beats the NetworkPolicy's Allow.
        ("client", "web", "tcp", 80, Both, DROP),
        ("client", "web", "tcp", 443, Both, DROP),
        // Not the ANPs' ports: the NetworkPolicy allows clients of namespace a.
        ("client", "web", "tcp", 5000, Both, PASS),
        ("client", "web", "udp", 53, Both, PASS),
        // Priority 10 allows team b on 443 before the Deny at 20, and overrides the
        // NetworkPolicy's isolation (b/other is no pod of namespace a).
        ("other", "web", "tcp", 443, Both, PASS),
        ("other", "web", "tcp", 80, Both, DROP),
        ("other", "web", "tcp", 5000, Both, DROP),
        // Priority 5 passes 8080, skipping the Deny at 20: the NetworkPolicy decides.
        ("client", "web", "tcp", 8080, Both, PASS),
        ("other", "web", "tcp", 8080, Both, DROP),
        ("outside", "web", "tcp", 8080, Both, DROP),
        // Egress: the subject's traffic to web on UDP 5001 is denied at the sender.
        ("client", "web", "udp", 5001, Both, DROP),
        ("client", "web", "udp", 5002, Both, PASS),
        // web's own egress: deny-clients selects it too, but no rule matches.
        ("web", "client", "tcp", 80, Both, PASS),
    ]);
}

#[test]
fn the_baseline_applies_only_where_no_network_policy_isolates() {
    let policy = format!(
        "{NAMESPACE_B}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: clients-open, namespace: a}}
spec:
  podSelector: {{matchLabels: {{app: client}}}}
  ingress: [{{}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {{name: default}}
spec:
  subject: {{namespaces: {{}}}}
  ingress:
  - {{name: allow-b, action: Allow, from: [{{namespaces: {{matchLabels: {{team: b}}}}}}]}}
  - {{name: deny-pods, action: Deny, from: [{{namespaces: {{}}}}]}}
"
    );
    let Some(t) = setup("banp", three(), &[], &policy) else {
        return;
    };
    t.check(&[
        // web: no NetworkPolicy selects it, so the baseline decides.
        ("client", "web", "tcp", 80, Both, DROP),
        ("client", "web", "udp", 53, Both, DROP),
        ("other", "web", "tcp", 80, Both, PASS),
        // An outside address is none of the baseline's peers: allowed.
        ("outside", "web", "tcp", 80, Both, PASS),
        // client: a NetworkPolicy isolates it (and allows everything): the baseline's
        // Deny is not consulted.
        ("web", "client", "tcp", 80, Both, PASS),
        ("web", "other", "tcp", 80, Both, DROP),
    ]);
}
