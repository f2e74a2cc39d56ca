//! What turns the ruleset the kernel holds into the desired one, object by object, so
//! that a change costs what it changes: set elements for membership, map entries and
//! chains for endpoints that come and go, and a chain's rules only when they differ.
//!
//! The delta assumes the kernel holds exactly `old` (the daemon's last programmed
//! ruleset): adds are `new − old` and removals `old − new`, so no add names an element
//! that exists and no removal one that does not (either aborts a transaction). When the
//! kernel has drifted the transaction fails and the caller replaces the whole table.

use std::collections::BTreeMap;

use super::{Chain, Element, Ruleset, Set, SetKind, Verdict, VerdictMap};

/// Element changes of a set that exists before and after.
#[derive(Debug, PartialEq, Eq)]
pub struct SetChange<'a> {
    pub name: &'a str,
    pub add: Vec<&'a Element>,
    pub remove: Vec<&'a Element>,
    /// Interval sets are flushed and filled again instead: their elements are ranges
    /// whose end markers neighbouring ranges share.
    pub refill: bool,
}

/// Entry changes of a verdict map that exists before and after. A changed verdict is
/// a removal and an add of the same key.
#[derive(Debug, PartialEq, Eq)]
pub struct MapChange<'a> {
    pub name: &'a str,
    pub add: Vec<(&'a str, &'a Verdict)>,
    pub remove: Vec<&'a str>,
}

/// Everything that differs between two rulesets of one table; names refer to the new
/// ruleset for what is added or changed and to the old one for what is removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta<'a> {
    pub added_sets: Vec<&'a str>,
    pub removed_sets: Vec<&'a str>,
    pub changed_sets: Vec<SetChange<'a>>,
    pub added_maps: Vec<&'a str>,
    pub removed_maps: Vec<&'a str>,
    pub changed_maps: Vec<MapChange<'a>>,
    pub added_chains: Vec<&'a str>,
    pub removed_chains: Vec<&'a str>,
    /// Chains whose rules are replaced (flushed, then added again).
    pub changed_chains: Vec<&'a str>,
}

/// Why a delta cannot express a change: the whole table is replaced instead.
#[derive(Debug, PartialEq, Eq)]
pub struct NeedsReplace(pub String);

impl Delta<'_> {
    pub fn is_empty(&self) -> bool {
        *self == Delta::default()
    }

    /// Objects touched, for the log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let (added, removed) = self
            .changed_sets
            .iter()
            .fold((0, 0), |(a, r), c| (a + c.add.len(), r + c.remove.len()));
        let entries = self
            .changed_maps
            .iter()
            .fold((0, 0), |(a, r), c| (a + c.add.len(), r + c.remove.len()));
        for (n, what) in [
            (self.added_sets.len() + self.added_maps.len(), "sets added"),
            (
                self.removed_sets.len() + self.removed_maps.len(),
                "sets removed",
            ),
            (added, "elements added"),
            (removed, "elements removed"),
            (entries.0, "map entries added"),
            (entries.1, "map entries removed"),
            (self.added_chains.len(), "chains added"),
            (self.removed_chains.len(), "chains removed"),
            (self.changed_chains.len(), "chains rewritten"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        if parts.is_empty() {
            "nothing".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The delta from `old` to `new`, or why only a full replace can get there.
pub fn diff<'a>(old: &'a Ruleset, new: &'a Ruleset) -> Result<Delta<'a>, NeedsReplace> {
    if old.table != new.table {
        return Err(NeedsReplace(format!(
            "the table changes from {} to {}",
            old.table, new.table
        )));
    }
    let mut delta = Delta::default();
    let (added, removed, common) = split(&old.sets, &new.sets);
    delta.added_sets = added;
    delta.removed_sets = removed;
    for name in common {
        if let Some(change) = set_change(name, &old.sets[name], &new.sets[name])? {
            delta.changed_sets.push(change);
        }
    }
    let (added, removed, common) = split(&old.maps, &new.maps);
    delta.added_maps = added;
    delta.removed_maps = removed;
    for name in common {
        if let Some(change) = map_change(name, &old.maps[name], &new.maps[name])? {
            delta.changed_maps.push(change);
        }
    }
    let (added, removed, common) = split(&old.chains, &new.chains);
    delta.added_chains = added;
    delta.removed_chains = removed;
    for name in common {
        let (before, after) = (&old.chains[name], &new.chains[name]);
        if !same_chain_properties(before, after) {
            return Err(NeedsReplace(format!("chain {name} changes its properties")));
        }
        if before.rules != after.rules {
            delta.changed_chains.push(name);
        }
    }
    // Removing a base chain changes what every packet of its hook meets, and adding one
    // is as rare: both only happen when netpold itself changes the table's layout.
    let base = |rs: &'a Ruleset, names: &[&str]| {
        names
            .iter()
            .any(|n| rs.chains.get(*n).is_some_and(|c| c.base.is_some()))
    };
    if base(old, &delta.removed_chains) || base(new, &delta.added_chains) {
        return Err(NeedsReplace("a base chain is added or removed".to_owned()));
    }
    Ok(delta)
}

/// Keys only in `new`, only in `old`, and in both.
fn split<'a, V>(
    old: &'a BTreeMap<String, V>,
    new: &'a BTreeMap<String, V>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let added = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .map(String::as_str)
        .collect();
    let removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(String::as_str)
        .collect();
    let common = new
        .keys()
        .filter(|k| old.contains_key(*k))
        .map(String::as_str)
        .collect();
    (added, removed, common)
}

fn same_chain_properties(a: &Chain, b: &Chain) -> bool {
    a.base == b.base && a.comment == b.comment
}

fn set_change<'a>(
    name: &'a str,
    old: &'a Set,
    new: &'a Set,
) -> Result<Option<SetChange<'a>>, NeedsReplace> {
    if old.kind != new.kind || old.comment != new.comment {
        return Err(NeedsReplace(format!(
            "set {name} changes its type or comment"
        )));
    }
    if old.elements == new.elements {
        return Ok(None);
    }
    let refill = matches!(new.kind, SetKind::Interval(_));
    Ok(Some(SetChange {
        name,
        add: new.elements.difference(&old.elements).collect(),
        remove: old.elements.difference(&new.elements).collect(),
        refill,
    }))
}

