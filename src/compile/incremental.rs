//! The compiled ruleset kept up to date object by object, so that an edit costs what
//! it changes: an endpoint added, removed or relabelled is re-evaluated against the
//! selector sets its namespace can be in and rebuilds its own two chains; a policy
//! rebuilds its chains, and the chains of the endpoints it selected or selects when
//! what it selects may have changed; a relabelled namespace re-evaluates its endpoints
//! against the namespace selectors the new labels flip. An endpoint change compiles a
//! policy only when it brings the first local endpoint the policy selects (its chains
//! and sets come) or takes the last (they go), and a new set selects within the
//! namespaces in scope only. The caller says what changed (`model::Changes`): nothing
//! compares whole models here.
//!
//! Every update logs what it touched, with the old value at first touch, and `delta`
//! turns the log into the kernel transaction (`ir::diff::Delta`). The result equals a
//! compilation from scratch (a property test checks it over random edit sequences).

use std::collections::{BTreeMap, BTreeSet};

use super::{Compiler, Options, SetDef, State, local_set};
use crate::index::Namespaces;
use crate::ir::diff::{Delta, MapChange, NeedsReplace, SetChange};
use crate::ir::{AddrSource, Chain, Element, Family, Match, Ruleset, Set, SetKind, Verdict};
use crate::model::{Changes, Direction, Endpoint, Model, Namespace, NetworkPolicy};
use crate::selector::Labels;

/// What an update touched: old values at first touch.
#[derive(Default)]
pub(super) struct ChangeLog {
    pub(super) chains: BTreeMap<String, Option<Chain>>,
    /// Sets created or removed whole (`None`: it did not exist before the update).
    pub(super) sets: BTreeMap<String, Option<Set>>,
    /// Net element changes of sets that existed before (`true`: added).
    elements: BTreeMap<String, BTreeMap<Element, bool>>,
    /// Map entries: (map, key) → the verdict before.
    entries: BTreeMap<(String, String), Option<Verdict>>,
}

/// The model is not kept here: each update is given the model and what changed in it
/// since the previous one, so the caller can patch one model in place.
pub struct Incremental {
    node: String,
    table: String,
    state: State,
    /// How many policies use each selector, ipBlock or named-port set: a set nothing
    /// uses any more is removed.
    users: BTreeMap<String, usize>,
    /// Rules in the ruleset and local endpoints, kept up to date for the sync line
    /// rather than counted over the whole ruleset each time.
    rules: usize,
    local: usize,
}

/// The sets a chain's rules look up.
fn sets_used(chain: &Chain) -> impl Iterator<Item = &str> {
    chain.rules.iter().flat_map(|r| {
        r.matches.iter().filter_map(|m| match m {
            Match::Addr {
                source: AddrSource::Set(name),
                ..
            } => Some(name.as_str()),
            Match::AddrPort { set, .. } => Some(set.as_str()),
            _ => None,
        })
    })
}

/// How many Kubernetes policy chains use each set.
fn policy_set_users(out: &Ruleset) -> BTreeMap<String, usize> {
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for (name, chain) in &out.chains {
        if name.starts_with("pol_") {
            for set in sets_used(chain) {
                *users.entry(set.to_owned()).or_default() += 1;
            }
        }
    }
    users
}

/// Policies of `ep`'s namespace that select it for `direction`, in model order.
fn selecting<'m>(model: &'m Model, ep: &Endpoint, direction: Direction) -> Vec<&'m NetworkPolicy> {
    model
        .policies
        .range((ep.namespace.clone(), String::new())..)
        .take_while(|((ns, _), _)| *ns == ep.namespace)
        .map(|(_, p)| p)
        .filter(|p| p.rules(direction).is_some() && p.pod_selector.matches(&ep.labels))
        .collect()
}

/// Whether `policy` selects one of `node`'s endpoints, so has its chains there.
fn enforced_here(model: &Model, policy: &NetworkPolicy, node: &str) -> bool {
    model
        .endpoints
        .range((policy.namespace.clone(), String::new())..)
        .take_while(|((ns, _), _)| *ns == policy.namespace)
        .any(|(_, ep)| ep.is_local(node) && policy.pod_selector.matches(&ep.labels))
}

