//! The conntrack table over ctnetlink (NFNL_SUBSYS_CTNETLINK): a dump of every entry
//! (IPCTNL_MSG_CT_GET with NLM_F_DUMP) and deletion by original-direction tuple
//! (IPCTNL_MSG_CT_DELETE), and this network namespace's own addresses (an
//! RTM_GETADDR dump over NETLINK_ROUTE), which tell a flow to or from the host itself
//! from a forwarded one. Conntrack entries are per network namespace: only the
//! daemon's own is seen. Needs CAP_NET_ADMIN.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::wire::{self, Attrs};

const SUBSYS_CTNETLINK: u16 = 1;
const MSG_CT_GET: u16 = 1;
const MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const RTM_GETADDR: u16 = 22;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
/// `struct ifinfomsg`: family, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
/// `struct rtmsg`: family, lengths, tos, table, protocol, scope, type, flags.
const RTMSG_LEN: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTM_NEWADDR: u16 = 20;
/// `struct ifaddrmsg`: family, prefix length, flags, scope, interface index.
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RECV_BUFFER: usize = 1 << 20;
/// Deletions sent in one datagram; each is acknowledged on its own.
const DELETES_PER_SEND: usize = 256;
/// How long one read may wait for the kernel; per read, so a large table is not cut off.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's original-direction tuple (the first packet's addresses and ports).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number.
    pub protocol: u8,
    /// Ports of TCP, UDP, SCTP, DCCP and UDP-Lite; 0 for the rest.
    pub src_port: u16,
    pub dst_port: u16,
}

/// One conntrack entry, with what its deletion sends back.
#[derive(Clone, Debug)]
pub struct Entry {
    pub orig: Tuple,
    /// The reply direction's tuple: after NAT, its source is where the flow really
    /// goes (a DNAT target) and its destination where replies go (an SNAT address).
    pub reply: Tuple,
    family: u8,
    /// The CTA_TUPLE_ORIG payload as dumped, sent back unchanged to name the entry.
    tuple: Vec<u8>,
    zone: Option<Vec<u8>>,
}

/// A ctnetlink socket in the current network namespace.
pub struct Conntrack {
    socket: wire::Socket,
    buf: wire::RecvBuf,
    seq: u32,
}

impl Conntrack {
    pub fn open() -> io::Result<Conntrack> {
        Ok(Conntrack {
            socket: wire::Socket::open(0, false)?,
            buf: wire::RecvBuf::new(RECV_BUFFER),
            seq: 0,
        })
    }

    /// Every IPv4 and IPv6 entry. An entry that cannot be read is skipped.
    pub fn dump(&mut self) -> io::Result<Vec<Entry>> {
        self.seq = self.seq.wrapping_add(1);
        let request = wire::nfnl_request(
            SUBSYS_CTNETLINK,
            MSG_CT_GET,
            libc::AF_UNSPEC as u8,
            0,
            libc::NLM_F_DUMP as u16,
            self.seq,
            &[],
        );
        self.socket.send(&request)?;
        let mut entries = Vec::new();
        let seq = self.seq;
        read_dump(&self.socket, &mut self.buf, seq, |m| {
            if m.nfnl().0 == SUBSYS_CTNETLINK {
                entries.extend(entry(m));
            }
        })?;
        Ok(entries)
    }

