//! Host endpoints: the host's own interfaces, protected by the GlobalNetworkPolicies
//! that select them (Calico's semantics).
//!
//! - Base chains, only when some local host endpoint is selected: `host_input` (hook
//!   input, priority `filter + 1`, after `input_egress`) and `host_output` (hook output,
//!   priority `filter`): `ct state established,related accept`, neighbour discovery,
//!   then the interface looked up in `host_in_dispatch` (`iifname`) / `host_out_dispatch`
//!   (`oifname`); a `*` host endpoint's chain after the lookup catches every other
//!   interface. `lo` and the workloads' interfaces map to `accept`: traffic between
//!   the host and its workloads is the workloads' policy's to decide, never a host
//!   endpoint's.
//! - With `applyOnForward` policies: `host_forward_in` / `host_forward_out` (hook forward,
//!   priorities `filter + 2` / `filter + 3`, after the workloads' chains), the same
//!   dispatch by the interface a forwarded packet enters or leaves by.
//! - Per host endpoint and governed direction, `hep_<h>_in` / `hep_<h>_out` (input,
//!   output) and `hepf_<h>_in` / `hepf_<h>_out` (forward): the failsafe ports first
//!   (input/output only), `ct state invalid drop`, a jump to each selecting policy's
//!   host chain by order, then a (logged) drop. A host endpoint no policy selects in a
//!   direction maps to `accept`.
//! - `tph_<h>_in` / `tph_<h>_out`: a policy's rules as `tp_` has them, but a Pass accepts
//!   (it hands the packet to the Kubernetes NetworkPolicies, and none selects a host
//!   endpoint).

use super::*;
use crate::compile::failsafe::FailsafePort;
use crate::model::{HostEndpoint, HostInterface};

pub const HOST_INPUT: &str = "host_input";
pub const HOST_OUTPUT: &str = "host_output";
pub const HOST_FORWARD_IN: &str = "host_forward_in";
pub const HOST_FORWARD_OUT: &str = "host_forward_out";
pub const HOST_IN_MAP: &str = "host_in_dispatch";
pub const HOST_OUT_MAP: &str = "host_out_dispatch";
pub const HOST_FORWARD_IN_MAP: &str = "host_forward_in_dispatch";
pub const HOST_FORWARD_OUT_MAP: &str = "host_forward_out_dispatch";

/// Router and neighbour solicitations and advertisements: the host's IPv6 needs them
/// whatever its policies say.
const HOST_NEIGHBOUR_DISCOVERY: [u8; 4] = [133, 134, 135, 136];

/// Which traffic of a host endpoint a chain filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPath {
    /// To the host (ingress) and from it (egress).
    Host,
    /// Forwarded through its interface, by `applyOnForward` policies.
    Forward,
}

/// The rules that accept a failsafe port: the remote end is the source inbound and
/// the destination outbound; the port is the destination port either way.
pub fn failsafe_rules(ports: &[FailsafePort], direction: Direction) -> Vec<Rule> {
    let (side, word) = match direction {
        Direction::Ingress => (AddrSide::Src, "inbound"),
        Direction::Egress => (AddrSide::Dst, "outbound"),
    };
    ports
        .iter()
        .map(|p| {
            let mut matches = Vec::new();
            if let Some(net) = p.net {
                matches.push(Match::Addr {
                    side,
                    family: Family::of_net(&net),
                    negate: false,
                    source: AddrSource::List(vec![net]),
                });
            }
            matches.push(Match::DstPorts {
                protocol: p.protocol,
                ranges: vec![(p.port, p.port)],
            });
            Rule::new(matches, Verdict::Accept)
                .counted()
                .with_comment(format!("failsafe {word} {p}"))
        })
        .collect()
}

