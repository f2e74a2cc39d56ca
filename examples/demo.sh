#!/usr/bin/env bash
# The netpold demo, as root on a fresh Debian machine:
#
#   ./examples/demo.sh
#
# Installs the packages it needs, builds netpold (release), creates a throw-away "host"
# network namespace with four workloads behind it (shop/frontend, shop/backend,
# shop/db, other/intruder) and an "internet" host behind an uplink, runs the netpold
# daemon in the host namespace on a small manifest directory, and prints which real TCP
# and UDP probes pass and which are blocked, and why. Then it edits the manifests live,
# waits for the daemon to sync, and prints the table again; then asks `netpold explain`
# why a probe was blocked, prints `netpold matrix`, and shows what the daemon counted
# (`netpold status`, its drop log and its Prometheus metrics). On exit (also on Ctrl-C or
# failure) it stops the daemon and deletes every namespace it created. It never changes
# the machine's own network namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root: the demo creates network namespaces" >&2; exit 1; }
./scripts/deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install Rust 1.89+ with rustup (https://rustup.rs)" >&2; exit 1; }
echo "== building netpold (release)"
cargo build --release --locked -q
bin="${CARGO_TARGET_DIR:-$PWD/target}/release/netpold"
probe="$PWD/scripts/probe.py"

tag="npd-demo-$$"
host="$tag-host"
work=$(mktemp -d)
namespaces=()
pids=()
daemon=""
cleanup() {
  set +e
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

netns() { ip netns add "$1"; namespaces+=("$1"); ip -n "$1" link set lo up; }

# The host: routes between the workloads and the uplink, like a container host.
netns "$host"
ip netns exec "$host" sysctl -qw net.ipv4.ip_forward=1
ip -n "$host" addr add 10.10.255.1/32 dev lo

# name  k8s-namespace  labels  address
workloads=(
  "frontend shop role:frontend 10.10.1.1"
  "backend  shop role:backend  10.10.1.2"
  "db       shop role:db       10.10.1.3"
  "intruder other role:frontend 10.10.2.1"
)
declare -A addr nsof
for w in "${workloads[@]}"; do
  read -r name _ _ ip <<<"$w"
  ns="$tag-$name"; addr[$name]=$ip; nsof[$name]=$ns
  netns "$ns"
  ip link add eth0 netns "$ns" type veth peer name "veth-$name" netns "$host"
  ip -n "$ns" addr add "$ip/32" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add 169.254.1.1 dev eth0
  ip -n "$ns" route add default via 169.254.1.1
  ip -n "$host" addr add 169.254.1.1/32 dev "veth-$name"
  ip -n "$host" link set "veth-$name" up
  ip -n "$host" route add "$ip/32" dev "veth-$name"
done
# "internet": a host behind the uplink.
netns "$tag-internet"; nsof[internet]="$tag-internet"; addr[internet]=203.0.113.10
ip link add eth0 netns "$tag-internet" type veth peer name uplink0 netns "$host"
ip -n "$host" addr add 192.168.50.1/24 dev uplink0
ip -n "$host" link set uplink0 up
ip -n "$tag-internet" addr add 192.168.50.2/24 dev eth0
ip -n "$tag-internet" addr add 203.0.113.10/32 dev lo
ip -n "$tag-internet" link set eth0 up
ip -n "$tag-internet" route add default via 192.168.50.1
ip -n "$host" route add 203.0.113.10/32 via 192.168.50.2

# Every workload answers on a few ports (TCP and UDP).
for name in frontend backend db intruder internet; do
  ip netns exec "${nsof[$name]}" python3 "$probe" serve "$name" 22 53 443 5432 8080 >"$work/serve-$name" &
  pids+=($!)
done
for name in frontend backend db intruder internet; do
  for _ in $(seq 50); do grep -q ready "$work/serve-$name" && break; sleep 0.1; done
done

# Until a fresh veth is up and its neighbours are known, a first packet can be lost
# (and retried only after a second): warm every path up before anything is enforced.
for _ in $(seq 20); do
  for name in frontend backend db intruder internet; do echo "$name udp ${addr[$name]} 53"; done >"$work/warm"
  ip netns exec "$host" python3 "$probe" batch 0.5 <"$work/warm" | grep -qv allowed || break
  sleep 0.2
done

# The manifests: one endpoint per workload, a default-deny for shop, and two allows.
m="$work/manifests"
mkdir -p "$m"
cat >"$m/namespaces.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
YAML
for w in "${workloads[@]}"; do
  read -r name kns label ip <<<"$w"
  cat >>"$m/endpoints.yaml" <<YAML
---
apiVersion: netpold.io/v1
kind: WorkloadEndpoint
metadata: {name: $name, namespace: $kns, labels: {${label/:/: }}}
spec: {node: demo, interfaceName: veth-$name, ips: ["$ip"]}
YAML
done
cat >"$m/policies.yaml" <<'YAML'
# Nothing reaches a shop workload unless a policy says so.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
# The backend takes TCP 8080 from shop's frontends, and from namespaces labelled access=shop.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: backend-from-frontend, namespace: shop}
spec:
  podSelector: {matchLabels: {role: backend}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: frontend}}
    - namespaceSelector: {matchLabels: {access: shop}}
    ports: [{protocol: TCP, port: 8080}]
---
# The database takes TCP 5432 from the backend only.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-backend, namespace: shop}
spec:
  podSelector: {matchLabels: {role: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: backend}}}]
    ports: [{protocol: TCP, port: 5432}]
