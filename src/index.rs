//! Which endpoints each selector matches. Endpoints are numbered in model order;
//! an inverted index of `(key, value)` labels narrows candidates before the full
//! selector test, so a selector costs about what it matches, not the endpoint count.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::{Endpoint, Model, NamespaceScope};
use crate::selector::{LabelSelector, Op};

/// A namespace scope with `Own` resolved to the policy's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Namespaces {
    Exactly(String),
    Matching(LabelSelector),
}

impl Namespaces {
    pub fn resolve(scope: &NamespaceScope, own: &str) -> Namespaces {
        match scope {
            NamespaceScope::Own => Namespaces::Exactly(own.to_owned()),
            NamespaceScope::Matching(sel) => Namespaces::Matching(sel.clone()),
        }
    }
}

pub struct Index<'m> {
    model: &'m Model,
    pub endpoints: Vec<&'m Endpoint>,
    by_namespace: BTreeMap<&'m str, Vec<usize>>,
    by_label: HashMap<(&'m str, &'m str), Vec<usize>>,
    cache: HashMap<(Namespaces, LabelSelector), Vec<usize>>,
}

impl<'m> Index<'m> {
    pub fn new(model: &'m Model) -> Index<'m> {
        let endpoints: Vec<&Endpoint> = model.endpoints.values().collect();
        let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            by_namespace
                .entry(ep.namespace.as_str())
                .or_default()
                .push(i);
            for (k, v) in &ep.labels {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        Index {
            model,
            endpoints,
            by_namespace,
            by_label,
            cache: HashMap::new(),
        }
    }

    fn namespace_names(&self, namespaces: &Namespaces) -> Vec<&'m str> {
        match namespaces {
            Namespaces::Exactly(ns) => self
                .model
                .namespaces
                .get_key_value(ns)
                .map(|(k, _)| k.as_str())
                .into_iter()
                .collect(),
            Namespaces::Matching(sel) => self
                .model
                .namespaces
                .values()
                .filter(|ns| sel.matches(&ns.labels))
                .map(|ns| ns.name.as_str())
                .collect(),
        }
    }

    /// Indices (ascending) of the endpoints in matching namespaces whose labels match `pods`.
    pub fn select(&mut self, namespaces: &Namespaces, pods: &LabelSelector) -> &[usize] {
        let key = (namespaces.clone(), pods.clone());
        if !self.cache.contains_key(&key) {
            let found = self.compute(namespaces, pods);
            self.cache.insert(key.clone(), found);
        }
        &self.cache[&key]
    }

    fn compute(&self, namespaces: &Namespaces, pods: &LabelSelector) -> Vec<usize> {
        let names = self.namespace_names(namespaces);
        // Candidates from the narrowest `In` requirement, if any.
        let narrowest = pods
            .requirements()
            .iter()
            .filter_map(|r| match &r.op {
                Op::In(values) => {
                    let mut ids: Vec<usize> = values
                        .iter()
                        .flat_map(|v| self.by_label.get(&(r.key.as_str(), v.as_str())))
                        .flatten()
                        .copied()
                        .collect();
                    ids.sort_unstable();
                    Some(ids)
                }
                _ => None,
            })
            .min_by_key(Vec::len);
        let wanted: HashSet<&str> = names.iter().copied().collect();
        let in_namespaces = |i: &usize| wanted.contains(self.endpoints[*i].namespace.as_str());
        let mut out: Vec<usize> = match narrowest {
            Some(ids) => ids.into_iter().filter(in_namespaces).collect(),
            None => names
                .iter()
                .flat_map(|ns| self.by_namespace.get(ns).into_iter().flatten().copied())
                .collect(),
        };
        out.retain(|&i| pods.matches(&self.endpoints[i].labels));
        out.sort_unstable();
        out.dedup();
        out
    }
}
