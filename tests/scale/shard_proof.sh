#!/usr/bin/env bash
# Scale-out without a cluster: n = 4 updp-embed-shard workers run as local processes,
# each with JOB_COMPLETION_INDEX set as a Kubernetes Indexed Job sets it. Shard 3 is
# killed with SIGKILL mid-shard (after its first committed chunk; the worker's test
# hook --pause_after_chunks holds it there, so the kill is never early or late) and run
# again; it must reuse what it had committed. The result is attached to a dataset with
# `updpctl dataset attach-features` and must equal a single server's EMBED of the same
# images: every feature chunk file byte for byte, the failed images, and the picks of
# a kmeans selection. Then the refusals: a missing chunk, a second attach, features of
# another dataset; and deleting the dataset leaves the shared files alone.
#
# Usage: shard_proof.sh BUILD_DIR          (SHARD_PROOF_KEEP=1 keeps the work folder)
# Needs: the Debian package dataset-fashion-mnist.
set -euo pipefail

BUILD="$(cd "${1:?usage: shard_proof.sh BUILD_DIR}" && pwd)"
for b in updp-server updpctl updp-embed-shard updp-make-test-model updp-fmnist; do
  [ -x "$BUILD/$b" ] || { echo "shard_proof: missing $BUILD/$b (build it first)" >&2; exit 2; }