YAML
"$bin" check --config /dev/null --manifests "$m" >"$work/check" 2>&1 || { cat "$work/check" >&2; exit 1; }

# Writes a manifest as editors and GitOps tools do: a temporary file, renamed over.
edit() { cat >"$m/.$1.tmp"; mv "$m/.$1.tmp" "$m/$1"; }

cat >"$work/netpold.toml" <<TOML
manifests = "$m"
node = "demo"
table = "netpold"
state_dir = "$work/state"
runtime_dir = "$work/run"
log_level = "info"
# Drops are logged to NFLOG group 7, which the daemon reads for `netpold status`.
log_group = 7
# Prometheus metrics, on the host namespace's own loopback.
metrics_listen = "127.0.0.1:9753"
TOML
log="$work/daemon.log"
syncs() { grep -c 'sync [0-9]*:' "$log" 2>/dev/null || true; }
wait_sync() { # wait for sync number $1
  for _ in $(seq 200); do
    [ "$(syncs)" -ge "$1" ] && { grep 'sync [0-9]*:' "$log" | sed -n "$1p" | sed 's/.*\(sync [0-9]*:\)/  netpold: \1/'; return; }
    kill -0 "$daemon" 2>/dev/null || { cat "$log" >&2; echo "netpold exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log" >&2; echo "no sync $1 from netpold within 20 s" >&2; exit 1
}

# Probes: "from to proto port | expected | reason", run at once per source namespace.
table() {
  local rows=("$@") i=0 row src
  rm -f "$work"/probe-*
  for row in "${rows[@]}"; do
    read -r src dst proto port _ <<<"$row"
    echo "$i $proto ${addr[$dst]} $port" >>"$work/probe-in-$src"
    i=$((i + 1))
  done
  local batches=()
  for f in "$work"/probe-in-*; do
    src=${f##*/probe-in-}
    ip netns exec "${nsof[$src]}" python3 "$probe" batch 0.8 <"$f" >"$work/probe-out-$src" &
    batches+=($!)
  done
  for f in "${batches[@]}"; do wait "$f"; done
  printf '  %-36s %-9s %s\n' "probe" "result" "why"
  i=0
  for row in "${rows[@]}"; do
    read -r src dst proto port _ <<<"$row"
    local expected=${row#*| } why=${row##*| }
    expected=${expected%% |*}
    local got
    got=$(awk -v i="$i" '$1 == i {print $2}' "$work"/probe-out-*)
    local mark=""
    [ "$got" = "$expected" ] || mark="   <-- expected $expected"
    printf '  %-36s %-9s %s%s\n' "$src -> $dst ${proto^^} $port" "$got" "$why" "$mark"
    i=$((i + 1))
  done
}

echo
echo "== starting netpold run in the host namespace ($host)"
ip netns exec "$host" "$bin" run --config "$work/netpold.toml" 2>"$log" &
daemon=$!
wait_sync 1
echo
echo "== what the policies allow"
table \
  "frontend backend tcp 8080 | allowed | backend-from-frontend: role=frontend in shop, TCP 8080" \
  "frontend backend tcp 22   | blocked | shop is default-deny; no policy allows port 22" \
  "frontend backend udp 8080 | blocked | the rule allows TCP only" \
  "frontend db      tcp 5432 | blocked | db-from-backend: only role=backend" \
  "backend  db      tcp 5432 | allowed | db-from-backend: role=backend, TCP 5432" \
  "intruder backend tcp 8080 | blocked | role=frontend, but namespace other is not shop nor access=shop" \
  "internet backend tcp 8080 | blocked | an outside address matches no pod selector" \
  "db       internet tcp 443 | allowed | egress is not governed; the reply is tracked" \
  "db       intruder udp 53  | allowed | nothing selects other/intruder"

echo
echo "== live edit: namespace other gets the label access=shop"
n=$(syncs)
edit namespaces.yaml <<'YAML'
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {access: shop}}
YAML
wait_sync $((n + 1))
echo "== live edit: a new policy confines the database's egress to DNS"
n=$(syncs)
edit db-egress.yaml <<'YAML'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-egress-dns-only, namespace: shop}
spec:
  podSelector: {matchLabels: {role: db}}
  policyTypes: [Egress]
  egress: [{ports: [{protocol: UDP, port: 53}]}]
YAML
wait_sync $((n + 1))
echo
echo "== after the edits"
table \
  "frontend backend tcp 8080 | allowed | backend-from-frontend: role=frontend in shop, TCP 8080" \
  "frontend backend tcp 22   | blocked | shop is default-deny; no policy allows port 22" \
  "frontend db      tcp 5432 | blocked | db-from-backend: only role=backend" \
  "backend  db      tcp 5432 | allowed | db-from-backend; replies pass db's egress policy" \
  "intruder backend tcp 8080 | allowed | backend-from-frontend: namespace other is now access=shop" \
  "intruder db      tcp 5432 | blocked | db-from-backend: only role=backend" \
  "db       internet tcp 443 | blocked | db-egress-dns-only: only UDP 53 out" \
  "db       intruder udp 53  | allowed | db-egress-dns-only: UDP 53 to anywhere"

echo
echo "== why is intruder -> db TCP 5432 blocked? (netpold explain, from the manifests alone)"
"$bin" explain --config "$work/netpold.toml" --from other/intruder --to shop/db --port 5432 | sed 's/^/  /'
echo
echo "== who reaches whom on TCP 5432 and 8080 (netpold matrix)"
"$bin" matrix --config "$work/netpold.toml" --port 5432/tcp --port 8080/tcp | sed 's/^/  /'
echo
echo "== what the running daemon counted (netpold status)"
"$bin" status --config "$work/netpold.toml" | sed 's/^/  /'
echo
echo "== the same counters as Prometheus metrics (GET http://127.0.0.1:9753/metrics in $host)"
ip netns exec "$host" python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9753/metrics").read().decode())' \
  | grep -E '^netpold_(syncs_total|policy_allowed_packets_total|endpoint_denied_packets_total)' | grep -v ' 0$' | sed 's/^/  /'

echo
echo "== stopping netpold (SIGTERM; its rules stay until the host namespace is deleted)"
kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=""
echo "  netpold exited with status $status"
echo "== cleaning up: deleting ${#namespaces[@]} namespaces"