impl SetDef {
    /// The elements `ep` contributes, its namespace labelled `ns_labels`.
    fn elements(&self, ep: &Endpoint, ns_labels: &Labels) -> Vec<Element> {
        let in_scope = |ns: &Namespaces| match ns {
            Namespaces::Exactly(name) => ep.namespace == *name,
            Namespaces::Matching(sel) => sel.matches(ns_labels),
        };
        match self {
            SetDef::Pods { ns, pods, family } => {
                if !in_scope(ns) || !pods.matches(&ep.labels) {
                    return Vec::new();
                }
                ep.ips
                    .iter()
                    .filter(|ip| Family::of(ip) == *family)
                    .map(|ip| Element::Addr(*ip))
                    .collect()
            }
            SetDef::Port {
                scope,
                port,
                protocol,
                family,
            } => {
                let Some(number) = ep.named_port(port, *protocol) else {
                    return Vec::new();
                };
                let block = match scope {
                    super::PortScope::Pods(ns, pods) => {
                        if !in_scope(ns) || !pods.matches(&ep.labels) {
                            return Vec::new();
                        }
                        None
                    }
                    super::PortScope::Block(block) => Some(block),
                };
                ep.ips
                    .iter()
                    .filter(|ip| Family::of(ip) == *family)
                    .filter(|ip| block.is_none_or(|b| b.contains(**ip)))
                    .map(|ip| Element::AddrPort(*ip, number))
                    .collect()
            }
        }
    }
}

impl Incremental {
    /// A compilation from scratch that can then be updated, with `Options::default()`.
    pub fn new(model: &Model, node: &str, table: &str) -> Incremental {
        Incremental::with_options(model, node, table, &Options::default())
    }

    /// A compilation from scratch with `options`, kept for every update.
    pub fn with_options(model: &Model, node: &str, table: &str, options: &Options) -> Incremental {
        let state = {
            let state = State {
                options: options.clone(),
                ..State::default()
            };
            let mut c = Compiler::new(model, table, state);
            c.compile(node);
            c.state
        };
        let users = policy_set_users(&state.out);
        Incremental {
            node: node.to_owned(),
            table: table.to_owned(),
            rules: state.out.rule_count(),
            local: model.local_endpoints(node),
            state,
            users,
        }
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.state.out
    }

    /// `ruleset().rule_count()`, without counting.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// How many endpoints of the model compiled last are local.
    pub fn local_endpoints(&self) -> usize {
        self.local
    }

    /// How many policies have chains here: those that select a local endpoint.
    pub fn enforced_policies(&self) -> usize {
        self.state.enforced.len()
    }

    /// Brings the ruleset to `model`, which differs by `changes` from the model of the
    /// last update (or of `new`), logging what changed since the last `delta`.
    /// `Err`: a name the update needs is taken by another object (a hash collision);
    /// only a compilation from scratch names both consistently.
    pub fn update(&mut self, model: &Model, changes: &Changes) -> Result<(), NeedsReplace> {
        // Host endpoints are few, and their chains depend on every ordered policy.
        if !model.tiered.is_empty()
            || !changes.tiered.is_empty()
            || !model.hosts.is_empty()
            || !changes.hosts.is_empty()
            || !changes.nodes.is_empty()
        {
            return self.recompile(model);
        }
        let state = std::mem::take(&mut self.state);
        let mut users = std::mem::take(&mut self.users);
        let mut c = Compiler::new(model, &self.table, state);
        // The log covers this update only: its delta is programmed before the next.
        c.state.log = Some(ChangeLog::default());
        let result = c.apply_changes(changes, &self.node, &mut users);
        self.state = c.state;
        self.users = users;
        let log = self.state.log.as_ref().expect("logging");
        for (name, before) in &log.chains {
            let after = self.state.out.chains.get(name);
            self.rules = (self.rules + after.map_or(0, |c| c.rules.len()))
                .saturating_sub(before.as_ref().map_or(0, |c| c.rules.len()));
        }
        for (key, before) in &changes.endpoints {
            let local =
                |ep: Option<&Endpoint>| usize::from(ep.is_some_and(|e| e.is_local(&self.node)));
            self.local = (self.local + local(model.endpoints.get(key)))
                .saturating_sub(local(before.as_ref()));
        }
        result
    }

