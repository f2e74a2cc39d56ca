//! Drift detection, the comparing half: our table as the kernel holds it
//! (`read_table`, netlink dumps) and as netpold programs it (`Snapshot::expected`,
//! the encoder's own batch parsed back, so the encoding exists once), both brought to
//! one canonical form by the same code, and the differences put into short sentences.
//!
//! Canonical form: per chain its type/hook/priority/policy and comment, then its rules
//! in order, each as libnftnl's text of its expressions plus its comment; per named
//! set or map its key/data types, flags and userdata, then its elements as a sorted set
//! of strings (interval sets as ranges). Left out because they are not drift: handles, positions, set ids,
//! counter values, the order of a hash set's elements. Anonymous sets are written into
//! the rule that uses them (the kernel names them `__setN`, the batch by id).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{CStr, c_char};
use std::fmt::{self, Write as _};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use nftnl::nftnl_sys as sys;

use super::encode::Encoder;
use super::ffi::Owned;
use super::wire::{self, Message};
use crate::dataplane::Error;
use crate::ir::Ruleset;

const FAMILY_INET: u8 = libc::NFPROTO_INET as u8;
const SET_ANONYMOUS: u32 = 0x1;
const SET_INTERVAL: u32 = 0x4;
const SET_MAP: u32 = 0x8;
const ELEM_INTERVAL_END: u32 = 0x1;
const DATA_VERDICT: u32 = 0xffff_ff00;
const TABLE_F_DORMANT: u32 = 0x1;
const LOG_LEVEL_WARN: u32 = 4;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_GEN_ID: u16 = 1;
// libnftnl's userdata types for comments (udata.h).
const UDATA_RULE_COMMENT: u8 = 0;
const UDATA_CHAIN_COMMENT: u8 = 0;
const UDATA_SET_COMMENT: u8 = 7;
// nft's datatype numbers.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_ICMP6_TYPE: u32 = 29;
const TYPE_IFNAME: u32 = 41;
const TYPE_BITS: u32 = 6;

/// How long one reply may take; the kernel answers from memory, so only a wedged
/// system gets near it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads restarted because the ruleset changed under them (or a dump was interrupted)
/// before giving up.
pub(super) const ATTEMPTS: usize = 8;
/// The kernel sizes a dump message after the reader's buffer, up to 32 KiB or so;
/// this leaves ample room.
const RECV_BUFFER: usize = 256 * 1024;

/// Our table in canonical form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub table: String,
    /// Table flags: a dormant table (0x1) enforces nothing.
    pub flags: u32,
    pub chains: BTreeMap<String, ChainState>,
    /// Named sets and maps; anonymous sets are part of the rules using them.
    pub sets: BTreeMap<String, SetState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainState {
    /// `type filter hook forward priority 0 policy accept`; empty for a regular chain.
    pub hook: String,
    /// `comment "…"`, as nft stores it in the chain's userdata.
    pub userdata: String,
    pub rules: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetState {
    pub map: bool,
    /// `type ipv4_addr (4 bytes) flags 0x4`, and the data type of a map.
    pub definition: String,
    /// The comment and nft's byte-order notes.
    pub userdata: String,
    pub elements: BTreeSet<String>,
}

/// What differs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Object {
    Table,
    Chain(String),
    Set(String),
    Map(String),
}

/// One difference between the kernel and what netpold would program: the object and
/// a sentence for the log (`Display` prints the sentence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub object: Object,
    pub sentence: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence)
    }
}

/// Reads `inet <table>` back from the kernel of the current network namespace;
/// `None` when there is no such table. Restarts when the ruleset changes during the
/// read (generation id before and after, NLM_F_DUMP_INTR) or a reply is lost
/// (ENOBUFS), so the snapshot is of one generation.
pub fn read_table(table: &str) -> Result<Option<Snapshot>, Error> {
    let mut why = String::new();
    for _ in 0..ATTEMPTS {
        match read_once(table) {
            Ok(snapshot) => return Ok(snapshot),
            Err(Failure::Retry(reason)) => why = reason,
            Err(Failure::Refused(errno)) => {
                return Err(Error(format!(
                    "reading table inet {table} back: {}",
                    io::Error::from_raw_os_error(errno)
                )));
            }
            Err(Failure::Fatal(e)) => {
                return Err(Error(format!("reading table inet {table} back: {e}")));
            }
        }
    }
    Err(Error(format!(
        "reading table inet {table} back: gave up after {ATTEMPTS} attempts ({why})"
    )))
}

/// The ruleset's generation id: every committed transaction, to any table, bumps it.
pub fn generation() -> Result<u32, Error> {
    let fail = |why: String| Error(format!("reading the ruleset generation: {why}"));
    let mut dump = Dumper::open().map_err(|f| fail(f.to_string()))?;
    dump.generation().map_err(|f| fail(f.to_string()))
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Retry(why) | Failure::Fatal(why) => f.write_str(why),
            Failure::Refused(errno) => write!(f, "{}", io::Error::from_raw_os_error(*errno)),
        }
    }
}

/// What can go wrong with one attempt at reading the table.
pub(super) enum Failure {
    /// The ruleset changed or a reply was lost: read again.
    Retry(String),
    /// The kernel answered a request with this errno.
    Refused(i32),
    Fatal(String),
}

