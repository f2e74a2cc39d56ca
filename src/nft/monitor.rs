//! Drift detection, the watching half: nf_tables change events, filtered down to what
//! other processes did to our table.
//!
//! Every event carries the netlink port id of the socket whose transaction made it
//! (`nlmsg_pid`, checked on kernel 6.18: all of netpold's events carry
//! `Kernel::portid()`, nft's carry nft's own), so anything but our port id is foreign.
//! A transaction's events arrive together and end with NFT_MSG_NEWGEN, sent with the
//! same port id and naming who committed: NFTA_GEN_PROC_PID is the sending *thread's*
//! id and NFTA_GEN_PROC_NAME its `comm` (for nft, its pid and "nft"). So changes are
//! reported once their NEWGEN is read, with that process attached.
//! When the receive buffer overflows, events are lost (ENOBUFS): `Drained::overflow`
//! says so, and only a full read-back can tell what changed; changes read after the
//! loss in the same call are left out, as they may be half a transaction.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::wire::{self, Attrs, Message};

/// Big enough for the events of a few thousand rules; netpold's own replace of a
/// large table overflows it, and a full read-back then follows, which is correct.
pub const DEFAULT_BUFFER: usize = 8 << 20;
/// Netlink datagrams of events stay well below this.
const RECV_BUFFER: usize = 256 * 1024;
/// Receives per `drain`, so a flood of events cannot hold the caller forever; the
/// socket stays readable and the next `drain` goes on.
const MAX_READS: usize = 4096;

const FAMILY_INET: u8 = libc::NFPROTO_INET as u8;
const SET_ANONYMOUS: u32 = 0x1;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_GEN_PROC_PID: u16 = 2;
const NFTA_GEN_PROC_NAME: u16 = 3;

/// What happened to our table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Created, or changed (its flags: `nft add table … { flags dormant; }`).
    TableAdded,
    /// Deleted with everything in it (the deletions of its contents are folded in).
    TableDeleted,
    /// Created, or changed (a base chain's policy).
    ChainAdded(String),
    ChainDeleted(String),
    RulesAdded {
        chain: String,
        count: usize,
    },
    RulesDeleted {
        chain: String,
        count: usize,
    },
    /// Named sets and maps; anonymous sets come and go with their rules.
    SetAdded(String),
    SetDeleted(String),
    /// Interval sets count a range's start and end as two elements.
    ElementsAdded {
        set: String,
        count: usize,
    },
    ElementsRemoved {
        set: String,
        count: usize,
    },
}

/// The process that committed a transaction, from its NEWGEN event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    /// The id of the thread that sent the transaction (the pid of a single-threaded
    /// program).
    pub pid: u32,
    /// The sending thread's name (`comm`), e.g. `nft`.
    pub name: String,
}

/// A change to our table made by someone else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignChange {
    pub change: Change,
    /// Netlink port id of the socket that sent the transaction.
    pub portid: u32,
    /// `None` when the transaction's NEWGEN was not seen.
    pub process: Option<Process>,
}

impl fmt::Display for ForeignChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Change::TableAdded => write!(f, "table added or changed")?,
            Change::TableDeleted => write!(f, "table deleted")?,
            Change::ChainAdded(c) => write!(f, "chain {c} added")?,
            Change::ChainDeleted(c) => write!(f, "chain {c} deleted")?,
            Change::RulesAdded { chain, count } => {
                write!(f, "{count} rules added to chain {chain}")?
            }
            Change::RulesDeleted { chain, count } => {
                write!(f, "{count} rules deleted from chain {chain}")?;
            }
            Change::SetAdded(s) => write!(f, "set {s} added")?,
            Change::SetDeleted(s) => write!(f, "set {s} deleted")?,
            Change::ElementsAdded { set, count } => {
                write!(f, "{count} elements added to set {set}")?
            }
            Change::ElementsRemoved { set, count } => {
                write!(f, "{count} elements removed from set {set}")?;
            }
        }
        match &self.process {
            Some(p) => write!(f, " by {} (pid {}, port {})", p.name, p.pid, self.portid),
            None => write!(f, " by port {}", self.portid),
        }
    }
}

