//! A routed test network: a "host" namespace where netpold runs, one namespace per
//! workload behind its own veth pair, and an "outside" namespace behind an uplink that
//! stands for remote networks, ipBlocks and endpoints of other nodes. A test declares
//! its workloads once; the WorkloadEndpoint manifests are written from the same data.
//! Every namespace and process is removed on drop, also when the test panics.
//!
//! Addresses: workloads take what the test gives them (10.x, fd00::…); the host owns
//! 169.254.1.1 and fe80::1 on every workload veth (the workloads' gateway), HOST4/HOST6
//! on its loopback, and 192.168.50.1 / fd00:50::1 on the uplink; the outside is
//! 192.168.50.2 / fd00:50::2 plus any extra address a test asks for.
//!
//! Compiled into `tests/e2e_fleet.rs` (which runs the scenarios of `e2e_semantics.rs`
//! unchanged), the same network spans two nodes: a second node namespace (`n2`,
//! 192.168.60.2 / fd00:60::2) behind a veth from the host (192.168.60.1 / fd00:60::1),
//! every second managed workload behind it, and one `netpold run` per node reading
//! the same manifest directory; remote endpoints then belong to a third node, `n9`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::NODE;

/// Whether this test binary spreads the workloads over two nodes (see the module note).
pub fn cross_node() -> bool {
    env!("CARGO_CRATE_NAME") == "e2e_fleet"
}

/// The second node of a cross-node network.
pub const PEER: &str = "n2";
use super::netns::Netns;

pub const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/probe.py");
pub const NETPOLD: &str = env!("CARGO_BIN_EXE_netpold");
pub const TOOLS: [&str; 3] = ["ip", "nft", "python3"];

/// The host's own addresses (on its loopback), for workload → host probes.
pub const HOST4: &str = "10.255.0.1";
pub const HOST6: &str = "fd00:ff::1";
/// The outside namespace's uplink addresses.
pub const OUTSIDE4: &str = "192.168.50.2";
pub const OUTSIDE6: &str = "fd00:50::2";
/// Ports every server listens on (TCP, UDP and, where the kernel has it, SCTP).
pub const PORTS: [u16; 12] = [
    53, 80, 443, 5000, 5001, 5002, 5003, 5432, 6379, 8080, 8443, 9000,
];
/// How long a probe waits before calling it dropped.
pub const DROP_TIMEOUT_S: f64 = 0.8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fam {
    V4,
    V6,
    Both,
}
pub use Fam::{Both, V4, V6};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}
pub const PASS: Verdict = Verdict::Pass;
pub const DROP: Verdict = Verdict::Drop;

/// One row of a scenario's table: (from, to, proto, port, family, expected); proto
/// `tcp`, `udp`, `sctp`, or `icmp` (an echo request, port 0).
/// `from`/`to`: a workload's name, `host`, `outside`, or (for `to`) an address or `gw`
/// (the host's own address on the workload's veth);
/// `from` may carry `@ADDR` to send from that source address, and then `#PORT` to
/// send from that source port (`client#53`, `outside@192.0.2.9#1000`).
pub type Row<'a> = (&'a str, &'a str, &'a str, u16, Fam, Verdict);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// On this node: own namespace, veth, manifest.
    Local,
    /// On another node: manifest with `node: n2`, addresses live in the outside namespace.
    Remote,
    /// A real namespace and veth, but no manifest: an interface no endpoint claims.
    Unmanaged,
}

#[derive(Clone, Debug)]
pub struct Wl {
    pub name: String,
    pub namespace: String,
    pub labels: String,
    pub ips: Vec<String>,
    pub ports: String,
    pub iface: String,
    place: Place,
    /// Behind the second node (cross-node networks only).
    on_peer: bool,
}

/// A workload: `ns/name`, labels as YAML flow-map content (`app: web, tier: db`), addresses.
pub fn wl(id: &str, labels: &str, ips: &[&str]) -> Wl {
    let (namespace, name) = id.split_once('/').expect("workload id is ns/name");
    let iface: String = format!("v-{namespace}-{name}").chars().take(15).collect();
    Wl {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        labels: labels.to_owned(),
        ips: ips.iter().map(|s| (*s).to_owned()).collect(),
        ports: String::new(),
        iface,
        place: Place::Local,
        on_peer: false,
    }
}