fn read_once(table: &str) -> Result<Option<Snapshot>, Failure> {
    let mut dump = Dumper::open()?;
    let generation = dump.generation()?;
    let mut builder = Builder::new(table);
    let name = wire::strz(table);
    let found = dump.exchange(
        libc::NFT_MSG_GETTABLE,
        0,
        &[(NFTA_TABLE_NAME, &name)],
        |m| builder.ingest(m),
    );
    match found {
        Ok(()) => {}
        Err(Failure::Refused(libc::ENOENT)) => {
            return if dump.generation()? == generation {
                Ok(None)
            } else {
                Err(Failure::Retry("the ruleset changed while reading".into()))
            };
        }
        Err(e) => return Err(e),
    }
    let dump_flags = libc::NLM_F_DUMP as u16;
    dump.exchange(
        libc::NFT_MSG_GETCHAIN,
        dump_flags,
        &[(NFTA_CHAIN_TABLE, &name)],
        |m| builder.ingest(m),
    )?;
    dump.exchange(
        libc::NFT_MSG_GETSET,
        dump_flags,
        &[(NFTA_SET_TABLE, &name)],
        |m| builder.ingest(m),
    )?;
    let sets: Vec<String> = builder.sets.values().map(|s| s.name.clone()).collect();
    for set in sets {
        let set_name = wire::strz(&set);
        let listed = dump.exchange(
            libc::NFT_MSG_GETSETELEM,
            dump_flags,
            &[
                (NFTA_SET_ELEM_LIST_TABLE, &name),
                (NFTA_SET_ELEM_LIST_SET, &set_name),
            ],
            |m| builder.ingest(m),
        );
        match listed {
            // The set went away since it was listed: the generation check says so.
            Err(Failure::Refused(libc::ENOENT)) => {}
            other => other?,
        }
    }
    // Chain by chain: each part of a table-wide rule dump walks the table's rules
    // from the start again, which at 100k rules costs seconds in the kernel.
    let chains: Vec<String> = builder.chains.keys().cloned().collect();
    for chain in chains {
        let chain_name = wire::strz(&chain);
        dump.exchange(
            libc::NFT_MSG_GETRULE,
            dump_flags,
            &[(NFTA_RULE_TABLE, &name), (NFTA_RULE_CHAIN, &chain_name)],
            |m| builder.ingest(m),
        )?;
    }
    if dump.generation()? != generation {
        return Err(Failure::Retry("the ruleset changed while reading".into()));
    }
    Ok(builder.exists.then(|| builder.finish()))
}

/// A netfilter socket for request/reply and dump exchanges.
pub(super) struct Dumper {
    socket: wire::Socket,
    seq: u32,
    buf: wire::RecvBuf,
}

impl Dumper {
    pub(super) fn open() -> Result<Dumper, Failure> {
        // Dumps are paced by our reads (the kernel fills the next part when we have
        // taken the last), so the default socket buffer is enough.
        let socket = wire::Socket::open(0, true)
            .map_err(|e| Failure::Fatal(format!("cannot open a netfilter netlink socket: {e}")))?;
        Ok(Dumper {
            socket,
            seq: 1,
            buf: wire::RecvBuf::new(RECV_BUFFER),
        })
    }

    fn generation(&mut self) -> Result<u32, Failure> {
        let mut id = None;
        self.exchange_family(libc::NFT_MSG_GETGEN, 0, libc::AF_UNSPEC as u8, &[], |m| {
            if m.nft_msg() == Some(libc::NFT_MSG_NEWGEN as u16) {
                id = m.attr(NFTA_GEN_ID).and_then(wire::be32);
            }
        })?;
        id.ok_or_else(|| Failure::Fatal("the kernel sent no generation id".into()))
    }

    pub(super) fn exchange(
        &mut self,
        msg: i32,
        flags: u16,
        attrs: &[(u16, &[u8])],
        on_message: impl FnMut(Message),
    ) -> Result<(), Failure> {
        self.exchange_family(msg, flags, FAMILY_INET, attrs, on_message)
    }

    /// Sends one request and hands every reply message to `on_message` until the
    /// dump is done or the request acknowledged.
    fn exchange_family(
        &mut self,
        msg: i32,
        flags: u16,
        family: u8,
        attrs: &[(u16, &[u8])],
        mut on_message: impl FnMut(Message),
    ) -> Result<(), Failure> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let request = wire::request(
            msg as u16,
            family,
            flags | libc::NLM_F_ACK as u16,
            seq,
            attrs,
        );
        self.socket
            .send(&request)
            .map_err(|e| Failure::Fatal(format!("cannot send a request to the kernel: {e}")))?;
        loop {
            let data = match self.socket.recv(&mut self.buf) {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wire::wait_readable(&self.socket, REPLY_TIMEOUT)
                        .map_err(|e| Failure::Fatal(format!("waiting for the kernel: {e}")))?
                    {
                        return Err(Failure::Fatal("the kernel did not answer".into()));
                    }
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    return Err(Failure::Retry("a reply was lost (ENOBUFS)".into()));
                }
                Err(e) => return Err(Failure::Fatal(format!("reading the kernel's answer: {e}"))),
            };
            for m in wire::messages(data) {
                // Left over from an earlier, abandoned exchange.
                if m.seq != seq || m.portid != self.socket.portid() {
                    continue;
                }
                if m.flags & wire::NLM_F_DUMP_INTR != 0 {
                    return Err(Failure::Retry("a dump was interrupted by a change".into()));
                }
                if m.kind == wire::NLMSG_DONE {
                    // A dump that failed part way says so here.
                    return match m.done_error() {
                        0 => Ok(()),
                        errno => Err(Failure::Retry(format!(
                            "a dump ended early: {}",
                            io::Error::from_raw_os_error(errno)
                        ))),
                    };
                }
                if let Some(errno) = m.error() {
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(Failure::Refused(errno))
                    };
                }
                on_message(m);
            }
        }
    }
}

impl Snapshot {
    /// What netpold programs for `ruleset`: the encoder's transaction, parsed back
    /// message by message. Fails only for a ruleset the encoder refuses (which is
    /// never sent either).
    pub fn expected(ruleset: &Ruleset) -> Result<Snapshot, Error> {
        let mut encoder = Encoder::new(&ruleset.table, 0);
        encoder.replace(ruleset);
        let (finished, _) = encoder.finish().map_err(Error)?;
        let mut builder = Builder::new(&ruleset.table);
        for page in finished.pages() {
            for m in wire::messages(page) {
                builder.ingest(m);
            }
        }
        Ok(builder.finish())
    }

