//! Real packets through the `plan` output, loaded with `nft -f` into a "host" network
//! namespace that routes between workload namespaces and an uplink. Proves with the
//! kernel what the unit tests prove with the IR: the policy allows what it allows,
//! drops what it does not, and spoofed sources never get through. Root only; fails
//! instead of skipping under `CI=true`. This is the `netpold plan | nft -f -` path on
//! purpose, for operators who load plans themselves; `e2e_semantics.rs` and
//! `e2e_dynamic.rs` send packets through what `netpold apply` and `netpold run` program.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::netns::{Netns, can_run};

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/probe.py");

const MANIFESTS: &str = "
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: frontend, namespace: shop, labels: {role: frontend}}
spec: {node: edge-1, interfaceName: veth-w1, ips: [10.0.0.1]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: backend, namespace: shop, labels: {role: backend}}
spec: {node: edge-1, interfaceName: veth-w2, ips: [10.0.0.2]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {role: backend}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: 6379}, {port: 6379, protocol: UDP}, {port: 6390, protocol: UDP}]
";

/// A process started by a test, killed by its PID when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python(ns: &Netns, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ns.name, "python3"]).args(args);
    c
}

fn probe(ns: &Netns, proto: &str, dst: &str, port: u16) -> String {
    let out = python(ns, &[PROBE, "probe", proto, dst, &port.to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Sends one UDP datagram from `src` (an address the sender's namespace holds).
fn send_udp_from(ns: &Netns, src: &str, dst: &str, port: u16, payload: &str) {
    let code = format!(
        "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('{src}',0)); s.sendto(b'{payload}',('{dst}',{port}))"
    );
    let status = python(ns, &["-c", &code]).status().unwrap();
    assert!(status.success());
}

/// A UDP listener that prints every payload it receives, one per line.
fn udp_logger(ns: &Netns, port: u16) -> Started {
    let code = format!(
        "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',{port}))\nwhile True:\n    d,_=s.recvfrom(100); print(d.decode(), flush=True)"
    );
    Started(
        python(ns, &["-c", &code])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn received(mut logger: Started) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(300));
    let _ = logger.0.kill();
    let out = std::mem::replace(&mut logger.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn policy_and_anti_spoofing_hold_for_real_packets() {
    if !can_run(&["ip", "nft", "python3"]) {
        return;
    }
    let host = Netns::new("pk-h");
    let w1 = Netns::new("pk-w1");
    let w2 = Netns::new("pk-w2");
    let ext = Netns::new("pk-x");
    host.sh("sysctl -qw net.ipv4.ip_forward=1");
    for (w, iface, addr) in [(&w1, "veth-w1", "10.0.0.1"), (&w2, "veth-w2", "10.0.0.2")] {
        host.link_to(w, iface, "eth0");
        host.sh(&format!("ip addr add 169.254.1.1/32 dev {iface} && ip link set {iface} up && ip route add {addr}/32 dev {iface}"));
        w.sh(&format!(
            "ip addr add {addr}/32 dev eth0 && ip link set eth0 up && ip route add 169.254.1.1 dev eth0 && ip route add default via 169.254.1.1"
        ));
    }
    // The outside: a host on the uplink that can also forge the frontend's address.
    host.link_to(&ext, "uplink0", "eth0");
    host.sh("ip addr add 192.168.50.1/24 dev uplink0 && ip link set uplink0 up");
    ext.sh("ip addr add 192.168.50.2/24 dev eth0 && ip addr add 10.0.0.9/32 dev eth0 && ip link set eth0 up && ip route add 10.0.0.0/24 via 192.168.50.1");
    w1.sh("ip addr add 10.0.0.7/32 dev eth0");
    host.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.yaml"), MANIFESTS).unwrap();
    let plan = Command::new(env!("CARGO_BIN_EXE_netpold"))
        .args([
            "plan",
            "--config",
            "/dev/null",
            "--manifests",
            dir.path().to_str().unwrap(),
            "--node",
            "edge-1",
        ])
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );

    let _servers = [
        Started(
            python(&w2, &[PROBE, "serve", "backend", "6379", "22"])
                .spawn()
                .unwrap(),
        ),
        Started(
            python(&ext, &[PROBE, "serve", "outside", "80"])
                .spawn()
                .unwrap(),
        ),
    ];
    std::thread::sleep(Duration::from_millis(500));
    // Before: everything flows.
    assert_eq!(probe(&w1, "tcp", "10.0.0.2", 22), "allowed");
    assert_eq!(probe(&ext, "tcp", "10.0.0.2", 6379), "allowed");

    let (ok, _, err) = host.nft(&["-f", "-"], Some(&String::from_utf8_lossy(&plan.stdout)));
    assert!(ok, "{err}");
    let cases = [
        (&w1, "tcp", "10.0.0.2", 6379, "allowed"),
        (&w1, "udp", "10.0.0.2", 6379, "allowed"),
        (&w1, "tcp", "10.0.0.2", 22, "blocked"),
        (&w1, "udp", "10.0.0.2", 22, "blocked"),
        (&ext, "tcp", "10.0.0.2", 6379, "blocked"),
        (&w2, "tcp", "192.168.50.2", 80, "allowed"),
        (&w1, "tcp", "192.168.50.2", 80, "allowed"),
    ];
    let mut wrong = Vec::new();
    for (ns, proto, dst, port, expected) in cases {
        let got = probe(ns, proto, dst, port);
        if got != expected {
            wrong.push(format!(
                "{} -> {dst} {proto}/{port}: {got}, expected {expected}",
                ns.name
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // Forged sources. First a foreign address from the frontend's own interface: only the
    // honest datagram may reach the outside.
    let outside_log = udp_logger(&ext, 6381);
    std::thread::sleep(Duration::from_millis(300));
    send_udp_from(&w1, "10.0.0.7", "192.168.50.2", 6381, "forged-by-frontend");
    send_udp_from(&w1, "10.0.0.1", "192.168.50.2", 6381, "honest-to-outside");
    assert_eq!(received(outside_log), ["honest-to-outside"]);
    // Then the frontend's address from the uplink. (The outside host takes that address
    // only now: holding it earlier would swallow replies to the frontend's honest traffic.)
    ext.sh("ip addr add 10.0.0.1/32 dev eth0");
    let backend_log = udp_logger(&w2, 6380);
    std::thread::sleep(Duration::from_millis(300));
    send_udp_from(&w1, "10.0.0.1", "10.0.0.2", 6380, "honest-frontend");
    send_udp_from(&ext, "10.0.0.1", "10.0.0.2", 6380, "forged-from-uplink");
    // The backend is isolated for ingress and 6380 is not allowed: nothing from anyone.
    assert_eq!(received(backend_log), Vec::<String>::new());
    // And where the port is allowed, the forged frontend address from the uplink still fails.
    let backend_log = udp_logger(&w2, 6390);
    std::thread::sleep(Duration::from_millis(300));
    send_udp_from(&ext, "10.0.0.1", "10.0.0.2", 6390, "forged-from-uplink");
    send_udp_from(&ext, "10.0.0.9", "10.0.0.2", 6390, "outsider");
    send_udp_from(&w1, "10.0.0.1", "10.0.0.2", 6390, "honest-frontend");
    assert_eq!(received(backend_log), ["honest-frontend"]);
}
