//! Selector expressions, as Calico writes them (`app == 'web' && !has(canary)`), for the
//! `netpold.io/v1` policy kinds.
//!
//! Grammar (`&&` binds tighter than `||`; `!` tighter than both):
//!
//! ```text
//! expr    := and ('||' and)*
//! and     := unary ('&&' unary)*
//! unary   := '!' unary | primary
//! primary := '(' expr ')' | 'all()' | 'has(' key ')'
//!          | key '==' str | key '!=' str | key 'in' set | key 'not' 'in' set
//! set     := '{' [str (',' str)*] '}'
//! str     := '…' | "…"   (no escapes; a value cannot hold its own quote)
//! ```
//!
//! Semantics (Calico's): `k == v` needs the label; `k != v` and `k not in {…}` also hold
//! when `k` is absent; `k in {}` holds for nothing; the empty expression is `all()`.
//! `contains`, `starts with`, `ends with` and `global()` are Calico's too but are refused
//! here with an error naming them.
//!
//! An expression is kept in a canonical form (`&&`/`||` flattened, their operands sorted
//! and deduplicated, `!!x` = `x`), so two spellings of one expression compare equal and
//! print alike: `Display` gives the canonical text, which names kernel sets.

use std::collections::BTreeSet;
use std::fmt;

use super::Labels;
use crate::model::syntax;

/// Longest selector text accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses and `!` accepted.
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    All,
    Eq(String, String),
    Ne(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Has(String),
    Not(Box<Expr>),
    /// At least two operands, canonical (see the module comment).
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

/// A problem in a selector, at a character offset of its text (0-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

impl Expr {
    /// Parses and canonicalises `text`.
    pub fn parse(text: &str) -> Result<Expr, ParseError> {
        if text.len() > MAX_LEN {
            return Err(ParseError {
                offset: 0,
                message: format!(
                    "selector is {} bytes long; at most {MAX_LEN} are accepted",
                    text.len()
                ),
            });
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
            end: text.chars().count(),
        };
        if p.tokens.is_empty() {
            return Ok(Expr::All);
        }
        let expr = p.or()?;
        if let Some(t) = p.tokens.get(p.at) {
            return Err(ParseError {
                offset: t.offset,
                message: format!("unexpected {} after a complete expression", t.tok),
            });
        }
        Ok(expr.canonical())
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Expr::All)
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Expr::All => true,
            Expr::Eq(k, v) => labels.get(k) == Some(v),
            Expr::Ne(k, v) => labels.get(k) != Some(v),
            Expr::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Expr::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Expr::Has(k) => labels.contains_key(k),
            Expr::Not(e) => !e.matches(labels),
            Expr::And(es) => es.iter().all(|e| e.matches(labels)),
            Expr::Or(es) => es.iter().any(|e| e.matches(labels)),
        }
    }

    /// The same expression in canonical form.
    pub fn canonical(self) -> Expr {
        match self {
            Expr::Not(e) => match e.canonical() {
                Expr::Not(inner) => *inner,
                other => Expr::Not(Box::new(other)),
            },
            Expr::And(es) => {
                let mut flat = BTreeSet::new();
                for e in es {
                    match e.canonical() {
                        Expr::And(inner) => flat.extend(inner),
                        Expr::All => {}
                        other => {
                            flat.insert(other);
                        }
                    }
                }
                let mut flat: Vec<Expr> = flat.into_iter().collect();
                match flat.len() {
                    0 => Expr::All,
                    1 => flat.pop().expect("one operand"),
                    _ => Expr::And(flat),
                }
            }
            Expr::Or(es) => {
                let mut flat = BTreeSet::new();
                for e in es {
                    match e.canonical() {
                        Expr::Or(inner) => flat.extend(inner),
                        Expr::All => return Expr::All,
                        other => {
                            flat.insert(other);
                        }
                    }
                }
                let mut flat: Vec<Expr> = flat.into_iter().collect();
                match flat.len() {
                    1 => flat.pop().expect("one operand"),
                    _ => Expr::Or(flat),
                }
            }
            leaf => leaf,
        }
    }

    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(_) => 0,
            Expr::And(_) => 1,
            _ => 2,
        }
    }
}