    /// `update` for a model with netpold.io policies (or one that just lost its last):
    /// an ordered policy's change can reorder every selected endpoint's chain, so the
    /// model is compiled from scratch and the log records what differs from before,
    /// which keeps the kernel transaction as small as the difference.
    fn recompile(&mut self, model: &Model) -> Result<(), NeedsReplace> {
        let state = State {
            options: self.state.options.clone(),
            ..State::default()
        };
        let mut c = Compiler::new(model, &self.table, state);
        c.compile(&self.node);
        let mut fresh = c.state;
        let old = &self.state.out;
        let new = &fresh.out;
        if old.maps.keys().ne(new.maps.keys()) {
            return Err(NeedsReplace(
                if old.maps.keys().any(|k| k.starts_with("host_"))
                    != new.maps.keys().any(|k| k.starts_with("host_"))
                {
                    "the host endpoint maps come or go with the first selected host endpoint"
                } else {
                    "the Pass maps come or go with the netpold.io policies"
                }
                .to_owned(),
            ));
        }
        let mut log = ChangeLog::default();
        let chains: BTreeSet<&String> = old.chains.keys().chain(new.chains.keys()).collect();
        for name in chains {
            let before = old.chains.get(name);
            if before != new.chains.get(name) {
                log.chains.insert(name.clone(), before.cloned());
            }
        }
        let sets: BTreeSet<&String> = old.sets.keys().chain(new.sets.keys()).collect();
        for name in sets {
            let before = old.sets.get(name);
            if before != new.sets.get(name) {
                log.sets.insert(name.clone(), before.cloned());
            }
        }
        for (map, m) in &new.maps {
            let before = &old.maps[map].entries;
            let keys: BTreeSet<&String> = before.keys().chain(m.entries.keys()).collect();
            for key in keys {
                if before.get(key) != m.entries.get(key) {
                    log.entries
                        .insert((map.clone(), key.clone()), before.get(key).cloned());
                }
            }
        }
        fresh.log = Some(log);
        self.users = policy_set_users(&fresh.out);
        self.rules = fresh.out.rule_count();
        self.local = model.local_endpoints(&self.node);
        self.state = fresh;
        Ok(())
    }

    /// The kernel transaction for everything the last `update` changed, with the
    /// ruleset it leads to.
    pub fn delta(&mut self) -> Result<(Delta<'_>, &Ruleset), NeedsReplace> {
        let State { out, log, .. } = &mut self.state;
        let log: &ChangeLog = log.get_or_insert_with(ChangeLog::default);
        let out: &Ruleset = out;
        let mut delta = Delta::default();
        for (name, old) in &log.sets {
            match (old, out.sets.get_key_value(name.as_str())) {
                (None, Some((name, _))) => delta.added_sets.push(name),
                (Some(_), None) => delta.removed_sets.push(name),
                (None, None) => {}
                (Some(before), Some((name, after))) => {
                    if before.kind != after.kind || before.comment != after.comment {
                        return Err(NeedsReplace(format!("set {name} changes its type")));
                    }
                    if before.elements != after.elements {
                        delta.changed_sets.push(SetChange {
                            name,
                            add: after.elements.difference(&before.elements).collect(),
                            remove: before.elements.difference(&after.elements).collect(),
                            refill: matches!(after.kind, SetKind::Interval(_)),
                        });
                    }
                }
            }
        }
        for (name, changes) in &log.elements {
            if log.sets.contains_key(name) || changes.is_empty() {
                continue;
            }
            let Some((name, _)) = out.sets.get_key_value(name.as_str()) else {
                continue;
            };
            delta.changed_sets.push(SetChange {
                name,
                add: changes
                    .iter()
                    .filter(|(_, a)| **a)
                    .map(|(e, _)| e)
                    .collect(),
                remove: changes
                    .iter()
                    .filter(|(_, a)| !**a)
                    .map(|(e, _)| e)
                    .collect(),
                refill: false,
            });
        }
        let mut maps: BTreeMap<&str, MapChange> = BTreeMap::new();
        for ((map, key), before) in &log.entries {
            let Some((map_name, m)) = out.maps.get_key_value(map.as_str()) else {
                continue;
            };
            let now = m.entries.get_key_value(key.as_str());
            if before.as_ref() == now.map(|(_, v)| v) {
                continue;
            }
            let change = maps.entry(map_name).or_insert_with(|| MapChange {
                name: map_name,
                add: Vec::new(),
                remove: Vec::new(),
            });
            if before.is_some() {
                change.remove.push(key);
            }
            if let Some((k, v)) = now {
                change.add.push((k, v));
            }
        }
        delta.changed_maps = maps.into_values().collect();
        for (name, before) in &log.chains {
            match (before, out.chains.get_key_value(name.as_str())) {
                (None, Some((name, _))) => delta.added_chains.push(name),
                (Some(_), None) => delta.removed_chains.push(name),
                (None, None) => {}
                (Some(before), Some((name, after))) => {
                    if before.base != after.base || before.comment != after.comment {
                        return Err(NeedsReplace(format!("chain {name} changes its properties")));
                    }
                    if before.rules != after.rules {
                        delta.changed_chains.push(name);
                    }
                }
            }
        }
        Ok((delta, out))
    }
}

