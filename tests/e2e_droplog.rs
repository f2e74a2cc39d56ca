//! Drop logs and counters end to end: `netpold apply` with `log_group` programs a host
//! namespace in front of two workloads; denied TCP and UDP packets are read back from
//! the NFLOG group with `tcpdump -i nflog:N` and with `NflogReader` (one after the
//! other: a group has one reader), a flood shows the rate limit, and `read_counters`
//! shows what the policy rule and the isolated drop counted. Kernel-log mode is only
//! checked to be programmed: logging to the kernel log from a namespace other than the
//! host's needs the host-wide sysctl `net.netfilter.nf_log_all_netns`, which tests must
//! not change. Root only; fails instead of skipping under `CI=true`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::{Netns, can_run, in_netns};
use common::topology::*;
use netpold::droplog::{DropCause, DropPrefix, parse_drop_prefix};
use netpold::model::Direction;
use netpold::nft::counters::{RuleCounter, read_counters};
use netpold::nft::nflog::{LoggedPacket, NflogError, NflogReader};

const GROUP: u16 = 7;
const RATE: u32 = 10;
const BURST: u32 = 20;

/// db takes TCP 5432 from web and nothing else; web's egress is open.
const POLICY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}]}]
";

fn workloads() -> Vec<Wl> {
    vec![
        wl("a/web", "app: web", &["10.0.0.1", "fd00::1"]),
        wl("a/db", "app: db", &["10.0.0.2", "fd00::2"]),
    ]
}

