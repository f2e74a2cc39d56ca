//! What differs between two models, and a valid model patched with a few files'
//! objects without validating the others again: an edit costs what it changes.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::{
    ClusterNode, Endpoint, HostEndpoint, Identity, Model, NETPOLD_NETWORK_POLICY, Namespace,
    NetworkPolicy, Object, TieredPolicy,
};

type Key = (String, String);

/// The objects of a model that compile differently from an earlier model's, each with
/// its earlier value (`None`: it did not exist). Where an object was written does not
/// count. What an incremental compilation and the sync line need to know of an edit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub namespaces: BTreeMap<String, Option<Namespace>>,
    pub endpoints: BTreeMap<Key, Option<Endpoint>>,
    pub policies: BTreeMap<Key, Option<NetworkPolicy>>,
    /// `netpold.io/v1` policies, keyed as `Model::tiered`.
    pub tiered: BTreeMap<Key, Option<TieredPolicy>>,
    /// Host endpoints, by name.
    pub hosts: BTreeMap<String, Option<HostEndpoint>>,
    /// `v1 Node`s, by name: their labels decide which policies a node enforces.
    pub nodes: BTreeMap<String, Option<ClusterNode>>,
}

impl Changes {
    /// By comparing every object of the two models.
    pub fn between(old: &Model, new: &Model) -> Changes {
        Changes {
            namespaces: differing(&old.namespaces, &new.namespaces, Namespace::compiles_like),
            endpoints: differing(&old.endpoints, &new.endpoints, Endpoint::compiles_like),
            policies: differing(&old.policies, &new.policies, NetworkPolicy::compiles_like),
            tiered: differing(&old.tiered, &new.tiered, TieredPolicy::compiles_like),
            hosts: differing(&old.hosts, &new.hosts, HostEndpoint::compiles_like),
            nodes: differing(&old.nodes, &new.nodes, |a, b| a.labels == b.labels),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.endpoints.is_empty()
            && self.policies.is_empty()
            && self.tiered.is_empty()
            && self.hosts.is_empty()
            && self.nodes.is_empty()
    }

    /// Forgets the objects whose value in `new` compiles like their old one.
    fn retain_changed(&mut self, new: &Model) {
        fn keep<K: Ord, V>(
            changes: &mut BTreeMap<K, Option<V>>,
            now: &BTreeMap<K, V>,
            same: impl Fn(&V, &V) -> bool,
        ) {
            changes.retain(|k, old| match (old.as_ref(), now.get(k)) {
                (Some(o), Some(n)) => !same(o, n),
                (None, None) => false,
                _ => true,
            });
        }
        keep(
            &mut self.namespaces,
            &new.namespaces,
            Namespace::compiles_like,
        );
        keep(&mut self.endpoints, &new.endpoints, Endpoint::compiles_like);
        keep(
            &mut self.policies,
            &new.policies,
            NetworkPolicy::compiles_like,
        );
        keep(&mut self.tiered, &new.tiered, TieredPolicy::compiles_like);
        keep(&mut self.hosts, &new.hosts, HostEndpoint::compiles_like);
        keep(&mut self.nodes, &new.nodes, |a, b| a.labels == b.labels);
    }
}

/// Keys present in one map only or whose values differ, with the old value: one
/// merge of the two sorted maps.
fn differing<K: Ord + Clone, V: Clone>(
    old: &BTreeMap<K, V>,
    new: &BTreeMap<K, V>,
    same: impl Fn(&V, &V) -> bool,
) -> BTreeMap<K, Option<V>> {
    let mut out = BTreeMap::new();
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let order = match (o.peek(), n.peek()) {
            (None, None) => return out,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
        };
        match order {
            Ordering::Less => {
                let (k, v) = o.next().expect("peeked");
                out.insert(k.clone(), Some(v.clone()));
            }
            Ordering::Greater => {
                let (k, _) = n.next().expect("peeked");
                out.insert(k.clone(), None);
            }
            Ordering::Equal => {
                let ((k, ov), (_, nv)) = (o.next().expect("peeked"), n.next().expect("peeked"));
                if !same(ov, nv) {
                    out.insert(k.clone(), Some(ov.clone()));
                }
            }
        }
    }
}

