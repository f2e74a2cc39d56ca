//! The prefix of a drop log: what the kernel log line or NFLOG message of a dropped
//! packet starts with, naming the direction, the endpoint and the cause, so a reader
//! (`netpold status`, ulogd, a grep of the kernel log) can tell drops apart without
//! looking the rule up.
//!
//! Format: `netpold drop <direction> <endpoint> <cause>: `, for example
//! `netpold drop ingress shop/db isolated: `.
//! - direction: `ingress` or `egress`;
//! - endpoint: `namespace/name`, or `-` for a drop in a base chain that no endpoint
//!   owns (a local endpoint's address arriving by another interface); a name too long
//!   for the prefix is cut and ends in `...` (names never contain `...`);
//! - cause: `isolated` (the endpoint is isolated in that direction and no rule allows
//!   the packet) or `spoofed` (a source address the interface may not send from).
//!
//! No field holds a space, so the words split on whitespace.
//!
//! The `Deny` rules of the ordered and admin policies log `netpold deny <direction>
//! <policy> <direction>[<rule>]: ` instead (`compile::tiered::policy_log_prefix`), for
//! example `netpold deny ingress shop/gate ingress[2]: `: a policy chain is shared by
//! the endpoints it selects, so the prefix names the policy and rule, not an endpoint.
//! The policy is `namespace/name`, a GlobalNetworkPolicy's name, `anp:<name>` or
//! `banp:default`; a prefix too long for nft is cut and ends in `...: `.

use std::fmt;

use crate::model::Direction;

/// What every drop prefix starts with.
pub const PREFIX_START: &str = "netpold drop ";
/// What a policy `Deny` rule's prefix starts with.
pub const DENY_START: &str = "netpold deny ";
/// Longest prefix nft takes (NF_LOG_PREFIXLEN, 128 bytes with the NUL).
pub const MAX_PREFIX: usize = 127;
const CUT_MARK: &str = "...";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropCause {
    /// Isolated in this direction and no rule allows the packet.
    Isolated,
    /// The source address is not one the interface may send from.
    Spoofed,
    /// A policy's `Deny` rule (`DropPrefix::rule` names it).
    Denied,
}

impl DropCause {
    pub fn word(self) -> &'static str {
        match self {
            DropCause::Isolated => "isolated",
            DropCause::Spoofed => "spoofed",
            DropCause::Denied => "denied",
        }
    }
}

impl fmt::Display for DropCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// A drop prefix, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropPrefix {
    pub direction: Direction,
    /// `namespace/name`; `None` for a base-chain drop of no endpoint (`-`).
    pub endpoint: Option<String>,
    pub cause: DropCause,
    /// The endpoint's name (or the policy rule) was cut to fit (it ends in `...`).
    pub truncated: bool,
    /// For `Denied`: the policy and rule, `shop/gate ingress[2]` (the rule left out
    /// when the cut took it).
    pub rule: Option<String>,
}

/// The prefix for drops of `endpoint` (`None`: no endpoint) in `direction`, at most
/// `MAX_PREFIX` bytes; a long endpoint name is cut at a character boundary.
pub fn drop_prefix(direction: Direction, endpoint: Option<&str>, cause: DropCause) -> String {
    let endpoint = endpoint.unwrap_or("-");
    let fixed = PREFIX_START.len() + direction.to_string().len() + cause.word().len() + 4;
    let room = MAX_PREFIX - fixed;
    let name = if endpoint.len() <= room {
        endpoint.to_owned()
    } else {
        let mut end = room - CUT_MARK.len();
        while !endpoint.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}{CUT_MARK}", &endpoint[..end])
    };
    format!("{PREFIX_START}{direction} {name} {cause}: ")
}

/// Reads a prefix `drop_prefix` wrote (trailing `:` and spaces optional); `None` for
/// any other text.
pub fn parse_drop_prefix(text: &str) -> Option<DropPrefix> {
    if let Some(rest) = text.strip_prefix(DENY_START) {
        return parse_deny(rest);
    }
    let (direction, _, mut words) = direction_and_words(text.strip_prefix(PREFIX_START)?)?;
    let endpoint = words.next()?;
    let cause = match words.next()? {
        "isolated" => DropCause::Isolated,
        "spoofed" => DropCause::Spoofed,
        _ => return None,
    };
    if words.next().is_some() || endpoint.is_empty() {
        return None;
    }
    Some(DropPrefix {
        direction,
        truncated: endpoint.ends_with(CUT_MARK),
        endpoint: (endpoint != "-").then(|| endpoint.to_owned()),
        cause,
        rule: None,
    })
}

/// The direction that starts what follows a prefix's first words, the text without
/// its trailing `:` and spaces, and the words after the direction.
fn direction_and_words(rest: &str) -> Option<(Direction, &str, std::str::Split<'_, char>)> {
    let rest = rest.trim_end();
    let rest = rest.strip_suffix(':').unwrap_or(rest);
    let mut words = rest.split(' ');
    let direction = match words.next()? {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        _ => return None,
    };
    Some((direction, rest, words))
}

