//! The rule counters of our table, for every metrics scrape and `netpold status
//! --kernel`: one dump of the table's chains (names and comments), then one dump of
//! each chain's rules, of which only the comment and the counter expression are read,
//! straight from the netlink attributes (no libnftnl objects, no other expression
//! decoded). Rules without a counter are left out.

use std::io;

use super::readback::{ATTEMPTS, Dumper, Failure};
use super::wire::{self, Attrs, Message};
use crate::dataplane::Error;

const FAMILY_INET: u8 = libc::NFPROTO_INET as u8;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_USERDATA: u16 = 12;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_HANDLE: u16 = 3;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_USERDATA: u16 = 7;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// libnftnl's userdata type of a rule's or chain's comment.
const UDATA_COMMENT: u8 = 0;

/// One counted rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleCounter {
    pub chain: String,
    /// The chain's comment (`endpoint shop/db ingress (veth-db)`), empty if none.
    pub chain_comment: String,
    /// Position of the rule in its chain, from 0, counting every rule.
    pub index: usize,
    /// The kernel's handle of the rule.
    pub handle: u64,
    pub rule_comment: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// The counters of every counted rule of `inet <table>` in the current network
/// namespace, chain by chain in name order, rules in chain order; `None` when there is
/// no such table. A dump that a change interrupts is read again.
pub fn read_counters(table: &str) -> Result<Option<Vec<RuleCounter>>, Error> {
    let mut why = String::new();
    for _ in 0..ATTEMPTS {
        match read_once(table) {
            Ok(counters) => return Ok(counters),
            Err(Failure::Retry(reason)) => why = reason,
            Err(Failure::Refused(errno)) => {
                return Err(Error(format!(
                    "reading the counters of table inet {table}: {}",
                    io::Error::from_raw_os_error(errno)
                )));
            }
            Err(Failure::Fatal(e)) => {
                return Err(Error(format!(
                    "reading the counters of table inet {table}: {e}"
                )));
            }
        }
    }
    Err(Error(format!(
        "reading the counters of table inet {table}: gave up after {ATTEMPTS} attempts ({why})"
    )))
}

