//! Kubernetes label selectors (matchLabels + matchExpressions) over label maps.

pub mod expr;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
}

impl Requirement {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            Op::In(values) => value.is_some_and(|v| values.contains(v)),
            // Upstream semantics: NotIn also matches objects that lack the key.
            Op::NotIn(values) => value.is_none_or(|v| !values.contains(v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
        }
    }
}

/// A selector in canonical form: requirements sorted and deduplicated, so two
/// spellings of the same selector (matchLabels vs. `In` with one value, other
/// order) compare equal and share one kernel set. The empty selector matches all.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

impl LabelSelector {
    pub fn new(reqs: impl IntoIterator<Item = Requirement>) -> Self {
        let mut reqs: Vec<Requirement> = reqs.into_iter().collect();
        reqs.sort();
        reqs.dedup();
        LabelSelector { reqs }
    }

    pub fn everything() -> Self {
        LabelSelector::default()
    }

    pub fn from_match_labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector::new(pairs.into_iter().map(|(k, v)| Requirement {
            key: k.to_owned(),
            op: Op::In(BTreeSet::from([v.to_owned()])),
        }))
    }

    pub fn is_everything(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.reqs.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    /// A compact, stable rendering used in rule comments and `plan` output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reqs.is_empty() {
            return f.write_str("all");
        }
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let join = |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join("|");
            match &r.op {
                Op::In(v) if v.len() == 1 => write!(f, "{}={}", r.key, join(v))?,
                Op::In(v) => write!(f, "{} in ({})", r.key, join(v))?,
                Op::NotIn(v) => write!(f, "{} notin ({})", r.key, join(v))?,
                Op::Exists => write!(f, "{}", r.key)?,
                Op::DoesNotExist => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: Op) -> Requirement {
        Requirement {
            key: key.into(),
            op,
        }
    }

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn operators() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let cases = [
            (req("app", Op::In(set(&["web", "api"]))), true, false),
            (req("app", Op::In(set(&["db"]))), false, false),
            (req("app", Op::NotIn(set(&["db"]))), true, true),
            (req("app", Op::NotIn(set(&["web"]))), false, true),
            (req("tier", Op::Exists), true, false),
            (req("tier", Op::DoesNotExist), false, true),
        ];
        for (r, on_web, on_bare) in cases {
            assert_eq!(r.matches(&web), on_web, "{r:?} on web");
            assert_eq!(r.matches(&bare), on_bare, "{r:?} on bare");
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::everything().matches(&labels(&[])));
        assert!(LabelSelector::everything().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn requirements_are_anded_and_canonical() {
        let a = LabelSelector::new([req("tier", Op::Exists), req("app", Op::In(set(&["web"])))]);
        let b = LabelSelector::new([
            req("app", Op::In(set(&["web"]))),
            req("tier", Op::Exists),
            req("tier", Op::Exists),
        ]);
        assert_eq!(a, b);
        assert_eq!(a, {
            let mut s = LabelSelector::from_match_labels([("app", "web")]).reqs;
            s.push(req("tier", Op::Exists));
            LabelSelector::new(s)
        });
        assert!(a.matches(&labels(&[("app", "web"), ("tier", "x")])));
        assert!(!a.matches(&labels(&[("app", "web")])));
        assert_eq!(a.to_string(), "app=web,tier");
    }
}
