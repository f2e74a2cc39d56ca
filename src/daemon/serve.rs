//! The two ways to ask the running daemon how it is doing: a Unix socket in the
//! runtime directory (`netpold status`, root only by its permissions) and, when
//! configured, a Prometheus endpoint over HTTP. Each is one thread answering one
//! request at a time: a report costs one dump of the table's rules, and callers are
//! an operator and a scraper, not a crowd.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::stats::Stats;
use crate::status::{Report, RuleCounter, attribute};

/// Reads the kernel's counters of our table; an error says why they are missing.
pub type CounterSource = Arc<dyn Fn() -> Result<Vec<RuleCounter>, String> + Send + Sync>;

/// The file name of the status socket in the runtime directory.
pub const SOCKET_NAME: &str = "status.sock";
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST_HEAD: usize = 8192;

/// The report with the counters read now.
pub fn report(stats: &Stats, counters: &CounterSource) -> Report {
    let mut report = stats.snapshot();
    match counters() {
        Ok(rows) => {
            let (policies, endpoints) = attribute(&rows);
            report.policies = policies;
            report.endpoints = endpoints;
        }
        Err(e) => report.counters_error = Some(e),
    }
    report
}

/// Serves the status report on `<runtime_dir>/status.sock`. The directory is made
/// mode 0700 when missing, the socket is mode 0600. A socket another live daemon
/// answers on is left alone (`Ok(None)`, with a warning): the status of two daemons
/// sharing a runtime directory cannot both be served there.
pub fn status_socket(
    runtime_dir: &Path,
    stats: Arc<Stats>,
    counters: CounterSource,
) -> io::Result<Option<PathBuf>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(runtime_dir)?;
    let path = runtime_dir.join(SOCKET_NAME);
    if path.exists() {
        if UnixStream::connect(&path).is_ok() {
            log::warn!(
                "{} is served by another process; this daemon's status is not served",
                path.display()
            );
            return Ok(None);
        }
        // Left by a daemon that did not exit cleanly.
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("status".to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                let Some(mut conn) = accepted(conn) else {
                    continue;
                };
                let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
                let json = serde_json::to_string(&report(&stats, &counters))
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                if let Err(e) = conn
                    .write_all(json.as_bytes())
                    .and_then(|()| conn.write_all(b"\n"))
                {
                    log::debug!("status: writing the answer: {e}");
                }
            }
        })?;
    Ok(Some(path))
}

/// The connection, or `None` after a pause: an error such as running out of file
/// descriptors would otherwise spin the loop.
fn accepted<C>(conn: io::Result<C>) -> Option<C> {
    match conn {
        Ok(conn) => Some(conn),
        Err(e) => {
            log::debug!("accepting a connection: {e}");
            std::thread::sleep(Duration::from_millis(100));
            None
        }
    }
}

/// Asks the daemon behind `socket` for its report.
pub fn ask(socket: &Path) -> io::Result<Report> {
    let mut conn = UnixStream::connect(socket)?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the daemon's answer: {e}"),
        )
    })
}

/// Binds `addr` now (so a taken port fails the start) and serves `/metrics`.
pub fn metrics(
    addr: SocketAddr,
    stats: Arc<Stats>,
    counters: CounterSource,
) -> io::Result<SocketAddr> {
    metrics_on(TcpListener::bind(addr)?, stats, counters)
}

/// Serves `/metrics` on a listener bound earlier (before privileges were dropped).
pub fn metrics_on(
    listener: TcpListener,
    stats: Arc<Stats>,
    counters: CounterSource,
) -> io::Result<SocketAddr> {
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".to_owned())
        .spawn(move || {
            for conn in listener.incoming() {
                let Some(conn) = accepted(conn) else { continue };
                if let Err(e) = answer_http(conn, &stats, &counters) {
                    log::debug!("metrics: {e}");
                }
            }
        })?;
    Ok(bound)
}

fn answer_http(conn: TcpStream, stats: &Stats, counters: &CounterSource) -> io::Result<()> {
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    // One deadline for the whole head: a client sending a byte at a time cannot hold
    // the thread longer.
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut reader = BufReader::new(conn.take(MAX_REQUEST_HEAD as u64));
    let mut read_line = |line: &mut String| -> io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head too slow",
            ));
        }
        reader.get_ref().get_ref().set_read_timeout(Some(left))?;
        reader.read_line(line)
    };
    let mut request_line = String::new();
    read_line(&mut request_line)?;
    // The rest of the head is read and ignored.
    loop {
        let mut line = String::new();
        if read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut conn = reader.into_inner().into_inner();
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            crate::metrics::CONTENT_TYPE,
            crate::metrics::render(&report(stats, counters)),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "netpold: metrics at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_counters() -> CounterSource {
        Arc::new(|| {
            Ok(vec![RuleCounter {
                chain: "pol_x_in".into(),
                index: 0,
                handle: 1,
                chain_comment: "policy a/p ingress".into(),
                rule_comment: Some("a/p ingress[0]".into()),
                packets: 7,
                bytes: 420,
            }])
        })
    }

    #[test]
    fn status_socket_answers_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("run");
        let stats = Stats::new("n1", "t1");
        let path = status_socket(&runtime, stats.clone(), no_counters())
            .unwrap()
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&runtime), 0o700);
        assert_eq!(mode(&path), 0o600);
        let report = ask(&path).unwrap();
        assert_eq!(report.table, "t1");
        assert_eq!(report.policies[0].packets, 7);
        // A second daemon leaves the live socket alone.
        assert!(
            status_socket(&runtime, stats, no_counters())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn metrics_over_http() {
        let stats = Stats::new("n1", "t1");
        let addr = metrics("127.0.0.1:0".parse().unwrap(), stats, no_counters()).unwrap();
        let get = |target: &str| {
            let mut c = TcpStream::connect(addr).unwrap();
            write!(c, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            text
        };
        let page = get("/metrics");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("text/plain; version=0.0.4"), "{page}");
        assert!(
            page.contains("netpold_policy_allowed_packets_total{kind=\"NetworkPolicy\",namespace=\"a\",policy=\"p\",direction=\"ingress\"} 7"),
            "{page}"
        );
        assert!(get("/nope").starts_with("HTTP/1.1 404"));
    }
}
