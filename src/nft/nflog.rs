//! Reading an NFLOG group: the packets `log … group N` rules send to user space, with
//! the rule's prefix. A group has one reader per network namespace (the kernel refuses
//! a second binder), so while netpold reads it, `tcpdump -i nflog:N` and ulogd cannot.
//!
//! The reader binds the group over NETLINK_NETFILTER (NFULNL_MSG_CONFIG, command
//! BIND), asks for the first `COPY_RANGE` bytes of each packet (headers, not data) and
//! for every packet to be sent at once (queue threshold 1; the log rules are
//! rate-limited, so this stays cheap). Closing the socket unbinds the group.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use super::wire::{self, Message};
use crate::droplog::{DropPrefix, parse_drop_prefix};

const SUBSYS_ULOG: u16 = 4;
const MSG_PACKET: u16 = 0;
const MSG_CONFIG: u16 = 1;
const CFG_CMD: u16 = 1;
const CFG_MODE: u16 = 2;
const CFG_QTHRESH: u16 = 5;
const CMD_BIND: u8 = 1;
const COPY_PACKET: u8 = 2;
const ATTR_IFINDEX_INDEV: u16 = 4;
const ATTR_IFINDEX_OUTDEV: u16 = 5;
const ATTR_PAYLOAD: u16 = 9;
const ATTR_PREFIX: u16 = 10;
/// Bytes of each packet copied: IPv6 with a few extension headers and the ports fit.
pub const COPY_RANGE: u32 = 128;
const RECV_BUFFER: usize = 256 * 1024;
const SOCKET_BUFFER: i32 = 4 * 1024 * 1024;
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const CAP_NET_ADMIN: u32 = 12;

/// Why a group could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error(
        "NFLOG group {0} is read by another process already (a group has one reader per network namespace: tcpdump -i nflog:{0}, ulogd, another netpold); stop it, or set log_group_listen = false to leave the group to it"
    )]
    Taken(u16),
    #[error("binding NFLOG group {group}: {source}")]
    Io {
        group: u16,
        #[source]
        source: io::Error,
    },
}

/// One logged packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedPacket {
    /// The log rule's prefix, as written (`netpold drop ingress shop/db isolated: `).
    pub prefix: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6, …).
    pub protocol: u8,
    /// Ports of TCP, UDP and SCTP (not of a later fragment).
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// The packet's length by its IP header.
    pub length: u32,
    /// Interface indexes, where the hook has them.
    pub in_ifindex: Option<u32>,
    pub out_ifindex: Option<u32>,
}

impl LoggedPacket {
    /// The prefix read as netpold's drop prefix; `None` for another rule's log.
    pub fn drop_prefix(&self) -> Option<DropPrefix> {
        parse_drop_prefix(&self.prefix)
    }
}

impl fmt::Display for LoggedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = |ip: &IpAddr, port: Option<u16>| match (ip, port) {
            (IpAddr::V6(_), Some(p)) => format!("[{ip}]:{p}"),
            (_, Some(p)) => format!("{ip}:{p}"),
            _ => ip.to_string(),
        };
        write!(
            f,
            "{}{} > {} proto {}",
            self.prefix,
            end(&self.src, self.src_port),
            end(&self.dst, self.dst_port),
            self.protocol
        )
    }
}

/// A bound NFLOG group. `AsRawFd` for `poll`: readable when packets wait.
pub struct NflogReader {
    socket: wire::Socket,
    group: u16,
    buf: wire::RecvBuf,
    seq: u32,
    lost: u64,
}

