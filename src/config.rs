//! The TOML configuration (CONTRACT §3). Every key is optional; an unknown key is
//! an error naming the key and its line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::compile;
use crate::diag::Diagnostic;
use crate::manifest::node::Pos;

pub const DEFAULT_CONFIG: &str = "/etc/netpold/netpold.toml";
pub const DEFAULT_MANIFESTS: &str = "/etc/netpold/manifests.d";
pub const DEFAULT_TABLE: &str = "netpold";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/netpold";
pub const DEFAULT_DEBOUNCE_MS: u64 = 100;
pub const DEFAULT_RESYNC_INTERVAL_S: u64 = 60;
/// Where the status socket lives (systemd's `RuntimeDirectory=netpold`).
pub const DEFAULT_RUNTIME_DIR: &str = "/run/netpold";
pub const DEFAULT_LOG_RATE: u32 = 10;
pub const DEFAULT_LOG_BURST: u32 = 20;

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub manifests: Option<PathBuf>,
    pub node: Option<String>,
    pub table: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub debounce_ms: Option<u64>,
    pub resync_interval_s: Option<u64>,
    pub log_level: Option<String>,
    /// `netpold status`'s socket is `<runtime_dir>/status.sock`.
    pub runtime_dir: Option<PathBuf>,
    /// `host:port` of the Prometheus endpoint; no listener when absent.
    pub metrics_listen: Option<String>,
    /// Log dropped packets (rate-limited); default true.
    pub log_denied: Option<bool>,
    /// NFLOG group for drop logs; absent: the kernel log.
    pub log_group: Option<u16>,
    /// Packets a second each drop-log rule logs, after a burst of `log_burst`.
    pub log_rate: Option<u32>,
    pub log_burst: Option<u32>,
    /// Whether the daemon reads `log_group` itself; default true. A group has one
    /// reader per network namespace, so `tcpdump -i nflog:N` or ulogd need it false.
    pub log_group_listen: Option<bool>,
    /// Failsafe ports to host endpoints (`tcp:22`, `tcp:10.0.0.0/8:22`); `[]`: none.
    pub failsafe_inbound: Option<Vec<toml::Spanned<String>>>,
    /// Failsafe ports from host endpoints; `[]`: none.
    pub failsafe_outbound: Option<Vec<toml::Spanned<String>>>,
    /// Refuse manifests and this file when others than root could change them
    /// (sshd's StrictModes); default true.
    pub strict_modes: Option<bool>,
    /// After each sync, delete the conntrack entries of flows the new policy denies;
    /// default false (entries of removed endpoint addresses go either way).
    pub strict_conntrack: Option<bool>,
}

