#!/usr/bin/env bash
# RPC latency under registration load: starts updp-server (no model) on a fresh data
# dir, then runs updp-bench-rpc-latency: three RegisterDataset calls with 1,000,000-line
# manifests at once while GetJob, ListDatasets and grpc.health.v1 Health/Check are
# called back to back (2 s deadline each). Prints the table and the JSON.
#
# Usage: bench/rpc_latency.sh [BUILD_DIR] [extra updp-bench-rpc-latency flags]
# Environment:
#   RPC_LATENCY_LINES=N   lines per manifest (default 1000000)
#   RPC_LATENCY_JSON=F    where the JSON goes (default: printed, then removed)
#   UPDP_BENCH_CACHE=DIR  the inputs, made once: 100 Fashion-MNIST PNGs and the three
#                         manifests (default ${TMPDIR:-/tmp}/updp-rpc-latency-inputs)
# Needs the Debian package dataset-fashion-mnist (for the PNGs).
set -euo pipefail
BUILD="$(cd "${1:-$(dirname "$0")/../build}" && pwd)"
shift || true
LINES="${RPC_LATENCY_LINES:-1000000}"
CACHE="${UPDP_BENCH_CACHE:-${TMPDIR:-/tmp}/updp-rpc-latency-inputs}"
BENCH="$BUILD/bench/updp-bench-rpc-latency"
for b in "$BUILD/updp-server" "$BUILD/updpctl" "$BUILD/updp-fmnist" "$BENCH"; do
  [ -x "$b" ] || {
    echo "rpc_latency: missing $b; build it: cmake --build $BUILD --target updp-server" \
      "updpctl updp-fmnist updp-bench-rpc-latency" >&2
    exit 2
  }
done

# Inputs, cached: ~100 real PNGs and three manifests of distinct ids cycling over them.
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
if [ ! -f "$CACHE/images/labels.txt" ]; then
  "$BUILD/updp-fmnist" --out "$CACHE/images" --limit 100 >/dev/null
fi
MANIFESTS=()
for k in 0 1 2; do
  m="$CACHE/manifest-$k-$LINES.csv"
  if [ ! -f "$m" ]; then
    echo "rpc_latency: writing $m ($LINES lines)" >&2
    awk -v n="$LINES" -v k="$k" -v dir="$CACHE/images" 'BEGIN {
      print "id,path"
      for (i = 0; i < n; i++) printf "m%d-%07d,%s/%05d.png\n", k, i, dir, i % 100
    }' >"$m.tmp"
    mv "$m.tmp" "$m"
  fi
  MANIFESTS+=("$m")
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-rpc-latency.XXXXXX")
SERVER=""
# shellcheck disable=SC2317  # (called by the trap)
cleanup() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/free_port.sh"
PORT=$(free_port)
"$BUILD/updp-server" --host 127.0.0.1 --port "$PORT" --metrics_port 0 --data_dir "$WORK/data" \
  --allowed_roots "$CACHE" >"$WORK/server.log" 2>&1 &
SERVER=$!
ready=0
for _ in $(seq 1 300); do
  if "$BUILD/updpctl" --addr "127.0.0.1:$PORT" health --timeout 1 >/dev/null 2>&1; then
    ready=1
    break
  fi
  kill -0 "$SERVER" 2>/dev/null || break
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "rpc_latency: updp-server did not become SERVING" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
fi

JSON="${RPC_LATENCY_JSON:-$WORK/rpc_latency.json}"
rc=0
"$BENCH" --addr "127.0.0.1:$PORT" \
  --manifests "$(IFS=,; echo "${MANIFESTS[*]}")" --json_out "$JSON" "$@" || rc=$?
if [ -f "$JSON" ]; then
  echo "== JSON"
  cat "$JSON"
fi
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "rpc_latency: updp-server died during the benchmark" >&2
  tail -20 "$WORK/server.log" >&2
  rc=1
fi
exit "$rc"