/// Who holds each address and interface, and how many endpoints and policies name each
/// namespace, in a model that validated whole: what `Model::patch` checks a change
/// against instead of the rest of the model.
#[derive(Debug, Default)]
pub struct Claims {
    ips: HashMap<IpAddr, Key>,
    /// Interface → the endpoints using it, with their nodes.
    interfaces: HashMap<String, Vec<(Option<String>, Key)>>,
    named: HashMap<String, usize>,
}

/// Whether two endpoints on these nodes may not share an interface: an endpoint
/// without a node runs on every node (as in `Model::check_endpoint_clashes`).
fn same_node(a: &Option<String>, b: &Option<String>) -> bool {
    a.is_none() || b.is_none() || a == b
}

impl Claims {
    pub fn of(model: &Model) -> Claims {
        let mut claims = Claims::default();
        for (key, ep) in &model.endpoints {
            claims.claim(key, ep);
        }
        for (ns, _) in model.policies.keys() {
            claims.name(ns);
        }
        for (ns, _) in model.tiered.keys().filter(|(ns, _)| !ns.is_empty()) {
            claims.name(ns);
        }
        claims
    }

    fn name(&mut self, ns: &str) {
        match self.named.get_mut(ns) {
            Some(n) => *n += 1,
            None => {
                self.named.insert(ns.to_owned(), 1);
            }
        }
    }

    fn unname(&mut self, ns: &str) {
        if let Some(n) = self.named.get_mut(ns) {
            *n -= 1;
            if *n == 0 {
                self.named.remove(ns);
            }
        }
    }

    fn claim(&mut self, key: &Key, ep: &Endpoint) {
        for ip in &ep.ips {
            self.ips.insert(*ip, key.clone());
        }
        self.interfaces
            .entry(ep.interface.clone())
            .or_default()
            .push((ep.node.clone(), key.clone()));
        self.name(&key.0);
    }

    fn release(&mut self, key: &Key, ep: &Endpoint) {
        for ip in &ep.ips {
            if self.ips.get(ip) == Some(key) {
                self.ips.remove(ip);
            }
        }
        if let Some(users) = self.interfaces.get_mut(&ep.interface) {
            users.retain(|(_, k)| k != key);
            if users.is_empty() {
                self.interfaces.remove(&ep.interface);
            }
        }
        self.unname(&key.0);
    }
}

impl Model {
    /// Replaces the objects `removed` (by identity) with `added` when that gives what
    /// `build` gives without a problem for the same objects, and returns what changed.
    /// `None`, with the model left as it was, when something is not as expected: an
    /// added object defined twice, or claiming an address or an interface another
    /// object keeps. Only a full build says which one loses, and where to say so.
    ///
    /// `self` must have validated whole, with `claims` its claims; both are kept so.
    pub fn patch(
        &mut self,
        claims: &mut Claims,
        removed: &[&Identity],
        added: Vec<Object>,
    ) -> Option<Changes> {
        // Check everything before changing anything.
        let mut gone_namespaces = BTreeSet::new();
        let mut gone_endpoints = BTreeSet::new();
        let mut gone_policies = BTreeSet::new();
        let mut gone_tiered = BTreeSet::new();
        for (kind, ns, name) in removed.iter().copied() {
            let key = (ns.clone(), name.clone());
            let present = match kind.as_str() {
                "Namespace" => {
                    self.namespaces
                        .get(name)
                        .is_some_and(|n| n.origin.is_some())
                        && gone_namespaces.insert(name.clone())
                }
                "WorkloadEndpoint" => {
                    self.endpoints.contains_key(&key) && gone_endpoints.insert(key)
                }
                "NetworkPolicy" => self.policies.contains_key(&key) && gone_policies.insert(key),
                NETPOLD_NETWORK_POLICY | "GlobalNetworkPolicy" => {
                    self.tiered.contains_key(&key) && gone_tiered.insert(key)
                }
                "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => {
                    let key = (String::new(), format!("{kind}:{name}"));
                    self.tiered.contains_key(&key) && gone_tiered.insert(key)
                }
                // Host endpoints' claims are checked by a full build.
                "HostEndpoint" => return None,
                _ => false,
            };
            if !present {
                return None;
            }
        }
        let mut new_ids = BTreeSet::new();
        let mut new_ips = BTreeSet::new();
        let mut new_interfaces: HashMap<&str, Vec<&Option<String>>> = HashMap::new();
        for object in &added {
            let taken = match object {
                Object::Namespace(n) => {
                    self.namespaces
                        .get(&n.name)
                        .is_some_and(|n| n.origin.is_some())
                        && !gone_namespaces.contains(&n.name)
                }
                Object::Endpoint(e) => {
                    let key = (e.namespace.clone(), e.name.clone());
                    self.endpoints.contains_key(&key) && !gone_endpoints.contains(&key)
                }
                Object::Policy(p) => {
                    let key = (p.namespace.clone(), p.name.clone());
                    self.policies.contains_key(&key) && !gone_policies.contains(&key)
                }
                Object::Tiered(p) => {
                    let key = p.key();
                    self.tiered.contains_key(&key) && !gone_tiered.contains(&key)
                }
                Object::Host(_) | Object::Node(_) => return None,
            };
            if taken || !new_ids.insert(object.identity()) {
                return None;
            }
            let Object::Endpoint(ep) = object else {
                continue;
            };
            // A workload must not take a host endpoint's interface or address: a full
            // build checks that (host endpoints are few).
            if !self.hosts.is_empty() {
                return None;
            }
            for ip in &ep.ips {
                let kept = claims
                    .ips
                    .get(ip)
                    .is_some_and(|owner| !gone_endpoints.contains(owner));
                if kept || !new_ips.insert(*ip) {
                    return None;
                }
            }
            let users = claims.interfaces.get(&ep.interface);
            let kept = users
                .into_iter()
                .flatten()
                .any(|(node, owner)| !gone_endpoints.contains(owner) && same_node(node, &ep.node));
            let fresh = new_interfaces.entry(&ep.interface).or_default();
            if kept || fresh.iter().any(|node| same_node(node, &ep.node)) {
                return None;
            }
            fresh.push(&ep.node);
        }
        drop(new_interfaces);