impl Config {
    /// Reads `path`; a missing file is an error only when the user named it.
    pub fn load(path: Option<&Path>) -> Result<Config, Diagnostic> {
        let (path, explicit) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG), false),
        };
        let display = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(Diagnostic::new(
                    display,
                    Pos { line: 1, col: 1 },
                    format!("cannot read: {e}"),
                ));
            }
        };
        let config = Config::parse(&display, &text)?;
        if let Some(table) = &config.table {
            table_name(table).map_err(|e| {
                Diagnostic::new(&display, key_pos(&text, "table"), format!("table: {e}"))
            })?;
        }
        if let Some(level) = &config.log_level {
            level.parse::<log::LevelFilter>().map_err(|_| {
                Diagnostic::new(
                    &display,
                    key_pos(&text, "log_level"),
                    format!(
                        "log_level: {level:?} is not a log level: one of off, error, warn, info, debug, trace"
                    ),
                )
            })?;
        }
        if let Some(addr) = &config.metrics_listen {
            addr.parse::<std::net::SocketAddr>().map_err(|_| {
                Diagnostic::new(
                    &display,
                    key_pos(&text, "metrics_listen"),
                    format!(
                        "metrics_listen: {addr:?} is not an address and port, e.g. \"127.0.0.1:9753\" or \"[::1]:9753\""
                    ),
                )
            })?;
        }
        for (key, value) in [
            ("log_rate", config.log_rate),
            ("log_burst", config.log_burst),
        ] {
            if value == Some(0) {
                return Err(Diagnostic::new(
                    &display,
                    key_pos(&text, key),
                    format!(
                        "{key}: must be at least 1 packet (set log_denied = false to log nothing)"
                    ),
                ));
            }
        }
        Ok(config)
    }

    pub fn strict_modes(&self) -> bool {
        self.strict_modes.unwrap_or(true)
    }

    pub fn strict_conntrack(&self) -> bool {
        self.strict_conntrack.unwrap_or(false)
    }

    /// Whether others than root could change the configuration file at `path` (`None`:
    /// the default, when present) or a directory on its way. Checked before the file
    /// is read, whatever it says: only `--no-strict-modes` skips it, since a key in a
    /// file anyone may write would let anyone turn the check off.
    pub fn check_file_modes(path: Option<&Path>) -> Result<(), Diagnostic> {
        let path = path.unwrap_or(Path::new(DEFAULT_CONFIG));
        if !path.exists() || is_null_device(path) {
            return Ok(());
        }
        crate::strict::StrictModes::for_config()
            .path_and_parents(path)
            .map_err(|e| Diagnostic::new(path.display().to_string(), Pos { line: 1, col: 1 }, e))
    }

    /// The metrics address, once `load` has checked it.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listen.as_deref().and_then(|a| a.parse().ok())
    }

    /// The compiler's options: what `plan`, `apply` and `run` all program.
    pub fn compile_options(&self) -> compile::Options {
        compile::Options {
            drop_log: self.log_denied.unwrap_or(true).then(|| compile::DropLog {
                group: self.log_group,
                rate: self.log_rate.unwrap_or(DEFAULT_LOG_RATE),
                burst: self.log_burst.unwrap_or(DEFAULT_LOG_BURST),
            }),
            failsafe: self.failsafe(),
        }
    }

    /// The failsafe ports; every entry was checked by `parse`.
    pub fn failsafe(&self) -> compile::Failsafe {
        let default = compile::Failsafe::default();
        let ports = |list: &Option<Vec<toml::Spanned<String>>>, default| match list {
            None => default,
            Some(list) => list
                .iter()
                .filter_map(|s| compile::FailsafePort::parse(s.get_ref()).ok())
                .collect(),
        };
        compile::Failsafe {
            inbound: ports(&self.failsafe_inbound, default.inbound),
            outbound: ports(&self.failsafe_outbound, default.outbound),
        }
    }

    /// Whether the daemon should read the NFLOG group itself: false when drops are not
    /// logged, go to the kernel log, or `log_group_listen = false` leaves the group to
    /// tcpdump or ulogd.
    pub fn log_group_listen(&self) -> bool {
        self.log_denied.unwrap_or(true)
            && self.log_group.is_some()
            && self.log_group_listen.unwrap_or(true)
    }

    pub fn parse(display: &str, text: &str) -> Result<Config, Diagnostic> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let pos = e
                .span()
                .map_or(Pos { line: 1, col: 1 }, |span| offset_pos(text, span.start));
            Diagnostic::new(display, pos, e.message().trim().replace('\n', "; "))
        })?;
        for (key, list) in [
            ("failsafe_inbound", &config.failsafe_inbound),
            ("failsafe_outbound", &config.failsafe_outbound),
        ] {
            for (i, entry) in list.iter().flatten().enumerate() {
                if let Err(e) = compile::FailsafePort::parse(entry.get_ref()) {
                    return Err(Diagnostic::new(
                        display,
                        offset_pos(text, entry.span().start),
                        format!("{key}[{i}]: {e}"),
                    ));
                }
            }
        }
        Ok(config)
    }
}

fn offset_pos(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    }
}

/// The line that sets `key` (not a longer key that starts with it).
fn key_pos(text: &str, key: &str) -> Pos {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(Pos { line: 1, col: 1 }, |i| Pos {
            line: u32::try_from(i + 1).unwrap_or(u32::MAX),
            col: 1,
        })
}

/// `--config /dev/null`, for the defaults: a device anyone may write, holding nothing.
fn is_null_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

/// An nftables table name netpold will own: a short identifier.
pub fn table_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 31
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid table name: 1-31 letters, digits, '_' or '-', starting with a letter or '_'"
        ))
    }
}