    /// How `self` (the kernel) differs from `desired`; empty when it does not.
    pub fn differences(&self, desired: &Snapshot) -> Vec<Difference> {
        let mut out = Vec::new();
        if self.flags != desired.flags {
            out.push(Difference {
                object: Object::Table,
                sentence: format!(
                    "table inet {}: flags {}, expected {}",
                    desired.table,
                    table_flags(self.flags),
                    table_flags(desired.flags)
                ),
            });
        }
        for (name, want) in &desired.chains {
            let object = Object::Chain(name.clone());
            match self.chains.get(name) {
                None => out.push(Difference {
                    object,
                    sentence: format!("chain {name} is missing"),
                }),
                Some(have) => {
                    // A chain's hook, policy or comment is put right only by defining
                    // the chain again, which a replacement of the table does.
                    if have.hook != want.hook {
                        out.push(Difference {
                            object: Object::Table,
                            sentence: format!(
                                "chain {name}: {}, expected {}",
                                or_plain(&have.hook, "a regular chain"),
                                or_plain(&want.hook, "a regular chain")
                            ),
                        });
                    }
                    if have.userdata != want.userdata {
                        out.push(Difference {
                            object: Object::Table,
                            sentence: format!("chain {name}: its comment differs"),
                        });
                    }
                    if let Some(s) = rules_sentence(&have.rules, &want.rules) {
                        out.push(Difference {
                            object,
                            sentence: format!("chain {name}: {s}"),
                        });
                    }
                }
            }
        }
        for (name, have) in &self.chains {
            if !desired.chains.contains_key(name) {
                out.push(Difference {
                    object: Object::Chain(name.clone()),
                    sentence: format!("chain {name} is unexpected ({} rules)", have.rules.len()),
                });
            }
        }
        for (name, want) in &desired.sets {
            match self.sets.get(name) {
                None => out.push(Difference {
                    object: set_object(name, want),
                    sentence: format!("{} {name} is missing", kind(want)),
                }),
                Some(have) => {
                    if have.definition != want.definition || have.map != want.map {
                        out.push(Difference {
                            object: set_object(name, want),
                            sentence: format!(
                                "{} {name}: {} {}, expected {} {}",
                                kind(want),
                                kind(have),
                                have.definition,
                                kind(want),
                                want.definition
                            ),
                        });
                    }
                    if have.userdata != want.userdata {
                        out.push(Difference {
                            object: set_object(name, want),
                            sentence: format!(
                                "{} {name}: its comment or byte-order notes differ",
                                kind(want)
                            ),
                        });
                    }
                    if let Some(s) = elements_sentence(&have.elements, &want.elements) {
                        out.push(Difference {
                            object: set_object(name, want),
                            sentence: format!("{} {name}: {s}", kind(want)),
                        });
                    }
                }
            }
        }
        for (name, have) in &self.sets {
            if !desired.sets.contains_key(name) {
                out.push(Difference {
                    object: set_object(name, have),
                    sentence: format!(
                        "{} {name} is unexpected ({} elements)",
                        kind(have),
                        have.elements.len()
                    ),
                });
            }
        }
        out
    }
}

/// The differences between what the kernel holds (`None`: not our table at all) and
/// `desired`.
pub fn drift(actual: Option<&Snapshot>, desired: &Snapshot) -> Vec<Difference> {
    match actual {
        Some(actual) => actual.differences(desired),
        None => vec![Difference {
            object: Object::Table,
            sentence: format!("table inet {} is missing", desired.table),
        }],
    }
}

fn table_flags(flags: u32) -> String {
    match flags {
        0 => "none".to_owned(),
        f if f & TABLE_F_DORMANT != 0 => format!("{f:#x} (dormant)"),
        f => format!("{f:#x}"),
    }
}

fn or_plain<'a>(hook: &'a str, plain: &'a str) -> &'a str {
    if hook.is_empty() { plain } else { hook }
}

fn kind(set: &SetState) -> &'static str {
    if set.map { "map" } else { "set" }
}

