//! Ending established flows a policy change took away. nftables rules accept a
//! packet of an established connection before any policy rule, so a policy that now
//! denies a flow stops only its *new* connections; what is already in the conntrack
//! table keeps going until it ends. After each transaction that changed the ruleset:
//!
//! - the entries of addresses that an endpoint of this node had and no endpoint has
//!   any more, or another endpoint or interface has now, are deleted, always (the
//!   address may be handed to a new workload); both tuples count, for NAT;
//! - with `strict_conntrack`, every entry with a local workload endpoint at one end is
//!   run through the new ruleset as the first packet of a new connection (as the filter
//!   hooks see it after DNAT: original source, reply source as destination; with
//!   `ir::eval`, as `netpold explain` does) and deleted when that packet is dropped.
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
    local_owners(model, node)
        .into_iter()
        .map(|(ip, owner)| (ip, owner.interface))
        .collect()
}

/// Who holds a local address: an address whose owner or interface changes is a
/// removed one, even when it is handed over in the same edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// (namespace, name) of the endpoint.
    pub endpoint: (String, String),
    pub interface: String,
}

fn local_owners(model: &Model, node: &str) -> BTreeMap<IpAddr, Owner> {
    model
        .endpoints
        .iter()
        .filter(|(_, e)| e.is_local(node))
        .flat_map(|(key, e)| {
            e.ips.iter().map(|ip| {
                let owner = Owner {
                    endpoint: key.clone(),
                    interface: e.interface.clone(),
                };
                (*ip, owner)
            })
        })
        .collect()
}

/// The addresses `before` had that `now` does not give to the same owner on the same
/// interface, except those another node's endpoint has now (the address still names
/// a live workload, whose flows do not pass here).
pub fn removed_addresses(
    before: &BTreeMap<IpAddr, Owner>,
    now: &BTreeMap<IpAddr, Owner>,
    model: &Model,
) -> BTreeSet<IpAddr> {
    let mut removed: BTreeSet<IpAddr> = before
        .iter()
        .filter(|(ip, owner)| now.get(ip) != Some(owner))
        .map(|(ip, _)| *ip)
        .collect();
    if !removed.is_empty() {
        for ip in model.endpoints.values().flat_map(|e| &e.ips) {
            if !now.contains_key(ip) {
                removed.remove(ip);
            }
        }
    }
    removed
}

/// What becomes of one entry, of original tuple `orig` and reply tuple `reply`.
/// `host`: this namespace's own addresses (a flow to one is judged at the input hook,
/// from one at the output hook, others at forward); `strict`: the ruleset to judge
/// by, when `strict_conntrack` is on; `route`: the interface an address that is no
/// local endpoint's is reached by, so a forwarded flow meets the `applyOnForward`
/// policies of the host endpoint on that side.
///
/// The packet judged is the first one as the filter hooks see it, after destination
/// NAT: from the original source, to the reply's source (a DNAT target). An address
/// that went away counts at any end of either tuple.
pub fn judge(
    orig: &Tuple,
    reply: &Tuple,
    local: &BTreeMap<IpAddr, String>,
    removed: &BTreeSet<IpAddr>,
    host: &BTreeSet<IpAddr>,
    strict: Option<&Ruleset>,
    route: &mut dyn FnMut(IpAddr) -> Option<String>,
) -> Option<Verdict> {
    if [orig.src, orig.dst, reply.src, reply.dst]
        .iter()
        .any(|ip| removed.contains(ip))
    {
        return Some(Verdict::RemovedAddress);
    }
    let rs = strict?;
    let (src, dst) = (orig.src, reply.src);
    let (from, to) = (local.get(&src), local.get(&dst));
    if from.is_none() && to.is_none() {
        return None;
    }
    let protocol = match orig.protocol {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        132 => Protocol::Sctp,
        // Policies are about ports; ICMP follows its connection's fate.
        _ => return None,
    };
    let hook = if host.contains(&dst) {
        Hook::Input
    } else if host.contains(&src) {
        Hook::Output
    } else {
        Hook::Forward
    };
    let forward = hook == Hook::Forward;
    let iif = match from {
        Some(iface) if hook != Hook::Output => Some(iface.clone()),
        None if forward => route(src),
        _ => None,
    };
    let oif = match to {
        Some(iface) if hook != Hook::Input => Some(iface.clone()),
        None if forward => route(dst),
        _ => None,
    };
    let packet = Packet {
        hook,
        iif,
        oif,
        src,
        dst,
        protocol,
        sport: orig.src_port,
        dport: reply.src_port,
        ct: CtInfo::New,
    };
    (!eval::run(rs, &packet).accepted).then_some(Verdict::Denied)
}

