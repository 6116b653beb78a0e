#!/usr/bin/env bash
# Selection at scale (issue 10): for each N, registers an [N, D] float16 .npy of
# synthetic clustered embeddings (2,000 Gaussian clusters on the unit sphere) on a
# fresh server, then runs SELECT jobs (B picks) with each strategy, one after another.
# For every phase: wall time (updpctl, --wait) and the server's peak VmRSS and RssAnon
# (/proc/PID/status, sampled every 0.2 s). The mapped feature chunks count in VmRSS
# (file pages), not in RssAnon.
#
# Usage: bench/select_scale.sh [BUILD_DIR]
# Environment:
#   SCALE_N="1000000 10000000"   dataset sizes
#   SCALE_DIM=256 SCALE_BUDGET=1000
#   SCALE_STRATEGIES="kmeans kcenter typiclust"
#   UPDP_BENCH_CACHE=DIR         the .npy inputs, made once (default
#                                ${TMPDIR:-/tmp}/updp-selscale-inputs; 5 GB at N = 10M:
#                                delete it afterwards)
# Needs python3 with numpy (to write the .npy).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
SIZES="${SCALE_N:-1000000 10000000}"
DIM="${SCALE_DIM:-256}"
BUDGET="${SCALE_BUDGET:-1000}"
STRATEGIES="${SCALE_STRATEGIES:-kmeans kcenter typiclust}"
CACHE="${UPDP_BENCH_CACHE:-${TMPDIR:-/tmp}/updp-selscale-inputs}"
for b in "$BUILD/updp-server" "$BUILD/updpctl"; do
  [ -x "$b" ] || { echo "select_scale: missing $b; build it first" >&2; exit 2; }
done
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"
# shellcheck source=bench/scale_lib.sh
source "$ROOT/bench/scale_lib.sh"
trap stop_all EXIT

make_npy() {  # N -> path
  local f="$CACHE/clustered-$1-$DIM.npy"
  if [ ! -f "$f" ]; then
    echo "select_scale: writing $f" >&2
    python3 - "$f.tmp" "$1" "$DIM" <<'PY'
import sys
import numpy as np
path, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(42)
centres = rng.standard_normal((2000, d), dtype=np.float32)
centres /= np.linalg.norm(centres, axis=1, keepdims=True)
out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
for b in range(0, n, 262144):
    k = min(262144, n - b)
    x = centres[rng.integers(0, 2000, k)] + 0.05 * rng.standard_normal((k, d), dtype=np.float32)
    out[b:b + k] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
out.flush()
del out
PY
    mv "$f.tmp" "$f"
  fi
  echo "$f"
}

printf '| N | phase | seconds | peak RSS (MiB) | peak RssAnon (MiB) |\n|---|---|---|---|---|\n'
for n in $SIZES; do
  npy=$(make_npy "$n")
  start_server "$CACHE"
  start_sampler "$WORK/peak"
  t0=$(now)
  "$BUILD/updpctl" --addr "$ADDR" dataset register big --embeddings "$npy" >"$WORK/reg.out" 2>&1 || {
    cat "$WORK/reg.out" "$WORK/server.log" >&2
    exit 1
  }
  t1=$(now)
  stop_sampler
  read -r rss anon <"$WORK/peak"
  printf '| %s | register | %s | %s | %s |\n' "$n" "$(elapsed "$t0" "$t1")" "$(mib "$rss")" "$(mib "$anon")"
  for s in $STRATEGIES; do
    start_sampler "$WORK/peak"
    t0=$(now)
    "$BUILD/updpctl" --addr "$ADDR" select big --budget "$BUDGET" --strategy "$s" --wait \
      --out "$WORK/picks-$s.csv" >"$WORK/select.out" 2>&1 || {
      cat "$WORK/select.out" >&2
      tail -20 "$WORK/server.log" >&2
      exit 1
    }
    t1=$(now)
    stop_sampler
    read -r rss anon <"$WORK/peak"
    picks=$(($(wc -l <"$WORK/picks-$s.csv") - 1))
    [ "$picks" = "$BUDGET" ] || { echo "select_scale: $s gave $picks picks, not $BUDGET" >&2; exit 1; }
    printf '| %s | select %s (B = %s) | %s | %s | %s |\n' "$n" "$s" "$BUDGET" \
      "$(elapsed "$t0" "$t1")" "$(mib "$rss")" "$(mib "$anon")"
  done
  stop_all
done