/// Single quotes, as Calico's documentation writes them (and nft comments carry them
/// as they are); double quotes around a value that holds a single one.
fn quoted(value: &str) -> String {
    if value.contains('\'') {
        format!("\"{value}\"")
    } else {
        format!("'{value}'")
    }
}

fn set_text(values: &BTreeSet<String>) -> String {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    format!("{{{}}}", items.join(", "))
}

impl fmt::Display for Expr {
    /// The canonical text: parsing it gives the same expression back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operand = |f: &mut fmt::Formatter<'_>, e: &Expr, min: u8| {
            if e.precedence() < min {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        };
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", quoted(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", quoted(v)),
            Expr::In(k, vs) => write!(f, "{k} in {}", set_text(vs)),
            Expr::NotIn(k, vs) => write!(f, "{k} not in {}", set_text(vs)),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Not(e) => match **e {
                // `!a == "b"` would read as `!(a == "b")` too, but is clearer bracketed.
                Expr::All | Expr::Has(_) | Expr::Not(_) => write!(f, "!{e}"),
                _ => write!(f, "!({e})"),
            },
            Expr::And(es) | Expr::Or(es) => {
                let (sep, min) = if matches!(self, Expr::And(_)) {
                    (" && ", 2)
                } else {
                    (" || ", 1)
                };
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    operand(f, e, min)?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    EqEq,
    NotEq,
    Bang,
    AndAnd,
    OrOr,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "{w:?}"),
            Tok::Str(s) => write!(f, "string {}", quoted(s)),
            Tok::EqEq => f.write_str("'=='"),
            Tok::NotEq => f.write_str("'!='"),
            Tok::Bang => f.write_str("'!'"),
            Tok::AndAnd => f.write_str("'&&'"),
            Tok::OrOr => f.write_str("'||'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::LBrace => f.write_str("'{'"),
            Tok::RBrace => f.write_str("'}'"),
            Tok::Comma => f.write_str("','"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// Character offset in the text.
    offset: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |offset: usize, message: String| Err(ParseError { offset, message });
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '=' if next == Some('=') => {
                i += 2;
                Tok::EqEq
            }
            '!' if next == Some('=') => {
                i += 2;
                Tok::NotEq
            }
            '&' if next == Some('&') => {
                i += 2;
                Tok::AndAnd
            }
            '|' if next == Some('|') => {
                i += 2;
                Tok::OrOr
            }
            '=' => return err(start, "'=' is not an operator: write '=='".into()),
            '&' => return err(start, "'&' is not an operator: write '&&'".into()),
            '|' => return err(start, "'|' is not an operator: write '||'".into()),
            '!' => {
                i += 1;
                Tok::Bang
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            '{' => {
                i += 1;
                Tok::LBrace
            }
            '}' => {
                i += 1;
                Tok::RBrace
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '\'' | '"' => {
                let Some(len) = chars[i + 1..].iter().position(|&d| d == c) else {
                    return err(start, format!("string opened with {c} is not closed"));
                };
                let s: String = chars[i + 1..i + 1 + len].iter().collect();
                i += len + 2;
                Tok::Str(s)
            }
            c if is_word_char(c) => {
                let len = chars[i..].iter().take_while(|&&d| is_word_char(d)).count();
                let w: String = chars[i..i + len].iter().collect();
                i += len;
                Tok::Word(w)
            }
            other => return err(start, format!("unexpected character {other:?}")),
        };
        out.push(Token { tok, offset: start });
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
    /// Character length of the text, where "end of selector" errors point.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn peek2(&self) -> Option<&Tok> {
        self.tokens.get(self.at + 1).map(|t| &t.tok)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.offset)
    }

    fn fail<T>(&self, expected: &str) -> Result<T, ParseError> {
        let found = match self.peek() {
            Some(t) => t.to_string(),
            None => "the end of the selector".to_owned(),
        };
        Err(ParseError {
            offset: self.offset(),
            message: format!("expected {expected}, found {found}"),
        })
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&tok) {
            self.at += 1;
            Ok(())
        } else {
            self.fail(expected)
        }
    }

    fn deeper(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError {
                offset: self.offset(),
                message: format!("nested deeper than {MAX_DEPTH} levels of '(' and '!'"),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(&Tok::OrOr) {
            self.at += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.unary()?];
        while self.peek() == Some(&Tok::AndAnd) {
            self.at += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek() == Some(&Tok::Bang) {
            self.at += 1;
            self.deeper()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.primary()
    }

    fn key(&mut self) -> Result<String, ParseError> {
        let offset = self.offset();
        let Some(Tok::Word(w)) = self.peek() else {
            return self.fail("a label key");
        };
        let w = w.clone();
        syntax::label_key(&w).map_err(|message| ParseError { offset, message })?;
        self.at += 1;
        Ok(w)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            Some(Tok::Word(w)) => {
                let hint = format!("a quoted value ('{w}')");
                self.fail(&hint)
            }
            _ => self.fail("a quoted value"),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        self.expect(Tok::LBrace, "'{' opening a set of values")?;
        let mut values = BTreeSet::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.at += 1;
            return Ok(values);
        }
        loop {
            values.insert(self.string()?);
            match self.peek() {
                Some(Tok::Comma) => self.at += 1,
                Some(Tok::RBrace) => {
                    self.at += 1;
                    return Ok(values);
                }
                _ => return self.fail("',' or '}'"),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let offset = self.offset();
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.at += 1;
                self.deeper()?;
                let e = self.or()?;
                self.depth -= 1;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::Word(w)) if self.peek2() == Some(&Tok::LParen) => {
                self.at += 2;
                match w.as_str() {
                    "all" => {
                        self.expect(Tok::RParen, "')' (all() takes nothing)")?;
                        Ok(Expr::All)
                    }
                    "has" => {
                        let k = self.key()?;
                        self.expect(Tok::RParen, "')'")?;
                        Ok(Expr::Has(k))
                    }
                    "global" => Err(ParseError {
                        offset,
                        message:
                            "global() is not supported: netpold selects workload endpoints only"
                                .into(),
                    }),
                    other => Err(ParseError {
                        offset,
                        message: format!("unknown function {other}(): all() or has(key)"),
                    }),
                }
            }
            Some(Tok::Word(_)) => {
                let k = self.key()?;
                match self.peek().cloned() {
                    Some(Tok::EqEq) => {
                        self.at += 1;
                        Ok(Expr::Eq(k, self.string()?))
                    }
                    Some(Tok::NotEq) => {
                        self.at += 1;
                        Ok(Expr::Ne(k, self.string()?))
                    }
                    Some(Tok::Word(op)) if op == "in" => {
                        self.at += 1;
                        Ok(Expr::In(k, self.set()?))
                    }
                    Some(Tok::Word(op)) if op == "not" => {
                        self.at += 1;
                        match self.peek() {
                            Some(Tok::Word(w)) if w == "in" => self.at += 1,
                            _ => return self.fail("'in' after 'not'"),
                        }
                        Ok(Expr::NotIn(k, self.set()?))
                    }
                    Some(Tok::Word(op))
                        if matches!(op.as_str(), "contains" | "starts" | "ends") =>
                    {
                        Err(ParseError {
                            offset: self.offset(),
                            message: format!(
                                "operator {op:?} is not supported: ==, !=, in, not in"
                            ),
                        })
                    }
                    _ => self.fail(&format!("'==', '!=', 'in' or 'not in' after label key {k}")),
                }
            }
            _ => self.fail("a label key, has(…), all(), '!' or '('"),
        }
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

    fn parse(text: &str) -> Expr {
        Expr::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn operators_follow_calico() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let cases = [
            ("", true, true),
            ("all()", true, true),
            ("app == 'web'", true, false),
            ("app == \"web\"", true, false),
            ("app == 'db'", false, false),
            ("app != 'db'", true, true),
            ("app != 'web'", false, true),
            ("app in {'web', 'api'}", true, false),
            ("app in {}", false, false),
            ("app not in {'web'}", false, true),
            ("app not in {'db','x'}", true, true),
            ("has(tier)", true, false),
            ("!has(tier)", false, true),
            ("!all()", false, false),
            ("has(app) && tier == 'front'", true, false),
            ("app == 'db' || tier == 'front'", true, false),
            ("app == 'db' || !has(app)", false, true),
            // && binds tighter: false || (true && false)
            ("app == 'db' || has(app) && has(x)", false, false),
            ("(app == 'db' || has(app)) && has(tier)", true, false),
            ("!(app == 'web' && has(tier))", false, true),
            ("!!has(app)", true, false),
            ("  app=='web'&&tier=='front'  ", true, false),
        ];
        for (text, on_web, on_bare) in cases {
            let e = parse(text);
            assert_eq!(e.matches(&web), on_web, "{text:?} on web ({e})");
            assert_eq!(e.matches(&bare), on_bare, "{text:?} on bare ({e})");
        }
    }

    #[test]
    fn canonical_text_is_shared_by_spellings_and_parses_back() {
        let groups: &[&[&str]] = &[
            &["", "all()", "all() && all()", "(all())"],
            &[
                "a == 'x' && b == 'y'",
                "b == \"y\" && a == 'x'",
                "(b == 'y') && (a == 'x' && b == 'y')",
            ],
            &["a in {'x','y'}", "a in {'y', 'x', 'x'}"],
            &["has(a) || has(b) || has(c)", "has(c) || (has(b) || has(a))"],
            &["has(a)", "!!has(a)", "has(a) && all()"],
            &["all()", "has(a) || all()"],
        ];
        for group in groups {
            let first = parse(group[0]);
            for text in group.iter() {
                assert_eq!(parse(text), first, "{text:?} vs {:?}", group[0]);
                assert_eq!(parse(text).to_string(), first.to_string());
            }
            assert_eq!(parse(&first.to_string()), first, "{first}");
        }
        assert_eq!(
            parse("b == \"y\" && a == 'x'").to_string(),
            "a == 'x' && b == 'y'"
        );
        assert_eq!(
            parse("(a == 'x' || b != 'y') && !(c in {'1'} && has(d))").to_string(),
            "!(c in {'1'} && has(d)) && (a == 'x' || b != 'y')"
        );
        assert_eq!(parse("a == \"it's\"").to_string(), "a == \"it's\"");
    }

    #[test]
    fn errors_say_where_and_what() {
        let cases = [
            ("app = 'web'", 4, "'=' is not an operator"),
            ("app == web", 7, "expected a quoted value ('web')"),
            ("app == 'web", 7, "not closed"),
            ("app == 'web' &&", 15, "found the end of the selector"),
            ("(app == 'web'", 13, "expected ')'"),
            (
                "app == 'web')",
                12,
                "unexpected ')' after a complete expression",
            ),
            ("app contains 'w'", 4, "\"contains\" is not supported"),
            ("global()", 0, "global() is not supported"),
            ("foo(x)", 0, "unknown function foo()"),
            ("has(Bad Key)", 8, "expected ')'"),
            ("has(-x)", 4, "label key \"-x\""),
            ("app", 3, "after label key app"),
            ("app not {'x'}", 8, "'in' after 'not'"),
            ("app in {'x' 'y'}", 12, "',' or '}'"),
            ("a == 'x' # b", 9, "unexpected character '#'"),
            ("ünï == 'x'", 0, "unexpected character 'ü'"),
            ("a == 'é' && ?", 12, "unexpected character '?'"),
        ];
        for (text, offset, needle) in cases {
            let err = Expr::parse(text).expect_err(text);
            assert_eq!(err.offset, offset, "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn limits_are_errors_not_crashes() {
        let deep = format!("{}has(a){}", "(".repeat(40), ")".repeat(40));
        let err = Expr::parse(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper than 32"), "{err}");
        let bangs = format!("{}has(a)", "!".repeat(1000));
        assert!(Expr::parse(&bangs).is_err());
        let ok_deep = format!("{}has(a){}", "(".repeat(30), ")".repeat(30));
        assert_eq!(parse(&ok_deep), Expr::Has("a".into()));
        let long = vec!["has(a)"; 1000].join(" || ");
        let err = Expr::parse(&long).unwrap_err();
        assert!(err.message.contains("at most 4096"), "{err}");
    }

    /// A tiny random generator (no dependency): xorshift.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const KEYS: [&str; 3] = ["a", "b", "x.io/c"];
    const VALUES: [&str; 3] = ["1", "2", "v-3"];

    /// A random expression as text in a random spelling, with its meaning computed
    /// by a reference evaluator that knows nothing of the parser or canonical form.
    type Reference = Box<dyn Fn(&Labels) -> bool>;

    fn random_text(rng: &mut Rng, depth: u32) -> (String, Reference) {
        let key = KEYS[rng.below(3) as usize].to_owned();
        let value = VALUES[rng.below(3) as usize].to_owned();
        let q = if rng.below(2) == 0 { '\'' } else { '"' };
        let pick = if depth == 0 {
            rng.below(6)
        } else {
            rng.below(10)
        };
        match pick {
            0 => ("all()".into(), Box::new(|_| true)),
            1 => (
                format!("{key}=={q}{value}{q}"),
                Box::new(move |l: &Labels| l.get(&key).map(String::as_str) == Some(&*value)),
            ),
            2 => (
                format!("{key} != {q}{value}{q}"),
                Box::new(move |l: &Labels| l.get(&key).map(String::as_str) != Some(&*value)),
            ),
            3 => (
                format!("has( {key} )"),
                Box::new(move |l: &Labels| l.contains_key(&key)),
            ),
            4 => {
                let other = VALUES[rng.below(3) as usize].to_owned();
                (
                    format!("{key} in {{{q}{value}{q},{q}{other}{q}}}"),
                    Box::new(move |l: &Labels| {
                        l.get(&key).is_some_and(|v| *v == value || *v == other)
                    }),
                )
            }
            5 => (
                format!("{key} not in {{ {q}{value}{q} }}"),
                Box::new(move |l: &Labels| l.get(&key) != Some(&value)),
            ),
            6 => {
                let (t, f) = random_text(rng, depth - 1);
                (format!("!({t})"), Box::new(move |l: &Labels| !f(l)))
            }
            7 | 8 => {
                let (ta, fa) = random_text(rng, depth - 1);
                let (tb, fb) = random_text(rng, depth - 1);
                (
                    format!("({ta}) && ({tb})"),
                    Box::new(move |l: &Labels| fa(l) && fb(l)),
                )
            }
            _ => {
                let (ta, fa) = random_text(rng, depth - 1);
                let (tb, fb) = random_text(rng, depth - 1);
                (
                    format!("({ta})||({tb})"),
                    Box::new(move |l: &Labels| fa(l) || fb(l)),
                )
            }
        }
    }

    #[test]
    fn random_expressions_agree_with_a_reference_evaluator() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Every labelling of the keys by absent or one of the values.
        let mut labellings = Vec::new();
        for code in 0..4u32.pow(KEYS.len() as u32) {
            let mut l = Labels::new();
            let mut c = code;
            for key in KEYS {
                if c % 4 > 0 {
                    l.insert(key.to_owned(), VALUES[(c % 4 - 1) as usize].to_owned());
                }
                c /= 4;
            }
            labellings.push(l);
        }
        for _ in 0..500 {
            let (text, reference) = random_text(&mut rng, 4);
            let e = parse(&text);
            let again = parse(&e.to_string());
            assert_eq!(again, e, "{text:?} → {e}");
            for l in &labellings {
                assert_eq!(e.matches(l), reference(l), "{text:?} ({e}) on {l:?}");
            }
        }
    }
}
