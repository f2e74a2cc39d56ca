//! The kernel backend: `ir::Ruleset` → one nftables netlink transaction through
//! libnftnl and libmnl, sent in one `sendmsg`, its replies matched to the batch's
//! sequence numbers. No `nft` binary at run time. This module holds all of netpold's
//! unsafe code (each block with its `SAFETY:` line): `ffi` builds and sends batches,
//! `wire` parses netlink replies and dumps, `monitor` reads nftables events and
//! `readback` reads our table back, `counters` its rule counters, `nflog` an NFLOG
//! group's logged packets; `encode` decides which messages and expressions a ruleset
//! becomes.

pub mod conntrack;
pub mod counters;
mod encode;
mod ffi;
pub mod monitor;
pub mod nflog;
pub mod readback;
mod wire;

use std::io;
use std::time::{Duration, Instant};

/// Test builds only (`--features fault-injection`): while the file named by
/// `NETPOLD_FAULT_FILE` holds a number N > 0, the next N transactions each carry a
/// message the kernel refuses in their middle, and N counts down. Production builds
/// contain none of this.
#[cfg(feature = "fault-injection")]
mod fault {
    /// Whether the next transaction fails; counts the file down.
    pub fn armed() -> bool {
        let Some(path) = std::env::var_os("NETPOLD_FAULT_FILE") else {
            return false;
        };
        let left: u32 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if left == 0 {
            return false;
        }
        let _ = std::fs::write(&path, format!("{}\n", left - 1));
        log::warn!("fault injection: this transaction carries a message the kernel refuses");
        true
    }
}

use crate::dataplane::{Applied, Dataplane, Drift, DriftObject, Error};
use crate::ir::Ruleset;
use crate::ir::diff::Delta;

/// How long to wait for the kernel's answer; a batch is handled inside `sendmsg`,
/// so this only matters if something is badly wrong.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
const NLMSG_ERROR: u16 = 2;
const NLMSG_HEADER_LEN: usize = 16;

/// netlink to nf_tables in the network namespace the process runs in.
pub struct Kernel {
    socket: ffi::Socket,
    table: String,
    next_seq: u32,
    /// The daemon's event monitor, unsubscribed while the whole table is replaced.
    monitor: Option<monitor::Pauser>,
    /// A ruleset generation at which our table was known to be exactly the ruleset
    /// programmed last: read back and found equal, or changed from such a state by our
    /// own delta while the event monitor listened. While the kernel still reports it,
    /// nobody has committed anything since, and a periodic read-back can stop there.
    verified: Option<u32>,
}

impl Kernel {
    pub fn open(table: &str) -> Result<Kernel, Error> {
        let socket = ffi::Socket::open()
            .map_err(|e| Error(format!("cannot open a netfilter netlink socket: {e}")))?;
        // Distinct from any earlier run's numbers, as nft does.
        let next_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Ok(Kernel {
            socket,
            table: table.to_owned(),
            next_seq,
            monitor: None,
            verified: None,
        })
    }

    /// While the whole table is replaced, `monitor` leaves its event group: an event
    /// per object of a large table would cost the kernel more than the objects
    /// themselves. A foreign change in that moment is caught by the periodic read-back.
    pub fn pause_during_replace(&mut self, monitor: monitor::Pauser) {
        self.monitor = Some(monitor);
    }

    /// The netlink port id of our socket: events carrying it are our own.
    pub fn portid(&self) -> u32 {
        self.socket.portid()
    }

    fn send(
        &mut self,
        finished: &ffi::Finished,
        descriptions: &encode::Descriptions,
    ) -> Result<(), Error> {
        self.next_seq = finished.end_seq.wrapping_add(1);
        self.discard_stale_replies();
        self.socket
            .send(finished)
            .map_err(|e| Error(format!("cannot send the transaction to the kernel: {e}")))?;
        let replies = self.replies(finished)?;
        if let Some(&(seq, errno)) = replies.errors.first() {
            // The kernel answers for the batch as a whole (a missing CAP_NET_ADMIN,
            // say) on its first message, and for a failed commit on the first message
            // after it, so those two name the transaction rather than one object.
            let what = if seq == finished.begin_seq {
                "starting the transaction".to_owned()
            } else {
                descriptions
                    .get(seq)
                    .unwrap_or_else(|| "an unknown message".to_owned())
            };
            let others = match replies.errors.len() {
                1 => String::new(),
                n => format!(" ({} more errors)", n - 1),
            };
            return Err(Error(format!(
                "the kernel refused the transaction at message {} of {} ({what}): {}{others}; nothing was changed",
                finished.position(seq),
                finished.messages - 2,
                io::Error::from_raw_os_error(errno)
            )));
        }
        if !replies.acked {
            return Err(Error(
                "the kernel did not acknowledge the transaction".to_owned(),
            ));
        }
        Ok(())
    }