    /// Deletes `entries`; returns how many the kernel deleted (an entry that ended
    /// in the meantime is not an error).
    pub fn delete<'e>(
        &mut self,
        entries: impl IntoIterator<Item = &'e Entry>,
    ) -> io::Result<usize> {
        let entries: Vec<&Entry> = entries.into_iter().collect();
        let mut deleted = 0;
        for chunk in entries.chunks(DELETES_PER_SEND) {
            let first = self.seq.wrapping_add(1);
            let mut batch = Vec::new();
            for e in chunk {
                self.seq = self.seq.wrapping_add(1);
                let mut attrs: Vec<(u16, &[u8])> = vec![(CTA_TUPLE_ORIG | NLA_F_NESTED, &e.tuple)];
                if let Some(zone) = &e.zone {
                    attrs.push((CTA_ZONE, zone));
                }
                batch.extend(wire::nfnl_request(
                    SUBSYS_CTNETLINK,
                    MSG_CT_DELETE,
                    e.family,
                    0,
                    libc::NLM_F_ACK as u16,
                    self.seq,
                    &attrs,
                ));
            }
            self.socket.send(&batch)?;
            let mut pending = chunk.len();
            let deadline = Instant::now() + REPLY_TIMEOUT;
            while pending > 0 {
                let data = recv_until(&self.socket, &mut self.buf, deadline)?;
                for m in wire::messages(data) {
                    if m.seq.wrapping_sub(first) >= chunk.len() as u32 {
                        continue;
                    }
                    match m.error() {
                        Some(0) => {
                            deleted += 1;
                            pending -= 1;
                        }
                        Some(libc::ENOENT) => pending -= 1,
                        Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                        None => {}
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// Receives datagrams for a dump with sequence `seq`, handing each message to `each`,
/// until NLMSG_DONE.
fn read_dump(
    socket: &wire::Socket,
    buf: &mut wire::RecvBuf,
    seq: u32,
    mut each: impl FnMut(&wire::Message),
) -> io::Result<()> {
    loop {
        let data = recv_until(socket, buf, Instant::now() + REPLY_TIMEOUT)?;
        for m in wire::messages(data) {
            if m.seq != seq {
                continue;
            }
            match m.kind {
                wire::NLMSG_DONE => return Ok(()),
                wire::NLMSG_ERROR => match m.error() {
                    Some(0) | None => {}
                    Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
                },
                _ => each(&m),
            }
        }
    }
}

fn recv_until<'b>(
    socket: &wire::Socket,
    buf: &'b mut wire::RecvBuf,
    deadline: Instant,
) -> io::Result<&'b [u8]> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || !wire::wait_readable(socket, left)? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the kernel did not answer",
        ));
    }
    socket.recv(buf)
}

/// An IPCTNL_MSG_CT_NEW message of a dump as an entry.
fn entry(m: &wire::Message) -> Option<Entry> {
    let tuple = m.attr(CTA_TUPLE_ORIG)?;
    Some(Entry {
        orig: parse_tuple(tuple)?,
        reply: parse_tuple(m.attr(CTA_TUPLE_REPLY)?)?,
        family: m.family(),
        tuple: tuple.to_vec(),
        zone: m.attr(CTA_ZONE).map(<[u8]>::to_vec),
    })
}

fn parse_tuple(payload: &[u8]) -> Option<Tuple> {
    let (mut src, mut dst, mut protocol) = (None, None, None);
    let (mut src_port, mut dst_port) = (0, 0);
    for (kind, value) in Attrs::nested(payload) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, a) in Attrs::nested(value) {
                    let v4 = || Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a).ok()?)));
                    let v6 = || Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?)));
                    match kind {
                        CTA_IP_V4_SRC => src = v4(),
                        CTA_IP_V4_DST => dst = v4(),
                        CTA_IP_V6_SRC => src = v6(),
                        CTA_IP_V6_DST => dst = v6(),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, p) in Attrs::nested(value) {
                    let port = || p.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                    match kind {
                        CTA_PROTO_NUM => protocol = p.first().copied(),
                        CTA_PROTO_SRC_PORT => src_port = port(),
                        CTA_PROTO_DST_PORT => dst_port = port(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple {
        src: src?,
        dst: dst?,
        protocol: protocol?,
        src_port,
        dst_port,
    })
}

/// A NETLINK_ROUTE request of `kind` with `body` (the fixed header and attributes).
fn route_request(kind: u16, flags: i32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut request = vec![0u8; wire::HEADER_LEN];
    request.extend_from_slice(body);
    let len = request.len() as u32;
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&kind.to_ne_bytes());
    request[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | flags) as u16).to_ne_bytes());
    request[8..12].copy_from_slice(&seq.to_ne_bytes());
    request
}

