//! Which endpoints each selector matches. Endpoints and namespaces are numbered in
//! model order; candidates come from the smaller of the matching namespaces' members
//! and the narrowest `In` requirement's `(key, value)` postings, and only those get the
//! full selector test, so a selection costs about what it matches, not the endpoint count.

use std::collections::HashMap;

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
    /// Namespace number of each endpoint, and the endpoints of each namespace.
    namespace_of: Vec<usize>,
    members: Vec<Vec<usize>>,
    namespace_number: HashMap<&'m str, usize>,
    by_label: HashMap<(&'m str, &'m str), Vec<usize>>,
    cache: HashMap<(Namespaces, LabelSelector), Vec<usize>>,
}

impl<'m> Index<'m> {
    pub fn new(model: &'m Model) -> Index<'m> {
        let endpoints: Vec<&Endpoint> = model.endpoints.values().collect();
        // `Model::from_objects` declares every namespace an endpoint names.
        let namespace_number: HashMap<&str, usize> = model
            .namespaces
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let mut members = vec![Vec::new(); namespace_number.len()];
        let mut namespace_of = Vec::with_capacity(endpoints.len());
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, ep) in endpoints.iter().enumerate() {
            let ns = namespace_number[ep.namespace.as_str()];
            namespace_of.push(ns);
            members[ns].push(i);
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
            namespace_of,
            members,
            namespace_number,
            by_label,
            cache: HashMap::new(),
        }
    }

    /// Which namespaces (by number) a scope covers.
    fn namespace_mask(&self, namespaces: &Namespaces) -> Vec<bool> {
        match namespaces {
            Namespaces::Exactly(ns) => {
                let mut mask = vec![false; self.members.len()];
                if let Some(&n) = self.namespace_number.get(ns.as_str()) {
                    mask[n] = true;
                }
                mask
            }
            Namespaces::Matching(sel) => self
                .model
                .namespaces
                .values()
                .map(|ns| sel.matches(&ns.labels))
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
        let mask = self.namespace_mask(namespaces);
        let in_scope: usize = mask
            .iter()
            .zip(&self.members)
            .filter(|(m, _)| **m)
            .map(|(_, v)| v.len())
            .sum();
        // The narrowest `In` requirement, by the size of its postings.
        let narrowest: Option<Vec<&Vec<usize>>> = pods
            .requirements()
            .iter()
            .filter_map(|r| match &r.op {
                Op::In(values) => Some(
                    values
                        .iter()
                        .filter_map(|v| self.by_label.get(&(r.key.as_str(), v.as_str())))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .min_by_key(|lists| lists.iter().map(|l| l.len()).sum::<usize>());
        let mut out: Vec<usize> = match narrowest {
            Some(lists) if lists.iter().map(|l| l.len()).sum::<usize>() < in_scope => lists
                .into_iter()
                .flatten()
                .copied()
                .filter(|&i| mask[self.namespace_of[i]])
                .collect(),
            _ => mask
                .iter()
                .zip(&self.members)
                .filter(|(m, _)| **m)
                .flat_map(|(_, v)| v.iter().copied())
                .collect(),
        };
        out.retain(|&i| pods.matches(&self.endpoints[i].labels));
        out.sort_unstable();
        out.dedup();
        out
    }
}