        let mut changes = Changes::default();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for name in gone_namespaces {
            let old = self.namespaces.remove(&name);
            changes.namespaces.entry(name.clone()).or_insert(old);
            touched.insert(name);
        }
        for key in gone_endpoints {
            let old = self.endpoints.remove(&key).expect("checked above");
            claims.release(&key, &old);
            touched.insert(key.0.clone());
            changes.endpoints.entry(key).or_insert(Some(old));
        }
        for key in gone_policies {
            let old = self.policies.remove(&key);
            claims.unname(&key.0);
            touched.insert(key.0.clone());
            changes.policies.entry(key).or_insert(old);
        }
        for key in gone_tiered {
            let old = self.tiered.remove(&key);
            if !key.0.is_empty() {
                claims.unname(&key.0);
                touched.insert(key.0.clone());
            }
            changes.tiered.entry(key).or_insert(old);
        }
        for object in added {
            match object {
                Object::Namespace(n) => {
                    let name = n.name.clone();
                    let old = self.namespaces.insert(name.clone(), n);
                    changes.namespaces.entry(name.clone()).or_insert(old);
                    touched.insert(name);
                }
                Object::Endpoint(e) => {
                    let key = (e.namespace.clone(), e.name.clone());
                    claims.claim(&key, &e);
                    touched.insert(key.0.clone());
                    changes.endpoints.entry(key.clone()).or_insert(None);
                    self.endpoints.insert(key, e);
                }
                Object::Policy(p) => {
                    let key = (p.namespace.clone(), p.name.clone());
                    claims.name(&key.0);
                    touched.insert(key.0.clone());
                    changes.policies.entry(key.clone()).or_insert(None);
                    self.policies.insert(key, p);
                }
                Object::Tiered(p) => {
                    let key = p.key();
                    if !key.0.is_empty() {
                        claims.name(&key.0);
                        touched.insert(key.0.clone());
                    }
                    changes.tiered.entry(key.clone()).or_insert(None);
                    self.tiered.insert(key, p);
                }
                Object::Host(_) | Object::Node(_) => unreachable!("refused above"),
            }
        }
        // A namespace no file declares exists while an endpoint or a policy names it.
        for ns in touched {
            let declared = self.namespaces.get(&ns).is_some_and(|n| n.origin.is_some());
            let named = claims.named.contains_key(&ns);
            if declared || named == self.namespaces.contains_key(&ns) {
                continue;
            }
            let before = self.namespaces.get(&ns).cloned();
            if named {
                self.namespaces.insert(ns.clone(), Namespace::implied(&ns));
            } else {
                self.namespaces.remove(&ns);
            }
            changes.namespaces.entry(ns).or_insert(before);
        }
        changes.retain_changed(self);
        Some(changes)
    }
}