/// The addresses assigned to this network namespace's interfaces.
pub fn local_addresses() -> io::Result<BTreeSet<IpAddr>> {
    let socket = wire::Socket::open_protocol(libc::NETLINK_ROUTE, 0, false)?;
    let mut buf = wire::RecvBuf::new(RECV_BUFFER);
    let ifaddrmsg = [libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
    socket.send(&route_request(RTM_GETADDR, libc::NLM_F_DUMP, 1, &ifaddrmsg))?;
    let mut out = BTreeSet::new();
    read_dump(&socket, &mut buf, 1, |m| {
        if m.kind == RTM_NEWADDR {
            out.extend(interface_address(m));
        }
    })?;
    Ok(out)
}

/// Which interface this namespace's routing table sends a packet to an address by:
/// the interface a forwarded flow's remote end is reached by (and, routes being
/// symmetric as reverse-path filtering wants, comes in by). Answers are cached.
pub struct Routes {
    socket: wire::Socket,
    buf: wire::RecvBuf,
    seq: u32,
    names: std::collections::BTreeMap<u32, String>,
    cache: std::collections::BTreeMap<IpAddr, Option<String>>,
}

impl Routes {
    /// Reads the interface names once.
    pub fn open() -> io::Result<Routes> {
        let socket = wire::Socket::open_protocol(libc::NETLINK_ROUTE, 0, false)?;
        let mut buf = wire::RecvBuf::new(RECV_BUFFER);
        let mut ifinfomsg = [0u8; IFINFOMSG_LEN];
        ifinfomsg[0] = libc::AF_UNSPEC as u8;
        socket.send(&route_request(RTM_GETLINK, libc::NLM_F_DUMP, 1, &ifinfomsg))?;
        let mut names = std::collections::BTreeMap::new();
        read_dump(&socket, &mut buf, 1, |m| {
            if m.kind == RTM_NEWLINK {
                names.extend(interface_name(m));
            }
        })?;
        Ok(Routes {
            socket,
            buf,
            seq: 1,
            names,
            cache: std::collections::BTreeMap::new(),
        })
    }

    /// The interface the route to `dst` leaves by; `None` when there is no route.
    pub fn interface_to(&mut self, dst: IpAddr) -> io::Result<Option<String>> {
        if let Some(known) = self.cache.get(&dst) {
            return Ok(known.clone());
        }
        let (family, len, octets) = match dst {
            IpAddr::V4(a) => (libc::AF_INET, 32, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6, 128, a.octets().to_vec()),
        };
        let mut body = vec![0u8; RTMSG_LEN];
        body[0] = family as u8;
        body[1] = len;
        body.extend(attr_bytes(RTA_DST, &octets));
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.socket
            .send(&route_request(RTM_GETROUTE, 0, seq, &body))?;
        let found = loop {
            let data = recv_until(&self.socket, &mut self.buf, Instant::now() + REPLY_TIMEOUT)?;
            let mut answer = None;
            for m in wire::messages(data).filter(|m| m.seq == seq) {
                if m.kind == RTM_NEWROUTE {
                    answer = Some(route_oif(&m).and_then(|i| self.names.get(&i).cloned()));
                } else if m.error().is_some_and(|e| e != 0) {
                    // ENETUNREACH and the like: no route.
                    answer = Some(None);
                }
            }
            if let Some(answer) = answer {
                break answer;
            }
        };
        self.cache.insert(dst, found.clone());
        Ok(found)
    }
}

/// A netlink attribute, padded to 4 bytes.
fn attr_bytes(kind: u16, value: &[u8]) -> Vec<u8> {
    let mut out = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

fn route_oif(m: &wire::Message) -> Option<u32> {
    let mut attrs = Attrs::nested(m.bytes.get(wire::HEADER_LEN + RTMSG_LEN..)?);
    attrs
        .find(|(kind, _)| *kind == RTA_OIF)
        .and_then(|(_, v)| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?)))
}

/// An RTM_NEWLINK message's interface index and name.
fn interface_name(m: &wire::Message) -> Option<(u32, String)> {
    let header = m
        .bytes
        .get(wire::HEADER_LEN..wire::HEADER_LEN + IFINFOMSG_LEN)?;
    let index = u32::from_ne_bytes(header[4..8].try_into().ok()?);
    let mut attrs = Attrs::nested(m.bytes.get(wire::HEADER_LEN + IFINFOMSG_LEN..)?);
    let (_, name) = attrs.find(|(kind, _)| *kind == IFLA_IFNAME)?;
    let name = name.split(|b| *b == 0).next()?;
    Some((index, String::from_utf8_lossy(name).into_owned()))
}