impl NflogReader {
    /// Binds `group` in the current network namespace. Needs CAP_NET_ADMIN.
    pub fn bind(group: u16) -> Result<NflogReader, NflogError> {
        let io = |source| NflogError::Io { group, source };
        let socket = wire::Socket::open(0, true).map_err(io)?;
        // Bursts wait here while the reader is busy; SO_RCVBUFFORCE passes the
        // system-wide cap with CAP_NET_ADMIN, plain SO_RCVBUF is the fallback.
        if wire::setsockopt_int(
            &socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            SOCKET_BUFFER,
        )
        .is_err()
        {
            let _ = wire::setsockopt_int(&socket, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
        }
        let mut reader = NflogReader {
            socket,
            group,
            buf: wire::RecvBuf::new(RECV_BUFFER),
            seq: 0,
            lost: 0,
        };
        match reader.configure(&[(CFG_CMD, &[CMD_BIND])]) {
            Ok(()) => {}
            // The kernel answers EPERM both for a group bound by another socket and for
            // a caller without CAP_NET_ADMIN; EBUSY for a second bind of our own.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && has_net_admin() => {
                return Err(NflogError::Taken(group));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(NflogError::Taken(group));
            }
            Err(e) => return Err(io(e)),
        }
        let mut mode = COPY_RANGE.to_be_bytes().to_vec();
        mode.extend_from_slice(&[COPY_PACKET, 0]);
        reader
            .configure(&[(CFG_MODE, &mode), (CFG_QTHRESH, &1u32.to_be_bytes())])
            .map_err(io)?;
        Ok(reader)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// Packets lost so far because the socket's buffer was full (the kernel says
    /// that some were, not how many: each loss counts once).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Waits up to `timeout` for logged packets and returns every one waiting (none
    /// on timeout). Messages that are not packets, or not IP, are skipped.
    pub fn read(&mut self, timeout: Duration) -> io::Result<Vec<LoggedPacket>> {
        let mut out = Vec::new();
        if !wire::wait_readable(&self.socket, timeout)? {
            return Ok(out);
        }
        loop {
            let data = match self.socket.recv(&mut self.buf) {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.lost += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            out.extend(wire::messages(data).filter_map(|m| packet(&m)));
        }
    }

    /// Sends one config message for our group and waits for its acknowledgement.
    fn configure(&mut self, attrs: &[(u16, &[u8])]) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let request = wire::nfnl_request(
            SUBSYS_ULOG,
            MSG_CONFIG,
            libc::AF_UNSPEC as u8,
            self.group,
            libc::NLM_F_ACK as u16,
            self.seq,
            attrs,
        );
        self.socket.send(&request)?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !wire::wait_readable(&self.socket, left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the kernel did not answer",
                ));
            }
            let data = match self.socket.recv(&mut self.buf) {
                Ok(data) => data,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            for m in wire::messages(data) {
                if m.seq != self.seq {
                    continue;
                }
                if let Some(errno) = m.error() {
                    return if errno == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(errno))
                    };
                }
            }
        }
    }
}

