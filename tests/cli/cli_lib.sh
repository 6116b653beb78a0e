# Shared by the updpctl shell tests: a work folder removed on exit, a server on a free
# loopback port, `ctl` bound to it, `die`. Source it after setting BUILD and TAG.
# shellcheck shell=bash
WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-$TAG.XXXXXX")
SERVER=""
cleanup() {
  [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; } || true
  rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "$TAG: FAIL: $*" >&2; exit 1; }
# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/free_port.sh"
PORT=$(free_port)
# Extra updpctl flags for every ctl call (and start_server's health polling), e.g. the
# TLS flags of a test whose server runs with --tls_cert.
CTL_FLAGS=()
ctl() { timeout 60 "$BUILD/updpctl" --addr "127.0.0.1:$PORT" "${CTL_FLAGS[@]}" "$@"; }

# start_server [FLAG...]: updp-server on $PORT with data in $WORK/data and $WORK as the
# allowed root (FLAGs come last and may override these); returns when it answers health.
start_server() {
  "$BUILD/updp-server" --host 127.0.0.1 --port "$PORT" --metrics_port 0 --data_dir "$WORK/data" \
    --allowed_roots "$WORK" "$@" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do
    ctl health --timeout 1 >/dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
  done
  die "the server did not start: $(tail -5 "$WORK/server.log")"
}