impl Wl {
    /// Named ports, as YAML flow-sequence content: `{name: http, port: 80}`.
    pub fn ports(mut self, yaml: &str) -> Wl {
        self.ports = yaml.to_owned();
        self
    }
    /// An endpoint of another node: its addresses are reached through the outside.
    pub fn remote(mut self) -> Wl {
        self.place = Place::Remote;
        self
    }
    /// A workload netpold is not told about.
    pub fn unmanaged(mut self) -> Wl {
        self.place = Place::Unmanaged;
        self
    }
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
    pub fn ip(&self, fam: Fam) -> Option<&str> {
        self.ips
            .iter()
            .map(String::as_str)
            .find(|a| (fam == V6) == a.contains(':'))
    }
    /// This workload's WorkloadEndpoint manifest (a `---` document).
    pub fn manifest(&self) -> String {
        let node = match (self.place, cross_node()) {
            (Place::Remote, false) => "n2",
            (Place::Remote, true) => "n9",
            _ if self.on_peer => PEER,
            _ => NODE,
        };
        let ips: Vec<String> = self.ips.iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "---\napiVersion: netpold.io/v1\nkind: WorkloadEndpoint\nmetadata: {{name: {}, namespace: {}, labels: {{{}}}}}\nspec: {{node: {node}, interfaceName: {}, ips: [{}], ports: [{}]}}\n",
            self.name,
            self.namespace,
            self.labels,
            self.iface,
            ips.join(", "),
            self.ports
        )
    }
}

