#!/usr/bin/env bash
# Registration at scale (issue 10): registers, each on a fresh server (no model) and
# data dir, an image directory of N files, a manifest of N lines and an [N, D] float16
# .npy, timing RegisterDataset with updpctl and sampling the server's VmRSS and RssAnon
# (/proc/PID/status) every 0.2 s; then times ListDatasets and GetDataset on the result.
# Prints one table row per case.
#
# Usage: bench/registration_scale.sh [BUILD_DIR] [CASE...]   (CASE: dir manifest npy;
#        default all three)
# Environment:
#   SCALE_FILES=N        files in the directory and lines in the manifest (default 1000000)
#   SCALE_NPY_ROWS=N     rows of the .npy (default 10000000)
#   SCALE_NPY_DIM=D      its columns (default 256; float16: N x D x 2 bytes, 5 GB by default)
#   UPDP_BENCH_CACHE=DIR the inputs, made once (default ${TMPDIR:-/tmp}/updp-regscale-inputs);
#                        the directory is hard links to copies of one small PNG of
#                        tests/testdata.
#                        Delete it afterwards: the .npy alone is 5 GB.
# Needs python3 with numpy (to write the .npy).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
shift || true
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(dir manifest npy)
FILES="${SCALE_FILES:-1000000}"
NPY_ROWS="${SCALE_NPY_ROWS:-10000000}"
NPY_DIM="${SCALE_NPY_DIM:-256}"
CACHE="${UPDP_BENCH_CACHE:-${TMPDIR:-/tmp}/updp-regscale-inputs}"
for b in "$BUILD/updp-server" "$BUILD/updpctl"; do
  [ -x "$b" ] || { echo "registration_scale: missing $b; build it first" >&2; exit 2; }
done
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# --- Inputs (made once; 1,000 files per sub-directory).
make_inputs() {
  case "$1" in
    dir | manifest)
      if [ ! -f "$CACHE/images-$FILES.done" ]; then
        echo "registration_scale: linking $FILES images under $CACHE/images-$FILES" >&2
        python3 - "$ROOT/tests/testdata/images/gradient_rgb_40x30.png" "$CACHE/images-$FILES" \
          "$FILES" <<'EOF'
import os, shutil, sys
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out + ".seeds", exist_ok=True)
for i in range(n):
    # ext4 allows 65,000 links to one file: a fresh copy every 50,000.
    seed = os.path.join(out + ".seeds", "seed%04d.png" % (i // 50000))
    if i % 50000 == 0 and not os.path.exists(seed):
        shutil.copyfile(src, seed)
    d = os.path.join(out, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "i%07d.png" % i)
    if not os.path.exists(p):
        os.link(seed, p)
EOF
        touch "$CACHE/images-$FILES.done"
      fi
      if [ "$1" = manifest ] && [ ! -f "$CACHE/manifest-$FILES.csv" ]; then
        awk -v n="$FILES" -v dir="$CACHE/images-$FILES" 'BEGIN {
          print "id,path"
          for (i = 0; i < n; i++) printf "m%07d,%s/d%04d/i%07d.png\n", i, dir, int(i / 1000), i
        }' >"$CACHE/manifest-$FILES.csv.tmp"
        mv "$CACHE/manifest-$FILES.csv.tmp" "$CACHE/manifest-$FILES.csv"
      fi
      ;;
    npy)
      local f="$CACHE/emb-$NPY_ROWS-$NPY_DIM.npy"
      if [ ! -f "$f" ]; then
        echo "registration_scale: writing $f" >&2
        python3 - "$f.tmp" "$NPY_ROWS" "$NPY_DIM" <<'EOF'
import sys
import numpy as np
path, n, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
rng = np.random.default_rng(0)
for b in range(0, n, 262144):
    k = min(262144, n - b)
    out[b:b + k] = rng.standard_normal((k, d), dtype=np.float32).astype(np.float16)
out.flush()
del out
EOF
        mv "$f.tmp" "$f"
      fi
      ;;
    *) echo "registration_scale: unknown case '$1' (dir, manifest, npy)" >&2; exit 2 ;;
  esac
}

# shellcheck source=bench/scale_lib.sh
source "$ROOT/bench/scale_lib.sh"
trap stop_all EXIT

printf '%-9s %10s %9s %13s %13s %9s %9s\n' case items "reg s" "peak RSS MiB" "peak anon MiB" "list ms" "show ms"
for c in "${CASES[@]}"; do
  make_inputs "$c"
  start_server "$CACHE"
  start_sampler "$WORK/peak"
  case "$c" in
    dir) args=(--images "$CACHE/images-$FILES") ;;
    manifest) args=(--manifest "$CACHE/manifest-$FILES.csv") ;;
    npy) args=(--embeddings "$CACHE/emb-$NPY_ROWS-$NPY_DIM.npy") ;;
  esac
  t0=$(now)
  "$BUILD/updpctl" --addr "$ADDR" dataset register "s-$c" "${args[@]}" >"$WORK/register.out" 2>&1 || {
    echo "registration_scale: $c: registration failed:" >&2
    cat "$WORK/register.out" >&2
    tail -20 "$WORK/server.log" >&2
    exit 1
  }
  t1=$(now)
  "$BUILD/updpctl" --addr "$ADDR" dataset list >/dev/null
  t2=$(now)
  "$BUILD/updpctl" --addr "$ADDR" dataset show "s-$c" >"$WORK/show.out"
  t3=$(now)
  stop_sampler
  read -r rss anon <"$WORK/peak"
  items=$(awk '/items/ {for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) {print $i; exit}}' \
    "$WORK/show.out")
  printf '%-9s %10s %9.1f %13s %13s %9.0f %9.0f\n' "$c" "${items:-?}" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" "$(mib "$rss")" "$(mib "$anon")" \
    "$(awk -v a="$t1" -v b="$t2" 'BEGIN {print (b - a) * 1000}')" \
    "$(awk -v a="$t2" -v b="$t3" 'BEGIN {print (b - a) * 1000}')"
  stop_all
done