    /// Reads away what an earlier transaction left on the socket: replies beyond the
    /// receive buffer leave an ENOBUFS behind, which would otherwise fail the next
    /// transaction's first read.
    fn discard_stale_replies(&self) {
        let mut buf = ffi::RecvBuf::new(64 * 1024);
        for _ in 0..10_000 {
            match self.socket.recv_nowait(&mut buf) {
                Ok([]) => return,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(_) => return,
            }
        }
    }

    /// Collects the errors and the final acknowledgement addressed to this batch.
    fn replies(&self, finished: &ffi::Finished) -> Result<Replies, Error> {
        let mut out = Replies::default();
        let mut buf = ffi::RecvBuf::new(256 * 1024);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let data = match self.socket.recv_nowait(&mut buf) {
                Ok(data) => data,
                // Replies beyond the receive buffer are lost (ENOBUFS); only errors can
                // be that many, so the transaction failed: report what was read.
                Err(_) if !out.errors.is_empty() => return Ok(out),
                Err(e) => return Err(Error(format!("reading the kernel's answer: {e}"))),
            };
            if data.is_empty() {
                if out.acked || !out.errors.is_empty() {
                    return Ok(out);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero()
                    || !self
                        .socket
                        .wait_readable(left)
                        .map_err(|e| Error(format!("waiting for the kernel's answer: {e}")))?
                {
                    return Ok(out);
                }
                continue;
            }
            for (seq, errno) in parse_replies(data) {
                if !finished.owns(seq) {
                    continue;
                }
                if errno != 0 {
                    out.errors.push((seq, errno));
                } else if seq == finished.ack_seq {
                    out.acked = true;
                }
            }
        }
    }
}

#[derive(Default)]
struct Replies {
    errors: Vec<(u32, i32)>,
    acked: bool,
}

/// `(sequence number, errno)` of every NLMSG_ERROR message in `data` (errno 0 is an
/// acknowledgement).
fn parse_replies(mut data: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HEADER_LEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
        if len < NLMSG_HEADER_LEN || len > data.len() {
            break;
        }
        let kind = u16::from_ne_bytes(data[4..6].try_into().unwrap_or_default());
        let seq = u32::from_ne_bytes(data[8..12].try_into().unwrap_or_default());
        if kind == NLMSG_ERROR && len >= NLMSG_HEADER_LEN + 4 {
            let code = i32::from_ne_bytes(data[16..20].try_into().unwrap_or_default());
            out.push((seq, -code));
        }
        let aligned = len.div_ceil(4) * 4;
        data = &data[aligned.min(data.len())..];
    }
    out
}

impl Kernel {
    fn program<'a>(
        &mut self,
        whole_table: bool,
        fill: impl Fn(&mut encode::Encoder<'a>),
    ) -> Result<Applied, Error> {
        let started = Instant::now();
        let mut encoder = encode::Encoder::new(&self.table, self.next_seq);
        #[cfg(feature = "fault-injection")]
        if fault::armed() {
            // Halfway through the transaction's own messages.
            let mut count = encode::Encoder::new(&self.table, self.next_seq);
            fill(&mut count);
            encoder.inject_fault((count.messages() / 2).max(1));
        }
        fill(&mut encoder);
        let (finished, descriptions) = encoder.finish().map_err(|why| {
            Error(format!(
                "cannot program this ruleset: {why}; nothing was changed"
            ))
        })?;
        if finished.messages <= 2 {
            // Nothing between batch begin and end: nothing to send (and nothing would
            // be acknowledged).
            return Ok(Applied {
                messages: 0,
                bytes: 0,
                elapsed: started.elapsed(),
            });
        }
        let bytes = finished.bytes();
        // A delta keeps the table verified only if nothing was committed since it was.
        let still_verified =
            !whole_table && self.verified.is_some() && readback::generation().ok() == self.verified;
        self.verified = None;
        self.send(&finished, &descriptions)?;
        if still_verified {
            self.verified = readback::generation().ok();
        }
        Ok(Applied {
            messages: finished.messages,
            bytes,
            elapsed: started.elapsed(),
        })
    }
}

