#!/usr/bin/env bash
# The server on the device: starts updp-server, registers UPDP_N images, runs EMBED,
# LEARN_PROMPT and SELECT (UP-DP and k-means) through updpctl, and records each
# stage's wall time and the device memory gauges in $UPDP_JSON.
# Called by bench/gpu/check.sh (which sets every UPDP_* variable).
set -euo pipefail
: "${UPDP_BIN:?}" "${UPDP_DEVICE:?}" "${UPDP_MODEL:?}" "${UPDP_IMAGES:?}" "${UPDP_N:?}" "${UPDP_EPOCHS:?}"
: "${UPDP_WORK:?}" "${UPDP_OUT:?}" "${UPDP_DECODE_THREADS:?}"
PY="${PY:-python3}"
rm -rf "$UPDP_WORK"
mkdir -p "$UPDP_WORK/images"
files=("$UPDP_IMAGES"/*.jpg)
cp "${files[@]:0:$UPDP_N}" "$UPDP_WORK/images/"
# Two ports the kernel says are free now (a collision later is a failed step, not a hang).
read -r PORT MPORT < <("$PY" -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
export UPDP_ADDR="localhost:$PORT"
CTL="$UPDP_BIN/updpctl"
now() { date +%s.%N; }
T0=$(now)
"$UPDP_BIN/updp-server" --port "$PORT" --host 127.0.0.1 --metrics_port "$MPORT" --data_dir "$UPDP_WORK/data" \
  --model_dir "$UPDP_MODEL" --device "$UPDP_DEVICE" --allowed_roots "$UPDP_WORK" \
  --decode_threads "$UPDP_DECODE_THREADS" --batch_size 128 --shutdown_grace_ms 2000 >"$UPDP_OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
# Serving once the model is loaded; give up if the server exits or after 10 minutes.
for _ in $(seq 1 1200); do
  "$CTL" health --timeout 2 >/dev/null 2>&1 && break
  kill -0 "$SERVER" 2>/dev/null || { echo "updp-server exited:"; cat "$UPDP_OUT/server.log"; exit 1; }
  sleep 0.5
done
"$CTL" health --timeout 2
T_READY=$(now)
metrics() { "$PY" -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics').read().decode())"; }
declare -A T
stage() {
  local name="$1"
  shift
  local a b
  a=$(now)
  "$@"
  b=$(now)
  T[$name]=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", b-a}')
  echo "stage $name: ${T[$name]} s"
  metrics | grep -E '^updp_device_memory' | sed "s/^/  after $name: /"
}
stage register "$CTL" dataset register gpu --images "$UPDP_WORK/images"
stage embed "$CTL" embed gpu --batch-size 128 --wait
stage learn_prompt "$CTL" prompt learn gpu --name gpu-prompt --budget 20 --epochs "$UPDP_EPOCHS" --batch-size 128 --wait
stage select_updp "$CTL" select gpu --prompt gpu-prompt --budget 20 --strategy updp --out "$UPDP_WORK/picks.csv" --wait
stage select_kmeans "$CTL" select gpu --strategy kmeans --budget 20 --out "$UPDP_WORK/picks-kmeans.csv" --wait
"$CTL" jobs list
metrics >"$UPDP_WORK/metrics.txt"
val() {
  local v
  v=$(grep -E "^$1(\{| )" "$UPDP_WORK/metrics.txt" | awk '{print $NF}' | head -1)
  echo "${v:-null}"
}
JSON_OUT="${UPDP_JSON:-$UPDP_OUT/server.json}"
cat >"$JSON_OUT" <<JSON
{"device": "$UPDP_DEVICE", "images": $UPDP_N, "epochs": $UPDP_EPOCHS,
 "startup_to_serving_s": $(awk -v a="$T0" -v b="$T_READY" 'BEGIN{printf "%.2f", b-a}'),
 "stages_s": {"register": ${T[register]}, "embed": ${T[embed]}, "learn_prompt": ${T[learn_prompt]},
              "select_updp": ${T[select_updp]}, "select_kmeans": ${T[select_kmeans]}},
 "device_memory_allocated_bytes": $(val updp_device_memory_allocated_bytes),
 "device_memory_reserved_bytes": $(val updp_device_memory_reserved_bytes),
 "device_memory_peak_allocated_bytes": $(val updp_device_memory_peak_allocated_bytes),
 "device_memory_peak_reserved_bytes": $(val updp_device_memory_peak_reserved_bytes),
 "picks": $(($(wc -l <"$UPDP_WORK/picks.csv") - 1))}
JSON
cat "$JSON_OUT"