fn read_once(table: &str) -> Result<Option<Vec<RuleCounter>>, Failure> {
    let mut dump = Dumper::open()?;
    let name = wire::strz(table);
    match dump.exchange(
        libc::NFT_MSG_GETTABLE,
        0,
        &[(NFTA_TABLE_NAME, &name)],
        |_| {},
    ) {
        Ok(()) => {}
        Err(Failure::Refused(libc::ENOENT)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let dump_flags = libc::NLM_F_DUMP as u16;
    let mut chains: Vec<(String, String)> = Vec::new();
    dump.exchange(
        libc::NFT_MSG_GETCHAIN,
        dump_flags,
        &[(NFTA_CHAIN_TABLE, &name)],
        |m| {
            if let Some(chain) = chain(&m, table) {
                chains.push(chain);
            }
        },
    )?;
    chains.sort();
    let mut out = Vec::new();
    // Chain by chain, as the read-back does: each part of a table-wide rule dump walks
    // the table's rules from the start again (at large: 12 s in one dump, 0.7 s in
    // 21,249).
    for (chain_name, chain_comment) in chains {
        let c_name = wire::strz(&chain_name);
        let mut index = 0;
        let listed = dump.exchange(
            libc::NFT_MSG_GETRULE,
            dump_flags,
            &[(NFTA_RULE_TABLE, &name), (NFTA_RULE_CHAIN, &c_name)],
            |m| {
                let Some(rule) = rule(&m, table, &chain_name) else {
                    return;
                };
                if let Some((packets, bytes)) = rule.counter {
                    out.push(RuleCounter {
                        chain: chain_name.clone(),
                        chain_comment: chain_comment.clone(),
                        index,
                        handle: rule.handle,
                        rule_comment: rule.comment,
                        packets,
                        bytes,
                    });
                }
                index += 1;
            },
        );
        match listed {
            // Deleted since the chains were listed: its counters are gone with it.
            Err(Failure::Refused(libc::ENOENT)) => {}
            other => other?,
        }
    }
    Ok(Some(out))
}

/// (name, comment) of a chain of `table`.
fn chain(m: &Message, table: &str) -> Option<(String, String)> {
    if m.nft_msg() != Some(libc::NFT_MSG_NEWCHAIN as u16) || m.family() != FAMILY_INET {
        return None;
    }
    if m.attr(NFTA_CHAIN_TABLE).map(wire::text)? != table {
        return None;
    }
    let name = m.attr(NFTA_CHAIN_NAME).map(wire::text)?;
    let comment = m
        .attr(NFTA_CHAIN_USERDATA)
        .and_then(comment)
        .unwrap_or_default();
    Some((name, comment))
}

struct RuleFields {
    handle: u64,
    comment: Option<String>,
    /// (packets, bytes) of its counter expression.
    counter: Option<(u64, u64)>,
}

fn rule(m: &Message, table: &str, chain: &str) -> Option<RuleFields> {
    if m.nft_msg() != Some(libc::NFT_MSG_NEWRULE as u16) || m.family() != FAMILY_INET {
        return None;
    }
    if m.attr(NFTA_RULE_TABLE).map(wire::text)? != table
        || m.attr(NFTA_RULE_CHAIN).map(wire::text)? != chain
    {
        return None;
    }
    Some(RuleFields {
        handle: m.attr(NFTA_RULE_HANDLE).and_then(wire::be64).unwrap_or(0),
        comment: m.attr(NFTA_RULE_USERDATA).and_then(comment),
        counter: m.attr(NFTA_RULE_EXPRESSIONS).and_then(counter),
    })
}

/// The first counter expression of an expression list: (packets, bytes).
fn counter(expressions: &[u8]) -> Option<(u64, u64)> {
    Attrs::nested(expressions)
        .filter(|(kind, _)| *kind == NFTA_LIST_ELEM)
        .find_map(|(_, expr)| {
            let mut attrs = Attrs::nested(expr);
            let name = attrs.clone().find(|(k, _)| *k == NFTA_EXPR_NAME)?.1;
            if name != b"counter\0" {
                return None;
            }
            let data = attrs.find(|(k, _)| *k == NFTA_EXPR_DATA)?.1;
            let field = |kind| {
                Attrs::nested(data)
                    .find(|(k, _)| *k == kind)
                    .and_then(|(_, v)| wire::be64(v))
            };
            Some((
                field(NFTA_COUNTER_PACKETS).unwrap_or(0),
                field(NFTA_COUNTER_BYTES).unwrap_or(0),
            ))
        })
}

/// The comment in libnftnl's userdata (type, length, value records).
fn comment(userdata: &[u8]) -> Option<String> {
    let mut rest = userdata;
    while let [kind, len, tail @ ..] = rest {
        let len = usize::from(*len);
        let value = tail.get(..len)?;
        if *kind == UDATA_COMMENT {
            return Some(wire::text(value));
        }
        rest = &tail[len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&u16::try_from(4 + value.len()).unwrap().to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    fn expr(name: &str, data: &[u8]) -> Vec<u8> {
        let mut body = attr(NFTA_EXPR_NAME, &wire::strz(name));
        body.extend(attr(NFTA_EXPR_DATA | 0x8000, data));
        attr(NFTA_LIST_ELEM | 0x8000, &body)
    }

    #[test]
    fn the_counter_expression_is_found_among_others() {
        let mut counter_data = attr(NFTA_COUNTER_BYTES, &1500u64.to_be_bytes());
        counter_data.extend(attr(NFTA_COUNTER_PACKETS, &3u64.to_be_bytes()));
        let mut list = expr("meta", &attr(1, &[0, 0, 0, 1]));
        list.extend(expr("counter", &counter_data));
        list.extend(expr("immediate", &[]));
        assert_eq!(counter(&list), Some((3, 1500)));
        assert_eq!(counter(&expr("log", &[])), None);
    }

    #[test]
    fn the_comment_is_read_from_userdata() {
        assert_eq!(
            comment(&[1, 2, 9, 9, 0, 4, b'a', b'/', b'b', 0]).as_deref(),
            Some("a/b")
        );
        assert_eq!(comment(&[1, 2, 9, 9]), None);
        assert_eq!(
            comment(&[0, 9, b'x']),
            None,
            "a record longer than the data"
        );
    }
}
