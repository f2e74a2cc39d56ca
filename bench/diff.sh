#!/usr/bin/env bash
# How long `netpold diff` takes on gen.py's scenarios for a one-policy edit: OLD is the
# scenario, NEW the same with the first egress `matchLabels: {app: X}` peer of namespace
# ns-001's policies pointed at another app (a reviewer's typical change).
# Usage: bench/diff.sh [SIZE…] (default: medium large); needs a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${NETPOLD:-target/release/netpold}
out=${NETPOLD_BENCH_DIFF:-/tmp/netpold-bench-diff}
for size in "${@:-medium large}"; do
  for s in $size; do
    old=$out/$s/old new=$out/$s/new
    if [ ! -d "$old" ]; then
      python3 bench/gen.py --size "$s" --out "$out/$s/gen" >/dev/null
      rm -rf "$old" "$new"
      cp -r "$out/$s/gen/manifests" "$old"
      cp -r "$old" "$new"
      # The line after the first `namespace: ns-001` policy's first egress app label.
      python3 - "$new/policies.yaml" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
ns = next(i for i, l in enumerate(lines) if l.strip() == "namespace: ns-001")
eg = next(i for i in range(ns, len(lines)) if lines[i].strip() == "egress:")
app = next(i for i in range(eg, len(lines)) if lines[i].strip().startswith("app: "))
old = lines[app].strip()
lines[app] = lines[app].replace(old, "app: web" if old != "app: web" else "app: db")
print(f"edit: {path}:{app + 1}: {old} -> {lines[app].strip()}", file=sys.stderr)
open(path, "w").write("\n".join(lines))
PY
    fi
    for args in "" "--port 8080"; do
      start=$EPOCHREALTIME
      set +e
      "$bin" diff --config /dev/null $args "$old" "$new" >"$out/$s/diff.txt"
      rc=$?
      set -e
      end=$EPOCHREALTIME
      printf '%s %-12s exit %d in %.1f s: %s\n' "$s" "${args:-(default)}" "$rc" "$(awk "BEGIN { print $end - $start }")" "$(tail -n 1 "$out/$s/diff.txt")"
    done
  done
done