impl Dataplane for Kernel {
    fn replace(&mut self, desired: &Ruleset) -> Result<Applied, Error> {
        let paused = self.monitor.take().map(Paused::new);
        let result = self.program(true, |encoder| encoder.replace(desired));
        // Resumed when `paused` drops, on a panic too.
        self.monitor = paused.map(Paused::into_inner);
        result
    }

    fn update(&mut self, desired: &Ruleset, delta: &Delta) -> Result<Applied, Error> {
        self.program(false, |encoder| encoder.update(desired, delta))
    }

    fn read_back(&mut self, desired: &Ruleset, thorough: bool) -> Result<Vec<Drift>, Error> {
        let generation = readback::generation().ok();
        if !thorough && self.verified.is_some() && generation == self.verified {
            return Ok(Vec::new());
        }
        let actual = readback::read_table(&self.table)?;
        let expected = readback::Snapshot::expected(desired)?;
        let drift = readback::drift(actual.as_ref(), &expected);
        // Read at `generation` or later: if later, the next check reads again.
        self.verified = if drift.is_empty() { generation } else { None };
        Ok(drift
            .into_iter()
            .map(|d| Drift {
                object: match d.object {
                    readback::Object::Table => DriftObject::Table,
                    readback::Object::Chain(c) => DriftObject::Chain(c),
                    readback::Object::Set(s) | readback::Object::Map(s) => DriftObject::Set(s),
                },
                what: d.sentence,
            })
            .collect())
    }
}

/// The event monitor out of its group for as long as this lives.
struct Paused(Option<monitor::Pauser>);

impl Paused {
    fn new(pauser: monitor::Pauser) -> Paused {
        if let Err(e) = pauser.pause() {
            log::warn!("cannot pause the nftables event monitor: {e}");
        }
        Paused(Some(pauser))
    }

    /// Resumes the monitor and hands it back.
    fn into_inner(mut self) -> monitor::Pauser {
        let pauser = self.0.take().expect("present until dropped");
        resume(&pauser);
        pauser
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(pauser) = self.0.take() {
            resume(&pauser);
        }
    }
}

fn resume(pauser: &monitor::Pauser) {
    if let Err(e) = pauser.resume() {
        log::error!(
            "cannot resume the nftables event monitor: {e}; foreign changes are found by the periodic read-back only"
        );
    }
}

/// The transaction that replaces the whole table with `desired`, built and not sent:
/// (messages, bytes). For benchmarks of the encoder, which need no privileges.
pub fn encode_replace(table: &str, desired: &Ruleset) -> Result<(usize, usize), Error> {
    let mut encoder = encode::Encoder::new(table, 1);
    encoder.replace(desired);
    let (finished, _) = encoder.finish().map_err(Error)?;
    Ok((finished.messages, finished.bytes()))
}

/// The transaction of `delta`, built and not sent: (messages, bytes).
pub fn encode_update(
    table: &str,
    desired: &Ruleset,
    delta: &Delta,
) -> Result<(usize, usize), Error> {
    let mut encoder = encode::Encoder::new(table, 1);
    encoder.update(desired, delta);
    let (finished, _) = encoder.finish().map_err(Error)?;
    Ok((finished.messages, finished.bytes()))
}

/// What a foreign change to our table needs repaired.
pub fn drift_object(change: &monitor::Change) -> DriftObject {
    use monitor::Change;
    match change {
        Change::RulesAdded { chain, .. } | Change::RulesDeleted { chain, .. } => {
            DriftObject::Chain(chain.clone())
        }
        Change::ElementsAdded { set, .. } | Change::ElementsRemoved { set, .. } => {
            DriftObject::Set(set.clone())
        }
        Change::TableAdded
        | Change::TableDeleted
        | Change::ChainAdded(_)
        | Change::ChainDeleted(_)
        | Change::SetAdded(_)
        | Change::SetDeleted(_) => DriftObject::Table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&code.to_ne_bytes());
        m.resize(36, 0);
        m
    }

    #[test]
    fn replies_give_sequence_and_errno() {
        let mut data = message(NLMSG_ERROR, 7, -17);
        data.extend(message(NLMSG_ERROR, 9, 0));
        data.extend(message(3, 10, 0));
        assert_eq!(parse_replies(&data), vec![(7, 17), (9, 0)]);
    }

    #[test]
    fn a_truncated_reply_is_ignored_not_misread() {
        let data = message(NLMSG_ERROR, 7, -17);
        assert_eq!(parse_replies(&data[..20]), vec![]);
    }
}