/// A process started by a test, killed by its PID when dropped.
pub struct Started(pub Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

pub struct Topology {
    /// First, so the servers and daemons stop before their namespaces go.
    servers: Vec<Started>,
    daemons: Vec<Daemon>,
    pub host: Netns,
    /// The second node of a cross-node network.
    pub peer: Option<Netns>,
    pub outside: Netns,
    pub wls: Vec<Wl>,
    /// Workload namespaces, by `ns/name` (local and unmanaged workloads).
    pub nets: BTreeMap<String, Netns>,
    pub dir: tempfile::TempDir,
}

impl Topology {
    /// Builds the network for `wls` (plus `outside_addrs` behind the uplink), writes
    /// `endpoints.yaml`, and starts servers everywhere. Nothing is programmed yet.
    pub fn new(tag: &str, mut wls: Vec<Wl>, outside_addrs: &[&str]) -> Topology {
        let mut ifaces: Vec<&str> = wls.iter().map(|w| w.iface.as_str()).collect();
        ifaces.sort_unstable();
        ifaces.dedup();
        assert_eq!(
            ifaces.len(),
            wls.len(),
            "interface names collide: shorten names"
        );
        let node_sysctls = [
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
            "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
            "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
        ]
        .join(" && ");
        let host = Netns::new(&format!("{tag}-h"));
        host.sh(&format!(
            "{node_sysctls} && ip addr add {HOST4}/32 dev lo && ip addr add {HOST6}/128 dev lo"
        ));
        // Every second managed workload lives on the second node, so most pairs of a
        // scenario cross nodes.
        let peer = cross_node().then(|| {
            let peer = Netns::new(&format!("{tag}-p"));
            peer.sh(&node_sysctls);
            host.link_to(&peer, "fleet0", "fleet0");
            host.sh("ip addr add 192.168.60.1/24 dev fleet0 && ip addr add fd00:60::1/64 dev fleet0 nodad && ip link set fleet0 up");
            peer.sh("ip addr add 192.168.60.2/24 dev fleet0 && ip addr add fd00:60::2/64 dev fleet0 nodad && ip link set fleet0 up && ip route add default via 192.168.60.1 && ip -6 route add default via fd00:60::1");
            for (i, w) in wls.iter_mut().filter(|w| w.place == Place::Local).enumerate() {
                w.on_peer = i % 2 == 1;
            }
            peer
        });
        let outside = Netns::new(&format!("{tag}-x"));
        host.link_to(&outside, "uplink0", "eth0");
        host.sh("ip addr add 192.168.50.1/24 dev uplink0 && ip addr add fd00:50::1/64 dev uplink0 nodad && ip link set uplink0 up");
        let mut out_cmds = vec![
            "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0".to_owned(),
            format!("ip addr add {OUTSIDE4}/24 dev eth0 && ip addr add {OUTSIDE6}/64 dev eth0 nodad"),
            "ip link set eth0 up && ip route add default via 192.168.50.1 && ip -6 route add default via fd00:50::1".to_owned(),
        ];
        let mut host_cmds = Vec::new();
        let remote: Vec<&str> = wls
            .iter()
            .filter(|w| w.place == Place::Remote)
            .flat_map(|w| w.ips.iter().map(String::as_str))
            .collect();
        for a in outside_addrs.iter().copied().chain(remote) {
            let (len, via, v) = if a.contains(':') {
                (128, OUTSIDE6, "-6")
            } else {
                (32, OUTSIDE4, "-4")
            };
            out_cmds.push(format!("ip addr add {a}/{len} dev lo"));
            host_cmds.push(format!("ip {v} route add {a}/{len} via {via}"));
        }
        outside.sh(&out_cmds.join(" && "));
        if !host_cmds.is_empty() {
            host.sh(&host_cmds.join(" && "));
        }

        let mut nets = BTreeMap::new();
        for (i, w) in wls.iter().enumerate() {
            if w.place == Place::Remote {
                continue;
            }
            let ns = Netns::new(&format!("{tag}-{i}"));
            let node = match &peer {
                Some(p) if w.on_peer => p,
                _ => &host,
            };
            node.link_to(&ns, &w.iface, "eth0");
            let mut h = vec![
                format!("sysctl -qw net.ipv6.conf.{}.accept_dad=0", w.iface),
                format!(
                    "ip addr add 169.254.1.1/32 dev {0} && ip addr add fe80::1/64 dev {0} nodad && ip link set {0} up",
                    w.iface
                ),
            ];
            let mut c = vec![
                "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0"
                    .to_owned(),
            ];
            let mut via_peer = Vec::new();
            for a in &w.ips {
                if a.contains(':') {
                    c.push(format!("ip addr add {a}/128 dev eth0 nodad"));
                    h.push(format!("ip -6 route add {a}/128 dev {}", w.iface));
                    via_peer.push(format!("ip -6 route add {a}/128 via fd00:60::2"));
                } else {
                    c.push(format!("ip addr add {a}/32 dev eth0"));
                    h.push(format!("ip route add {a}/32 dev {}", w.iface));
                    via_peer.push(format!("ip route add {a}/32 via 192.168.60.2"));
                }
            }
            c.push("ip link set eth0 up && ip route add 169.254.1.1 dev eth0 && ip route add default via 169.254.1.1 && ip -6 route add default via fe80::1 dev eth0".to_owned());
            ns.sh(&c.join(" && "));
            node.sh(&h.join(" && "));
            if w.on_peer {
                host.sh(&via_peer.join(" && "));
            }
            nets.insert(w.id(), ns);
        }

        let dir = tempfile::tempdir().unwrap();
        let mut topo = Topology {
            servers: Vec::new(),
            daemons: Vec::new(),
            host,
            peer,
            outside,
            wls,
            nets,
            dir,
        };
        topo.write("endpoints.yaml", &topo.endpoints_yaml());
        topo.start_servers();
        topo.warm_up(outside_addrs);
        topo
    }

    /// Waits until every path works before any rule exists: a fresh veth can drop its
    /// first packets until the kernel has activated it, and a lost ARP or neighbour
    /// solicitation costs a one-second retry, longer than a probe waits.
    fn warm_up(&self, outside_addrs: &[&str]) {
        let mut paths: Vec<(String, String, Fam)> = Vec::new();
        for w in &self.wls {
            for fam in [V4, V6] {
                if w.ip(fam).is_some() {
                    paths.push(("host".into(), w.id(), fam));
                    if w.place != Place::Remote {
                        paths.push((w.id(), "host".into(), fam));
                    }
                }
            }
        }
        for fam in [V4, V6] {
            paths.push(("outside".into(), "host".into(), fam));
        }
        for a in outside_addrs {
            let fam = if a.contains(':') { V6 } else { V4 };
            paths.push(("host".into(), (*a).to_owned(), fam));
        }
        let rows: Vec<Row> = paths
            .iter()
            .map(|(f, t, fam)| (f.as_str(), t.as_str(), "udp", 53, *fam, PASS))
            .collect();
        let end = Instant::now() + Duration::from_secs(15);
        while let Some(table) = self.mismatches(&rows) {
            assert!(
                Instant::now() < end,
                "the test network does not work:\n{table}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn manifests(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon of each node of a cross-node network: `n1`'s, then `n2`'s.
    pub fn daemons(&self) -> &[Daemon] {
        &self.daemons
    }

    pub fn endpoints_yaml(&self) -> String {
        self.wls
            .iter()
            .filter(|w| w.place != Place::Unmanaged)
            .map(Wl::manifest)
            .collect()
    }

    /// A workload by `ns/name`, or by `name` alone when that is unique.
    pub fn wl(&self, id: &str) -> &Wl {
        let found: Vec<&Wl> = self
            .wls
            .iter()
            .filter(|w| w.id() == id || w.name == id)
            .collect();
        match found[..] {
            [w] => w,
            [] => panic!("no workload {id}"),
            _ => panic!("workload {id} is ambiguous: write ns/name"),
        }
    }

    pub fn net(&self, who: &str) -> &Netns {
        match who {
            "host" => &self.host,
            "outside" => &self.outside,
            _ => &self.nets[&self.wl(who).id()],
        }
    }

    /// Writes a manifest file the way editors and GitOps tools do: a temporary file in
    /// the same directory (a name netpold ignores), then a rename over the target.
    pub fn write(&self, file: &str, yaml: &str) {
        write_atomic(&self.dir.path().join(file), yaml);
    }

    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.dir.path().join(file)).unwrap();
    }

    /// Programs the host namespace once from the manifest directory.
    pub fn program(&self) {
        program(&self.host, self.manifests());
    }

    /// Starts `netpold run` on every node of a cross-node network, each programming
    /// its own node namespace from the shared directory, and waits for their first sync.
    fn run_daemons(&mut self) {
        let base = self.dir.path().to_owned();
        let nodes = [(&self.host, NODE), (self.peer.as_ref().unwrap(), PEER)];
        for (ns, node) in nodes {
            let config = base.with_extension(format!("{node}.toml"));
            let d = Daemon::start_on(ns, &base, node, config, "");
            let line = d.wait_sync(1, Duration::from_secs(60));
            assert!(
                !line.contains("not programmed") && !line.contains("error"),
                "node {node}: {line}"
            );
            self.daemons.push(d);
        }
    }

    /// Which node a row's end sits behind (cross-node labels).
    fn node_of(&self, who: &str) -> &str {
        let who = who.split(['@', '#']).next().unwrap_or(who);
        match who {
            "host" => NODE,
            "outside" => "outside",
            _ if who.parse::<IpAddr>().is_ok() || who == "gw" => "-",
            _ => match self.wl(who) {
                w if w.place == Place::Remote => "n9",
                w if w.on_peer => PEER,
                _ => NODE,
            },
        }
    }

    /// Every node's ruleset, for failure messages.
    fn rulesets(&self) -> String {
        let mut text = String::new();
        for (ns, node) in [(Some(&self.host), NODE), (self.peer.as_ref(), PEER)] {
            if let Some(ns) = ns {
                let (_, ruleset, _) = ns.nft(&["list", "ruleset"], None);
                let _ = writeln!(text, "--- nft list ruleset (node {node}) ---\n{ruleset}");
            }
        }
        text
    }

    fn start_servers(&mut self) {
        let ports: Vec<String> = PORTS.iter().map(u16::to_string).collect();
        let mut names: Vec<(String, &str)> = self
            .nets
            .iter()
            .map(|(w, ns)| (w.clone(), ns.name.as_str()))
            .collect();
        names.push(("host".into(), &self.host.name));
        if let Some(peer) = &self.peer {
            // The second node answers on its own gateway addresses.
            names.push((PEER.into(), &peer.name));
        }
        names.push(("outside".into(), &self.outside.name));
        let mut started = Vec::new();
        for (label, ns) in names {
            let child = in_ns(ns, "python3")
                .arg(PROBE)
                .arg("serve")
                .arg(&label)
                .args(&ports)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            started.push(Started(child));
        }
        for s in &mut started {
            let mut line = String::new();
            BufReader::new(s.0.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "ready", "probe server did not start");
        }
        self.servers = started;
    }

    /// Resolves a row's end to (namespace, address) for one family.
    fn dst_addr(&self, to: &str, fam: Fam) -> String {
        match to {
            "host" => pick(fam, HOST4, HOST6).into(),
            // The workload's gateway: the host's address on the veth (link-local in IPv6).
            "gw" => pick(fam, "169.254.1.1", "fe80::1%eth0").into(),
            "outside" => pick(fam, OUTSIDE4, OUTSIDE6).into(),
            _ if to.parse::<IpAddr>().is_ok() => to.into(),
            _ => self
                .wl(to)
                .ip(fam)
                .unwrap_or_else(|| panic!("{to} has no {fam:?} address"))
                .into(),
        }
    }

    fn src(&self, from: &str, fam: Fam) -> (String, Option<String>) {
        let from = from.split_once('#').map_or(from, |(f, _)| f);
        let (who, addr) = match from.split_once('@') {
            Some((w, a)) => (w, Some(a.to_owned())),
            None => (from, None),
        };
        match who {
            "host" | "outside" => (self.net(who).name.clone(), addr),
            _ => {
                let w = self.wl(who);
                if w.place == Place::Remote {
                    let a = addr.or_else(|| w.ip(fam).map(str::to_owned));
                    (self.outside.name.clone(), a)
                } else {
                    (self.nets[&w.id()].name.clone(), addr)
                }
            }
        }
    }

    /// Runs every row's probes at once (one prober process per source namespace) and
    /// returns the verdict text per expanded row, in order.
    pub fn probe(&self, rows: &[Row]) -> Vec<(String, Verdict, String)> {
        let flows = self.expand(rows);
        let mut by_ns: BTreeMap<String, String> = BTreeMap::new();
        for (i, f) in flows.iter().enumerate() {
            let line = by_ns.entry(f.ns.clone()).or_default();
            let _ = writeln!(
                line,
                "{i} {} {} {} {} {}",
                f.proto,
                f.dst,
                f.port,
                f.src.as_deref().unwrap_or("-"),
                f.sport
            );
        }
        let children: Vec<Child> = by_ns
            .iter()
            .map(|(ns, input)| {
                let mut child = in_ns(ns, "python3")
                    .args([PROBE, "batch", &DROP_TIMEOUT_S.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child
            })
            .collect();
        let mut got = vec![String::from("no answer"); flows.len()];
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "prober failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let (i, v) = line.split_once(' ').unwrap();
                got[i.parse::<usize>().unwrap()] = v.to_owned();
            }
        }
        flows
            .into_iter()
            .zip(got)
            .map(|(f, g)| (f.label, f.expect, g))
            .collect()
    }

    fn expand(&self, rows: &[Row]) -> Vec<Flow> {
        let mut flows = Vec::new();
        for &(from, to, proto, port, fam, expect) in rows {
            assert!(
                ["tcp", "udp", "sctp", "icmp"].contains(&proto),
                "protocol {proto}: tcp, udp, sctp or icmp (echo; port 0)"
            );
            assert!(
                if proto == "icmp" {
                    port == 0
                } else {
                    PORTS.contains(&port)
                },
                "no server listens on {proto}/{port}"
            );
            let fams: &[Fam] = match fam {
                Both => &[V4, V6],
                V4 => &[V4],
                V6 => &[V6],
            };
            for &f in fams {
                let (ns, src) = self.src(from, f);
                let sport = from
                    .split_once('#')
                    .map_or(0, |(_, p)| p.parse().expect("#PORT: a source port number"));
                let dst = self.dst_addr(to, f);
                assert_eq!(dst.contains(':'), f == V6, "{to} is not {f:?}");
                assert!(
                    to != "gw" || !["host", "outside"].contains(&from),
                    "gw is a workload's gateway"
                );
                let nodes = if self.peer.is_some() {
                    format!(" [{}>{}]", self.node_of(from), self.node_of(to))
                } else {
                    String::new()
                };
                flows.push(Flow {
                    label: format!("{from} -> {to} ({dst}) {proto}/{port}{nodes}"),
                    ns,
                    src,
                    sport,
                    dst,
                    proto: proto.to_owned(),
                    port,
                    expect,
                });
            }
        }
        flows
    }

    /// Probes every row and fails with a table of expected vs actual verdicts (and the
    /// host's ruleset) when any row disagrees with the kernel.
    pub fn check(&self, rows: &[Row]) {
        if let Some(table) = self.mismatches(rows) {
            panic!("{table}\n{}", self.rulesets());
        }
    }

    /// `None` when every probe agrees; otherwise the table.
    pub fn mismatches(&self, rows: &[Row]) -> Option<String> {
        let results = self.probe(rows);
        let mut table = String::new();
        let mut wrong = 0;
        let mut unsupported = 0;
        for (label, expect, got) in &results {
            let ok = match got.as_str() {
                "allowed" => *expect == PASS,
                "blocked" => *expect == DROP,
                // A packet the host sends and its output hook drops fails `sendto`
                // (UDP) with EPERM: dropped.
                "error: Operation not permitted" => *expect == DROP,
                "unsupported" => {
                    unsupported += 1;
                    true
                }
                _ => false,
            };
            if !ok {
                wrong += 1;
            }
            let want = if *expect == PASS { "pass" } else { "drop" };
            let _ = writeln!(
                table,
                "  {label:<58} expected {want:<5} got {got:<12}{}",
                if ok { "" } else { "  <-- WRONG" }
            );
        }
        if unsupported > 0 {
            eprintln!("note: this kernel has no SCTP sockets: {unsupported} SCTP probe(s) not run");
        }
        (wrong > 0).then(|| format!("{wrong} of {} probes wrong:\n{table}", results.len()))
    }

    /// Probes until the rows all agree or `deadline` passes (for changes the daemon
    /// makes asynchronously); fails with the last table.
    pub fn eventually(&self, rows: &[Row], deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            match self.mismatches(rows) {
                None => return,
                Some(table) if Instant::now() > end => {
                    panic!(
                        "still wrong after {deadline:?}: {table}\n{}",
                        self.rulesets()
                    );
                }
                Some(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Adds `addr` to a workload's interface (and routes it back from the host), so the
    /// workload can send from a source it does not own.
    pub fn forge(&self, name: &str, addr: &str) {
        let w = self.wl(name);
        let (len, v, nodad) = if addr.contains(':') {
            (128, "-6", " nodad")
        } else {
            (32, "-4", "")
        };
        self.net(name)
            .sh(&format!("ip addr add {addr}/{len} dev eth0{nodad}"));
        let route = format!("ip {v} route add {addr}/{len} dev {}", w.iface);
        match &self.peer {
            Some(peer) if w.on_peer => {
                peer.sh(&route);
                let via = if v == "-6" {
                    "fd00:60::2"
                } else {
                    "192.168.60.2"
                };
                self.host
                    .sh(&format!("ip {v} route add {addr}/{len} via {via}"));
            }
            _ => self.host.sh(&route),
        }
    }
}

struct Flow {
    label: String,
    ns: String,
    src: Option<String>,
    /// 0: any (the kernel picks an ephemeral port).
    sport: u16,
    dst: String,
    proto: String,
    port: u16,
    expect: Verdict,
}

fn pick(fam: Fam, v4: &'static str, v6: &'static str) -> &'static str {
    if fam == V6 { v6 } else { v4 }
}

/// The topology for `wls` with `policy.yaml` written and programmed once by `netpold
/// apply`; `None` when the test cannot run (and is skipped; under `CI=true` it fails).
pub fn setup(tag: &str, wls: Vec<Wl>, outside: &[&str], policy: &str) -> Option<Topology> {
    if !super::netns::can_run(&TOOLS) {
        return None;
    }
    let mut topo = Topology::new(tag, wls, outside);
    topo.write("policy.yaml", policy);
    if topo.peer.is_some() {
        topo.run_daemons();
    } else {
        topo.program();
    }
    Some(topo)
}

pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Programs `host` once from `dir` with `netpold apply`, which exits 0 once the
/// kernel holds the rules.
pub fn program(host: &Netns, dir: &Path) {
    program_node(host, dir, NODE);
}

/// `program` for another node name.
pub fn program_node(host: &Netns, dir: &Path, node: &str) {
    let out = in_ns(&host.name, NETPOLD)
        .args(["apply", "--config", "/dev/null", "--manifests"])
        .arg(dir)
        .args(["--node", node])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "netpold apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `netpold run` in the host namespace, its stderr collected line by line; killed by
/// PID on drop.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: Arc<(Mutex<Vec<String>>, Condvar)>,
    pub config: PathBuf,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// Writes a config for `topo`'s manifest directory and starts the daemon.
    pub fn start(topo: &Topology, extra_config: &str) -> Daemon {
        Daemon::start_env(topo, extra_config, &[])
    }

    /// `start` with extra environment variables (`RUST_LOG`, say).
    pub fn start_env(topo: &Topology, extra_config: &str, env: &[(&str, &str)]) -> Daemon {
        let config = topo.dir.path().with_extension("toml");
        Daemon::write_config(topo.manifests(), NODE, &config, extra_config);
        Daemon::with_config(&topo.host, config, env)
    }

    /// The daemon of node `node`, run in `host` with its config at `config` (state and
    /// status socket beside it).
    pub fn start_on(
        host: &Netns,
        manifests: &Path,
        node: &str,
        config: PathBuf,
        extra_config: &str,
    ) -> Daemon {
        Daemon::write_config(manifests, node, &config, extra_config);
        Daemon::with_config(host, config, &[])
    }

    fn write_config(manifests: &Path, node: &str, config: &Path, extra_config: &str) {
        let state = config.with_extension("state");
        // Its own status socket, not the host's /run/netpold.
        let runtime = config.with_extension("run");
        std::fs::write(
            config,
            format!(
                "manifests = \"{}\"\nnode = \"{node}\"\nstate_dir = \"{}\"\nruntime_dir = \"{}\"\nlog_level = \"info\"\n{extra_config}",
                manifests.display(),
                state.display(),
                runtime.display()
            ),
        )
        .unwrap();
    }

    /// Starts the daemon in `host` with a config file the test wrote (its `.state` and
    /// `.run` siblings are removed on drop) and extra environment variables.
    pub fn with_config(host: &Netns, config: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon {
            child: None,
            log: Arc::new((Mutex::new(Vec::new()), Condvar::new())),
            config,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        d.spawn(host);
        d
    }

    /// (Re)starts the process with the same config and a fresh log (its syncs count
    /// from 1 again).
    pub fn spawn(&mut self, host: &Netns) {
        self.log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut child = in_ns(&host.name, NETPOLD)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("netpold: {line}");
                let (lines, cv) = &*log;
                lines.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        self.child = Some(child);
    }

    /// The daemon's status socket.
    pub fn status_socket(&self) -> PathBuf {
        self.config.with_extension("run").join("status.sock")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the log line of sync `n` and returns it.
    pub fn wait_sync(&self, n: u32, timeout: Duration) -> String {
        let needle = format!("sync {n}:");
        self.wait_line(|l| l.contains(&needle), timeout)
            .unwrap_or_else(|| panic!("no `{needle}` within {timeout:?}:\n{}", self.dump()))
    }

    /// The highest sync number logged so far.
    pub fn syncs(&self) -> u32 {
        let lines = self.log.0.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| sync_number(l))
            .max()
            .unwrap_or(0)
    }

    /// Makes a change (`edit`) and waits for the sync that follows it.
    pub fn after(&self, edit: impl FnOnce(), timeout: Duration) -> String {
        let n = self.syncs() + 1;
        edit();
        self.wait_sync(n, timeout)
    }

    pub fn wait_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let (lines, cv) = &*self.log;
        let end = Instant::now() + timeout;
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(l) = guard.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            guard = cv.wait_timeout(guard, end - now).unwrap().0;
        }
    }

    pub fn dump(&self) -> String {
        self.log.0.lock().unwrap().join("\n")
    }

    /// SIGTERM, then waits; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!("netpold did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn sync_number(line: &str) -> Option<u32> {
    let rest = &line[line.find("sync ")? + 5..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(':')
        .then(|| digits.parse().ok())
        .flatten()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_dir_all(self.config.with_extension("state"));
        let _ = std::fs::remove_dir_all(self.config.with_extension("run"));
    }
}

/// A connection kept open by `probe.py hold` (TCP) or `holdudp` (UDP, one socket).
pub struct Held {
    _child: Started,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Held {
    pub fn open(t: &Topology, from: &str, dst: &str, port: u16) -> Held {
        Held::open_with(t, "hold", from, dst, port)
    }

    pub fn open_udp(t: &Topology, from: &str, dst: &str, port: u16) -> Held {
        Held::open_with(t, "holdudp", from, dst, port)
    }

    fn open_with(t: &Topology, mode: &str, from: &str, dst: &str, port: u16) -> Held {
        let mut child = in_ns(&t.net(from).name, "python3")
            .args([PROBE, mode, dst, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "connected", "{mode} {from} -> {dst}:{port}");
        Held {
            _child: Started(child),
            stdin,
            stdout,
        }
    }

    /// Sends a line and says what came back: "echo", "timeout" or "closed".
    pub fn say(&mut self) -> String {
        writeln!(self.stdin, "ping").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_owned()
    }
}
