//! Failsafe ports: traffic to and from the host that host endpoint policies can never
//! cut (so a bad policy cannot lock the operator out). They come from the
//! configuration (`failsafe_inbound`, `failsafe_outbound`), never from the manifests,
//! and open the first rules of every host endpoint chain; workloads are unaffected.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::Protocol;

/// One failsafe entry: `proto:port` or `proto:cidr:port` (`tcp:[fd00::/8]:22` for IPv6).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailsafePort {
    pub protocol: Protocol,
    /// The remote end must be in it: the source inbound, the destination outbound.
    pub net: Option<IpNet>,
    pub port: u16,
}

impl FailsafePort {
    /// Strict: a lower-case protocol of tcp, udp, sctp; a port 1-65535; a CIDR without
    /// host bits, IPv6 optionally in brackets.
    pub fn parse(s: &str) -> Result<FailsafePort, String> {
        let form = "write proto:port or proto:cidr:port, e.g. \"tcp:22\", \"tcp:10.0.0.0/8:22\", \"tcp:[fd00::/8]:22\"";
        let (Some((proto, rest)), Some((middle, port))) = (s.split_once(':'), s.rsplit_once(':'))
        else {
            return Err(format!("{s:?} is not a failsafe port: {form}"));
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "sctp" => Protocol::Sctp,
            _ => {
                return Err(format!(
                    "{s:?}: {proto:?} is not a protocol: one of tcp, udp, sctp"
                ));
            }
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with(['+', '0']) => p,
            _ => return Err(format!("{s:?}: {port:?} is not a port number (1-65535)")),
        };
        // `rest` is everything after the protocol: `port` alone, or `cidr:port`.
        let net = if rest == port.to_string() {
            None
        } else {
            let cidr = &middle[proto.len() + 1..];
            let cidr = cidr
                .strip_prefix('[')
                .and_then(|c| c.strip_suffix(']'))
                .unwrap_or(cidr);
            let net: IpNet = cidr
                .parse()
                .map_err(|_| format!("{s:?}: {cidr:?} is not a CIDR (address/length): {form}"))?;
            if net.trunc() != net {
                return Err(format!(
                    "{s:?}: {net} has host bits set: did you mean {}?",
                    net.trunc()
                ));
            }
            Some(net)
        };
        Ok(FailsafePort {
            protocol,
            net,
            port,
        })
    }

    /// Whether a packet with this protocol, remote address and destination port is one.
    pub fn matches(&self, protocol: Protocol, remote: IpAddr, dport: u16) -> bool {
        self.protocol == protocol
            && self.port == dport
            && self.net.is_none_or(|n| n.contains(&remote))
    }
}

impl fmt::Display for FailsafePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol.keyword();
        match self.net {
            None => write!(f, "{proto}:{}", self.port),
            Some(IpNet::V6(n)) => write!(f, "{proto}:[{n}]:{}", self.port),
            Some(n) => write!(f, "{proto}:{n}:{}", self.port),
        }
    }
}

/// The failsafe ports of both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failsafe {
    /// To the host: matched on the destination port (and source address).
    pub inbound: Vec<FailsafePort>,
    /// From the host: matched on the destination port (and destination address).
    pub outbound: Vec<FailsafePort>,
}

/// Calico's defaults without its cluster ports (BGP, etcd, Typha, the API server).
pub const DEFAULT_INBOUND: [&str; 2] = ["tcp:22", "udp:68"];
pub const DEFAULT_OUTBOUND: [&str; 2] = ["udp:53", "udp:67"];

impl Default for Failsafe {
    fn default() -> Failsafe {
        let parse = |list: &[&str]| {
            list.iter()
                .map(|s| FailsafePort::parse(s).expect("valid default"))
                .collect()
        };
        Failsafe {
            inbound: parse(&DEFAULT_INBOUND),
            outbound: parse(&DEFAULT_OUTBOUND),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_and_print_back() {
        for s in [
            "tcp:22",
            "udp:68",
            "sctp:9",
            "tcp:10.0.0.0/8:22",
            "tcp:[fd00::/8]:22",
            "udp:192.0.2.1/32:53",
        ] {
            assert_eq!(FailsafePort::parse(s).unwrap().to_string(), s);
        }
        let p = FailsafePort::parse("tcp:fd00::/8:22").unwrap();
        assert_eq!(p.to_string(), "tcp:[fd00::/8]:22", "brackets are optional");
        assert!(p.matches(Protocol::Tcp, "fd00::1".parse().unwrap(), 22));
        assert!(!p.matches(Protocol::Tcp, "10.0.0.1".parse().unwrap(), 22));
        assert!(!p.matches(Protocol::Udp, "fd00::1".parse().unwrap(), 22));
        let d = Failsafe::default();
        assert_eq!(d.inbound.len(), 2);
        assert_eq!(d.outbound[0].to_string(), "udp:53");
    }

    #[test]
    fn bad_forms_are_refused_with_a_reason() {
        for (s, why) in [
            ("22", "not a failsafe port"),
            ("TCP:22", "not a protocol"),
            ("icmp:22", "not a protocol"),
            ("tcp:0", "not a port"),
            ("tcp:65536", "not a port"),
            ("tcp:022", "not a port"),
            ("tcp:", "not a port"),
            ("tcp:ssh", "not a port"),
            ("tcp:10.0.0.1/8:22", "host bits"),
            ("tcp:10.0.0.0:22", "not a CIDR"),
            ("tcp:nowhere:22", "not a CIDR"),
            ("tcp::22", "not a CIDR"),
        ] {
            let e = FailsafePort::parse(s).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
