//! Netlink bytes for the read side (read-back and event monitor): splitting what a
//! socket returned into messages, reading headers and top-level attributes, and
//! building the few small requests a dump needs. Lengths are checked on every step,
//! so a malformed message ends the walk instead of being misread.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub const HEADER_LEN: usize = 16;
/// `struct nfgenmsg`: family, version, resource id.
pub const NFGEN_LEN: usize = 4;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
const NLA_TYPE_MASK: u16 = 0x3fff;
const SUBSYS_NFTABLES: u16 = libc::NFNL_SUBSYS_NFTABLES as u16;

/// One netlink message inside a receive buffer or a batch.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    pub portid: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Message<'a> {
    /// The nfnetlink subsystem and message number.
    pub fn nfnl(&self) -> (u16, u16) {
        (self.kind >> 8, self.kind & 0xff)
    }

    /// The `NFT_MSG_*` number of an nf_tables message.
    pub fn nft_msg(&self) -> Option<u16> {
        (self.kind >> 8 == SUBSYS_NFTABLES).then_some(self.kind & 0xff)
    }

    /// `nfgen_family` of an nfnetlink message.
    pub fn family(&self) -> u8 {
        self.bytes.get(HEADER_LEN).copied().unwrap_or(0)
    }

    /// Top-level attributes after the nfgenmsg header.
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs {
            rest: self.bytes.get(HEADER_LEN + NFGEN_LEN..).unwrap_or(&[]),
        }
    }

    /// The first top-level attribute of type `kind`.
    pub fn attr(&self, kind: u16) -> Option<&'a [u8]> {
        self.attrs().find(|(k, _)| *k == kind).map(|(_, v)| v)
    }

    /// For NLMSG_DONE: the errno (positive) a dump ended with, 0 when complete.
    pub fn done_error(&self) -> i32 {
        -(u32_at(self.bytes, HEADER_LEN) as i32)
    }

    /// For NLMSG_ERROR: the errno (positive), 0 for an acknowledgement.
    pub fn error(&self) -> Option<i32> {
        (self.kind == NLMSG_ERROR && self.bytes.len() >= HEADER_LEN + 4)
            .then(|| -(u32_at(self.bytes, HEADER_LEN) as i32))
    }
}

/// The messages in `buf`, up to the first one whose length does not fit.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let len = u32_at(buf, 0) as usize;
        if len < HEADER_LEN || len > buf.len() {
            buf = &[];
            return None;
        }
        let msg = Message {
            kind: u16_at(buf, 4),
            flags: u16_at(buf, 6),
            seq: u32_at(buf, 8),
            portid: u32_at(buf, 12),
            bytes: &buf[..len],
        };
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some(msg)
    })
}

/// Netlink attributes: `(type, payload)`, flag bits cleared from the type.
#[derive(Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes nested inside `payload`.
    pub fn nested(payload: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: payload }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = usize::from(u16_at(self.rest, 0));
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let kind = u16_at(self.rest, 2) & NLA_TYPE_MASK;
        let payload = &self.rest[4..len];
        self.rest = &self.rest[len.next_multiple_of(4).min(self.rest.len())..];
        Some((kind, payload))
    }
}

