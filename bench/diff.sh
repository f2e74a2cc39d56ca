#!/usr/bin/env bash
# How long `netpold diff` takes on gen.py's scenarios for a one-object edit: OLD is the
# scenario, NEW the same with one workload relabelled (app: X -> app: quarantined), so
# the policies that selected it by app no longer do.
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
      # The first endpoint's app label: it leaves the policies that select it by app.
      python3 - "$new/endpoints.yaml" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
at = next(i for i, l in enumerate(lines) if l.strip().startswith("app: "))
print(f"edit: {path}:{at + 1}: {lines[at].strip()} -> app: quarantined", file=sys.stderr)
lines[at] = lines[at].split("app: ")[0] + "app: quarantined"
open(path, "w").write("\n".join(lines))
PY
    fi
    # At large every port of every pair would take hours (see the README): one port.
    variants=("" "--port 8080")
    [ "$s" = large ] && variants=("--port 8080")
    for args in "${variants[@]}"; do
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