/// The address an RTM_NEWADDR message gives this namespace: IFA_LOCAL when present,
/// since on a point-to-point link IFA_ADDRESS is the peer's.
fn interface_address(m: &wire::Message) -> Option<IpAddr> {
    let attrs = Attrs::nested(
        m.bytes
            .get(wire::HEADER_LEN + IFADDRMSG_LEN..)
            .unwrap_or(&[]),
    );
    let ip = |a: &[u8]| {
        if let Ok(b) = <[u8; 4]>::try_from(a) {
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        } else {
            <[u8; 16]>::try_from(a)
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b)))
        }
    };
    let (mut local, mut address) = (None, None);
    for (kind, a) in attrs {
        match kind {
            IFA_LOCAL => local = ip(a),
            IFA_ADDRESS => address = ip(a),
            _ => {}
        }
    }
    local.or(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    use attr_bytes as attr;

    /// A CTA_TUPLE_* payload of a TCP flow over IPv4.
    fn tcp_tuple(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let ip = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[6]),
            attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
        .concat();
        [
            attr(CTA_TUPLE_IP | NLA_F_NESTED, &ip),
            attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto),
        ]
        .concat()
    }

    #[test]
    fn a_dumped_tuple_gives_addresses_protocol_and_ports() {
        let tuple = tcp_tuple([10, 0, 0, 1], [10, 0, 0, 2], 40000, 5432);
        // DNAT'd to 10.0.0.9:80: the reply comes from there.
        let reply = tcp_tuple([10, 0, 0, 9], [10, 0, 0, 1], 80, 40000);
        let zone = 7u16.to_be_bytes();
        let msg = wire::nfnl_request(
            SUBSYS_CTNETLINK,
            0,
            libc::AF_INET as u8,
            0,
            0,
            3,
            &[
                (CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple),
                (CTA_TUPLE_REPLY | NLA_F_NESTED, &reply),
                (CTA_ZONE, &zone),
            ],
        );
        let m = wire::messages(&msg).next().unwrap();
        let e = entry(&m).unwrap();
        assert_eq!(
            e.orig,
            Tuple {
                src: "10.0.0.1".parse().unwrap(),
                dst: "10.0.0.2".parse().unwrap(),
                protocol: 6,
                src_port: 40000,
                dst_port: 5432,
            }
        );
        assert_eq!(
            (e.reply.src, e.reply.src_port, e.reply.dst),
            ("10.0.0.9".parse().unwrap(), 80, "10.0.0.1".parse().unwrap())
        );
        assert_eq!((e.family, e.tuple, e.zone), (2, tuple, Some(zone.to_vec())));
        // Without addresses there is no entry to act on.
        let cut = attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &attr(CTA_PROTO_NUM, &[6]));
        assert_eq!(parse_tuple(&cut), None);
    }

    /// An RTM_NEWADDR message with `attrs` after its `struct ifaddrmsg`.
    fn newaddr(attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut msg = vec![0u8; wire::HEADER_LEN];
        msg.extend_from_slice(&[libc::AF_INET as u8, 32, 0, 0, 3, 0, 0, 0]);
        msg.extend(attrs.concat());
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&RTM_NEWADDR.to_ne_bytes());
        msg
    }

    #[test]
    fn an_interface_address_is_ifa_local_when_present_not_a_point_to_point_peer() {
        // `ip addr add 10.9.0.1 peer 10.9.0.2 dev ppp0`: IFA_ADDRESS is the peer.
        let ptp = newaddr(&[
            attr(IFA_ADDRESS, &[10, 9, 0, 2]),
            attr(IFA_LOCAL, &[10, 9, 0, 1]),
        ]);
        let m = wire::messages(&ptp).next().unwrap();
        assert_eq!(interface_address(&m), Some("10.9.0.1".parse().unwrap()));
        // IPv6 gives IFA_ADDRESS alone.
        let v6 = newaddr(&[attr(
            IFA_ADDRESS,
            &"fd00::1".parse::<Ipv6Addr>().unwrap().octets(),
        )]);
        let m = wire::messages(&v6).next().unwrap();
        assert_eq!(interface_address(&m), Some("fd00::1".parse().unwrap()));
    }

    /// Reads this namespace's routes only: the loopback addresses are reached by `lo`.
    #[test]
    fn the_route_to_a_loopback_address_leaves_by_lo() {
        let mut routes = Routes::open().unwrap();
        assert!(
            routes.names.values().any(|n| n == "lo"),
            "{:?}",
            routes.names
        );
        let lo = routes.interface_to("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(lo.as_deref(), Some("lo"));
        // Cached: asked again, the same answer without a request.
        let seq = routes.seq;
        assert_eq!(
            routes.interface_to("127.0.0.1".parse().unwrap()).unwrap(),
            lo
        );
        assert_eq!(routes.seq, seq);
    }
}