impl<'m> Compiler<'m> {
    /// The chains, maps and base chains of the local host endpoints; `ordered` is every
    /// netpold.io policy by order. Nothing at all when no policy selects one.
    pub(super) fn host_endpoints(&mut self, node: &str, ordered: &[&'m TieredPolicy]) {
        let model = self.model;
        let hosts: Vec<&'m HostEndpoint> =
            model.hosts.values().filter(|h| h.is_local(node)).collect();
        if hosts.is_empty() {
            return;
        }
        let workload_interfaces: Vec<&'m str> = model
            .endpoints
            .values()
            .filter(|ep| ep.is_local(node))
            .map(|ep| ep.interface.as_str())
            .collect();
        for path in [HostPath::Host, HostPath::Forward] {
            let mut maps: [BTreeMap<String, Verdict>; 2] = Default::default();
            let mut star: [Option<String>; 2] = [None, None];
            let mut governed = false;
            for h in &hosts {
                for (d, direction) in Direction::BOTH.into_iter().enumerate() {
                    let policies: Vec<&'m TieredPolicy> = ordered
                        .iter()
                        .copied()
                        .filter(|p| p.rules(direction).is_some() && p.selects_host(h))
                        .filter(|p| path == HostPath::Host || p.apply_on_forward)
                        .collect();
                    let verdict = if policies.is_empty() {
                        Verdict::Accept
                    } else {
                        governed = true;
                        Verdict::Goto(self.host_chain(h, direction, path, &policies))
                    };
                    match &h.interface {
                        HostInterface::Named(name) => {
                            maps[d].insert(name.clone(), verdict);
                        }
                        HostInterface::All => {
                            if let Verdict::Goto(chain) = verdict {
                                star[d] = Some(chain);
                            }
                        }
                    }
                }
            }
            if !governed {
                continue;
            }
            for map in &mut maps {
                for name in std::iter::once("lo").chain(workload_interfaces.iter().copied()) {
                    map.entry(name.to_owned()).or_insert(Verdict::Accept);
                }
            }
            let [in_map, out_map] = maps;
            let [in_star, out_star] = star;
            let (names, hooks) = match path {
                HostPath::Host => (
                    [(HOST_INPUT, HOST_IN_MAP), (HOST_OUTPUT, HOST_OUT_MAP)],
                    [(Hook::Input, 1), (Hook::Output, 0)],
                ),
                HostPath::Forward => (
                    [
                        (HOST_FORWARD_IN, HOST_FORWARD_IN_MAP),
                        (HOST_FORWARD_OUT, HOST_FORWARD_OUT_MAP),
                    ],
                    [(Hook::Forward, 2), (Hook::Forward, 3)],
                ),
            };
            let what = match path {
                HostPath::Host => ["traffic to the host", "traffic from the host"],
                HostPath::Forward => [
                    "forwarded traffic entering by a host endpoint",
                    "forwarded traffic leaving by a host endpoint",
                ],
            };
            for (i, (map, star, side)) in [
                (in_map, in_star, IfSide::In),
                (out_map, out_star, IfSide::Out),
            ]
            .into_iter()
            .enumerate()
            {
                let (chain, map_name) = names[i];
                let (hook, priority) = hooks[i];
                let mut rules = vec![
                    Rule::new(
                        vec![Match::Ct(CtState::EstablishedOrRelated)],
                        Verdict::Accept,
                    )
                    .with_comment("replies and related traffic of allowed connections"),
                ];
                if path == HostPath::Host {
                    rules.push(
                        Rule::new(
                            vec![Match::Icmpv6Types(HOST_NEIGHBOUR_DISCOVERY.to_vec())],
                            Verdict::Accept,
                        )
                        .with_comment("neighbour discovery of the host"),
                    );
                }
                rules.push(
                    Rule::new(
                        vec![],
                        Verdict::Map {
                            side,
                            map: map_name.to_owned(),
                        },
                    )
                    .with_comment("to the host endpoint's chain"),
                );
                if let Some(star) = star {
                    rules.push(
                        Rule::new(vec![], Verdict::Goto(star))
                            .with_comment("any other interface: the \"*\" host endpoint"),
                    );
                }
                self.state.out.chains.insert(
                    chain.to_owned(),
                    Chain {
                        base: Some(BaseChain {
                            hook,
                            priority,
                            policy_accept: true,
                        }),
                        rules,
                        comment: format!("{}: host endpoint policy", what[i]),
                    },
                );
                self.state.out.maps.insert(
                    map_name.to_owned(),
                    VerdictMap {
                        entries: map,
                        comment: format!("interface -> host endpoint chain ({})", what[i]),
                    },
                );
            }
        }
    }

    /// One host endpoint's chain for one direction and path.
    fn host_chain(
        &mut self,
        h: &HostEndpoint,
        direction: Direction,
        path: HostPath,
        policies: &[&TieredPolicy],
    ) -> String {
        let prefix = match path {
            HostPath::Host => "hep",
            HostPath::Forward => "hepf",
        };
        let name = self.state.names.get(
            prefix,
            &format!("host\0{}", h.name),
            chain_suffix(direction),
        );
        let id = h.id();
        let mut rules = Vec::new();
        if path == HostPath::Host {
            let failsafe = &self.state.options.failsafe;
            rules.extend(failsafe_rules(
                match direction {
                    Direction::Ingress => &failsafe.inbound,
                    Direction::Egress => &failsafe.outbound,
                },
                direction,
            ));
        }
        rules.push(
            Rule::new(vec![Match::Ct(CtState::Invalid)], Verdict::Drop)
                .counted()
                .with_comment("no connection state"),
        );
        let mut order = Vec::new();
        for policy in policies {
            let chain = self.tiered_chain_name_for(policy, direction, true);
            if !self.state.out.chains.contains_key(&chain) {
                self.tiered_chain_for(policy, direction, true);
            }
            order.push(policy.label());
            let at = policy
                .order
                .map_or_else(|| "none".to_owned(), |o| o.to_string());
            rules.push(
                Rule::new(vec![], Verdict::Jump(chain))
                    .with_comment(bounded_comment(&format!("{} (order {at})", policy.label()))),
            );
        }
        let comment = comment_around(
            "",
            &id,
            &format!(": isolated for {direction}, no rule allows"),
        );
        rules.extend(self.logged_drop(vec![], direction, Some(&id), DropCause::Isolated, comment));
        let forwarded = match path {
            HostPath::Host => "",
            HostPath::Forward => " forwarded",
        };
        self.state.out.chains.insert(
            name.clone(),
            Chain {
                base: None,
                rules,
                // Not the interface: a chain's comment changes only with a new chain.
                comment: comment_around(
                    "host endpoint ",
                    &h.name,
                    &format!("{forwarded} {direction}"),
                ),
            },
        );
        if let Some(origins) = &mut self.state.origins {
            origins.note(
                &name,
                ChainOrigin::Host {
                    host: h.name.clone(),
                    direction,
                    forward: path == HostPath::Forward,
                    order,
                    last_rule: self.state.out.chains[&name].rules.len() - 1,
                },
            );
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::eval::{CtInfo, Packet, run};
    use crate::model::from_valid_yaml;

    const HOSTS: &str = "
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {name: uplink, labels: {role: uplink}}
spec: {interfaceName: uplink0, expectedIPs: [192.0.2.1]}
---
apiVersion: netpold.io/v1
kind: HostEndpoint
metadata: {name: rest, labels: {role: other}}
spec: {interfaceName: \"*\"}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: web}
spec: {interfaceName: veth-web, ips: [10.1.0.5]}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: host-web}
spec:
  order: 10
  selector: role == 'uplink'
  types: [Ingress, Egress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080]}}
  egress:
  - {action: Allow, protocol: TCP, destination: {ports: [443]}}
---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: role == 'uplink'
  applyOnForward: true
  ingress:
  - {action: Pass, protocol: TCP, destination: {ports: [80]}}
";

    fn packet(
        hook: Hook,
        iif: &str,
        oif: &str,
        src: &str,
        dst: &str,
        p: Protocol,
        dport: u16,
    ) -> Packet {
        let name = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Packet {
            hook,
            iif: name(iif),
            oif: name(oif),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: p,
            sport: 40000,
            dport,
            ct: CtInfo::New,
        }
    }

    fn input(rs: &Ruleset, iif: &str, p: Protocol, dport: u16) -> bool {
        run(
            rs,
            &packet(Hook::Input, iif, "", "198.51.100.7", "192.0.2.1", p, dport),
        )
        .accepted
    }

    #[test]
    fn a_selected_host_endpoint_is_default_deny_but_for_its_policies_and_failsafe_ports() {
        let model = from_valid_yaml(HOSTS);
        let rs = compile(&model, "n1", "netpold");
        assert!(input(&rs, "uplink0", Protocol::Tcp, 8080));
        assert!(!input(&rs, "uplink0", Protocol::Tcp, 8081));
        assert!(input(&rs, "uplink0", Protocol::Tcp, 22), "failsafe");
        assert!(input(&rs, "uplink0", Protocol::Udp, 68), "failsafe");
        assert!(!input(&rs, "uplink0", Protocol::Udp, 22));
        // `*` (every other interface) is selected by no policy: not filtered.
        assert!(input(&rs, "eth1", Protocol::Tcp, 9999));
        assert!(input(&rs, "lo", Protocol::Tcp, 9999));
        // A workload's traffic to the host is its egress policy's (none: allowed).
        let from_web = packet(
            Hook::Input,
            "veth-web",
            "",
            "10.1.0.5",
            "192.0.2.1",
            Protocol::Tcp,
            9999,
        );
        assert!(run(&rs, &from_web).accepted);
        // Replies of accepted connections pass.
        let mut reply = packet(
            Hook::Input,
            "uplink0",
            "",
            "198.51.100.7",
            "192.0.2.1",
            Protocol::Tcp,
            40000,
        );
        reply.ct = CtInfo::Established;
        assert!(run(&rs, &reply).accepted);
        // Egress from the host: 443 and the outbound failsafe ports only.
        let out = |oif: &str, p, port| {
            run(
                &rs,
                &packet(Hook::Output, "", oif, "192.0.2.1", "198.51.100.7", p, port),
            )
            .accepted
        };
        assert!(out("uplink0", Protocol::Tcp, 443));
        assert!(out("uplink0", Protocol::Udp, 53), "failsafe");
        assert!(!out("uplink0", Protocol::Tcp, 80));
        assert!(
            out("veth-web", Protocol::Tcp, 80),
            "the host to its workloads"
        );
        assert!(out("eth1", Protocol::Tcp, 80));
    }

    #[test]
    fn failsafe_ports_come_from_the_options_and_can_be_narrowed_or_disabled() {
        let model = from_valid_yaml(HOSTS);
        let narrowed = Options {
            failsafe: crate::compile::Failsafe {
                inbound: vec![FailsafePort::parse("tcp:198.51.100.0/24:22").unwrap()],
                outbound: vec![],
            },
            ..Options::default()
        };
        let rs = compile_with(&model, "n1", "netpold", &narrowed);
        assert!(input(&rs, "uplink0", Protocol::Tcp, 22));
        let other = packet(
            Hook::Input,
            "uplink0",
            "",
            "203.0.113.9",
            "192.0.2.1",
            Protocol::Tcp,
            22,
        );
        assert!(!run(&rs, &other).accepted, "outside the CIDR");
        assert!(!input(&rs, "uplink0", Protocol::Udp, 68));
        let none = Options {
            failsafe: crate::compile::Failsafe {
                inbound: vec![],
                outbound: vec![],
            },
            ..Options::default()
        };
        let rs = compile_with(&model, "n1", "netpold", &none);
        assert!(!input(&rs, "uplink0", Protocol::Tcp, 22), "[] disables");
        let chain = &rs
            .chains
            .values()
            .find(|c| c.comment.starts_with("host endpoint uplink ingress"))
            .unwrap();
        assert!(!chain.rules.iter().any(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| c.starts_with("failsafe"))
        }));
    }

    #[test]
    fn apply_on_forward_filters_traffic_forwarded_through_the_interface() {
        let model = from_valid_yaml(HOSTS);
        let rs = compile(&model, "n1", "netpold");
        let fwd = |iif: &str, oif: &str, port| {
            run(
                &rs,
                &packet(
                    Hook::Forward,
                    iif,
                    oif,
                    "198.51.100.7",
                    "10.1.0.5",
                    Protocol::Tcp,
                    port,
                ),
            )
            .accepted
        };
        // `fwd` passes TCP 80 (a Pass accepts for a host endpoint) and isolates the rest.
        assert!(fwd("uplink0", "veth-web", 80));
        assert!(
            !fwd("uplink0", "veth-web", 8080),
            "host-web does not apply to forwarded traffic"
        );
        assert!(
            !fwd("uplink0", "veth-web", 22),
            "failsafe ports are for the host's own traffic"
        );
        // Out by uplink0: fwd governs ingress only.
        let out = packet(
            Hook::Forward,
            "veth-web",
            "uplink0",
            "10.1.0.5",
            "198.51.100.7",
            Protocol::Tcp,
            25,
        );
        assert!(run(&rs, &out).accepted);
        // Without applyOnForward, no forward chains at all.
        let model =
            from_valid_yaml(&HOSTS.replace("applyOnForward: true", "applyOnForward: false"));
        let rs = compile(&model, "n1", "netpold");
        assert!(!rs.chains.contains_key(HOST_FORWARD_IN));
        assert!(rs.chains.contains_key(HOST_INPUT));
    }

    #[test]
    fn nothing_is_compiled_for_unselected_or_remote_host_endpoints() {
        let model = from_valid_yaml(&HOSTS.replace(
            "spec: {interfaceName: uplink0",
            "spec: {node: n2, interfaceName: uplink0",
        ));
        let rs = compile(&model, "n1", "netpold");
        assert!(
            !rs.chains.contains_key(HOST_INPUT),
            "{:?}",
            rs.chains.keys()
        );
        assert!(!rs.maps.contains_key(HOST_IN_MAP));
        // Its expected address is still a member of a rule selector's set (of a policy
        // that selects the local workload).
        let model = from_valid_yaml(&format!(
            "{HOSTS}---
apiVersion: netpold.io/v1
kind: GlobalNetworkPolicy
metadata: {{name: from-uplink}}
spec:
  selector: \"!has(role)\"
  ingress: [{{action: Allow, source: {{selector: role == 'uplink'}}}}]
"
        ));
        let rs = compile(&model, "n1", "netpold");
        assert!(rs.sets.values().any(|s| {
            s.elements
                .contains(&Element::Addr("192.0.2.1".parse().unwrap()))
        }));
    }

    #[test]
    fn a_star_host_endpoint_catches_every_other_interface() {
        let model = from_valid_yaml(&HOSTS.replace("role: other", "role: uplink"));
        let rs = compile(&model, "n1", "netpold");
        assert!(!input(&rs, "eth1", Protocol::Tcp, 9999));
        assert!(input(&rs, "eth1", Protocol::Tcp, 8080));
        assert!(input(&rs, "lo", Protocol::Tcp, 9999), "never lo");
        let from_web = packet(
            Hook::Input,
            "veth-web",
            "",
            "10.1.0.5",
            "192.0.2.1",
            Protocol::Tcp,
            9999,
        );
        assert!(run(&rs, &from_web).accepted, "never a workload's interface");
    }

    #[test]
    fn drops_of_a_host_endpoint_are_logged_naming_it_and_failsafe_accepts_are_counted() {
        let model = from_valid_yaml(HOSTS);
        let options = Options {
            drop_log: Some(crate::compile::DropLog {
                group: Some(4),
                rate: 10,
                burst: 20,
            }),
            ..Options::default()
        };
        let rs = compile_with(&model, "n1", "netpold", &options);
        let chain = rs
            .chains
            .values()
            .find(|c| c.comment == "host endpoint uplink ingress")
            .unwrap();
        let log = chain.rules.iter().find_map(|r| r.log.as_ref()).unwrap();
        let parsed = crate::droplog::parse_drop_prefix(&log.prefix).unwrap();
        assert_eq!(parsed.endpoint.as_deref(), Some("host:uplink"));
        assert_eq!(parsed.direction, Direction::Ingress);
        let failsafe: Vec<&Rule> = chain
            .rules
            .iter()
            .take_while(|r| {
                r.comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with("failsafe"))
            })
            .collect();
        assert_eq!(failsafe.len(), 2, "first in the chain");
        assert!(failsafe.iter().all(|r| r.counter && r.log.is_none()));
        // Same verdicts as without logs.
        assert!(input(&rs, "uplink0", Protocol::Tcp, 22));
        assert!(!input(&rs, "uplink0", Protocol::Tcp, 23));
    }
}