/// `<direction> <policy> <direction>[<rule>]:` after `DENY_START`.
fn parse_deny(rest: &str) -> Option<DropPrefix> {
    let (direction, rest, mut words) = direction_and_words(rest)?;
    let policy = words.next().filter(|p| !p.is_empty())?;
    let truncated = rest.ends_with(CUT_MARK);
    let rule = match words.next() {
        None if truncated => policy.to_owned(),
        None => return None,
        Some(rule) => {
            let index = rule
                .strip_prefix(&format!("{direction}["))
                .and_then(|r| r.strip_suffix(']'))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            match index {
                Some(_) => format!("{policy} {rule}"),
                // Cut inside the rule word: the policy alone is certain.
                None if truncated => policy.to_owned(),
                None => return None,
            }
        }
    };
    if words.next().is_some() {
        return None;
    }
    Some(DropPrefix {
        direction,
        endpoint: None,
        cause: DropCause::Denied,
        truncated,
        rule: Some(rule),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_reads_back_as_what_it_says() {
        let p = drop_prefix(Direction::Ingress, Some("shop/db"), DropCause::Isolated);
        assert_eq!(p, "netpold drop ingress shop/db isolated: ");
        assert_eq!(
            parse_drop_prefix(&p),
            Some(DropPrefix {
                direction: Direction::Ingress,
                endpoint: Some("shop/db".into()),
                cause: DropCause::Isolated,
                truncated: false,
                rule: None,
            })
        );
        let base = drop_prefix(Direction::Egress, None, DropCause::Spoofed);
        assert_eq!(base, "netpold drop egress - spoofed: ");
        let parsed = parse_drop_prefix(&base).unwrap();
        assert_eq!(parsed.endpoint, None);
        assert_eq!(parsed.cause, DropCause::Spoofed);
        // As a kernel log line or NFLOG prefix comes: trimmed, or followed by more.
        assert!(parse_drop_prefix("netpold drop egress a/b spoofed:").is_some());
        assert!(parse_drop_prefix("netpold drop egress a/b spoofed").is_some());
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary_to_fit() {
        let long = format!("{}/{}", "n".repeat(63), "é".repeat(120));
        for direction in Direction::BOTH {
            for cause in [DropCause::Isolated, DropCause::Spoofed] {
                let p = drop_prefix(direction, Some(&long), cause);
                assert!(p.len() <= MAX_PREFIX, "{} bytes: {p}", p.len());
                let parsed = parse_drop_prefix(&p).unwrap();
                assert!(parsed.truncated);
                let name = parsed.endpoint.unwrap();
                assert!(long.starts_with(name.trim_end_matches("...")), "{name}");
                assert_eq!(parsed.cause, cause);
                assert_eq!(parsed.direction, direction);
            }
        }
        // Exactly at the limit: not cut.
        let room = MAX_PREFIX - "netpold drop ingress  isolated: ".len();
        let fits = "a".repeat(room);
        let p = drop_prefix(Direction::Ingress, Some(&fits), DropCause::Isolated);
        assert_eq!(p.len(), MAX_PREFIX);
        assert!(!parse_drop_prefix(&p).unwrap().truncated);
    }

    #[test]
    fn policy_deny_prefixes_name_the_policy_and_rule() {
        use crate::compile::policy_log_prefix;
        for (policy, direction, rule) in [
            ("shop/gate", Direction::Ingress, 2),
            ("global-deny", Direction::Egress, 0),
            ("anp:tenants", Direction::Ingress, 11),
            ("banp:default", Direction::Egress, 3),
        ] {
            let text = policy_log_prefix("deny", direction, policy, rule);
            assert_eq!(
                parse_drop_prefix(&text),
                Some(DropPrefix {
                    direction,
                    endpoint: None,
                    cause: DropCause::Denied,
                    truncated: false,
                    rule: Some(format!("{policy} {direction}[{rule}]")),
                }),
                "{text}"
            );
        }
        // Cut to fit nft: the policy's start stays, marked as cut.
        let long = format!("{}/{}", "n".repeat(63), "p".repeat(200));
        let text = policy_log_prefix("deny", Direction::Ingress, &long, 4);
        let parsed = parse_drop_prefix(&text).unwrap();
        assert!(
            parsed.truncated && parsed.cause == DropCause::Denied,
            "{parsed:?}"
        );
        let rule = parsed.rule.unwrap();
        assert!(long.starts_with(rule.trim_end_matches("...")), "{rule}");
        // A name that leaves the rule word cut.
        let text = policy_log_prefix("deny", Direction::Egress, &"q".repeat(95), 12345);
        let parsed = parse_drop_prefix(&text).unwrap();
        assert_eq!(
            parsed.rule.as_deref(),
            Some("q".repeat(95).as_str()),
            "{text}"
        );
        // Log rules do not drop; other words are not ours.
        for text in [
            "netpold log ingress a/b ingress[0]: ",
            "netpold deny sideways a/b ingress[0]: ",
            "netpold deny ingress a/b ingress[x]: ",
            "netpold deny ingress a/b: ",
            "netpold deny ingress a/b ingress[0] more: ",
        ] {
            assert_eq!(parse_drop_prefix(text), None, "{text:?}");
        }
    }

    #[test]
    fn other_text_is_not_a_drop_prefix() {
        for text in [
            "",
            "netpold drop",
            "netpold drop sideways a/b isolated: ",
            "netpold drop ingress a/b bored: ",
            "netpold drop ingress a/b isolated extra: ",
            "netpold drop ingress  isolated: ",
            "IN=veth0 OUT=eth0",
            "np-drop ingress a/b isolated: ",
        ] {
            assert_eq!(parse_drop_prefix(text), None, "{text:?}");
        }
    }
}