/// A NUL-terminated string attribute, without its NUL.
pub fn text(payload: &[u8]) -> String {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

/// A big-endian u64 attribute.
pub fn be64(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

/// A big-endian u32 attribute.
pub fn be32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// An nf_tables request: header, nfgenmsg, attributes.
pub fn request(nft_msg: u16, family: u8, flags: u16, seq: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    nfnl_request(SUBSYS_NFTABLES, nft_msg, family, 0, flags, seq, attrs)
}

/// A request to any nfnetlink subsystem: header, nfgenmsg (with its resource id,
/// big-endian), attributes.
pub fn nfnl_request(
    subsys: u16,
    msg: u16,
    family: u8,
    res_id: u16,
    flags: u16,
    seq: u32,
    attrs: &[(u16, &[u8])],
) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&res_id.to_be_bytes());
    for (kind, value) in attrs {
        let len = u16::try_from(4 + value.len()).expect("request attributes are short");
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let len = u32::try_from(out.len()).expect("requests are short");
    out[0..4].copy_from_slice(&len.to_ne_bytes());
    out[4..6].copy_from_slice(&((subsys << 8) | msg).to_ne_bytes());
    out[6..8].copy_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    out[8..12].copy_from_slice(&seq.to_ne_bytes());
    out
}

/// A NUL-terminated copy of `s`, as string attributes are sent.
pub fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A receive buffer aligned for `nlmsghdr` (libmnl and libnftnl cast into it).
pub struct RecvBuf(Vec<u64>);

impl RecvBuf {
    pub fn new(bytes: usize) -> RecvBuf {
        RecvBuf(vec![0; bytes.div_ceil(8)])
    }

    /// An aligned copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> RecvBuf {
        let mut buf = RecvBuf::new(bytes.len());
        buf.bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buf
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 8) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.0.len() * 8;
        // SAFETY: u64 storage viewed as bytes: same allocation, every bit pattern is
        // a valid u8, and the borrow of `self` keeps it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

/// A netlink socket (NETLINK_NETFILTER unless said otherwise), close-on-exec, owned as a plain descriptor (so it
/// can move between threads).
pub struct Socket {
    fd: OwnedFd,
    portid: u32,
}

impl Socket {
    /// A socket bound to the multicast `groups` (a bit mask; 0 for none), with a port
    /// id the kernel picks.
    pub fn open(groups: u32, nonblocking: bool) -> io::Result<Socket> {
        Socket::open_protocol(libc::NETLINK_NETFILTER, groups, nonblocking)
    }

    /// `open` for another netlink protocol (NETLINK_ROUTE).
    pub fn open_protocol(protocol: i32, groups: u32, nonblocking: bool) -> io::Result<Socket> {
        let mut kind = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if nonblocking {
            kind |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, kind, protocol) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is open and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a live sockaddr_nl of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Socket {
            fd,
            portid: addr.nl_pid,
        })
    }

    pub fn portid(&self) -> u32 {
        self.portid
    }

    /// Sends one request to the kernel.
    pub fn send(&self, data: &[u8]) -> io::Result<()> {
        // SAFETY: sockaddr_nl is plain old data; all-zero addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `data` and `addr` are live for the call, lengths match.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if usize::try_from(n).ok() != Some(data.len()) {
            return Err(io::Error::other("netlink request sent in part"));
        }
        Ok(())
    }

    /// Receives one datagram into `buf`; a datagram larger than the buffer is an
    /// error (ENOSPC), not silently cut.
    pub fn recv<'b>(&self, buf: &'b mut RecvBuf) -> io::Result<&'b [u8]> {
        let bytes = buf.bytes_mut();
        // SAFETY: the buffer is valid for `bytes.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                bytes.as_mut_ptr().cast(),
                bytes.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n > bytes.len() {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(&bytes[..n])
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Sets an integer socket option.
pub fn setsockopt_int(fd: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length matches it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Waits until `fd` is readable; `false` on timeout. A signal counts as readable, so
/// the caller simply reads (and finds nothing) instead of failing.
pub fn wait_readable(fd: &impl AsRawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd, count 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(true)
        } else {
            Err(e)
        };
    }
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_a_message_with_its_attributes() {
        let bytes = request(
            libc::NFT_MSG_GETSETELEM as u16,
            1,
            libc::NLM_F_DUMP as u16,
            7,
            &[(1, &strz("netpold")), (2, b"s4")],
        );
        let all: Vec<Message> = messages(&bytes).collect();
        assert_eq!(all.len(), 1);
        let m = all[0];
        assert_eq!(m.nft_msg(), Some(libc::NFT_MSG_GETSETELEM as u16));
        assert_eq!(m.family(), 1);
        assert_eq!(m.seq, 7);
        assert_ne!(m.flags & libc::NLM_F_REQUEST as u16, 0);
        assert_eq!(m.attr(1).map(text).as_deref(), Some("netpold"));
        assert_eq!(m.attr(2), Some(&b"s4"[..]));
        assert_eq!(m.attr(3), None);
    }

    #[test]
    fn a_length_beyond_the_buffer_ends_the_walk() {
        let mut bytes = request(1, 1, 0, 1, &[(1, b"abc")]);
        bytes.extend(request(1, 1, 0, 2, &[]));
        // Second message claims more than is there.
        let at = bytes.len() - 20;
        bytes[at..at + 4].copy_from_slice(&100u32.to_ne_bytes());
        assert_eq!(messages(&bytes).count(), 1);
        let mut attr = vec![0u8; 8];
        attr[0..2].copy_from_slice(&40u16.to_ne_bytes());
        assert_eq!(Attrs::nested(&attr).count(), 0);
    }
}