/// Runs after each programmed sync; remembers the local addresses between them.
pub struct Flusher {
    node: String,
    strict: bool,
    /// The local endpoints' addresses after the last pass, with their owners.
    known: BTreeMap<IpAddr, Owner>,
}

impl Flusher {
    pub fn new(node: &str, strict: bool) -> Flusher {
        Flusher {
            node: node.to_owned(),
            strict,
            known: BTreeMap::new(),
        }
    }

    /// Before the first pass: the model enforced when the daemon stopped, so that
    /// the addresses of endpoints removed while it was down count as removed.
    pub fn seed(&mut self, model: &Model) {
        if self.known.is_empty() {
            self.known = local_owners(model, &self.node);
        }
    }

    /// After the kernel took `ruleset`, compiled from `model`: deletes what must go.
    pub fn after_sync(&mut self, model: &Model, ruleset: &Ruleset) {
        let now = local_owners(model, &self.node);
        let removed = removed_addresses(&self.known, &now, model);
        let local: BTreeMap<IpAddr, String> = now
            .iter()
            .map(|(ip, owner)| (*ip, owner.interface.clone()))
            .collect();
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
        let (host, mut routes) = if self.strict {
            let routes = crate::nft::conntrack::Routes::open()?;
            (crate::nft::conntrack::local_addresses()?, Some(routes))
        } else {
            (BTreeSet::new(), None)
        };
        let mut route = |ip: IpAddr| {
            let routes = routes.as_mut()?;
            routes.interface_to(ip).unwrap_or_else(|e| {
                log::debug!("conntrack: no route lookup for {ip}: {e}");
                None
            })
        };
        let strict = self.strict.then_some(ruleset);
        let mut pass = Pass {
            scanned: entries.len(),
            ..Pass::default()
        };
        let doomed: Vec<_> = entries
            .iter()
            .filter(
                |e| match judge(&e.orig, &e.reply, local, removed, &host, strict, &mut route) {
                    Some(Verdict::RemovedAddress) => {
                        pass.removed_address += 1;
                        true
                    }
                    Some(Verdict::Denied) => {
                        pass.denied += 1;
                        true
                    }
                    None => false,
                },
            )
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

    fn no_route(_: IpAddr) -> Option<String> {
        None
    }

    /// `judge` as `strict_conntrack` has it, no address removed nor route known.
    fn strict(
        orig: &Tuple,
        reply: &Tuple,
        local: &BTreeMap<IpAddr, String>,
        rs: &Ruleset,
    ) -> Option<Verdict> {
        let none = BTreeSet::new();
        judge(orig, reply, local, &none, &none, Some(rs), &mut no_route)
    }

    /// `judge` without `strict_conntrack`.
    fn loose(
        orig: &Tuple,
        reply: &Tuple,
        local: &BTreeMap<IpAddr, String>,
        removed: &BTreeSet<IpAddr>,
    ) -> Option<Verdict> {
        judge(
            orig,
            reply,
            local,
            removed,
            &BTreeSet::new(),
            None,
            &mut no_route,
        )
    }

    /// The reply tuple of a flow without NAT.
    fn back(t: &Tuple) -> Tuple {
        Tuple {
            src: t.dst,
            dst: t.src,
            protocol: t.protocol,
            src_port: t.dst_port,
            dst_port: t.src_port,
        }
    }

    #[test]
    fn entries_are_judged_as_new_connections_through_the_ruleset() {
        let model = crate::model::from_valid_yaml(MODEL);
        let rs = crate::compile::compile(&model, "n1", "netpold");
        let local = local_interfaces(&model, "n1");
        assert_eq!(local.len(), 2, "n2's endpoint is not local: {local:?}");
        let judge_strict = |t: &Tuple| strict(t, &back(t), &local, &rs);
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
        let judge_loose = |t: &Tuple| loose(t, &back(t), &local, &removed);
        assert_eq!(judge_loose(&tcp("10.0.0.1", "10.0.0.2", 80)), None);
        assert_eq!(
            judge_loose(&tcp("10.0.0.1", "10.0.0.3", 80)),
            Some(Verdict::RemovedAddress)
        );
        assert_eq!(
            judge_loose(&tcp("10.0.0.3", "192.0.2.7", 80)),
            Some(Verdict::RemovedAddress)
        );
    }

    #[test]
    fn a_dnat_flow_is_judged_where_it_really_goes_and_by_both_tuples_addresses() {
        let model = crate::model::from_valid_yaml(MODEL);
        let rs = crate::compile::compile(&model, "n1", "netpold");
        let local = local_interfaces(&model, "n1");
        // web → 192.0.2.80:8080, DNAT'd by the host to db:80, which db denies.
        let orig = tcp("10.0.0.1", "192.0.2.80", 8080);
        let mut reply = back(&tcp("10.0.0.1", "10.0.0.2", 80));
        assert_eq!(strict(&orig, &reply, &local, &rs), Some(Verdict::Denied));
        // To db:5432 it is allowed.
        reply.src_port = 5432;
        assert_eq!(strict(&orig, &reply, &local, &rs), None);
        // The target's address going away ends it, though only the reply tuple has it.
        let removed: BTreeSet<IpAddr> = ["10.0.0.2".parse().unwrap()].into();
        assert_eq!(
            loose(&orig, &reply, &local, &removed),
            Some(Verdict::RemovedAddress)
        );
        // So does an SNAT address, found only as the reply's destination.
        let snat: BTreeSet<IpAddr> = ["10.0.0.7".parse().unwrap()].into();
        let mut masqueraded = back(&orig);
        masqueraded.dst = "10.0.0.7".parse().unwrap();
        assert_eq!(
            loose(&orig, &masqueraded, &local, &snat),
            Some(Verdict::RemovedAddress)
        );
    }

    #[test]
    fn an_address_handed_to_another_endpoint_or_interface_counts_as_removed() {
        let model = crate::model::from_valid_yaml(MODEL);
        let before = local_owners(&model, "n1");
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert!(removed_addresses(&before, &before, &model).is_empty());
        // db replaced by `intruder` with the same address, in one edit.
        let swapped = MODEL.replace(
            "name: db, namespace: a, labels",
            "name: intruder, namespace: a, labels",
        );
        let after = crate::model::from_valid_yaml(&swapped);
        let now = local_owners(&after, "n1");
        assert_eq!(
            removed_addresses(&before, &now, &after),
            [ip("10.0.0.2")].into()
        );
        // The same endpoint on another interface.
        let moved = MODEL.replace("interfaceName: veth-db", "interfaceName: veth-new");
        let after = crate::model::from_valid_yaml(&moved);
        let now = local_owners(&after, "n1");
        assert_eq!(
            removed_addresses(&before, &now, &after),
            [ip("10.0.0.2")].into()
        );
        // An address gone from this node but held by another node's endpoint stays.
        let elsewhere = MODEL.replace(
            "{node: n1, interfaceName: veth-db",
            "{node: n2, interfaceName: veth-db",
        );
        let after = crate::model::from_valid_yaml(&elsewhere);
        let now = local_owners(&after, "n1");
        assert!(removed_addresses(&before, &now, &after).is_empty());
    }

    #[test]
    fn a_forwarded_flow_meets_the_apply_on_forward_policy_of_the_interface_routed_to() {
        let model = crate::model::from_valid_yaml(
            "
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {name: uplink, labels: {role: uplink}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.0.2.10]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {node: n1, interfaceName: veth-web, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: role == 'uplink'
  applyOnForward: true
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Deny, protocol: TCP, destination: {ports: [8443]}}
",
        );
        let rs = crate::compile::compile(&model, "n1", "netpold");
        let local = local_interfaces(&model, "n1");
        let none = BTreeSet::new();
        let mut routes = Vec::new();
        let mut by_eth0 = |ip: IpAddr| {
            routes.push(ip);
            Some("eth0".to_owned())
        };
        let outside = tcp("203.0.113.9", "10.0.0.1", 8443);
        assert_eq!(
            judge(
                &outside,
                &back(&outside),
                &local,
                &none,
                &none,
                Some(&rs),
                &mut by_eth0
            ),
            Some(Verdict::Denied)
        );
        let web = tcp("203.0.113.9", "10.0.0.1", 80);
        assert_eq!(
            judge(
                &web,
                &back(&web),
                &local,
                &none,
                &none,
                Some(&rs),
                &mut by_eth0
            ),
            None
        );
        // Only the end that is no local endpoint is looked up.
        assert_eq!(routes, ["203.0.113.9".parse::<IpAddr>().unwrap(); 2]);
        // Reached by an interface no host endpoint claims: web's own policy (none).
        assert_eq!(strict(&outside, &back(&outside), &local, &rs), None);
    }
}
