#!/usr/bin/env bash
# Cost of `dataset refresh` on a large manifest dataset: registers N items (ids unique,
# every line naming one of a few real PNGs), appends M lines and removes K, then times
# the REFRESH job. Prints the wall time of registration and refresh and the job's
# result. Usage: bench/refresh_bench.sh BUILD_DIR [N] [M] [K]
set -euo pipefail
BUILD="$(cd "${1:?usage: refresh_bench.sh BUILD_DIR [N] [M] [K]}" && pwd)"
N=${2:-1000000}
M=${3:-100000}
K=${4:-1000}
TAG=refresh_bench
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/cli/cli_lib.sh"
"$BUILD/updp-fmnist" --out "$WORK/img" --limit 4 >/dev/null
python3 - "$WORK" "$N" <<'PY'
import sys
w, n = sys.argv[1], int(sys.argv[2])
with open(w + "/m.csv", "w") as f:
    f.writelines("i%08d,%s/img/%05d.png\n" % (i, w, i % 4) for i in range(n))
PY
start_server
t0=$(date +%s.%N)
ctl dataset register big --manifest "$WORK/m.csv" >/dev/null 2>&1 || die "register"
t1=$(date +%s.%N)
python3 - "$WORK" "$N" "$M" "$K" <<'PY'
import sys
w, n, m, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lines = open(w + "/m.csv").read().splitlines(True)[k:]  # the first k removed
lines += ["i%08d,%s/img/%05d.png\n" % (i, w, i % 4) for i in range(n, n + m)]
open(w + "/m.csv", "w").writelines(lines)
PY
t2=$(date +%s.%N)
ctl dataset refresh big >/dev/null 2>"$WORK/refresh.err" || die "refresh: $(cat "$WORK/refresh.err")"
t3=$(date +%s.%N)
job=$(ctl jobs list --dataset big | awk '$2 == "REFRESH" {print $1; exit}')
echo "N=$N M=$M K=$K"
echo "register: $(echo "$t1 - $t0" | bc) s"
echo "refresh:  $(echo "$t3 - $t2" | bc) s"
ctl jobs show "$job" | grep result
grep VmHWM "/proc/$SERVER/status" || true