fn set_object(name: &str, set: &SetState) -> Object {
    if set.map {
        Object::Map(name.to_owned())
    } else {
        Object::Set(name.to_owned())
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `3 rules, expected 5 (rule 2 differs)`, `rule 4 differs`, or `None` when equal.
fn rules_sentence(have: &[String], want: &[String]) -> Option<String> {
    let first = have.iter().zip(want).position(|(h, w)| h != w);
    if have.len() != want.len() {
        let detail = match first {
            Some(i) => format!("rule {} differs", i + 1),
            None if have.len() > want.len() => format!("rule {} unexpected", want.len() + 1),
            None => format!("rule {} missing", have.len() + 1),
        };
        return Some(format!(
            "{}, expected {} ({detail})",
            plural(have.len(), "rule", "rules"),
            want.len()
        ));
    }
    let first = first?;
    let differing = have.iter().zip(want).filter(|(h, w)| h != w).count();
    Some(if differing == 1 {
        format!("rule {} differs", first + 1)
    } else {
        format!(
            "{differing} of {} rules differ (first: rule {})",
            want.len(),
            first + 1
        )
    })
}

/// At most this many elements are named in a sentence.
const LISTED: usize = 3;

fn listed<'a>(items: impl Iterator<Item = &'a String>, n: usize) -> String {
    let mut shown: Vec<&str> = items.take(LISTED).map(String::as_str).collect();
    if n > LISTED {
        shown.push("…");
    }
    shown.join(", ")
}

/// `1 element missing (198.18.0.7), 2 unexpected (…)`, or `None` when equal.
fn elements_sentence(have: &BTreeSet<String>, want: &BTreeSet<String>) -> Option<String> {
    let missing = want.difference(have).count();
    let unexpected = have.difference(want).count();
    let mut parts = Vec::new();
    if missing > 0 {
        parts.push(format!(
            "{} missing ({})",
            plural(missing, "element", "elements"),
            listed(want.difference(have), missing)
        ));
    }
    if unexpected > 0 {
        let noun = if parts.is_empty() {
            plural(unexpected, "element", "elements")
        } else {
            unexpected.to_string()
        };
        parts.push(format!(
            "{noun} unexpected ({})",
            listed(have.difference(want), unexpected)
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// libnftnl numbers the elements of a list it builds 1, 2, 3… (the kernel takes any
/// type there) but parses only NFTA_LIST_ELEM (1), as the kernel sends them: a copy
/// of an element message from a batch with every element renumbered 1, or `None`
/// when nothing needs renumbering.
fn list_elements_renumbered(m: &Message) -> Option<Vec<u8>> {
    const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    const NFTA_LIST_ELEM: u16 = 1;
    let base = m.bytes.as_ptr() as usize;
    let (_, list) = m.attrs().find(|(k, _)| *k == NFTA_SET_ELEM_LIST_ELEMENTS)?;
    let offsets: Vec<usize> = wire::Attrs::nested(list)
        .filter(|(kind, _)| *kind != NFTA_LIST_ELEM)
        // Each payload follows its 4-byte header; the type is its last two bytes.
        .map(|(_, payload)| payload.as_ptr() as usize - base - 2)
        .collect();
    if offsets.is_empty() {
        return None;
    }
    let mut copy = m.bytes.to_vec();
    for at in offsets {
        let flags = u16::from_ne_bytes([copy[at], copy[at + 1]]) & !0x3fff;
        copy[at..at + 2].copy_from_slice(&(flags | NFTA_LIST_ELEM).to_ne_bytes());
    }
    Some(copy)
}

/// A string libnftnl returned (NULL: empty).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string alive for the call.
unsafe fn owned_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: per the contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// The bytes of an attribute a libnftnl getter returned (NULL: none).
///
/// # Safety
/// `p` is NULL or points at `len` readable bytes alive for the call.
unsafe fn owned_bytes(p: *const std::ffi::c_void, len: u32) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }.to_vec())
}

fn nlh(m: &Message) -> *const libc::nlmsghdr {
    m.bytes.as_ptr().cast()
}

fn a(attr: u32) -> u16 {
    attr as u16
}

/// A rule as text, with the set references marked for resolving once every set is
/// known (anonymous sets are written into the rule).
struct RawRule {
    chain: String,
    text: String,
    /// Where `text` holds `@name` of a looked-up set, and the set's key.
    sets: Vec<(std::ops::Range<usize>, String)>,
}

#[derive(Clone)]
struct RawElem {
    key: Vec<u8>,
    key_end: Option<Vec<u8>>,
    flags: u32,
    verdict: Option<(i32, Option<String>)>,
    data: Option<Vec<u8>>,
    userdata: Option<Vec<u8>>,
}

struct RawSet {
    name: String,
    flags: u32,
    key_type: u32,
    key_len: u32,
    data: Option<(u32, u32)>,
    userdata: Option<Vec<u8>>,
    /// Elements of an interval set, paired into ranges once all are in.
    raw: Vec<RawElem>,
    /// Elements of any other set, already as text.
    elements: Vec<String>,
}

/// Collects messages (dump replies or batch messages) for one table and turns them
/// into a `Snapshot`.
struct Builder {
    table: String,
    exists: bool,
    flags: u32,
    /// Name → (hook, userdata), as in `ChainState`.
    chains: BTreeMap<String, (String, String)>,
    rules: Vec<RawRule>,
    /// By set key (see `set_key`).
    sets: HashMap<String, RawSet>,
}

/// Sets are known by name, except an anonymous set inside the transaction that
/// creates it: its name is the template `__set%d` and its id tells it apart.
fn set_key(name: &str, id: Option<u32>) -> String {
    match id {
        Some(id) if name.contains('%') => format!("%{id}"),
        _ => name.to_owned(),
    }
}

impl Builder {
    fn new(table: &str) -> Builder {
        Builder {
            table: table.to_owned(),
            exists: false,
            flags: 0,
            chains: BTreeMap::new(),
            rules: Vec::new(),
            sets: HashMap::new(),
        }
    }

    fn ingest(&mut self, m: Message) {
        if m.family() != FAMILY_INET {
            return;
        }
        let Some(kind) = m.nft_msg() else { return };
        let ours = || m.attr(NFTA_TABLE_NAME).map(wire::text).as_deref() == Some(&self.table);
        match i32::from(kind) {
            libc::NFT_MSG_NEWTABLE if ours() => {
                self.exists = true;
                self.flags = m.attr(NFTA_TABLE_FLAGS).and_then(wire::be32).unwrap_or(0);
            }
            // In a batch: the replace deletes the table before adding it again.
            libc::NFT_MSG_DELTABLE if ours() => *self = Builder::new(&self.table),
            libc::NFT_MSG_NEWCHAIN => self.chain(&m),
            libc::NFT_MSG_NEWRULE => self.rule(&m),
            libc::NFT_MSG_NEWSET => self.set(&m),
            libc::NFT_MSG_NEWSETELEM => self.elements(&m),
            _ => {}
        }
    }

    fn chain(&mut self, m: &Message) {
        // SAFETY: `m` is a whole message (length checked by `wire::messages`); the
        // chain object is freed by `Owned`, strings are copied before it is.
        unsafe {
            let c = Owned::new(sys::nftnl_chain_alloc());
            if sys::nftnl_chain_nlmsg_parse(nlh(m), c.raw()) < 0 {
                return;
            }
            if owned_str(sys::nftnl_chain_get_str(c.raw(), a(sys::NFTNL_CHAIN_TABLE))) != self.table
            {
                return;
            }
            let name = owned_str(sys::nftnl_chain_get_str(c.raw(), a(sys::NFTNL_CHAIN_NAME)));
            let mut hook = String::new();
            if sys::nftnl_chain_is_set(c.raw(), a(sys::NFTNL_CHAIN_HOOKNUM)) {
                let number = sys::nftnl_chain_get_u32(c.raw(), a(sys::NFTNL_CHAIN_HOOKNUM));
                let _ = write!(
                    hook,
                    "type {} hook {} priority {}",
                    owned_str(sys::nftnl_chain_get_str(c.raw(), a(sys::NFTNL_CHAIN_TYPE))),
                    hook_name(number),
                    sys::nftnl_chain_get_s32(c.raw(), a(sys::NFTNL_CHAIN_PRIO))
                );
                if sys::nftnl_chain_is_set(c.raw(), a(sys::NFTNL_CHAIN_POLICY)) {
                    let policy = sys::nftnl_chain_get_u32(c.raw(), a(sys::NFTNL_CHAIN_POLICY));
                    let _ = write!(hook, " policy {}", verdict_name(policy as i32, None));
                }
            }
            let mut len = 0;
            let udata = sys::nftnl_chain_get_data(c.raw(), a(sys::NFTNL_CHAIN_USERDATA), &mut len);
            let userdata = owned_bytes(udata, len)
                .map(|u| udata_text(&u, UDATA_CHAIN_COMMENT))
                .unwrap_or_default();
            self.chains.insert(name, (hook, userdata));
        }
    }

    fn rule(&mut self, m: &Message) {
        // SAFETY: as in `chain`; expressions belong to the rule and are only read
        // while it lives.
        unsafe {
            let r = Owned::new(sys::nftnl_rule_alloc());
            if sys::nftnl_rule_nlmsg_parse(nlh(m), r.raw()) < 0 {
                return;
            }
            if owned_str(sys::nftnl_rule_get_str(r.raw(), a(sys::NFTNL_RULE_TABLE))) != self.table {
                return;
            }
            let chain = owned_str(sys::nftnl_rule_get_str(r.raw(), a(sys::NFTNL_RULE_CHAIN)));
            let mut rule = RawRule {
                chain,
                text: String::new(),
                sets: Vec::new(),
            };
            let mut buf = Vec::new();
            let iter = Owned::new(sys::nftnl_expr_iter_create(r.raw()));
            loop {
                let e = sys::nftnl_expr_iter_next(iter.raw());
                if e.is_null() {
                    break;
                }
                if !rule.text.is_empty() {
                    rule.text.push(' ');
                }
                expression(e, &mut rule, &mut buf);
            }
            let mut len = 0;
            let udata = sys::nftnl_rule_get_data(r.raw(), a(sys::NFTNL_RULE_USERDATA), &mut len);
            if let Some(u) = owned_bytes(udata, len) {
                let _ = write!(rule.text, " {}", udata_text(&u, UDATA_RULE_COMMENT));
            }
            // Kept until the table is read whole: 100k rules make the slack count.
            rule.text.shrink_to_fit();
            self.rules.push(rule);
        }
    }

    fn set(&mut self, m: &Message) {
        // SAFETY: as in `chain`.
        unsafe {
            let s = Owned::new(sys::nftnl_set_alloc());
            if sys::nftnl_set_nlmsg_parse(nlh(m), s.raw()) < 0 {
                return;
            }
            if owned_str(sys::nftnl_set_get_str(s.raw(), a(sys::NFTNL_SET_TABLE))) != self.table {
                return;
            }
            let get = |attr: u32| sys::nftnl_set_get_u32(s.raw(), a(attr));
            let is_set = |attr: u32| sys::nftnl_set_is_set(s.raw(), a(attr));
            let name = owned_str(sys::nftnl_set_get_str(s.raw(), a(sys::NFTNL_SET_NAME)));
            let id = is_set(sys::NFTNL_SET_ID).then(|| get(sys::NFTNL_SET_ID));
            let data = is_set(sys::NFTNL_SET_DATA_TYPE)
                .then(|| (get(sys::NFTNL_SET_DATA_TYPE), get(sys::NFTNL_SET_DATA_LEN)));
            let mut len = 0;
            let udata = sys::nftnl_set_get_data(s.raw(), a(sys::NFTNL_SET_USERDATA), &mut len);
            let set = RawSet {
                name: name.clone(),
                flags: get(sys::NFTNL_SET_FLAGS),
                key_type: get(sys::NFTNL_SET_KEY_TYPE),
                key_len: get(sys::NFTNL_SET_KEY_LEN),
                data,
                userdata: owned_bytes(udata, len),
                raw: Vec::new(),
                elements: Vec::new(),
            };
            self.sets.insert(set_key(&name, id), set);
        }
    }

    fn elements(&mut self, m: &Message) {
        let renumbered;
        let m = match list_elements_renumbered(m) {
            Some(bytes) => {
                renumbered = wire::RecvBuf::from_bytes(&bytes);
                match wire::messages(renumbered.bytes()).next() {
                    Some(m) => m,
                    None => return,
                }
            }
            None => *m,
        };
        // SAFETY: as in `chain`; elements belong to the set and are only read while
        // it lives.
        unsafe {
            let s = Owned::new(sys::nftnl_set_alloc());
            if sys::nftnl_set_elems_nlmsg_parse(nlh(&m), s.raw()) < 0 {
                return;
            }
            if owned_str(sys::nftnl_set_get_str(s.raw(), a(sys::NFTNL_SET_TABLE))) != self.table {
                return;
            }
            let name = owned_str(sys::nftnl_set_get_str(s.raw(), a(sys::NFTNL_SET_NAME)));
            let id = sys::nftnl_set_is_set(s.raw(), a(sys::NFTNL_SET_ID))
                .then(|| sys::nftnl_set_get_u32(s.raw(), a(sys::NFTNL_SET_ID)));
            let Some(set) = self.sets.get_mut(&set_key(&name, id)) else {
                return;
            };
            let iter = Owned::new(sys::nftnl_set_elems_iter_create(s.raw()));
            loop {
                // `next` returns the current element and moves on; NULL at the end.
                let e = sys::nftnl_set_elems_iter_next(iter.raw());
                if e.is_null() {
                    break;
                }
                let bytes = |attr: u32| {
                    let mut len = 0;
                    let p = sys::nftnl_set_elem_get(e, a(attr), &mut len);
                    owned_bytes(p, len)
                };
                let has = |attr: u32| sys::nftnl_set_elem_is_set(e, a(attr));
                let verdict = has(sys::NFTNL_SET_ELEM_VERDICT).then(|| {
                    let code = sys::nftnl_set_elem_get_u32(e, a(sys::NFTNL_SET_ELEM_VERDICT));
                    let chain = has(sys::NFTNL_SET_ELEM_CHAIN).then(|| {
                        owned_str(sys::nftnl_set_elem_get_str(e, a(sys::NFTNL_SET_ELEM_CHAIN)))
                    });
                    (code as i32, chain)
                });
                let elem = RawElem {
                    key: bytes(sys::NFTNL_SET_ELEM_KEY).unwrap_or_default(),
                    key_end: bytes(sys::NFTNL_SET_ELEM_KEY_END),
                    flags: if has(sys::NFTNL_SET_ELEM_FLAGS) {
                        sys::nftnl_set_elem_get_u32(e, a(sys::NFTNL_SET_ELEM_FLAGS))
                    } else {
                        0
                    },
                    verdict,
                    data: bytes(sys::NFTNL_SET_ELEM_DATA),
                    userdata: bytes(sys::NFTNL_SET_ELEM_USERDATA),
                };
                if set.flags & SET_INTERVAL != 0 && elem.key_end.is_none() {
                    set.raw.push(elem);
                } else {
                    set.elements.push(element_text(set.key_type, &elem));
                }
            }
        }
    }

    fn finish(self) -> Snapshot {
        let mut sets = BTreeMap::new();
        let mut anonymous = HashMap::new();
        for (key, set) in &self.sets {
            let elements: BTreeSet<String> = set
                .elements
                .iter()
                .cloned()
                .chain(interval_strings(set.key_type, &set.raw))
                .collect();
            if set.flags & SET_ANONYMOUS != 0 {
                let list: Vec<&str> = elements.iter().map(String::as_str).collect();
                anonymous.insert(
                    key.as_str(),
                    format!(
                        "{{ {} }} ({} {})",
                        list.join(", "),
                        set_definition(set),
                        set_userdata(set)
                    ),
                );
            } else {
                sets.insert(
                    set.name.clone(),
                    SetState {
                        map: set.flags & SET_MAP != 0,
                        definition: set_definition(set),
                        userdata: set_userdata(set),
                        elements,
                    },
                );
            }
        }
        let mut chains: BTreeMap<String, ChainState> = self
            .chains
            .into_iter()
            .map(|(name, (hook, userdata))| {
                (
                    name,
                    ChainState {
                        hook,
                        userdata,
                        rules: Vec::new(),
                    },
                )
            })
            .collect();
        for mut rule in self.rules {
            let chain = std::mem::take(&mut rule.chain);
            chains
                .entry(chain)
                .or_default()
                .rules
                .push(rule_text(rule, &anonymous));
        }
        Snapshot {
            table: self.table,
            flags: self.flags,
            chains,
            sets,
        }
    }
}

fn hook_name(hook: u32) -> String {
    match hook {
        0 => "prerouting".into(),
        1 => "input".into(),
        2 => "forward".into(),
        3 => "output".into(),
        4 => "postrouting".into(),
        n => n.to_string(),
    }
}

fn verdict_name(code: i32, chain: Option<&str>) -> String {
    let chain = chain.unwrap_or("");
    match code {
        0 => "drop".into(),
        1 => "accept".into(),
        -1 => "continue".into(),
        -2 => "break".into(),
        -3 => format!("jump {chain}"),
        -4 => format!("goto {chain}"),
        -5 => "return".into(),
        n => format!("verdict {n} {chain}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// libnftnl userdata (type-length-value) as text: the comment as `comment "…"`,
/// anything else as hex. Unparseable userdata is shown whole.
fn udata_text(bytes: &[u8], comment_type: u8) -> String {
    let mut parts = Vec::new();
    let mut rest = bytes;
    while let [kind, len, tail @ ..] = rest {
        let len = usize::from(*len);
        if tail.len() < len {
            return format!("userdata {}", hex(bytes));
        }
        let value = &tail[..len];
        if *kind == comment_type {
            parts.push(format!("comment {:?}", wire::text(value)));
        } else {
            parts.push(format!("udata{kind}={}", hex(value)));
        }
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        return format!("userdata {}", hex(bytes));
    }
    parts.join(" ")
}

/// `[ name text ]` for one expression, libnftnl's own text for it, except what the
/// kernel reports that is not part of the rule (counter values), defaults it reports
/// but nft does not send (log level, lookup flags), and set references (resolved
/// later).
///
/// # Safety
/// `e` is a live expression, owned by the caller (a default may be filled in).
unsafe fn expression(e: *mut sys::nftnl_expr, rule: &mut RawRule, buf: &mut Vec<u8>) {
    // SAFETY: per the contract; getters only read the expression.
    unsafe {
        let name = CStr::from_ptr(sys::nftnl_expr_get_str(e, a(sys::NFTNL_EXPR_NAME)))
            .to_str()
            .unwrap_or("?");
        let out = &mut rule.text;
        match name {
            "counter" => {
                out.push_str("[ counter ]");
                return;
            }
            "lookup" => {
                let is_set = |attr: u32| sys::nftnl_expr_is_set(e, a(attr));
                let get = |attr: u32| sys::nftnl_expr_get_u32(e, a(attr));
                let set = owned_str(sys::nftnl_expr_get_str(e, a(sys::NFTNL_EXPR_LOOKUP_SET)));
                let id = is_set(sys::NFTNL_EXPR_LOOKUP_SET_ID)
                    .then(|| get(sys::NFTNL_EXPR_LOOKUP_SET_ID));
                let _ = write!(
                    out,
                    "[ lookup reg {} set ",
                    get(sys::NFTNL_EXPR_LOOKUP_SREG)
                );
                let at = out.len();
                let _ = write!(out, "@{set}");
                rule.sets.push((at..out.len(), set_key(&set, id)));
                if is_set(sys::NFTNL_EXPR_LOOKUP_DREG) {
                    let _ = write!(out, " dreg {}", get(sys::NFTNL_EXPR_LOOKUP_DREG));
                }
                // The kernel always reports the flags, nft sends them only when set.
                if is_set(sys::NFTNL_EXPR_LOOKUP_FLAGS) && get(sys::NFTNL_EXPR_LOOKUP_FLAGS) != 0 {
                    let _ = write!(out, " flags {:#x}", get(sys::NFTNL_EXPR_LOOKUP_FLAGS));
                }
                out.push_str(" ]");
                return;
            }
            "log"
                if !sys::nftnl_expr_is_set(e, a(sys::NFTNL_EXPR_LOG_GROUP))
                    && !sys::nftnl_expr_is_set(e, a(sys::NFTNL_EXPR_LOG_LEVEL)) =>
            {
                // Logging to the kernel log without a level means `warn`, which the
                // kernel then reports.
                sys::nftnl_expr_set_u32(e, a(sys::NFTNL_EXPR_LOG_LEVEL), LOG_LEVEL_WARN);
            }
            _ => {}
        }
        if buf.len() < 1024 {
            buf.resize(1024, 0);
        }
        loop {
            let n = sys::nftnl_expr_snprintf(
                buf.as_mut_ptr().cast(),
                buf.len(),
                e,
                sys::NFTNL_OUTPUT_DEFAULT,
                0,
            );
            let n = usize::try_from(n).unwrap_or(0);
            if n < buf.len() {
                let _ = write!(out, "[ {name} {}]", String::from_utf8_lossy(&buf[..n]));
                return;
            }
            buf.resize(n + 1, 0);
        }
    }
}

/// The rule's text with each anonymous set written in.
fn rule_text(rule: RawRule, anonymous: &HashMap<&str, String>) -> String {
    if !rule
        .sets
        .iter()
        .any(|(_, key)| anonymous.contains_key(key.as_str()))
    {
        return rule.text;
    }
    let mut out = String::with_capacity(rule.text.len() + 64);
    let mut from = 0;
    for (span, key) in &rule.sets {
        if let Some(inline) = anonymous.get(key.as_str()) {
            out.push_str(&rule.text[from..span.start]);
            out.push_str(inline);
            from = span.end;
        }
    }
    out.push_str(&rule.text[from..]);
    out
}

fn set_definition(set: &RawSet) -> String {
    let mut out = format!(
        "type {} ({} bytes) flags {:#x}",
        type_name(set.key_type),
        set.key_len,
        set.flags
    );
    match set.data {
        // The kernel reports the size of its verdict struct, nft sends 0.
        Some((DATA_VERDICT, _)) => out.push_str(" data verdict"),
        Some((data_type, data_len)) => {
            let _ = write!(out, " data {data_type:#x} ({data_len} bytes)");
        }
        None => {}
    }
    out
}

fn set_userdata(set: &RawSet) -> String {
    set.userdata
        .as_deref()
        .map(|u| udata_text(u, UDATA_SET_COMMENT))
        .unwrap_or_default()
}

fn type_name(key_type: u32) -> String {
    let parts: Vec<String> = concat_types(key_type)
        .iter()
        .map(|t| match *t {
            TYPE_IPADDR => "ipv4_addr".to_owned(),
            TYPE_IP6ADDR => "ipv6_addr".to_owned(),
            TYPE_INET_SERVICE => "inet_service".to_owned(),
            TYPE_ICMP6_TYPE => "icmpv6_type".to_owned(),
            TYPE_IFNAME => "ifname".to_owned(),
            n => n.to_string(),
        })
        .collect();
    parts.join(" . ")
}

/// The datatypes of a concatenation, 6 bits apiece, first field in the high bits.
fn concat_types(mut key_type: u32) -> Vec<u32> {
    let mut out = Vec::new();
    loop {
        out.push(key_type & ((1 << TYPE_BITS) - 1));
        key_type >>= TYPE_BITS;
        if key_type == 0 {
            break;
        }
    }
    out.reverse();
    out
}

/// Bytes a datatype takes in a key, when we know how to print it.
fn type_len(t: u32) -> Option<usize> {
    match t {
        TYPE_IPADDR => Some(4),
        TYPE_IP6ADDR => Some(16),
        TYPE_INET_SERVICE => Some(2),
        TYPE_ICMP6_TYPE => Some(1),
        TYPE_IFNAME => Some(16),
        _ => None,
    }
}

fn value_text(t: u32, bytes: &[u8]) -> String {
    match (t, bytes.len()) {
        (TYPE_IPADDR, 4) => {
            Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string()
        }
        (TYPE_IP6ADDR, 16) => {
            Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string()
        }
        (TYPE_INET_SERVICE, 2) => u16::from_be_bytes([bytes[0], bytes[1]]).to_string(),
        (TYPE_ICMP6_TYPE, 1) => bytes[0].to_string(),
        (TYPE_IFNAME, _) => format!("{:?}", wire::text(bytes)),
        _ => hex(bytes),
    }
}

/// A key as nft would print it: `10.0.0.1`, `10.0.0.1 . 80`, `"veth0"`; hex when the
/// bytes do not fit the type.
fn key_text(key_type: u32, key: &[u8]) -> String {
    let types = concat_types(key_type);
    if types.len() == 1 {
        return value_text(types[0], key);
    }
    let mut out = Vec::new();
    let mut rest = key;
    for t in types {
        let Some(len) = type_len(t) else {
            return hex(key);
        };
        let padded = len.next_multiple_of(4);
        if rest.len() < padded {
            return hex(key);
        }
        out.push(value_text(t, &rest[..len]));
        rest = &rest[padded..];
    }
    if !rest.is_empty() {
        return hex(key);
    }
    out.join(" . ")
}

fn elem_suffix(elem: &RawElem) -> String {
    let mut out = String::new();
    if let Some((code, chain)) = &elem.verdict {
        let _ = write!(out, " : {}", verdict_name(*code, chain.as_deref()));
    } else if let Some(d) = &elem.data {
        let _ = write!(out, " : {}", hex(d));
    }
    if let Some(u) = &elem.userdata {
        let _ = write!(out, " udata {}", hex(u));
    }
    out
}

/// A key of up to 16 bytes as a number.
fn key_number(key: &[u8]) -> Option<u128> {
    (key.len() <= 16).then(|| key.iter().fold(0u128, |n, b| (n << 8) | u128::from(*b)))
}

fn number_key(n: u128, width: usize) -> Vec<u8> {
    n.to_be_bytes()[16 - width..].to_vec()
}

/// An inclusive range: one value, a prefix for addresses, or `low-high`.
fn range_text(key_type: u32, low: &[u8], high: &[u8]) -> String {
    if low == high {
        return key_text(key_type, low);
    }
    if let (Some(lo), Some(hi), TYPE_IPADDR | TYPE_IP6ADDR) =
        (key_number(low), key_number(high), key_type)
    {
        let span = hi.wrapping_sub(lo);
        if span & span.wrapping_add(1) == 0 && lo & span == 0 {
            let bits = 8 * low.len() as u32 - span.count_ones();
            return format!("{}/{bits}", key_text(key_type, low));
        }
    }
    format!("{}-{}", key_text(key_type, low), key_text(key_type, high))
}

/// An element of a set other than an interval set (or with an explicit range end).
fn element_text(key_type: u32, e: &RawElem) -> String {
    let mut s = key_text(key_type, &e.key);
    if let Some(end) = &e.key_end {
        let _ = write!(s, "-{}", key_text(key_type, end));
    }
    if e.flags != 0 {
        let _ = write!(s, " flags {:#x}", e.flags);
    }
    s + &elem_suffix(e)
}

/// An interval set's start elements and end markers (one past the range) as ranges;
/// a start without a marker runs to the top of the key space. An end marker closing
/// no range is a no-op for lookups (nft puts one at zero before a first range that
/// starts higher) and is left out.
fn interval_strings(key_type: u32, elements: &[RawElem]) -> Vec<String> {
    let mut sorted: Vec<&RawElem> = elements.iter().collect();
    // Ends first where an end and a start share a key (adjacent ranges).
    sorted.sort_by(|x, y| {
        (&x.key, x.flags & ELEM_INTERVAL_END == 0).cmp(&(&y.key, y.flags & ELEM_INTERVAL_END == 0))
    });
    let width = sorted.first().map_or(0, |e| e.key.len());
    let top = vec![0xff; width];
    let mut out = Vec::new();
    let mut open: Option<&RawElem> = None;
    let close =
        |start: &RawElem, high: &[u8]| range_text(key_type, &start.key, high) + &elem_suffix(start);
    for e in sorted {
        if e.flags & ELEM_INTERVAL_END != 0 {
            if let Some(start) = open.take() {
                let high = key_number(&e.key)
                    .and_then(|n| n.checked_sub(1))
                    .map_or_else(|| e.key.clone(), |n| number_key(n, e.key.len()));
                out.push(close(start, &high));
            }
        } else if let Some(start) = open.replace(e) {
            out.push(close(start, &top));
        }
    }
    if let Some(start) = open {
        out.push(close(start, &top));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elem(key: &[u8], flags: u32) -> RawElem {
        RawElem {
            key: key.to_vec(),
            key_end: None,
            flags,
            verdict: None,
            data: None,
            userdata: None,
        }
    }

    #[test]
    fn interval_elements_become_ranges_prefixes_and_open_ends() {
        let elements = [
            elem(&[11, 0, 0, 0], ELEM_INTERVAL_END),
            elem(&[0, 0, 0, 0], ELEM_INTERVAL_END),
            elem(&[10, 0, 0, 0], 0),
            elem(&[192, 0, 2, 7], 0),
            elem(&[192, 0, 2, 8], ELEM_INTERVAL_END),
            elem(&[192, 0, 2, 8], 0),
            elem(&[192, 0, 2, 20], ELEM_INTERVAL_END),
            elem(&[224, 0, 0, 0], 0),
        ];
        assert_eq!(
            interval_strings(TYPE_IPADDR, &elements),
            [
                "10.0.0.0/8",
                "192.0.2.7",
                "192.0.2.8-192.0.2.19",
                "224.0.0.0/3"
            ]
        );
    }

    #[test]
    fn concatenated_keys_print_each_field() {
        assert_eq!(
            key_text(
                (TYPE_IPADDR << TYPE_BITS) | TYPE_INET_SERVICE,
                &[10, 0, 0, 1, 0, 80, 0, 0]
            ),
            "10.0.0.1 . 80"
        );
        assert_eq!(
            key_text(TYPE_IFNAME, b"veth0\0\0\0\0\0\0\0\0\0\0\0"),
            "\"veth0\""
        );
        assert_eq!(key_text(99, &[1, 2]), "0x0102");
    }

    #[test]
    fn userdata_shows_the_comment_and_hex_for_the_rest() {
        let u = [0, 4, 1, 0, 0, 0, 7, 3, b'h', b'i', 0];
        assert_eq!(udata_text(&u, 7), "udata0=0x01000000 comment \"hi\"");
        assert_eq!(udata_text(&[0, 9, 1], 0), "userdata 0x000901");
    }

    #[test]
    fn sentences_are_short_and_name_the_first_difference() {
        let r = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rules_sentence(&r(&["a", "x", "c"]), &r(&["a", "b", "c", "d", "e"])).as_deref(),
            Some("3 rules, expected 5 (rule 2 differs)")
        );
        assert_eq!(
            rules_sentence(&r(&["a", "b"]), &r(&["a", "b", "c"])).as_deref(),
            Some("2 rules, expected 3 (rule 3 missing)")
        );
        assert_eq!(
            rules_sentence(&r(&["a", "x", "y"]), &r(&["a", "b", "c"])).as_deref(),
            Some("2 of 3 rules differ (first: rule 2)")
        );
        assert_eq!(rules_sentence(&r(&["a"]), &r(&["a"])), None);
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            elements_sentence(&s(&["a", "x", "y"]), &s(&["a", "b"])).as_deref(),
            Some("1 element missing (b), 2 unexpected (x, y)")
        );
        assert_eq!(
            elements_sentence(&s(&[]), &s(&["1", "2", "3", "4"])).as_deref(),
            Some("4 elements missing (1, 2, 3, …)")
        );
    }
}
