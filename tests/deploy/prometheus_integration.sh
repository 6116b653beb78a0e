#!/usr/bin/env bash
# Live checks with the real tools: a test updp-server runs jobs; `promtool check
# metrics` lints a live scrape; a real Prometheus on loopback scrapes the server and
# its HTTP query API must show the finished-jobs counter increase.
# Usage: prometheus_integration.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD="$(cd "$1" && pwd)"
SRC="$(cd "$2" && pwd)"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/free_port.sh"
GRPC=$(free_port); METRICS=$(free_port); PROM=$(free_port)

"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/images" --limit 64 >/dev/null
"$BUILD/updp-server" --host 127.0.0.1 --port "$GRPC" --metrics_port "$METRICS" \
  --data_dir "$WORK/data" --model_dir "$WORK/model" --allowed_roots "$WORK" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
export UPDP_ADDR="127.0.0.1:$GRPC"
for _ in $(seq 1 100); do "$BUILD/updpctl" health >/dev/null 2>&1 && break; sleep 0.1; done
"$BUILD/updpctl" health

"$BUILD/updpctl" dataset register fm --images "$WORK/images" >/dev/null
"$BUILD/updpctl" embed fm --wait >/dev/null

echo "== promtool check metrics (live scrape)"
curl -fsS "http://127.0.0.1:$METRICS/metrics" > "$WORK/scrape.txt"
grep -q 'updp_jobs_finished_total{kind="EMBED",outcome="succeeded"} 1' "$WORK/scrape.txt"
promtool check metrics < "$WORK/scrape.txt"

echo "== Prometheus scraping updp"
cat > "$WORK/prometheus.yml" <<CFG
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: updp
    static_configs:
      - targets: ["127.0.0.1:$METRICS"]
CFG
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM" >"$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

query() {  # prints the value of updp_jobs_finished_total summed, or nothing
  curl -fsS "http://127.0.0.1:$PROM/api/v1/query" \
    --data-urlencode 'query=sum(updp_jobs_finished_total{outcome="succeeded"})' 2>/dev/null |
    sed -n 's/.*"value":\[[^,]*,"\([0-9.]*\)"\].*/\1/p'
}
wait_for() {  # wait_for VALUE: until Prometheus reports at least VALUE
  for _ in $(seq 1 120); do
    v=$(query)
    if [ -n "$v" ] && awk -v v="$v" -v w="$1" 'BEGIN{exit !(v>=w)}'; then echo "$v"; return 0; fi
    sleep 0.5
  done
  echo "Prometheus never reported >= $1 (last: '${v:-}')" >&2
  tail -5 "$WORK/prometheus.log" >&2
  return 1
}
before=$(wait_for 1)
echo "finished jobs seen by Prometheus: $before"
"$BUILD/updpctl" select fm --strategy kmeans --budget 5 --wait >/dev/null
after=$(wait_for $((${before%.*} + 1)))
echo "after one more job: $after"
curl -fsS "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode 'query=up{job="updp"}' | grep -q '"1"'

echo "== Grafana dashboard uses only exported metrics"
"$BUILD/updpctl" dataset show nope >/dev/null 2>&1 || true   # one error code series
curl -fsS "http://127.0.0.1:$METRICS/metrics" > "$WORK/scrape2.txt"
"$BUILD/tests/dashboard_check" "$SRC/deploy/grafana/dashboards/updp.json" "$WORK/scrape2.txt"
echo "prometheus integration passed"
