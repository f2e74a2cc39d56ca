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
        /// The policies that select it and govern this direction, in jump order.
        policies: Vec<ObjectKey>,
        /// Index of the chain's last rule: the drop of an isolated endpoint, or the
        /// accept of one that no policy governs in this direction.
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
        self.chains.insert(chain.to_owned(), origin);
    }

    /// The chain enforcing `endpoint`'s policy for `direction`, when it is local.
    pub fn endpoint_chain(&self, endpoint: &ObjectKey, direction: Direction) -> Option<&str> {
        self.endpoint_chains
            .get(&(endpoint.clone(), direction))
            .map(String::as_str)
    }
}

/// `compile`, plus where every endpoint and policy chain comes from.
pub fn explainable(model: &Model, node: &str, table: &str) -> (Ruleset, Origins) {
    let state = super::State {
        origins: Some(Origins::default()),
        ..super::State::default()
    };
    let mut c = super::Compiler::new(model, table, state);
    c.compile(node);
    (c.state.out, c.state.origins.unwrap_or_default())
}
