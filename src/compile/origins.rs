//! Where each chain of a compiled ruleset comes from, for `netpold explain` and
//! `netpold matrix`: they run packets through the rules the kernel gets and name
//! the endpoints, policies and policy rules those rules stand for. Recorded only by
//! `explainable`, so neither the daemon's compilation nor the incremental compiler
//! pays for it.

use std::collections::BTreeMap;

use crate::ir::Ruleset;
use crate::model::{Direction, Model};

/// `(namespace, name)` of an endpoint or a policy.
pub type ObjectKey = (String, String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainOrigin {
    /// `ep_<h>_in` / `ep_<h>_out`: one endpoint's policy for one direction.
    Endpoint {
        endpoint: ObjectKey,
        direction: Direction,
        /// The Kubernetes NetworkPolicies that select it and govern this direction,
        /// in jump order.
        policies: Vec<ObjectKey>,
        /// Every policy it jumps to, netpold.io ones (by `TieredPolicy::label`) and
        /// Kubernetes ones (`ns/name`), in jump order.
        order: Vec<String>,
        /// Index of the chain's last rule: the drop of an isolated endpoint, or the
        /// accept of one that no policy governs in this direction.
        last_rule: usize,
    },
    /// `tp_<h>_in` / `tp_<h>_out`: one netpold.io policy's rules for one direction.
    Tiered {
        /// `TieredPolicy::label`.
        policy: String,
        direction: Direction,
        /// For each rule of the chain, the index of the policy rule.
        rules: Vec<usize>,
    },
    /// `epk_<h>_in` / `epk_<h>_out`: where a Pass sends an endpoint's packets, its
    /// Kubernetes NetworkPolicies alone.
    Passed {
        endpoint: ObjectKey,
        direction: Direction,
        policies: Vec<ObjectKey>,
        /// Index of the chain's last rule (drop when isolated, accept when not).
        last_rule: usize,
    },
    /// `hep_<h>_*` / `hepf_<h>_*`: one host endpoint's policy for one direction, of
    /// traffic to or from the host, or (`forward`) forwarded through its interface.
    Host {
        /// Its name.
        host: String,
        direction: Direction,
        forward: bool,
        /// The policies it jumps to (`TieredPolicy::label`), in order.
        order: Vec<String>,
        /// Index of the chain's last rule: the drop.
        last_rule: usize,
    },
    /// `pol_<h>_in` / `pol_<h>_out`: one policy's rules for one direction.
    Policy {
        policy: ObjectKey,
        direction: Direction,
        /// For each rule of the chain, the index of the policy rule (`ingress[i]`,
        /// `egress[i]`) it was compiled from.
        rules: Vec<usize>,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    pub chains: BTreeMap<String, ChainOrigin>,
    /// (endpoint, direction) → its chain, for local endpoints.
    pub endpoint_chains: BTreeMap<(ObjectKey, Direction), String>,
    /// (host endpoint, direction, forwarded) → its chain, for local host endpoints
    /// that a policy selects in that direction.
    pub host_chains: BTreeMap<(String, Direction, bool), String>,
    /// `epr_<h>_*` (the rest of an endpoint chain, where an AdminNetworkPolicy's Pass
    /// goes) → (its endpoint chain, the index there of its first rule).
    pub admin_rest: BTreeMap<String, (String, usize)>,
    /// The policies with chains here: those that select one of the node's endpoints
    /// or host endpoints. Kubernetes NetworkPolicies as `ns/name`, others by
    /// `TieredPolicy::label`.
    pub policies: std::collections::BTreeSet<String>,
}

impl Origins {
    pub(super) fn note(&mut self, chain: &str, origin: ChainOrigin) {
        if let ChainOrigin::Endpoint {
            endpoint,
            direction,
            ..
        } = &origin
        {
            self.endpoint_chains
                .insert((endpoint.clone(), *direction), chain.to_owned());
        }
        if let ChainOrigin::Host {
            host,
            direction,
            forward,
            ..
        } = &origin
        {
            self.host_chains
                .insert((host.clone(), *direction, *forward), chain.to_owned());
        }
        self.chains.insert(chain.to_owned(), origin);
    }

    /// The chain enforcing `endpoint`'s policy for `direction`, when it is local.
    pub fn endpoint_chain(&self, endpoint: &ObjectKey, direction: Direction) -> Option<&str> {
        self.endpoint_chains
            .get(&(endpoint.clone(), direction))
            .map(String::as_str)
    }

    /// The chain of host endpoint `host` for `direction` (`forward`: of forwarded
    /// traffic), when it is local and selected.
    pub fn host_chain(&self, host: &str, direction: Direction, forward: bool) -> Option<&str> {
        self.host_chains
            .get(&(host.to_owned(), direction, forward))
            .map(String::as_str)
    }
}

/// `compile`, plus where every endpoint and policy chain comes from.
pub fn explainable(
    model: &Model,
    node: &str,
    table: &str,
    options: &super::Options,
) -> (Ruleset, Origins) {
    let state = super::State {
        origins: Some(Origins::default()),
        options: options.clone(),
        ..super::State::default()
    };
    let mut c = super::Compiler::new(model, table, state);
    c.compile(node);
    let mut origins = c.state.origins.unwrap_or_default();
    origins.policies = c.state.enforced;
    (c.state.out, origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_cover_every_chain_and_leave_the_ruleset_alone() {
        let yaml = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1, fd00::1], ports: [{name: http, port: 80}]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n2, interfaceName: veth-db, ips: [10.0.0.2]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{podSelector: {}}, {ipBlock: {cidr: 192.0.2.0/24}}]
    ports: [{port: http}, {port: 443}, {protocol: UDP}]
  - {}
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
";
        let model = crate::model::from_valid_yaml(yaml);
        // With drop logs, as `run` compiles by default.
        let options = crate::compile::Options {
            drop_log: Some(crate::compile::DropLog {
                group: Some(3),
                rate: 10,
                burst: 20,
            }),
            ..Default::default()
        };
        let (rs, origins) = explainable(&model, "n1", "netpold", &options);
        assert_eq!(
            rs,
            crate::compile::compile_with(&model, "n1", "netpold", &options)
        );
        let recorded: Vec<&String> = origins.chains.keys().collect();
        let expected: Vec<&String> = rs
            .chains
            .iter()
            .filter(|(_, c)| c.base.is_none())
            .map(|(n, _)| n)
            .collect();
        assert_eq!(recorded, expected);
        for (name, origin) in &origins.chains {
            match origin {
                ChainOrigin::Policy { rules, .. } => {
                    assert_eq!(rules.len(), rs.chains[name].rules.len(), "{name}");
                    // Rule 0 makes several chain rules (peers × ports × families), rule 1 one.
                    assert_eq!(
                        rules.iter().filter(|&&i| i == 1).count(),
                        usize::from(matches!(
                            origin,
                            ChainOrigin::Policy {
                                direction: Direction::Ingress,
                                ..
                            }
                        ),)
                    );
                }
                ChainOrigin::Endpoint {
                    last_rule,
                    policies,
                    order,
                    ..
                } => {
                    assert_eq!(*last_rule, rs.chains[name].rules.len() - 1);
                    assert_eq!(policies, &[("a".to_owned(), "p".to_owned())]);
                    assert_eq!(order, &["a/p".to_owned()]);
                }
                ChainOrigin::Tiered { .. }
                | ChainOrigin::Passed { .. }
                | ChainOrigin::Host { .. } => {
                    unreachable!("no netpold.io policy here")
                }
            }
        }
        let web = ("a".to_owned(), "web".to_owned());
        assert!(origins.endpoint_chain(&web, Direction::Egress).is_some());
        // db runs on n2: no chain here.
        let db = ("a".to_owned(), "db".to_owned());
        assert!(origins.endpoint_chain(&db, Direction::Ingress).is_none());
    }
}