fn map_change<'a>(
    name: &'a str,
    old: &'a VerdictMap,
    new: &'a VerdictMap,
) -> Result<Option<MapChange<'a>>, NeedsReplace> {
    if old.comment != new.comment {
        return Err(NeedsReplace(format!("map {name} changes its comment")));
    }
    if old.entries == new.entries {
        return Ok(None);
    }
    let mut change = MapChange {
        name,
        add: Vec::new(),
        remove: Vec::new(),
    };
    for (key, verdict) in &new.entries {
        match old.entries.get(key) {
            Some(before) if before == verdict => {}
            Some(_) => {
                change.remove.push(key);
                change.add.push((key, verdict));
            }
            None => change.add.push((key, verdict)),
        }
    }
    for (key, _) in old.entries.iter() {
        if !new.entries.contains_key(key) {
            change.remove.push(key);
        }
    }
    Ok(Some(change))
}

/// `old` with `delta` applied, object by object: what the kernel holds after the
/// delta's transaction. Tests compare it with `new`.
pub fn apply(old: &Ruleset, delta: &Delta, new: &Ruleset) -> Ruleset {
    let mut out = old.clone();
    for name in &delta.removed_sets {
        out.sets.remove(*name);
    }
    for name in &delta.added_sets {
        out.sets.insert((*name).to_owned(), new.sets[*name].clone());
    }
    for change in &delta.changed_sets {
        let set = out.sets.get_mut(change.name).expect("a changed set exists");
        if change.refill {
            set.elements.clear();
            set.elements
                .extend(new.sets[change.name].elements.iter().cloned());
            continue;
        }
        for e in &change.remove {
            set.elements.remove(*e);
        }
        set.elements.extend(change.add.iter().map(|e| (*e).clone()));
    }
    for name in &delta.removed_maps {
        out.maps.remove(*name);
    }
    for name in &delta.added_maps {
        out.maps.insert((*name).to_owned(), new.maps[*name].clone());
    }
    for change in &delta.changed_maps {
        let map = out.maps.get_mut(change.name).expect("a changed map exists");
        for key in &change.remove {
            map.entries.remove(*key);
        }
        for (key, verdict) in &change.add {
            map.entries.insert((*key).to_owned(), (*verdict).clone());
        }
    }
    for name in &delta.removed_chains {
        out.chains.remove(*name);
    }
    for name in delta.added_chains.iter().chain(&delta.changed_chains) {
        out.chains
            .insert((*name).to_owned(), new.chains[*name].clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Family, Rule};
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    fn addr(s: &str) -> Element {
        Element::Addr(s.parse::<IpAddr>().unwrap())
    }

    fn set(elems: &[&str]) -> Set {
        Set {
            kind: SetKind::Addr(Family::V4),
            elements: elems.iter().map(|e| addr(e)).collect::<BTreeSet<_>>(),
            comment: "sel".to_owned(),
        }
    }

    fn chain(rules: &[Verdict]) -> Chain {
        Chain {
            base: None,
            rules: rules.iter().map(|v| Rule::new(vec![], v.clone())).collect(),
            comment: String::new(),
        }
    }

    fn ruleset() -> Ruleset {
        let mut rs = Ruleset {
            table: "t".to_owned(),
            ..Ruleset::default()
        };
        rs.sets.insert("s".into(), set(&["10.0.0.1", "10.0.0.2"]));
        rs.chains.insert("a".into(), chain(&[Verdict::Accept]));
        rs.chains
            .insert("b".into(), chain(&[Verdict::Jump("a".into())]));
        rs.maps.insert(
            "m".into(),
            VerdictMap {
                entries: [("if1".to_owned(), Verdict::Goto("a".into()))].into(),
                comment: String::new(),
            },
        );
        rs
    }

    #[test]
    fn equal_rulesets_have_an_empty_delta() {
        let rs = ruleset();
        let d = diff(&rs, &rs).unwrap();
        assert!(d.is_empty());
        assert_eq!(d.summary(), "nothing");
    }

    #[test]
    fn membership_is_elements_and_a_rule_change_rewrites_one_chain() {
        let old = ruleset();
        let mut new = ruleset();
        new.sets.insert("s".into(), set(&["10.0.0.2", "10.0.0.3"]));
        new.chains.insert("a".into(), chain(&[Verdict::Drop]));
        new.maps
            .get_mut("m")
            .unwrap()
            .entries
            .insert("if1".into(), Verdict::Goto("c".into()));
        new.chains.insert("c".into(), chain(&[]));
        let d = diff(&old, &new).unwrap();
        assert_eq!(d.changed_sets[0].add, vec![&addr("10.0.0.3")]);
        assert_eq!(d.changed_sets[0].remove, vec![&addr("10.0.0.1")]);
        assert_eq!(d.changed_chains, vec!["a"]);
        assert_eq!(d.added_chains, vec!["c"]);
        assert_eq!(d.changed_maps[0].remove, vec!["if1"]);
        assert_eq!(d.changed_maps[0].add.len(), 1);
        assert_eq!(apply(&old, &d, &new), new);
        assert_eq!(
            d.summary(),
            "1 elements added, 1 elements removed, 1 map entries added, 1 map entries removed, 1 chains added, 1 chains rewritten"
        );
    }

    #[test]
    fn removed_objects_are_listed_and_applying_gives_the_new_ruleset() {
        let old = ruleset();
        let mut new = ruleset();
        new.sets.clear();
        new.maps.clear();
        new.chains.remove("b");
        let d = diff(&old, &new).unwrap();
        assert_eq!(d.removed_sets, vec!["s"]);
        assert_eq!(d.removed_maps, vec!["m"]);
        assert_eq!(d.removed_chains, vec!["b"]);
        assert_eq!(apply(&old, &d, &new), new);
    }

    #[test]
    fn a_changed_set_type_or_table_needs_a_replace() {
        let old = ruleset();
        let mut new = ruleset();
        new.sets.get_mut("s").unwrap().kind = SetKind::Interval(Family::V4);
        assert!(diff(&old, &new).is_err());
        let mut new = ruleset();
        new.table = "u".into();
        assert!(diff(&old, &new).is_err());
    }

    #[test]
    fn interval_sets_are_refilled() {
        let mut old = ruleset();
        old.sets.get_mut("s").unwrap().kind = SetKind::Interval(Family::V4);
        let mut new = old.clone();
        new.sets
            .get_mut("s")
            .unwrap()
            .elements
            .insert(addr("10.0.0.9"));
        let d = diff(&old, &new).unwrap();
        assert!(d.changed_sets[0].refill);
        assert_eq!(apply(&old, &d, &new), new);
    }
}
