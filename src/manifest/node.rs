//! A YAML document as a tree whose every node knows its line and column.
//!
//! Manifests are converted to model types by hand from this tree rather than by
//! `#[derive(Deserialize)]`, so that one pass reports *every* problem of a document,
//! each with its own position and field path, instead of stopping at the first.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column of a node in its file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Length of the node's source text in characters (quotes included), where the
    /// parser knows it; lets an error point inside a string (a selector expression).
    pub len: u32,
}

impl Node {
    /// What a user would call this kind of value, for "expected X, got Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "a number",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Where the character `offset` (0-based) of a string value is in the file, when
    /// the string is written on one line, plain or quoted without escapes; else the
    /// node's own position.
    pub fn pos_in_string(&self, offset: usize) -> Pos {
        let Value::Str(s) = &self.value else {
            return self.pos;
        };
        let chars = s.chars().count();
        let quote = if self.len as usize == chars {
            0
        } else if self.len as usize == chars + 2 {
            1
        } else {
            return self.pos;
        };
        if s.contains('\n') {
            return self.pos;
        }
        let offset = u32::try_from(offset.min(chars)).unwrap_or(0);
        Pos {
            line: self.pos.line,
            col: self.pos.col.saturating_add(quote).saturating_add(offset),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The value of `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            value: spanned.value,
            pos: Pos {
                line: u32::try_from(spanned.referenced.line()).unwrap_or(u32::MAX),
                col: u32::try_from(spanned.referenced.column()).unwrap_or(u32::MAX),
            },
            len: u32::try_from(spanned.referenced.span().len()).unwrap_or(u32::MAX),
        })
    }
}

/// Deepest nesting of lists and mappings a document may have. Counted here, as the
/// tree is built, because the parser's own depth budget sees the text only: a short
/// chain of aliases, each nesting the one before, builds a far deeper tree, and every
/// level costs stack.
pub const MAX_DEPTH: usize = 32;

thread_local! {
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One level of nesting being built; the level is left when dropped.
struct Level;

impl Level {
    fn enter<E: de::Error>() -> Result<Level, E> {
        let depth = DEPTH.get() + 1;
        if depth > MAX_DEPTH {
            return Err(E::custom(format!(
                "nested deeper than {MAX_DEPTH} levels of lists and mappings"
            )));
        }
        DEPTH.set(depth);
        Ok(Level)
    }
}

impl Drop for Level {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get() - 1);
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let _level = Level::enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let _level = Level::enter()?;
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_nodes() {
        let docs: Vec<Node> = serde_saphyr::from_multiple(
            "a: 1\nb:\n  - x\n  - {c: true, d: \"80\"}\n---\nkind: List\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[0].get("b").unwrap();
        assert_eq!(b.pos, Pos { line: 3, col: 3 });
        let Value::Seq(items) = &b.value else {
            panic!()
        };
        assert_eq!(items[1].get("d").unwrap().as_str(), Some("80"));
        assert_eq!(items[1].get("d").unwrap().pos, Pos { line: 4, col: 18 });
        assert_eq!(docs[1].get("kind").unwrap().pos.line, 6);
    }

    #[test]
    fn positions_inside_strings() {
        let doc: Node = serde_saphyr::from_str(concat!(
            "a: x == 'y'\n",
            "b: \"x == 'y'\"\n",
            "c: 'x == \"y\"'\n",
            "d: >-\n  x == 'y'\n",
            "e: 'it''s'\n",
            "f: \"a\\tb\"\n",
        ))
        .unwrap();
        let at = |key: &str, offset| doc.get(key).unwrap().pos_in_string(offset);
        assert_eq!(at("a", 5), Pos { line: 1, col: 9 });
        assert_eq!(at("b", 5), Pos { line: 2, col: 10 });
        assert_eq!(at("c", 5), Pos { line: 3, col: 10 });
        // Folded, or with escapes: the string's start, since columns would lie.
        assert_eq!(at("d", 5), doc.get("d").unwrap().pos);
        assert_eq!(at("e", 3), doc.get("e").unwrap().pos);
        assert_eq!(at("f", 2), doc.get("f").unwrap().pos);
    }
}