impl AsRawFd for NflogReader {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl AsFd for NflogReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Whether this process has CAP_NET_ADMIN, by /proc/self/status.
fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_owned();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// An NFULNL_MSG_PACKET message as a logged packet.
fn packet(m: &Message) -> Option<LoggedPacket> {
    if m.nfnl() != (SUBSYS_ULOG, MSG_PACKET) {
        return None;
    }
    let ifindex = |kind| m.attr(kind).and_then(wire::be32);
    let mut p = ip_packet(m.attr(ATTR_PAYLOAD)?)?;
    p.prefix = m.attr(ATTR_PREFIX).map(wire::text).unwrap_or_default();
    p.in_ifindex = ifindex(ATTR_IFINDEX_INDEV);
    p.out_ifindex = ifindex(ATTR_IFINDEX_OUTDEV);
    Some(p)
}

/// Addresses, protocol and ports from the start of an IPv4 or IPv6 packet.
fn ip_packet(b: &[u8]) -> Option<LoggedPacket> {
    let (src, dst, length, mut protocol, mut at, mut first_fragment) = match b.first()? >> 4 {
        4 => {
            let header = usize::from(b.first()? & 0x0f) * 4;
            let ip4 = |at: usize| {
                Some(Ipv4Addr::from(
                    <[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?,
                ))
            };
            let fragment_offset = u16::from_be_bytes([*b.get(6)?, *b.get(7)?]) & 0x1fff;
            (
                IpAddr::V4(ip4(12)?),
                IpAddr::V4(ip4(16)?),
                u32::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])),
                *b.get(9)?,
                header,
                fragment_offset == 0,
            )
        }
        6 => {
            let ip6 = |at: usize| {
                Some(Ipv6Addr::from(
                    <[u8; 16]>::try_from(b.get(at..at + 16)?).ok()?,
                ))
            };
            (
                IpAddr::V6(ip6(8)?),
                IpAddr::V6(ip6(24)?),
                40 + u32::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?])),
                *b.get(6)?,
                40,
                true,
            )
        }
        _ => return None,
    };
    if src.is_ipv6() {
        // Extension headers before the transport header: hop-by-hop, routing,
        // destination options, fragment, authentication.
        while let (0 | 43 | 60 | 44 | 51, Some(&[next, len])) = (protocol, b.get(at..at + 2)) {
            let skip = match protocol {
                44 => {
                    let offset = u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]) >> 3;
                    first_fragment = offset == 0;
                    8
                }
                51 => (usize::from(len) + 2) * 4,
                _ => (usize::from(len) + 1) * 8,
            };
            protocol = next;
            at += skip;
        }
    }
    let ports = match protocol {
        6 | 17 | 132 if first_fragment => b.get(at..at + 4).map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        }),
        _ => None,
    };
    Some(LoggedPacket {
        prefix: String::new(),
        src,
        dst,
        protocol,
        src_port: ports.map(|p| p.0),
        dst_port: ports.map(|p| p.1),
        length,
        in_ifindex: None,
        out_ifindex: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_udp() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 29, 0, 1, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 9, 0, 0, b'x']);
        p
    }

    #[test]
    fn a_packet_message_gives_prefix_addresses_ports_and_interfaces() {
        let prefix = wire::strz("netpold drop ingress a/b isolated: ");
        let request = wire::nfnl_request(
            SUBSYS_ULOG,
            MSG_PACKET,
            libc::AF_INET as u8,
            7,
            0,
            0,
            &[
                (1, &[8, 0, 2, 0]),
                (ATTR_IFINDEX_INDEV, &3u32.to_be_bytes()),
                (ATTR_PAYLOAD, &ipv4_udp()),
                (ATTR_PREFIX, &prefix),
            ],
        );
        let m = wire::messages(&request).next().unwrap();
        let p = packet(&m).unwrap();
        assert_eq!(p.prefix, "netpold drop ingress a/b isolated: ");
        assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (p.protocol, p.src_port, p.dst_port),
            (17, Some(12345), Some(53))
        );
        assert_eq!((p.length, p.in_ifindex, p.out_ifindex), (29, Some(3), None));
        assert_eq!(p.drop_prefix().unwrap().endpoint.as_deref(), Some("a/b"));
        assert_eq!(
            p.to_string(),
            "netpold drop ingress a/b isolated: 10.0.0.1:12345 > 10.0.0.2:53 proto 17"
        );
    }

    #[test]
    fn ipv6_extension_headers_are_skipped_and_later_fragments_have_no_ports() {
        let mut p = vec![0x60, 0, 0, 0, 0, 20, 0, 64];
        p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        // Hop-by-hop (8 bytes), next TCP.
        p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x01, 0xbb, 0x1f, 0x90]);
        let parsed = ip_packet(&p).unwrap();
        assert_eq!(parsed.protocol, 6);
        assert_eq!((parsed.src_port, parsed.dst_port), (Some(443), Some(8080)));
        assert_eq!(parsed.length, 60);
        // A fragment header with a non-zero offset, next UDP: no ports.
        p[6] = 44;
        p[40..48].copy_from_slice(&[17, 0, 0x00, 0x08, 0, 0, 0, 1]);
        let parsed = ip_packet(&p).unwrap();
        assert_eq!((parsed.protocol, parsed.src_port), (17, None));
        // Cut short: addresses but no ports.
        let parsed = ip_packet(&ipv4_udp()[..22]).unwrap();
        assert_eq!((parsed.protocol, parsed.dst_port), (17, None));
        assert_eq!(ip_packet(&[0x45, 0, 0]), None);
        assert_eq!(ip_packet(&[]), None);
    }
}
