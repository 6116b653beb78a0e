# Shared by the scale benchmarks (bench/registration_scale.sh, bench/select_scale.sh):
# a server on a free loopback port with a fresh data dir, and a sampler of its peak
# memory. Source it after setting BUILD (the build directory).
# shellcheck shell=bash

WORK=""
SERVER=""
SAMPLER=""
ADDR=""

now() { date +%s.%N; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/free_port.sh"

# start_server ROOTS [FLAG...]: updp-server (no model) on loopback, data under a fresh
# $WORK; waits until it answers health.
start_server() {
  local roots=$1
  shift
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-scale.XXXXXX")
  local port
  port=$(free_port)
  ADDR="127.0.0.1:$port"
  "$BUILD/updp-server" --host 127.0.0.1 --port "$port" --metrics_port 0 \
    --data_dir "$WORK/data" --allowed_roots "$roots" "$@" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do
    "$BUILD/updpctl" --addr "$ADDR" health --timeout 1 >/dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
  done
  echo "scale: the server did not start:" >&2
  tail -20 "$WORK/server.log" >&2
  return 1
}

# Peak VmRSS and RssAnon (kB) of PID, sampled every 0.2 s into FILE until killed.
sample() {
  local pid=$1 file=$2 rss=0 anon=0 r a
  while kill -0 "$pid" 2>/dev/null; do
    read -r r a < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} END {print r + 0, a + 0}' \
      "/proc/$pid/status" 2>/dev/null || echo "0 0")
    [ "$r" -gt "$rss" ] && rss=$r
    [ "$a" -gt "$anon" ] && anon=$a
    echo "$rss $anon" >"$file"
    sleep 0.2
  done
}

# start_sampler FILE / stop_sampler: the peak of one phase.
start_sampler() {
  echo "0 0" >"$1"
  sample "$SERVER" "$1" &
  SAMPLER=$!
}
stop_sampler() {
  sleep 0.3  # one more sample after the phase
  [ -n "$SAMPLER" ] && { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; }
  SAMPLER=""
}

# shellcheck disable=SC2317  # (called by the trap and between cases)
stop_all() {
  stop_sampler
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  SERVER=""
  [ -n "$WORK" ] && rm -rf "$WORK"
  WORK=""
}