/// This host's name, the default node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses() {
        let c = Config::parse(
            "c.toml",
            "manifests = \"/m\"\nnode = \"edge-1\"\ntable = \"np\"\nstate_dir = \"/s\"\ndebounce_ms = 50\nresync_interval_s = 30\nlog_level = \"debug\"\n",
        )
        .unwrap();
        assert_eq!(c.node.as_deref(), Some("edge-1"));
        assert_eq!(c.debounce_ms, Some(50));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = Config::parse("c.toml", "node = \"a\"\nnodes = \"b\"\n").unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(e.message.contains("unknown field `nodes`"), "{}", e.message);
    }

    #[test]
    fn log_level_must_be_a_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netpold.toml");
        std::fs::write(&path, "node = \"a\"\nlog_level = \"loud\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(
            e.message
                .starts_with("log_level: \"loud\" is not a log level"),
            "{}",
            e.message
        );
        std::fs::write(&path, "log_level = \"debug\"\n").unwrap();
        assert!(Config::load(Some(&path)).is_ok());
    }

    #[test]
    fn metrics_listen_must_be_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netpold.toml");
        std::fs::write(&path, "node = \"a\"\nmetrics_listen = \"localhost\"\n").unwrap();
        let e = Config::load(Some(&path)).unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(
            e.message
                .starts_with("metrics_listen: \"localhost\" is not an address"),
            "{}",
            e.message
        );
        std::fs::write(
            &path,
            "metrics_listen = \"127.0.0.1:9753\"\nruntime_dir = \"/r\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.metrics_addr(), Some("127.0.0.1:9753".parse().unwrap()));
    }

    #[test]
    fn drop_log_keys_and_their_defaults() {
        let c = Config::parse("c.toml", "").unwrap();
        assert_eq!(
            c.compile_options().drop_log,
            Some(compile::DropLog {
                group: None,
                rate: 10,
                burst: 20
            })
        );
        assert!(!c.log_group_listen(), "no group, nothing to read");
        let c = Config::parse(
            "c.toml",
            "log_group = 5\nlog_rate = 3\nlog_burst = 7\nlog_group_listen = false\n",
        )
        .unwrap();
        assert_eq!(
            c.compile_options().drop_log,
            Some(compile::DropLog {
                group: Some(5),
                rate: 3,
                burst: 7
            })
        );
        assert!(!c.log_group_listen());
        let c = Config::parse("c.toml", "log_group = 0\n").unwrap();
        assert!(c.log_group_listen());
        let c = Config::parse("c.toml", "log_denied = false\nlog_group = 5\n").unwrap();
        assert_eq!(c.compile_options().drop_log, None);
        assert!(!c.log_group_listen());
    }

    #[test]
    fn drop_log_keys_are_checked_with_their_line() {
        let e = Config::parse("c.toml", "node = \"a\"\nlog_group = 70000\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 13));
        assert!(e.message.contains("u16"), "{}", e.message);
        let e = Config::parse("c.toml", "log_denied = \"yes\"\n").unwrap_err();
        assert_eq!(e.pos.line, 1);
        assert!(e.message.contains("bool"), "{}", e.message);
        let e = Config::parse("c.toml", "log_rate = -1\n").unwrap_err();
        assert_eq!(e.pos.line, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netpold.toml");
        std::fs::write(
            &path,
            "log_group_listen = true\nlog_group = 1\nlog_burst = 0\n",
        )
        .unwrap();
        let e = Config::load(Some(&path)).unwrap_err();
        assert_eq!(e.pos.line, 3);
        assert!(
            e.message.starts_with("log_burst: must be at least 1"),
            "{}",
            e.message
        );
        std::fs::write(&path, "log_rate = 0\n").unwrap();
        assert!(
            Config::load(Some(&path))
                .unwrap_err()
                .message
                .starts_with("log_rate:")
        );
    }

    #[test]
    fn failsafe_keys_default_parse_and_point_at_the_bad_entry() {
        let c = Config::parse("c.toml", "").unwrap();
        assert_eq!(c.failsafe(), compile::Failsafe::default());
        let c = Config::parse(
            "c.toml",
            "failsafe_inbound = [\"tcp:10.0.0.0/8:22\", \"tcp:[fd00::/8]:22\"]\nfailsafe_outbound = []\n",
        )
        .unwrap();
        let f = c.failsafe();
        assert_eq!(f.inbound.len(), 2);
        assert_eq!(f.inbound[1].to_string(), "tcp:[fd00::/8]:22");
        assert!(f.outbound.is_empty(), "[] disables");
        assert_eq!(c.compile_options().failsafe, f);
        let e = Config::parse(
            "c.toml",
            "node = \"a\"\nfailsafe_inbound = [\"tcp:22\", \"tcp:10.0.0.1/8:22\"]\n",
        )
        .unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 31));
        assert!(
            e.message.starts_with(
                "failsafe_inbound[1]: \"tcp:10.0.0.1/8:22\": 10.0.0.1/8 has host bits"
            ),
            "{}",
            e.message
        );
        let e = Config::parse("c.toml", "failsafe_outbound = [\"dns\"]\n").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (1, 22));
        let e = Config::parse("c.toml", "failsafe_outbound = \"udp:53\"\n").unwrap_err();
        assert_eq!(e.pos.line, 1);
    }

    #[test]
    fn table_names() {
        assert!(table_name("netpold").is_ok());
        assert!(table_name("np_2").is_ok());
        assert!(table_name("").is_err());
        assert!(table_name("9x").is_err());
        assert!(table_name("a b").is_err());
        assert!(table_name(&"a".repeat(32)).is_err());
    }
}
