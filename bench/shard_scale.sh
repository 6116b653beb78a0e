#!/usr/bin/env bash
# Scale-out path, measured on this machine: N Fashion-MNIST images registered once,
# then (a) the server's own EMBED and (b) `updpctl dataset items` + S updp-embed-shard
# processes at once + `updpctl dataset attach-features`, with the tiny random checkpoint
# on the CPU (what is measured is the pipeline around the model: items export, each
# worker's start-up, chunk I/O, the attach's validation). Then the items-file start-up
# cost of one worker at 10M items (a synthetic file; the worker stops at the model load),
# and `updpctl dataset items` of a 10M-item dataset (registered from a small .npy: the
# export reads the item table, which is the same for every kind of dataset).
#
#   [CHUNK=1024] bench/shard_scale.sh BUILD_DIR [N=60000] [SHARDS=2] [ITEMS_10M=10000000]
set -euo pipefail
BUILD="$(cd "${1:?usage: shard_scale.sh BUILD_DIR [N] [SHARDS]}" && pwd)"
N="${2:-60000}"
SHARDS="${3:-2}"
BIG="${4:-10000000}"
# shellcheck source=bench/scale_lib.sh
source "$(dirname "$0")/scale_lib.sh"
trap stop_all EXIT
IMG=$(mktemp -d "${TMPDIR:-/tmp}/updp-shard-img.XXXXXX")
trap 'stop_all; rm -rf "$IMG"' EXIT
"$BUILD/updp-make-test-model" --out "$IMG/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$IMG/images" --limit "$N" >/dev/null
start_server "$IMG" --model_dir "$IMG/model" --batch_size 32 --chunk_size "${CHUNK:-1024}"
ctl() { "$BUILD/updpctl" --addr "$ADDR" "$@"; }
ctl dataset register ref --images "$IMG/images" >/dev/null 2>&1
ctl dataset register pool --images "$IMG/images" >/dev/null 2>&1

t0=$(now); ctl embed ref --wait >/dev/null 2>&1; t1=$(now)
echo "server EMBED of $N images: $(elapsed "$t0" "$t1") s"

t0=$(now); ctl dataset items pool --out "$IMG/items.jsonl" 2>/dev/null; t1=$(now)
echo "updpctl dataset items ($N items, $(du -h "$IMG/items.jsonl" | cut -f1)): $(elapsed "$t0" "$t1") s"
t0=$(now)
pids=()
for i in $(seq 0 $((SHARDS - 1))); do
  JOB_COMPLETION_INDEX=$i "$BUILD/updp-embed-shard" --items "$IMG/items.jsonl" \
    --out "$IMG/features" --model_dir "$IMG/model" --shards "$SHARDS" --batch_size 32 \
    --cpu_threads 1 >"$IMG/shard.$i.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(now)
echo "$SHARDS shard workers at once (1 LibTorch thread each): $(elapsed "$t0" "$t1") s"
for i in $(seq 0 $((SHARDS - 1))); do tail -1 "$IMG/shard.$i.log"; done
t0=$(now); ctl dataset attach-features pool --from "$IMG/features" >/dev/null 2>&1; t1=$(now)
echo "attach-features ($(ls "$IMG/features" | grep -c '\.safetensors$') chunks): $(elapsed "$t0" "$t1") s"
same=0
for f in "$WORK"/data/features/ref/image/chunk_*.safetensors; do
  cmp -s "$f" "$IMG/features/$(basename "$f")" && same=$((same + 1))
done
echo "chunk files byte-identical to the server's: $same of $(ls "$WORK"/data/features/ref/image | wc -l)"
stop_all

# One worker's start-up at BIG items: it reads (and checks) the whole items file.
python3 - "$IMG/big.jsonl" "$BIG" <<'PY'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    f.write(json.dumps({"format": "updp-items", "version": 1, "dataset": "big",
                        "num_items": n, "chunk_size": 1024}, separators=(",", ":")) + "\n")
    for i in range(n):
        f.write('{"index":%d,"id":"img/%09d.jpg","path":"/images/pool/img/%09d.jpg"}\n' % (i, i, i))
PY
t0=$(now)
"$BUILD/updp-embed-shard" --items "$IMG/big.jsonl" --out "$IMG/bigout" --model_dir "$IMG/none" \
  --shards 16 --shard 0 >"$IMG/big.log" 2>&1 || true
t1=$(now)
grep -q "loading" "$IMG/big.log" || { cat "$IMG/big.log"; exit 1; }
echo "worker start-up at $BIG items ($(du -h "$IMG/big.jsonl" | cut -f1) items file, until the model load): $(elapsed "$t0" "$t1") s"

python3 - "$IMG/big.npy" "$BIG" <<'PY'
import struct, sys
path, n = sys.argv[1], int(sys.argv[2])
header = "{'descr': '<f2', 'fortran_order': False, 'shape': (%d, 4), }" % n
header += " " * (63 - (10 + len(header)) % 64) + "\n"
row = struct.pack("<4e", 1.0, 0.5, -0.25, 0.125)
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    block = row * 65536
    for _ in range(n // 65536):
        f.write(block)
    f.write(row * (n % 65536))
PY
rm -f "$IMG/big.jsonl"
start_server "$IMG"
t0=$(now); ctl dataset register big --embeddings "$IMG/big.npy" >/dev/null 2>&1; t1=$(now)
echo "register $BIG-row .npy (for the export below): $(elapsed "$t0" "$t1") s"
t0=$(now); ctl dataset items big --out "$IMG/big-items.jsonl" 2>/dev/null; t1=$(now)
echo "updpctl dataset items at $BIG items ($(du -h "$IMG/big-items.jsonl" | cut -f1)): $(elapsed "$t0" "$t1") s"