impl Compiler<'_> {
    fn log(&mut self) -> &mut ChangeLog {
        self.state.log.get_or_insert_with(ChangeLog::default)
    }

    /// Takes a chain out of the ruleset, remembering its old value.
    fn take_chain(&mut self, name: &str) {
        let old = self.state.out.chains.remove(name);
        self.log().chains.entry(name.to_owned()).or_insert(old);
    }

    fn take_set(&mut self, name: &str) {
        let old = self.state.out.sets.remove(name);
        self.state.defs.remove(name);
        self.log().sets.entry(name.to_owned()).or_insert(old);
    }

    fn patch_element(&mut self, set: &str, element: &Element, add: bool) {
        let Some(s) = self.state.out.sets.get_mut(set) else {
            return;
        };
        let changed = if add {
            s.elements.insert(element.clone())
        } else {
            s.elements.remove(element)
        };
        if !changed {
            return;
        }
        let log = self.log().elements.entry(set.to_owned()).or_default();
        // An add and a removal of one element in one update cancel out.
        if log.remove(element).is_none() {
            log.insert(element.clone(), add);
        }
    }

    fn set_entry(&mut self, map: &str, key: &str, verdict: Option<Verdict>) {
        let Some(m) = self.state.out.maps.get_mut(map) else {
            return;
        };
        let old = match verdict {
            Some(v) => m.entries.insert(key.to_owned(), v),
            None => m.entries.remove(key),
        };
        self.log()
            .entries
            .entry((map.to_owned(), key.to_owned()))
            .or_insert(old);
    }

    fn apply_changes(
        &mut self,
        changes: &Changes,
        node: &str,
        users: &mut BTreeMap<String, usize>,
    ) -> Result<(), NeedsReplace> {
        let new = self.model;
        // The old model is the new one with the changed objects' old values.
        let old_endpoint = |key: &(String, String)| match changes.endpoints.get(key) {
            Some(old) => old.as_ref(),
            None => new.endpoints.get(key),
        };
        let old_namespace = |name: &str| match changes.namespaces.get(name) {
            Some(old) => old.as_ref(),
            None => new.namespaces.get(name),
        };
        fn in_namespace<'a>(
            model: &'a Model,
            ns: &'a str,
        ) -> impl Iterator<Item = (&'a (String, String), &'a Endpoint)> {
            model
                .endpoints
                .range((ns.to_owned(), String::new())..)
                .take_while(move |((n, _), _)| n == ns)
        }

        // Endpoints whose chains are rebuilt: changed ones, and those a changed policy
        // selected or selects. An endpoint the old version selected is either unchanged
        // (so in the new model too) or changed (so rebuilt anyway).
        let mut rebuild: BTreeSet<(String, String)> = changes.endpoints.keys().cloned().collect();
        for (key, old) in &changes.policies {
            // Endpoint chains only jump to a policy's chains by name: a policy that
            // selects the same endpoints for the same directions leaves them as they are.
            if let (Some(old), Some(now)) = (old, new.policies.get(key))
                && old.pod_selector == now.pod_selector
                && Direction::BOTH
                    .iter()
                    .all(|d| old.rules(*d).is_some() == now.rules(*d).is_some())
            {
                continue;
            }
            for policy in [old.as_ref(), new.policies.get(key)].into_iter().flatten() {
                rebuild.extend(
                    in_namespace(new, &key.0)
                        .filter(|(_, ep)| policy.pod_selector.matches(&ep.labels))
                        .map(|(k, _)| k.clone()),
                );
            }
        }

        // Policies: their chains, and the sets they use. A chain exists while the
        // policy selects one of this node's endpoints for a direction it governs; a
        // changed policy rebuilds its chains, and an unchanged one gains or loses them
        // when a local endpoint it selects comes, goes or is relabelled.
        let mut released: BTreeSet<String> = BTreeSet::new();
        for (key, old) in &changes.policies {
            if let Some(p) = old {
                self.drop_policy_chains(p, users, &mut released);
            }
            if let Some(policy) = new.policies.get(key)
                && enforced_here(new, policy, node)
            {
                self.add_policy_chains(policy, users);
            }
        }
        let mut flip: BTreeSet<&(String, String)> = BTreeSet::new();
        for (key, old) in &changes.endpoints {
            for ep in [old.as_ref(), new.endpoints.get(key)]
                .into_iter()
                .flatten()
                .filter(|ep| ep.is_local(node))
            {
                flip.extend(
                    new.policies
                        .range((ep.namespace.clone(), String::new())..)
                        .take_while(|((ns, _), _)| *ns == ep.namespace)
                        .filter(|(k, p)| {
                            !changes.policies.contains_key(*k) && p.pod_selector.matches(&ep.labels)
                        })
                        .map(|(k, _)| k),
                );
            }
        }
        for key in flip {
            let policy = &new.policies[key];
            let Some(governed) = Direction::BOTH
                .into_iter()
                .find(|d| policy.rules(*d).is_some())
            else {
                continue;
            };
            let chain = self.policy_chain_name(policy, governed);
            let present = self.state.out.chains.contains_key(&chain);
            match (present, enforced_here(new, policy, node)) {
                (true, false) => self.drop_policy_chains(policy, users, &mut released),
                (false, true) => self.add_policy_chains(policy, users),
                _ => {}
            }
        }

        // Membership: each changed endpoint leaves the sets its old version was in and
        // joins those its new version is in.
        fn labels(ns: Option<&Namespace>) -> &Labels {
            static NO_LABELS: Labels = Labels::new();
            ns.map_or(&NO_LABELS, |n| &n.labels)
        }
        // An endpoint that is the same but whose namespace was relabelled leaves or
        // joins only the sets of the namespace selectors the relabelling flips.
        let mut moved: Vec<(&Endpoint, &Labels, &Labels)> = Vec::new();
        for ns in changes.namespaces.keys() {
            let (before, after) = (labels(old_namespace(ns)), labels(new.namespaces.get(ns)));
            moved.extend(
                in_namespace(new, ns)
                    .filter(|(key, _)| !changes.endpoints.contains_key(*key))
                    .map(|(_, ep)| (ep, before, after)),
            );
        }
        // Patches are collected first, so that no set definition is copied to let
        // `patch_element` borrow the state. Old versions leave before new ones join:
        // an object renamed or moved to another namespace keeps its addresses under a
        // new key.
        let mut patches: Vec<(&str, Element, bool)> = Vec::new();
        for join in [false, true] {
            for (key, old) in &changes.endpoints {
                let (ep, ns_labels) = if join {
                    let Some(ep) = new.endpoints.get(key) else {
                        continue;
                    };
                    (ep, labels(new.namespaces.get(&ep.namespace)))
                } else {
                    let Some(ep) = old.as_ref() else { continue };
                    (ep, labels(old_namespace(&ep.namespace)))
                };
                for (set, def) in self.state.defs.for_namespace(&ep.namespace, ns_labels) {
                    patches.extend(
                        def.elements(ep, ns_labels)
                            .into_iter()
                            .map(|e| (set, e, join)),
                    );
                }
            }
            for (ep, before, after) in &moved {
                let ns_labels = if join { after } else { before };
                for (set, def) in self.state.defs.flipped(before, after, join) {
                    patches.extend(
                        def.elements(ep, ns_labels)
                            .into_iter()
                            .map(|e| (set, e, join)),
                    );
                }
            }
        }
        let patches: Vec<(String, Element, bool)> = patches
            .into_iter()
            .map(|(set, e, add)| (set.to_owned(), e, add))
            .collect();
        for (set, element, add) in &patches {
            self.patch_element(set, element, *add);
        }

        // Sets no policy uses any more (only an old policy chain releases one).
        for set in released {
            if users.get(&set) == Some(&0) {
                users.remove(&set);
                self.take_set(&set);
            }
        }

        // Local endpoints: chains, dispatch entries, local addresses.
        for key in &rebuild {
            if let Some(ep) = old_endpoint(key).filter(|ep| ep.is_local(node)) {
                self.drop_endpoint(ep);
            }
        }
        for key in &rebuild {
            if let Some(ep) = new.endpoints.get(key).filter(|ep| ep.is_local(node)) {
                self.add_endpoint(ep);
            }
        }

        // A salted name (two keys with one hash) depends on the order names were
        // given, which differs from a compilation from scratch.
        if self.state.names.salted {
            return Err(NeedsReplace("two objects' names collide".to_owned()));
        }
        Ok(())
    }

    /// Removes a policy's chains, releasing the sets they used.
    fn drop_policy_chains(
        &mut self,
        policy: &NetworkPolicy,
        users: &mut BTreeMap<String, usize>,
        released: &mut BTreeSet<String>,
    ) {
        self.state.enforced.remove(&policy.id());
        for direction in Direction::BOTH {
            if policy.rules(direction).is_none() {
                continue;
            }
            let chain = self.policy_chain_name(policy, direction);
            self.take_chain(&chain);
            let log = self.state.log.as_ref().expect("logging");
            if let Some(Some(before)) = log.chains.get(&chain) {
                let used: Vec<String> = sets_used(before).map(str::to_owned).collect();
                for set in used {
                    if let Some(n) = users.get_mut(&set) {
                        *n = n.saturating_sub(1);
                    }
                    released.insert(set);
                }
            }
        }
    }

    /// Compiles a policy's chains, counting the sets they use.
    fn add_policy_chains(&mut self, policy: &NetworkPolicy, users: &mut BTreeMap<String, usize>) {
        for direction in Direction::BOTH {
            if policy.rules(direction).is_none() {
                continue;
            }
            let name = self.policy_chain_name(policy, direction);
            self.take_chain(&name);
            self.policy_chain(policy, direction);
            let used: Vec<String> = sets_used(&self.state.out.chains[&name])
                .map(str::to_owned)
                .collect();
            for set in used {
                *users.entry(set).or_default() += 1;
            }
        }
    }

    fn drop_endpoint(&mut self, ep: &Endpoint) {
        for direction in Direction::BOTH {
            let name = self.endpoint_chain_name(ep, direction);
            self.take_chain(&name);
        }
        for family in Family::BOTH {
            let own = self.own_addresses_set_name(ep, family);
            if self.state.out.sets.contains_key(&own) {
                self.take_set(&own);
            }
            for ip in ep.ips.iter().filter(|ip| Family::of(ip) == family) {
                self.patch_element(&local_set(family), &Element::Addr(*ip), false);
            }
        }
        self.set_entry(super::EGRESS_MAP, &ep.interface, None);
        self.set_entry(super::INGRESS_MAP, &ep.interface, None);
    }

    fn add_endpoint(&mut self, ep: &Endpoint) {
        for direction in Direction::BOTH {
            let name = self.endpoint_chain_name(ep, direction);
            self.take_chain(&name);
            let policies = selecting(self.model, ep, direction);
            // With netpold.io policies in the model, updates compile from scratch.
            let (name, _) = self.endpoint_chain(ep, direction, &policies, &[], &[], None);
            let map = match direction {
                Direction::Egress => super::EGRESS_MAP,
                Direction::Ingress => super::INGRESS_MAP,
            };
            self.set_entry(map, &ep.interface, Some(Verdict::Goto(name)));
        }
        for family in Family::BOTH {
            for ip in ep.ips.iter().filter(|ip| Family::of(ip) == family) {
                self.patch_element(&local_set(family), &Element::Addr(*ip), true);
            }
        }
    }
}
