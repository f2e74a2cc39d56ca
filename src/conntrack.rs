//! Ending established flows a policy change took away. nftables rules accept a
//! packet of an established connection before any policy rule, so a policy that now
//! denies a flow stops only its *new* connections; what is already in the conntrack
//! table keeps going until it ends. After each transaction that changed the ruleset:
//!
//! - the entries of addresses that an endpoint of this node had and no endpoint has
//!   any more are deleted, always (the address may be handed to a new workload);
//! - with `strict_conntrack`, every entry with a local workload endpoint at one end is
//!   run through the new ruleset as the first packet of a new connection (its
//!   original-direction tuple, with `ir::eval`, as `netpold explain` does) and
//!   deleted when that packet is dropped.
//!
//! A deleted entry of a TCP flow makes its next packet a mid-stream NEW packet: the
//! ruleset drops it (the peer sees no answer, then a reset or timeout) or, if the
//! entry was deleted for an address that went away and the flow is allowed, conntrack
//! picks it up again. Only the daemon's own network namespace is seen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ir::eval::{self, CtInfo, Packet};
use crate::ir::{Hook, Ruleset};
use crate::model::{Model, Protocol};
use crate::nft::conntrack::{Conntrack, Tuple};

/// What one pass did, for the log and the cost figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub scanned: usize,
    /// Chosen for an address no endpoint has any more.
    pub removed_address: usize,
    /// Chosen because the new ruleset drops them as new connections.
    pub denied: usize,
    /// What the kernel deleted (fewer when flows ended meanwhile).
    pub deleted: usize,
    pub elapsed: Duration,
}

/// Why an entry goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    RemovedAddress,
    Denied,
}

/// The local workload endpoints' interfaces by address.
pub fn local_interfaces(model: &Model, node: &str) -> BTreeMap<IpAddr, String> {
    model
        .endpoints
        .values()
        .filter(|e| e.is_local(node))
        .flat_map(|e| e.ips.iter().map(|ip| (*ip, e.interface.clone())))
        .collect()
}

/// What becomes of one entry. `host`: this namespace's own addresses (a flow to one
/// is judged at the input hook, from one at the output hook, others at forward);
/// `strict`: the ruleset to judge by, when `strict_conntrack` is on.
pub fn judge(
    tuple: &Tuple,
    local: &BTreeMap<IpAddr, String>,
    removed: &BTreeSet<IpAddr>,
    host: &BTreeSet<IpAddr>,
    strict: Option<&Ruleset>,
) -> Option<Verdict> {
    if removed.contains(&tuple.src) || removed.contains(&tuple.dst) {
        return Some(Verdict::RemovedAddress);
    }
    let rs = strict?;
    let (from, to) = (local.get(&tuple.src), local.get(&tuple.dst));
    if from.is_none() && to.is_none() {
        return None;
    }
    let protocol = match tuple.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        // Policies are about ports; ICMP follows its connection's fate.
        _ => return None,
    };
    let hook = if host.contains(&tuple.dst) {
        Hook::Input
    } else if host.contains(&tuple.src) {
        Hook::Output
    } else {
        Hook::Forward
    };
    let packet = Packet {
        hook,
        iif: from.filter(|_| hook != Hook::Output).cloned(),
        oif: to.filter(|_| hook != Hook::Input).cloned(),
        src: tuple.src,
        dst: tuple.dst,
        protocol,
        sport: tuple.src_port,
        dport: tuple.dst_port,
        ct: CtInfo::New,
    };
    (!eval::run(rs, &packet).accepted).then_some(Verdict::Denied)
}

/// Runs after each programmed sync; remembers the local addresses between them.
pub struct Flusher {
    node: String,
    strict: bool,
    /// The local endpoints' addresses after the last pass.
    known: BTreeSet<IpAddr>,
}

impl Flusher {
    pub fn new(node: &str, strict: bool) -> Flusher {
        Flusher {
            node: node.to_owned(),
            strict,
            known: BTreeSet::new(),
        }
    }

