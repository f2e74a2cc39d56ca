//! systemd's notification protocol (sd_notify(3)): one datagram of `KEY=value` lines to
//! the socket named by `NOTIFY_SOCKET`. Without that variable every call does nothing,
//! so the daemon behaves the same under systemd, in a terminal and in tests.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier that sends nothing: not started by systemd.
    pub fn none() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and
    /// `WATCHDOG_USEC`/`WATCHDOG_PID`, as systemd sets them.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|name| {
            let bytes = name.as_encoded_bytes();
            let addr = match bytes.first() {
                Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
                Some(b'/') => SocketAddr::from_pathname(Path::new(&name)),
                _ => {
                    log::warn!("NOTIFY_SOCKET is neither a path nor an @abstract name: ignored");
                    return None;
                }
            };
            match addr.and_then(|addr| Ok((UnixDatagram::unbound()?, addr))) {
                Ok(target) => Some(target),
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET: {e}: systemd will not hear from netpold");
                    None
                }
            }
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Sends to a socket bound at `path` (tests).
    pub fn to_path(path: &Path) -> std::io::Result<Notifier> {
        Ok(Notifier {
            target: Some((UnixDatagram::unbound()?, SocketAddr::from_pathname(path)?)),
            watchdog: None,
        })
    }

    /// How often to send `WATCHDOG=1`: half the interval systemd enforces.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// `RELOADING=1` with the monotonic time systemd ≥ 253 uses to match the reload it asked for.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
            + u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Only when systemd asked for it (`WatchdogSec=`).
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send("WATCHDOG=1");
        }
    }

    /// One line; systemd shows it in `systemctl status`.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    fn send(&self, message: &str) {
        if let Some((socket, addr)) = &self.target
            && let Err(e) = socket.send_to_addr(message.as_bytes(), addr)
        {
            // The service manager may be restarting; the next message retries.
            log::debug!("sd_notify {message:?}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let notifier = Notifier::to_path(&path).unwrap();
        let mut buf = [0u8; 256];
        let mut receive = || {
            let n = listener.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        };
        notifier.ready();
        assert_eq!(receive(), "READY=1");
        notifier.status("enforcing 1 policy\non 2 endpoints");
        assert_eq!(receive(), "STATUS=enforcing 1 policy on 2 endpoints");
        notifier.reloading();
        let reloading = receive();
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        notifier.watchdog();
        notifier.stopping();
        assert_eq!(receive(), "STOPPING=1", "no watchdog without WATCHDOG_USEC");
        let watched = Notifier {
            watchdog: Some(Duration::from_secs(10)),
            ..Notifier::to_path(&path).unwrap()
        };
        assert_eq!(watched.watchdog_interval(), Some(Duration::from_secs(5)));
        watched.watchdog();
        assert_eq!(receive(), "WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let notifier = Notifier::none();
        notifier.ready();
        assert_eq!(notifier.watchdog_interval(), None);
    }
}