/// `netpold apply` in `host` with `config` as its configuration file.
fn apply(host: &Netns, manifests: &Path, config: &str) {
    let file = manifests.join("netpold.toml");
    std::fs::write(&file, format!("node = \"{}\"\n{config}", common::NODE)).unwrap();
    let out = in_ns(&host.name, NETPOLD)
        .args(["apply", "--config"])
        .arg(&file)
        .arg("--manifests")
        .arg(manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netpold apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn db_isolated() -> DropPrefix {
    DropPrefix {
        direction: Direction::Ingress,
        endpoint: Some("a/db".into()),
        cause: DropCause::Isolated,
        truncated: false,
        rule: None,
    }
}

/// One packet as `tcpdump -xx` printed it: the summary line and the prefix from the
/// NFLOG frame's TLVs (tcpdump does not print the prefix itself).
#[derive(Debug)]
struct Dumped {
    line: String,
    prefix: Option<String>,
}

/// Splits `tcpdump -nn -xx` output into packets; the hex is the whole NFLOG frame:
/// a 4-byte header, then TLVs of host-endian length and type, 4-byte aligned, the
/// prefix being type 10 (NFULA_PREFIX).
fn parse_tcpdump(out: &str) -> Vec<Dumped> {
    let mut packets: Vec<(String, Vec<u8>)> = Vec::new();
    for line in out.lines() {
        if let Some(hex) = line.trim_start().strip_prefix("0x") {
            let Some((_, bytes)) = hex.split_once(':') else {
                continue;
            };
            let last = packets.last_mut().expect("hex after a summary line");
            for word in bytes.split_whitespace() {
                for i in (0..word.len()).step_by(2) {
                    last.1
                        .push(u8::from_str_radix(&word[i..i + 2], 16).unwrap());
                }
            }
        } else if !line.trim().is_empty() {
            packets.push((line.to_owned(), Vec::new()));
        }
    }
    packets
        .into_iter()
        .map(|(line, frame)| {
            let mut prefix = None;
            let mut at = 4;
            while at + 4 <= frame.len() {
                let len = usize::from(u16::from_ne_bytes([frame[at], frame[at + 1]]));
                let kind = u16::from_ne_bytes([frame[at + 2], frame[at + 3]]);
                if len < 4 || at + len > frame.len() {
                    break;
                }
                if kind == 10 {
                    let value = &frame[at + 4..at + len];
                    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
                    prefix = Some(String::from_utf8_lossy(&value[..end]).into_owned());
                }
                at += len.next_multiple_of(4);
            }
            Dumped { line, prefix }
        })
        .collect()
}

/// Reads from `reader` until `want` packets matched `pred` or `wait` passed.
fn collect(
    reader: &mut NflogReader,
    wait: Duration,
    want: usize,
    pred: impl Fn(&LoggedPacket) -> bool,
) -> Vec<LoggedPacket> {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    while got.len() < want {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        got.extend(reader.read(left).unwrap().into_iter().filter(&pred));
    }
    got
}

fn counters(host: &Netns) -> Vec<RuleCounter> {
    in_netns(host, || read_counters("netpold"))
        .unwrap()
        .expect("the table exists")
}

/// The packets counted by the rules (one per family, for a policy rule) of the chain
/// commented `chain` whose comment contains `rule`.
fn counted(all: &[RuleCounter], chain: &str, rule: &str) -> u64 {
    let found: Vec<&RuleCounter> = all
        .iter()
        .filter(|c| {
            c.chain_comment.starts_with(chain)
                && c.rule_comment.as_deref().is_some_and(|r| r.contains(rule))
        })
        .collect();
    assert!(!found.is_empty(), "{chain} / {rule}: {all:?}");
    found.iter().map(|c| c.packets).sum()
}

/// Sends `n` UDP datagrams from `from`'s namespace to `dst:port` as fast as it can.
fn udp_flood(topo: &Topology, from: &str, dst: &str, port: u16, n: usize) {
    let script = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range({n}): s.sendto(b'x', ('{dst}', {port}))\n"
    );
    let out = in_ns(&topo.net(from).name, "python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn denied_packets_are_logged_to_the_nflog_group_rate_limited_and_counted() {
    let mut tools = TOOLS.to_vec();
    tools.push("tcpdump");
    if !can_run(&tools) {
        return;
    }
    let topo = Topology::new("dlog", workloads(), &[]);
    topo.write("policy.yaml", POLICY);
    apply(
        &topo.host,
        topo.manifests(),
        &format!("log_group = {GROUP}\n"),
    );

    // tcpdump first: the denied TCP connection, then the denied UDP packet.
    let mut tcpdump = Started(
        in_ns(&topo.host.name, "tcpdump")
            .args([
                "-i",
                &format!("nflog:{GROUP}"),
                "-nn",
                "-l",
                "-c",
                "2",
                "-xx",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // It says so on stderr once the group is bound; the rest of stderr is drained.
    let mut stderr = BufReader::new(tcpdump.0.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening on nflog") {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "tcpdump: {said}");
        said.push_str(&line);
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    // While tcpdump holds the group, nobody else can bind it, and the error says why.
    match in_netns(&topo.host, || NflogReader::bind(GROUP)) {
        Err(e @ NflogError::Taken(GROUP)) => {
            assert!(e.to_string().contains("log_group_listen = false"), "{e}")
        }
        Err(e) => panic!("binding a taken group: {e}"),
        Ok(_) => panic!("bound a group tcpdump holds"),
    }
    topo.check(&[("web", "db", "tcp", 80, V4, DROP)]);
    topo.check(&[("web", "db", "udp", 53, V4, DROP)]);
    let mut stdout = tcpdump.0.stdout.take().unwrap();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = done.send(text);
    });
    let text = output
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump saw two packets");
    drop(tcpdump);
    let dumped = parse_tcpdump(&text);
    assert_eq!(dumped.len(), 2, "{text}");
    assert!(
        dumped[0].line.contains(" IP 10.0.0.1.")
            && dumped[0].line.contains(" > 10.0.0.2.80: Flags [S]"),
        "{text}"
    );
    assert!(
        dumped[1].line.contains(" IP 10.0.0.1.") && dumped[1].line.contains(" > 10.0.0.2.53: "),
        "{text}"
    );
    for d in &dumped {
        let prefix = d
            .prefix
            .as_deref()
            .unwrap_or_else(|| panic!("no prefix: {text}"));
        assert_eq!(prefix, "netpold drop ingress a/db isolated: ");
        assert_eq!(parse_drop_prefix(prefix), Some(db_isolated()));
    }
    eprintln!("tcpdump -i nflog:{GROUP} -nn -xx:\n{text}");

    // Then netpold's own reader, over IPv6 this time.
    let mut reader = in_netns(&topo.host, || NflogReader::bind(GROUP)).unwrap();
    topo.check(&[("web", "db", "tcp", 80, V6, DROP)]);
    topo.check(&[("web", "db", "udp", 53, V6, DROP)]);
    // The UDP probe sends a datagram more than once while it waits for an answer.
    std::thread::sleep(Duration::from_millis(200));
    let got = collect(&mut reader, Duration::from_secs(1), 100, |_| true);
    let web: IpAddr = "fd00::1".parse().unwrap();
    let db: IpAddr = "fd00::2".parse().unwrap();
    for p in &got {
        assert_eq!(p.drop_prefix(), Some(db_isolated()), "{p}");
        assert_eq!((p.src, p.dst), (web, db), "{p}");
        assert!(
            p.src_port.is_some() && p.in_ifindex.is_some() && p.out_ifindex.is_some(),
            "{p:?}"
        );
    }
    let tcp = got
        .iter()
        .find(|p| p.protocol == 6 && p.dst_port == Some(80));
    let udp = got
        .iter()
        .find(|p| p.protocol == 17 && p.dst_port == Some(53));
    let (Some(tcp), Some(udp)) = (tcp, udp) else {
        panic!("no TCP 80 or no UDP 53 among {got:?}");
    };
    eprintln!("NflogReader: {tcp}\n             {udp}");

    // The rate limit: a flood of 200 denied packets logs at most the burst and the
    // rate over the time it took (the bucket is full again after 2 s idle), while the
    // drop counts every packet.
    std::thread::sleep(Duration::from_millis(2_000));
    let before = counters(&topo.host);
    let started = Instant::now();
    udp_flood(&topo, "web", "10.0.0.2", 9999, 200);
    let elapsed = started.elapsed();
    let flood = collect(&mut reader, Duration::from_millis(1500), 200, |p| {
        p.dst_port == Some(9999)
    });
    let most = BURST as f64 + RATE as f64 * (elapsed.as_secs_f64() + 0.2) + 1.0;
    eprintln!(
        "flood: 200 packets in {} ms, {} logged (at most {most:.0}), {} lost",
        elapsed.as_millis(),
        flood.len(),
        reader.lost()
    );
    assert!(
        (BURST as usize..=most as usize).contains(&flood.len()),
        "{} of 200 logged in {elapsed:?}",
        flood.len()
    );
    let after = counters(&topo.host);
    let isolated =
        |all: &[RuleCounter]| counted(all, "endpoint a/db ingress", "isolated for ingress");
    assert_eq!(isolated(&after) - isolated(&before), 200);

    // An allowed connection counts on its policy rule (its first packet; the rest is
    // accepted as established), and not on the drop.
    let policy = |all: &[RuleCounter]| counted(all, "policy a/db-in ingress", "a/db-in ingress[0]");
    assert_eq!(policy(&after), 0);
    topo.check(&[("web", "db", "tcp", 5432, Both, PASS)]);
    let last = counters(&topo.host);
    // One SYN per family, unless one was sent again.
    assert!(policy(&last) >= 2, "{}", policy(&last));
    assert_eq!(isolated(&last), isolated(&after));
    let drop = last
        .iter()
        .find(|c| c.rule_comment.as_deref() == Some("a/db: isolated for ingress, no rule allows"))
        .unwrap();
    assert!(drop.bytes >= 200 * 29, "{drop:?}");
    let (_, listing, _) = topo
        .host
        .nft(&["list", "chain", "inet", "netpold", &drop.chain], None);
    eprintln!("counters: {} rules counted\n{listing}", last.len());
}

#[test]
fn kernel_log_mode_programs_log_rules_without_a_group() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let host = Netns::new("dlog-k");
    let dir = tempfile::tempdir().unwrap();
    let endpoints: String = workloads().iter().map(Wl::manifest).collect();
    std::fs::write(dir.path().join("endpoints.yaml"), endpoints).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    apply(&host, dir.path(), "log_rate = 3\n");
    let (ok, listing, err) = host.nft(&["list", "table", "inet", "netpold"], None);
    assert!(ok, "{err}");
    let logs: Vec<&str> = listing.lines().filter(|l| l.contains(" log ")).collect();
    // db's isolated ingress; each endpoint's two anti-spoofing drops; two base chains
    // times two families.
    assert_eq!(logs.len(), 1 + 2 * 2 + 4, "{listing}");
    assert!(logs.iter().all(|l| !l.contains(" group ")), "{listing}");
    assert!(
        listing.contains(
            "limit rate 3/second burst 20 packets log prefix \"netpold drop ingress a/db isolated: \" comment"
        ),
        "{listing}"
    );
    apply(&host, dir.path(), "log_denied = false\n");
    let (_, listing, _) = host.nft(&["list", "table", "inet", "netpold"], None);
    assert!(!listing.contains(" log "), "{listing}");
    assert!(
        listing.contains("counter packets 0 bytes 0 drop comment \"a/db: isolated"),
        "{listing}"
    );
}

/// What a metrics scrape costs at large: the `large` scenario (`bench/gen.py`, cached
/// in /tmp/netpold-bench/large) applied with drop logs, then its counters read. Run
/// with `cargo test --release --test e2e_droplog -- --ignored --nocapture`.
#[test]
#[ignore = "needs /tmp/netpold-bench/large and takes a while"]
fn reading_the_counters_of_the_large_scenario() {
    if !can_run(&["ip", "nft"]) {
        return;
    }
    let manifests = Path::new("/tmp/netpold-bench/large/manifests");
    let host = Netns::new("dlog-large");
    let config = tempfile::tempdir().unwrap();
    let file = config.path().join("netpold.toml");
    std::fs::write(&file, "node = \"node-0\"\nlog_group = 7\n").unwrap();
    let started = Instant::now();
    let out = in_ns(&host.name, NETPOLD)
        .args(["apply", "--config"])
        .arg(&file)
        .arg("--manifests")
        .arg(manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "apply: {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let mut times = Vec::new();
    let mut rules = 0;
    for _ in 0..5 {
        let (elapsed, n) = in_netns(&host, || {
            let started = Instant::now();
            let counters = read_counters("netpold").unwrap().unwrap();
            (started.elapsed(), counters.len())
        });
        times.push(elapsed);
        rules = n;
    }
    times.sort();
    eprintln!(
        "read_counters at large: {rules} counted rules; median {:?} (min {:?}, max {:?})",
        times[2], times[0], times[4]
    );
}