    /// After the kernel took `ruleset`, compiled from `model`: deletes what must go.
    pub fn after_sync(&mut self, model: &Model, ruleset: &Ruleset) {
        let local = local_interfaces(model, &self.node);
        let now: BTreeSet<IpAddr> = local.keys().copied().collect();
        let mut removed: BTreeSet<IpAddr> = self.known.difference(&now).copied().collect();
        if !removed.is_empty() {
            // Kept when another endpoint (of another node, say) has it now: the
            // address still names a live workload.
            for ip in model.endpoints.values().flat_map(|e| &e.ips) {
                removed.remove(ip);
            }
        }
        self.known = now;
        if removed.is_empty() && !self.strict {
            return;
        }
        match self.pass(&local, &removed, ruleset) {
            Ok(p) if p.deleted > 0 || p.removed_address + p.denied > 0 => log::info!(
                "conntrack: deleted {} of {} entries ({} of removed endpoint addresses, {} the policy no longer allows) in {} ms",
                p.deleted,
                p.scanned,
                p.removed_address,
                p.denied,
                p.elapsed.as_millis()
            ),
            Ok(p) => log::debug!(
                "conntrack: {} entries scanned in {} ms, none to delete",
                p.scanned,
                p.elapsed.as_millis()
            ),
            Err(e) => log::warn!(
                "conntrack: cannot delete the entries of flows no longer allowed: {e}; established flows go on until they end"
            ),
        }
    }

    fn pass(
        &self,
        local: &BTreeMap<IpAddr, String>,
        removed: &BTreeSet<IpAddr>,
        ruleset: &Ruleset,
    ) -> std::io::Result<Pass> {
        let started = Instant::now();
        let mut ct = Conntrack::open()?;
        let entries = ct.dump()?;
        let host = if self.strict {
            crate::nft::conntrack::local_addresses()?
        } else {
            BTreeSet::new()
        };
        let strict = self.strict.then_some(ruleset);
        let mut pass = Pass {
            scanned: entries.len(),
            ..Pass::default()
        };
        let doomed: Vec<_> = entries
            .iter()
            .filter(|e| match judge(&e.orig, local, removed, &host, strict) {
                Some(Verdict::RemovedAddress) => {
                    pass.removed_address += 1;
                    true
                }
                Some(Verdict::Denied) => {
                    pass.denied += 1;
                    true
                }
                None => false,
            })
            .collect();
        pass.deleted = ct.delete(doomed)?;
        pass.elapsed = started.elapsed();
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: a, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: db, namespace: a, labels: {app: db}}
spec: {node: n1, interfaceName: veth-db, ips: [10.0.0.2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: far, namespace: a, labels: {app: far}}
spec: {node: n2, interfaceName: veth-far, ips: [10.0.9.9]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
";

    fn tcp(src: &str, dst: &str, dport: u16) -> Tuple {
        Tuple {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: 6,
            src_port: 40000,
            dst_port: dport,
        }
    }

    #[test]
    fn entries_are_judged_as_new_connections_through_the_ruleset() {
        let model = crate::model::from_valid_yaml(MODEL);
        let rs = crate::compile::compile(&model, "n1", "netpold");
        let local = local_interfaces(&model, "n1");
        assert_eq!(local.len(), 2, "n2's endpoint is not local: {local:?}");
        let none = BTreeSet::new();
        let judge_strict = |t: &Tuple| judge(t, &local, &none, &none, Some(&rs));
        assert_eq!(judge_strict(&tcp("10.0.0.1", "10.0.0.2", 5432)), None);
        assert_eq!(
            judge_strict(&tcp("10.0.0.1", "10.0.0.2", 80)),
            Some(Verdict::Denied)
        );
        assert_eq!(
            judge_strict(&tcp("192.0.2.7", "10.0.0.2", 5432)),
            Some(Verdict::Denied)
        );
        // web is not isolated: anything from it and to it goes on.
        assert_eq!(judge_strict(&tcp("10.0.0.2", "10.0.0.1", 80)), None);
        // Neither end is a local endpoint: not ours to judge.
        assert_eq!(judge_strict(&tcp("192.0.2.7", "10.0.9.9", 80)), None);
        // ICMP is not judged.
        let mut ping = tcp("10.0.0.1", "10.0.0.2", 0);
        ping.protocol = 1;
        assert_eq!(judge_strict(&ping), None);
        // Without strict mode only removed addresses count, at either end.
        let removed: BTreeSet<IpAddr> = ["10.0.0.3".parse().unwrap()].into();
        assert_eq!(
            judge(
                &tcp("10.0.0.1", "10.0.0.2", 80),
                &local,
                &removed,
                &none,
                None
            ),
            None
        );
        assert_eq!(
            judge(
                &tcp("10.0.0.1", "10.0.0.3", 80),
                &local,
                &removed,
                &none,
                None
            ),
            Some(Verdict::RemovedAddress)
        );
        assert_eq!(
            judge(
                &tcp("10.0.0.3", "192.0.2.7", 80),
                &local,
                &removed,
                &none,
                None
            ),
            Some(Verdict::RemovedAddress)
        );
    }
}