/// What one `drain` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub foreign: Vec<ForeignChange>,
    /// Events were lost: compare the whole table. `foreign` then holds only what was
    /// read before the loss.
    pub overflow: bool,
}

/// Leaves and rejoins the monitor's event group (a duplicate of its socket).
pub struct Pauser(std::os::fd::OwnedFd);

impl Pauser {
    fn membership(&self, option: i32) -> io::Result<()> {
        let group: libc::c_int = libc::NFNLGRP_NFTABLES as libc::c_int;
        // SAFETY: a live socket fd; `group` is a c_int and the length says so.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.0),
                libc::SOL_NETLINK,
                option,
                (&group as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub fn pause(&self) -> io::Result<()> {
        self.membership(libc::NETLINK_DROP_MEMBERSHIP)
    }

    pub fn resume(&self) -> io::Result<()> {
        self.membership(libc::NETLINK_ADD_MEMBERSHIP)
    }
}

/// How long changes wait for the NEWGEN event that ends their transaction; the
/// caller should drain at least this often while `pending` is not empty.
pub const HOLD: Duration = Duration::from_millis(500);

/// A netfilter netlink socket subscribed to nf_tables events, in the network
/// namespace it was opened in.
pub struct Monitor {
    socket: wire::Socket,
    buf: wire::RecvBuf,
    /// Foreign changes of a transaction whose NEWGEN has not been read yet.
    pending: Vec<ForeignChange>,
    /// When `pending` stopped being empty.
    pending_since: Option<Instant>,
}

impl Monitor {
    pub fn open() -> io::Result<Monitor> {
        Monitor::with_buffer(DEFAULT_BUFFER)
    }

    /// A monitor whose socket holds about `bytes` of unread events.
    pub fn with_buffer(bytes: usize) -> io::Result<Monitor> {
        let socket = wire::Socket::open(1 << (libc::NFNLGRP_NFTABLES - 1), true)?;
        let size = i32::try_from(bytes).unwrap_or(i32::MAX);
        // FORCE passes rmem_max (needs CAP_NET_ADMIN, which netpold has anyway).
        wire::setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size)
            .or_else(|_| wire::setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, size))?;
        Ok(Monitor {
            socket,
            buf: wire::RecvBuf::new(RECV_BUFFER),
            pending: Vec::new(),
            pending_since: None,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    /// A handle that stops and restarts the delivery of events to this monitor, from
    /// any thread: while nobody listens, the kernel does not build an event per object,
    /// which makes a large transaction several times faster.
    pub fn pauser(&self) -> io::Result<Pauser> {
        Ok(Pauser(self.as_fd().try_clone_to_owned()?))
    }

    /// Waits until events can be read; `false` on timeout.
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        wire::wait_readable(&self.socket, timeout)
    }

    /// Changes are held for their transaction's end: drain again within `HOLD`.
    pub fn holding(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Reads every queued event without blocking and returns the changes other
    /// processes (any port id but `own_portid`) made to `inet <table>`. Changes of a
    /// transaction still being delivered are kept for the next call.
    pub fn drain(&mut self, own_portid: u32, table: &str) -> Drained {
        let mut out = Drained::default();
        let mut transaction_ended = false;
        for _ in 0..MAX_READS {
            let data = match self.socket.recv(&mut self.buf) {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Events were dropped, perhaps a NEWGEN: what is pending and what
                    // follows in this call cannot be told apart reliably, and the
                    // full read-back after this call covers all of it.
                    out.overflow = true;
                    self.pending.clear();
                    continue;
                }
                Err(e) => {
                    // Nothing sensible left to read; a full comparison covers it.
                    log::warn!("reading nftables events: {e}");
                    out.overflow = true;
                    break;
                }
            };
            for m in wire::messages(data) {
                if m.nft_msg() == Some(libc::NFT_MSG_NEWGEN as u16) {
                    let process = process(&m);
                    for mut change in self.pending.drain(..) {
                        if change.portid == m.portid {
                            change.process.clone_from(&process);
                        }
                        out.foreign.push(change);
                    }
                    self.pending_since = None;
                    transaction_ended = true;
                } else if m.portid != own_portid
                    && !out.overflow
                    && let Some(change) = classify(&m, table)
                {
                    add(&mut self.pending, change, m.portid);
                }
            }
        }
        // A transaction's events can take longer to arrive than one call (a deleted
        // large table), and its last event folds the others in: changes wait for their
        // NEWGEN, and are reported as they are only if it has not come after `HOLD`.
        if self.pending.is_empty() || out.overflow {
            self.pending_since = None;
        } else {
            let since = *self.pending_since.get_or_insert_with(Instant::now);
            if !transaction_ended && since.elapsed() >= HOLD {
                out.foreign.append(&mut self.pending);
                self.pending_since = None;
            }
        }
        out
    }
}

impl AsFd for Monitor {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Monitor {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// Adds a change to the pending transaction, merged with the previous one when it
/// is more of the same.
fn add(pending: &mut Vec<ForeignChange>, change: Change, portid: u32) {
    if change == Change::TableDeleted {
        // The deletions of its contents come first; the table's says it all.
        pending.retain(|c| {
            c.portid != portid
                || !matches!(
                    c.change,
                    Change::ChainDeleted(_)
                        | Change::RulesDeleted { .. }
                        | Change::SetDeleted(_)
                        | Change::ElementsRemoved { .. }
                )
        });
    }
    if let Some(last) = pending.last_mut()
        && last.portid == portid
    {
        match (&mut last.change, &change) {
            (Change::RulesAdded { chain: a, count }, Change::RulesAdded { chain: b, count: n })
            | (
                Change::RulesDeleted { chain: a, count },
                Change::RulesDeleted { chain: b, count: n },
            )
            | (
                Change::ElementsAdded { set: a, count },
                Change::ElementsAdded { set: b, count: n },
            )
            | (
                Change::ElementsRemoved { set: a, count },
                Change::ElementsRemoved { set: b, count: n },
            ) if a == b => {
                *count += n;
                return;
            }
            _ => {}
        }
    }
    pending.push(ForeignChange {
        change,
        portid,
        process: None,
    });
}

fn process(m: &Message) -> Option<Process> {
    Some(Process {
        pid: m.attr(NFTA_GEN_PROC_PID).and_then(wire::be32)?,
        name: m
            .attr(NFTA_GEN_PROC_NAME)
            .map(wire::text)
            .unwrap_or_default(),
    })
}

/// Kernel-assigned names of anonymous sets (`__set0`, …).
fn anonymous_name(name: &str) -> bool {
    name.strip_prefix("__set")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The change an event describes, if it is about `inet <table>`.
fn classify(m: &Message, table: &str) -> Option<Change> {
    if m.family() != FAMILY_INET {
        return None;
    }
    let text = |attr| m.attr(attr).map(wire::text);
    let in_table = |attr| text(attr).as_deref() == Some(table);
    let kind = i32::from(m.nft_msg()?);
    let change = match kind {
        libc::NFT_MSG_NEWTABLE | libc::NFT_MSG_DELTABLE => {
            if !in_table(NFTA_TABLE_NAME) {
                return None;
            }
            if kind == libc::NFT_MSG_NEWTABLE {
                Change::TableAdded
            } else {
                Change::TableDeleted
            }
        }
        libc::NFT_MSG_NEWCHAIN | libc::NFT_MSG_DELCHAIN => {
            if !in_table(NFTA_CHAIN_TABLE) {
                return None;
            }
            let name = text(NFTA_CHAIN_NAME).unwrap_or_default();
            if kind == libc::NFT_MSG_NEWCHAIN {
                Change::ChainAdded(name)
            } else {
                Change::ChainDeleted(name)
            }
        }
        libc::NFT_MSG_NEWRULE | libc::NFT_MSG_DELRULE => {
            if !in_table(NFTA_RULE_TABLE) {
                return None;
            }
            let chain = text(NFTA_RULE_CHAIN).unwrap_or_default();
            if kind == libc::NFT_MSG_NEWRULE {
                Change::RulesAdded { chain, count: 1 }
            } else {
                Change::RulesDeleted { chain, count: 1 }
            }
        }
        libc::NFT_MSG_NEWSET | libc::NFT_MSG_DELSET => {
            let flags = m.attr(NFTA_SET_FLAGS).and_then(wire::be32).unwrap_or(0);
            let name = text(NFTA_SET_NAME).unwrap_or_default();
            if !in_table(NFTA_SET_TABLE) || flags & SET_ANONYMOUS != 0 || anonymous_name(&name) {
                return None;
            }
            if kind == libc::NFT_MSG_NEWSET {
                Change::SetAdded(name)
            } else {
                Change::SetDeleted(name)
            }
        }
        libc::NFT_MSG_NEWSETELEM | libc::NFT_MSG_DELSETELEM => {
            let set = text(NFTA_SET_ELEM_LIST_SET).unwrap_or_default();
            if !in_table(NFTA_SET_ELEM_LIST_TABLE) || anonymous_name(&set) {
                return None;
            }
            let count = m
                .attr(NFTA_SET_ELEM_LIST_ELEMENTS)
                .map_or(0, |list| Attrs::nested(list).count());
            if kind == libc::NFT_MSG_NEWSETELEM {
                Change::ElementsAdded { set, count }
            } else {
                Change::ElementsRemoved { set, count }
            }
        }
        _ => return None,
    };
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(msg: i32, portid: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = wire::request(msg as u16, FAMILY_INET, 0, 1, attrs);
        m[12..16].copy_from_slice(&portid.to_ne_bytes());
        m
    }

    fn elements(n: usize) -> Vec<u8> {
        // n empty NFTA_LIST_ELEM nests.
        (0..n).flat_map(|_| [4u8, 0, 1, 0]).collect()
    }

    #[test]
    fn a_foreign_transaction_is_classified_merged_and_attributed() {
        let t = wire::strz("netpold");
        let c = wire::strz("pol_x");
        let s = wire::strz("s4");
        let mut stream = Vec::new();
        stream.extend(event(libc::NFT_MSG_DELRULE, 77, &[(1, &t), (2, &c)]));
        stream.extend(event(libc::NFT_MSG_DELRULE, 77, &[(1, &t), (2, &c)]));
        stream.extend(event(
            libc::NFT_MSG_DELRULE,
            77,
            &[(1, &wire::strz("other")), (2, &c)],
        ));
        stream.extend(event(
            libc::NFT_MSG_DELSETELEM,
            77,
            &[(1, &t), (2, &s), (3, &elements(2))],
        ));
        stream.extend(event(
            libc::NFT_MSG_NEWSET,
            77,
            &[(1, &t), (2, &wire::strz("__set3"))],
        ));
        let pid = 4242u32.to_be_bytes();
        let nft = wire::strz("nft");
        let mut newgen = wire::request(
            libc::NFT_MSG_NEWGEN as u16,
            0,
            0,
            1,
            &[(2, &pid), (3, &nft)],
        );
        newgen[12..16].copy_from_slice(&77u32.to_ne_bytes());
        stream.extend(newgen);

        let mut pending = Vec::new();
        let mut ended = None;
        for m in wire::messages(&stream) {
            if m.nft_msg() == Some(libc::NFT_MSG_NEWGEN as u16) {
                ended = process(&m);
            } else if let Some(change) = classify(&m, "netpold") {
                add(&mut pending, change, m.portid);
            }
        }
        let changes: Vec<Change> = pending.iter().map(|c| c.change.clone()).collect();
        assert_eq!(
            changes,
            [
                Change::RulesDeleted {
                    chain: "pol_x".into(),
                    count: 2
                },
                Change::ElementsRemoved {
                    set: "s4".into(),
                    count: 2
                }
            ]
        );
        assert_eq!(
            ended,
            Some(Process {
                pid: 4242,
                name: "nft".into()
            })
        );
        // Deleting the table folds in the deletions before it.
        add(&mut pending, Change::TableDeleted, 77);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].change, Change::TableDeleted);
    }
}