done
N_IMAGES=100
CHUNK=8      # 13 chunks: shards of 3, 3, 3 and 4 chunks
BATCH=4      # the server's --batch_size and the workers': byte-identical features
SHARDS=4
WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-shard-proof.XXXXXX")
SERVER_PID=""
OK_EXIT=0
T0=$SECONDS
log() { echo "[shard-proof +$((SECONDS - T0))s] $*"; }
cleanup() {
  local rc=$?
  [ -z "$SERVER_PID" ] || { kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; } || true
  jobs -p | xargs -r kill -9 2>/dev/null || true
  if [ "$OK_EXIT" = 1 ] && [ "${SHARD_PROOF_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "shard_proof: work folder kept: $WORK" >&2
  fi
  exit $rc
}
trap cleanup EXIT
die() {
  echo "shard_proof: FAIL: $*" >&2
  [ -f "$WORK/server.log" ] && { echo "--- server log tail" >&2; tail -15 "$WORK/server.log" >&2; }
  exit 1
}
# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/free_port.sh"
PORT=$(free_port)
ctl() { timeout 120 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" "$@"; }

"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/images" --limit "$N_IMAGES" >/dev/null
# One corrupt image: skipped, counted and reported in both paths.
printf '\x89PNG\r\n\x1a\nnot really a png' >"$WORK/images/00042.png"
mkdir -p "$WORK/shared" "$WORK/data"

"$BUILD/updp-server" --host 127.0.0.1 --port "$PORT" --metrics_port 0 --data_dir "$WORK/data" \
  --model_dir "$WORK/model" --allowed_roots "$WORK" --chunk_size "$CHUNK" --batch_size "$BATCH" \
  --cpu_threads 1 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
  ctl health --timeout 1 >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "updp-server exited during start-up"
  sleep 0.1
done
ctl health >/dev/null || die "server not SERVING"

log "register the pool twice: 'ref' (server EMBED) and 'pool' (shards + attach)"
ctl dataset register ref --images "$WORK/images" >/dev/null 2>&1 || die "register ref"
ctl dataset register pool --images "$WORK/images" >/dev/null 2>&1 || die "register pool"
ctl embed ref --wait >/dev/null || die "embed ref"

log "items file, then $SHARDS shard workers as local processes"
ctl dataset items pool --out "$WORK/shared/items.jsonl" 2>/dev/null || die "dataset items"
[ "$(head -c 200 "$WORK/shared/items.jsonl" | head -1 | grep -c '"format":"updp-items"')" = 1 ] ||
  die "items file has no header"
[ "$(wc -l <"$WORK/shared/items.jsonl")" = $((N_IMAGES + 1)) ] || die "items file is not $N_IMAGES items"
shard() {  # shard INDEX [extra flags]: one worker, as a pod of the Indexed Job runs it
  local i=$1
  shift
  JOB_COMPLETION_INDEX=$i "$BUILD/updp-embed-shard" --items "$WORK/shared/items.jsonl" \
    --out "$WORK/shared/features" --model_dir "$WORK/model" --shards "$SHARDS" \
    --batch_size "$BATCH" --cpu_threads 1 "$@"
}
pids=()
for i in 0 1 2; do
  shard "$i" >"$WORK/shard.$i.log" 2>&1 &
  pids+=($!)
done
shard 3 --pause_after_chunks 1 >"$WORK/shard.3.first.log" 2>&1 &
victim=$!
for _ in $(seq 1 1200); do
  grep -q "waiting to be killed" "$WORK/shard.3.first.log" && break
  kill -0 "$victim" 2>/dev/null || die "shard 3 ended before its kill: $(tail -3 "$WORK/shard.3.first.log")"
  sleep 0.1
done
grep -q "waiting to be killed" "$WORK/shard.3.first.log" || die "shard 3 never reached its kill point"
kill -9 "$victim"
wait "$victim" 2>/dev/null && die "the killed shard exited 0" || true
log "shard 3 killed with SIGKILL after 1 of its 4 chunks"
[ ! -e "$WORK/shared/features/shard_0003_of_0004.done.json" ] || die "killed shard left a done file"
for i in 0 1 2; do
  wait "${pids[$i]}" || die "shard $i failed: $(tail -3 "$WORK/shard.$i.log")"
done
shard 3 >"$WORK/shard.3.log" 2>&1 || die "shard 3 rerun failed: $(tail -3 "$WORK/shard.3.log")"
grep -q "3 embedded now, 1 already done" "$WORK/shard.3.log" ||
  die "the rerun did not resume: $(tail -1 "$WORK/shard.3.log")"
log "shard 3 rerun: $(tail -1 "$WORK/shard.3.log" | sed 's/.*: done: //')"

log "attach, then compare with the server's EMBED"
ctl dataset attach-features pool --from "$WORK/shared/features" >"$WORK/attach.out" 2>"$WORK/attach.err" ||
  die "attach-features: $(cat "$WORK/attach.err")"
grep -q "features: image" "$WORK/attach.out" || die "no image features after attach: $(cat "$WORK/attach.out")"
ref_chunks=("$WORK"/data/features/ref/image/chunk_*.safetensors)
[ "${#ref_chunks[@]}" = 13 ] || die "expected 13 server chunks, found ${#ref_chunks[@]}"
for f in "${ref_chunks[@]}"; do
  cmp -s "$f" "$WORK/shared/features/$(basename "$f")" || die "$(basename "$f") differs from the server's"
done
log "13 of 13 chunk files byte-identical"
failed_ref=$(ctl dataset show ref | sed -n 's/.*failed: \([0-9]*\).*/\1/p')
failed_pool=$(ctl dataset show pool | sed -n 's/.*failed: \([0-9]*\).*/\1/p')
[ "$failed_ref" = 1 ] && [ "$failed_pool" = 1 ] || die "failed images: ref $failed_ref, pool $failed_pool (1 each)"
ctl select ref --strategy kmeans --budget 10 --seed 3 --out "$WORK/ref.csv" --wait >/dev/null ||
  die "select ref"
ctl select pool --strategy kmeans --budget 10 --seed 3 --out "$WORK/pool.csv" --wait >/dev/null ||
  die "select pool"
[ "$(wc -l <"$WORK/pool.csv")" = 11 ] || die "pool picks: $(wc -l <"$WORK/pool.csv") lines"
cmp -s "$WORK/ref.csv" "$WORK/pool.csv" || die "picks differ: $(diff "$WORK/ref.csv" "$WORK/pool.csv" | head)"
log "kmeans picks identical (10 of 10, same order, clusters and scores)"

log "refusals"
out=$(ctl dataset attach-features pool --from "$WORK/shared/features" 2>&1) && die "second attach accepted"
grep -q "FAILED_PRECONDITION" <<<"$out" || die "second attach: $out"
ctl dataset register pool2 --images "$WORK/images" >/dev/null 2>&1 || die "register pool2"
cp -r "$WORK/shared/features" "$WORK/shared/holey"
rm "$WORK/shared/holey/chunk_000005.json"
out=$(ctl dataset attach-features pool2 --from "$WORK/shared/holey" 2>&1) && die "attach with a hole accepted"
grep -q "INVALID_ARGUMENT.*chunk_000005.json: missing" <<<"$out" || die "hole: $out"
ctl dataset show pool2 | grep -q "features: *$" || die "a refused attach left features on pool2"
mkdir -p "$WORK/images_b" && cp "$WORK"/images/000[0-4]*.png "$WORK/images_b/"
ctl dataset register other --images "$WORK/images_b" >/dev/null 2>&1 || die "register other"
out=$(ctl dataset attach-features other --from "$WORK/shared/features" 2>&1) && die "other dataset's features accepted"
grep -q "INVALID_ARGUMENT" <<<"$out" || die "other: $out"
out=$(ctl dataset attach-features pool2 --from /etc 2>&1) && die "a directory outside the roots accepted"
grep -q "PERMISSION_DENIED" <<<"$out" || die "outside roots: $out"
ctl dataset delete pool >/dev/null || die "delete pool"
[ -f "$WORK/shared/features/chunk_000000.safetensors" ] || die "deleting the dataset removed shared chunks"
log "all checks passed"
OK_EXIT=1
