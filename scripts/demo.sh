#!/usr/bin/env bash
# The demo: builds netpold, creates three workload network namespaces behind a
# "host" namespace, validates and compiles a NetworkPolicy for them, programs the
# host namespace with the plan, and sends real packets to show what is allowed and
# what is blocked. Everything happens in namespaces it creates and deletes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (it creates network namespaces)" >&2; exit 1; }
./scripts/deps.sh
cargo build --release --locked -q
bin=target/release/netpold
tag="npd-demo-$$"
host="$tag-host"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ns in fe be other host; do ip netns del "$tag-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$host"
ip -n "$host" link set lo up
ip netns exec "$host" sysctl -qw net.ipv4.ip_forward=1
i=1
for w in fe be other; do
  ns="$tag-$w"; addr="10.1.0.$((i + 1))"
  ip netns add "$ns"
  ip link add eth0 netns "$ns" type veth peer name "veth-$w" netns "$host"
  ip -n "$ns" addr add "$addr/32" dev eth0
  ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via 10.1.0.1 dev eth0 onlink
  ip -n "$host" addr add 10.1.0.1/32 dev "veth-$w"
  ip -n "$host" link set "veth-$w" up
  ip -n "$host" route add "$addr/32" dev "veth-$w"
  i=$((i + 1))
done

mkdir -p "$work/manifests"
cat > "$work/manifests/demo.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: myns}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: frontend-1, namespace: myns, labels: {role: frontend}}
spec: {node: demo, interfaceName: veth-fe, ips: [10.1.0.2]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: backend-1, namespace: myns, labels: {role: backend}}
spec: {node: demo, interfaceName: veth-be, ips: [10.1.0.3]}
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: other-1, namespace: myns, labels: {role: other}}
spec: {node: demo, interfaceName: veth-other, ips: [10.1.0.4]}
---
# Backends accept only TCP 6379, and only from frontends.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-frontend, namespace: myns}
spec:
  podSelector: {matchLabels: {role: backend}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: frontend}}
    ports:
    - {protocol: TCP, port: 6379}
YAML

ip netns exec "$tag-be" python3 scripts/probe.py serve 6379 22 &
pids+=($!)
ip netns exec "$tag-other" python3 scripts/probe.py serve 6379 &
pids+=($!)
sleep 0.5

probe_all() {
  printf '  %-34s %s\n' "frontend-1 -> backend-1 TCP 6379" "$(ip netns exec "$tag-fe" python3 scripts/probe.py probe tcp 10.1.0.3 6379)"
  printf '  %-34s %s\n' "frontend-1 -> backend-1 TCP 22" "$(ip netns exec "$tag-fe" python3 scripts/probe.py probe tcp 10.1.0.3 22)"
  printf '  %-34s %s\n' "frontend-1 -> backend-1 UDP 6379" "$(ip netns exec "$tag-fe" python3 scripts/probe.py probe udp 10.1.0.3 6379)"
  printf '  %-34s %s\n' "other-1    -> backend-1 TCP 6379" "$(ip netns exec "$tag-other" python3 scripts/probe.py probe tcp 10.1.0.3 6379)"
  printf '  %-34s %s\n' "backend-1  -> other-1   TCP 6379" "$(ip netns exec "$tag-be" python3 scripts/probe.py probe tcp 10.1.0.4 6379)"
}

echo "== before any policy"
probe_all
echo "== netpold check"
"$bin" check --config /dev/null --manifests "$work/manifests"
echo "== netpold plan (the policy chain)"
"$bin" plan --config /dev/null --manifests "$work/manifests" --node demo > "$work/plan.nft"
sed -n '/comment "policy myns\/backend-from-frontend ingress"/,/}/p' "$work/plan.nft" | sed 's/^\t*/  /'
# netpold programs the kernel over netlink itself once `netpold apply` exists;
# until then the demo loads the same plan with nft, inside the host namespace only.
ip netns exec "$host" nft -f "$work/plan.nft"
echo "== with the policy programmed"
probe_all
echo "== what a typo gets"
printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: myns}\nspec:\n  podSelecter: {}\n' > "$work/manifests/typo.yaml"
"$bin" check --config /dev/null --manifests "$work/manifests" || true
