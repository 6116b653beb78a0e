#!/usr/bin/env bash
# Smoke test of a built image (scripts/image.sh), without a container engine: the image's
# own ENTRYPOINT and CMD run as its USER, as Kubernetes runs them (deploy/k8s/base):
# a read-only root, /data a writable volume, /models and /images read-only volumes, /tmp
# a tmpfs, its own network namespace (the image's ports, on its own loopback), its own PID
# namespace (the server is PID 1). Then, from the host, through that namespace:
#   updpctl health is SERVING; a .npy dataset registers; a kmeans selection returns B
#   picks; /metrics answers and passes `promtool check metrics`; the image's HEALTHCHECK
#   command, run inside the container, exits 0; the process runs as the image's uid/gid and
#   the only writable mounts it sees are its volumes (root itself cannot write to /).
# A runtime library missing from the Dockerfile makes the server fail to start here.
#
#   tests/deploy/image_smoke.sh IMAGE [SERVER_FLAG...]   # flags go after the image's CMD
#   tests/deploy/image_smoke.sh --refuses REGEX IMAGE [SERVER_FLAG...]
#       the same container must instead exit non-zero within 120 s, its output matching
#       REGEX (case-insensitive), and never answer health (e.g. --device cuda, no GPU)
#
# The /models volume holds tests/testdata/blip2-tiny-a as models/blip2-itm-vit-g, the
# image's default --model_dir, so the default CMD runs unchanged. updpctl is the host
# build's (UPDPCTL, default build/updpctl) when there is one, else the image's own.
# Needs root, buildah, util-linux (unshare, nsenter), iproute2, curl, promtool, python3.
# Everything it creates (container, mounts, namespace, processes, files) is removed on exit.
set -euo pipefail
REFUSES=""
if [ "${1:-}" = --refuses ]; then REFUSES="${2:?--refuses REGEX}"; shift 2; fi
IMAGE="${1:?usage: image_smoke.sh [--refuses REGEX] IMAGE [SERVER_FLAG...]}"
shift
EXTRA=("$@")
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
TAG=image_smoke
B=5
T0=$(date +%s)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-image-smoke.XXXXXX")
NS="updp-smoke-$$"
CTR=""
LAUNCHER=""
server_pid() { cat "/proc/$LAUNCHER/task/$LAUNCHER/children" 2>/dev/null | awk '{print $1}'; }
cleanup() {
  set +e
  if [ -n "$LAUNCHER" ]; then
    local pid
    pid=$(server_pid)
    kill -TERM "$LAUNCHER" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$LAUNCHER" 2>/dev/null || break; sleep 0.2; done
    [ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null
    kill -KILL "$LAUNCHER" 2>/dev/null
    wait "$LAUNCHER" 2>/dev/null
  fi
  ip netns del "$NS" 2>/dev/null
  if [ -n "$CTR" ]; then
    buildah umount "$CTR" >/dev/null 2>&1
    buildah rm "$CTR" >/dev/null 2>&1
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
die() {
  echo "$TAG: FAIL: $*" >&2
  if [ -s "$WORK/server.log" ]; then
    echo "$TAG: the server's output:" >&2
    tail -30 "$WORK/server.log" >&2
  fi
  exit 1
}
say() { echo "$TAG: $*"; }

# --- The image's configuration, as built (Docker format: HEALTHCHECK is kept).
buildah inspect --type image "$IMAGE" >"$WORK/inspect.json" 2>/dev/null || die "no image $IMAGE"
python3 - "$WORK" <<'PY' || die "cannot read the image configuration"
import json, os, sys
w = sys.argv[1]
c = json.load(open(os.path.join(w, "inspect.json")))["Docker"]["config"]
def put(name, items):
    with open(os.path.join(w, name), "wb") as f:
        for s in items:
            f.write(s.encode() + b"\0")
put("entrypoint", c.get("Entrypoint") or [])
put("cmd", c.get("Cmd") or [])
put("env", c.get("Env") or [])
put("ports", sorted(c.get("ExposedPorts") or {}))
put("volumes", sorted(c.get("Volumes") or {}))
put("health", (c.get("Healthcheck") or {}).get("Test") or [])
put("health_timeout", [str((c.get("Healthcheck") or {}).get("Timeout") or 30 * 10**9)])
put("user", [c.get("User") or ""])
put("workdir", [c.get("WorkingDir") or "/"])
PY
readarr() { mapfile -d '' -t "$1" <"$WORK/$2"; }
readarr ENTRYPOINT entrypoint; readarr CMD cmd; readarr ENVV env; readarr PORTS ports
readarr VOLUMES volumes; readarr HEALTH health; readarr HT health_timeout
readarr USERV user; readarr WD workdir
[ ${#ENTRYPOINT[@]} -gt 0 ] || die "the image has no ENTRYPOINT"
[ ${#HEALTH[@]} -gt 1 ] || die "the image has no HEALTHCHECK (built in OCI format?)"
flag() {  # flag NAME: the value of --NAME=V or --NAME V in the entrypoint and CMD
  local args=("${ENTRYPOINT[@]}" "${CMD[@]}") i v=""
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
      "--$1="*) v="${args[i]#*=}" ;;
      "--$1") v="${args[i + 1]:-}" ;;
    esac
  done
  echo "$v"
}
GRPC=$(flag port); METRICS=$(flag metrics_port); DATA=$(flag data_dir); MODEL=$(flag model_dir)
[ -n "$GRPC" ] && [ -n "$METRICS" ] && [ -n "$DATA" ] || die "the entrypoint sets no --port, --metrics_port or --data_dir"
for p in "$GRPC" "$METRICS"; do
  printf '%s\n' "${PORTS[@]}" | grep -qx "$p/tcp" || die "the server listens on $p, the image does not EXPOSE it (${PORTS[*]})"
done
printf '%s\n' "${VOLUMES[@]}" | grep -qx "$DATA" || die "--data_dir $DATA is not a VOLUME (${VOLUMES[*]})"

# --- A container of the image; its root file system.
CTR=$(buildah from --pull=never --quiet "$IMAGE") || die "buildah from $IMAGE"
ROOT=$(buildah mount "$CTR") || die "buildah mount"
# The user as Docker resolves it: a name or uid, the gid from the image's /etc/passwd.
user="${USERV[0]%%:*}"; group=""
[[ "${USERV[0]}" == *:* ]] && group="${USERV[0]#*:}"
[ -n "$user" ] || die "the image has no USER (it would run as root)"
pw=$(awk -F: -v u="$user" '$1 == u || $3 == u {print $3 ":" $4 ":" $6; exit}' "$ROOT/etc/passwd")
IFS=: read -r UID_ GID_ HOME_ <<<"$pw"
[ -n "$pw" ] || { UID_="$user"; GID_=0; HOME_=/; }
[ -n "$group" ] && GID_="$group"
[ "$UID_" != 0 ] || die "the image runs as root"
say "image $IMAGE: user $UID_:$GID_, ports ${PORTS[*]}, volumes ${VOLUMES[*]}"

# --- Volumes: /data writable by the user, the tiny checkpoint as the default model, the
# embeddings to register under /images (read-only, an --allowed_roots entry).
mkdir -p "$WORK/data" "$WORK/models" "$WORK/images" "$WORK/tmp"
chown "$UID_:$GID_" "$WORK/data"
if [ -n "$MODEL" ]; then
  case "$MODEL" in /models/*) ;; *) die "--model_dir $MODEL is not under /models" ;; esac
  mkdir -p "$WORK/models/${MODEL#/models/}"
  cp "$SRC"/tests/testdata/blip2-tiny-a/{config.json,model.safetensors,vocab.txt} "$WORK/models/${MODEL#/models/}/"
fi
python3 "$SRC/tests/cli/make_npy.py" "$WORK/images" 200 8 7
chmod -R a+rX "$WORK/models" "$WORK/images"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$WORK/hosts"

# --- The container: network namespace with its own loopback, then (in a child mount and
# PID namespace) the mounts, the read-only root, and the entrypoint as the image's user.
ip netns add "$NS" || die "ip netns add"
ip netns exec "$NS" ip link set lo up
cat >"$WORK/start.sh" <<'SH'
set -eu
R="$1"; W="$2"; U="$3"; G="$4"; shift 4
mount --make-rprivate /
mount --bind "$R" "$R"
for v in /data /models /images; do mkdir -p "$R$v" 2>/dev/null || true; done
mount --bind "$W/data" "$R/data"
mount --bind "$W/models" "$R/models"; mount -o remount,bind,ro "$R/models"
mount --bind "$W/images" "$R/images"; mount -o remount,bind,ro "$R/images"
mount -t proc proc "$R/proc"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=512m tmpfs "$R/tmp"
# /dev: the usual device nodes (read-only mounts of them still read and write the
# device), /dev/shm a tmpfs.
mount -t tmpfs -o nosuid,mode=755 tmpfs "$R/dev"
for d in null zero full random urandom tty; do
  touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; mount -o remount,bind,ro "$R/dev/$d"
done
mkdir -p "$R/dev/shm"
mount -o remount,ro "$R/dev"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m tmpfs "$R/dev/shm"
mount --rbind /sys "$R/sys"; mount -o remount,bind,ro "$R/sys"
[ -e "$R/etc/hosts" ] || touch "$R/etc/hosts"
mount --bind "$W/hosts" "$R/etc/hosts"; mount -o remount,bind,ro "$R/etc/hosts"
mount -o remount,bind,ro "$R"
exec chroot --userspec="$U:$G" "$R" "$@"
SH
# env -i: the process sees the image's ENV (and HOME) only.
ip netns exec "$NS" unshare --mount --pid --fork --kill-child=SIGTERM \
  sh "$WORK/start.sh" "$ROOT" "$WORK" "$UID_" "$GID_" \
  /usr/bin/env -i -C "${WD[0]}" "${ENVV[@]}" HOME="$HOME_" "${ENTRYPOINT[@]}" "${CMD[@]}" "${EXTRA[@]}" \
  >"$WORK/server.log" 2>&1 &
LAUNCHER=$!
# in_ctr CMD...: a process in the container (network, mounts, PID, root) as root.
in_ctr() { nsenter -t "$(server_pid)" -n -m -p -r -w -- "$@"; }
in_ctr_user() { nsenter -t "$(server_pid)" -n -m -p -r -w -S "$UID_" -G "$GID_" -- "$@"; }
in_net() { ip netns exec "$NS" "$@"; }

CTL="${UPDPCTL:-$SRC/build/updpctl}"
if [ -x "$CTL" ]; then
  ctl() { in_net timeout 60 "$CTL" --addr "127.0.0.1:$GRPC" "$@"; }
  say "driving it with $CTL"
else
  ctl() { in_ctr_user timeout 60 /usr/bin/env -i "${ENVV[@]}" updpctl --addr "127.0.0.1:$GRPC" "$@"; }
  say "no $CTL: driving it with the image's own updpctl"
fi

if [ -n "$REFUSES" ]; then
  for _ in $(seq 1 600); do
    kill -0 "$LAUNCHER" 2>/dev/null || break
    ! ctl health --timeout 1 >/dev/null 2>&1 || die "the server answers health; it should have refused to start"
    sleep 0.2
  done
  ! kill -0 "$LAUNCHER" 2>/dev/null || die "the server still runs after 120 s; it should have refused to start"
  status=0; wait "$LAUNCHER" || status=$?
  LAUNCHER=""
  [ $status != 0 ] || die "the server exited with status 0; it should have refused to start"
  grep -qiE "$REFUSES" "$WORK/server.log" || die "the server exited ($status) without saying /$REFUSES/"
  say "ok: refused to start (exit $status): $(grep -iE "$REFUSES" "$WORK/server.log" | head -2 | tr '\n' ' ')"
  say "PASS: $IMAGE refuses in $(( $(date +%s) - T0 )) s"
  exit 0
fi

up=0
for _ in $(seq 1 600); do
  kill -0 "$LAUNCHER" 2>/dev/null || break
  if ctl health --timeout 1 >"$WORK/health.out" 2>&1; then up=1; break; fi
  sleep 0.2
done
[ $up = 1 ] || die "the server did not become healthy on port $GRPC"
PID=$(server_pid)
say "server up after $(( $(date +%s) - T0 )) s (host pid $PID)"

# --- Health, as the image's user, from the host.
grep -q SERVING "$WORK/health.out" || die "health did not say SERVING: $(cat "$WORK/health.out")"
say "ok: updpctl health: $(tr '\n' ' ' <"$WORK/health.out")"

# --- The process: the image's user, the image's entrypoint, writable only where volumes are.
read -r _ ruid euid suid fsuid < <(grep '^Uid:' "/proc/$PID/status")
read -r _ rgid egid sgid fsgid < <(grep '^Gid:' "/proc/$PID/status")
for v in "$ruid" "$euid" "$suid" "$fsuid"; do [ "$v" = "$UID_" ] || die "the server runs as uid $v, not $UID_"; done
for v in "$rgid" "$egid" "$sgid" "$fsgid"; do [ "$v" = "$GID_" ] || die "the server runs as gid $v, not $GID_"; done
exe=$(tr '\0' ' ' <"/proc/$PID/cmdline")
[[ "$exe" == "${ENTRYPOINT[*]}"* ]] || die "the server is not the image's entrypoint: $exe"
say "ok: pid 1 of the container is '${exe% }' as $UID_:$GID_"
# Writable mounts the process sees (mountinfo: mount point is field 5, options field 6).
rw=$(awk '$6 ~ /(^|,)rw(,|$)/ {print $5}' "/proc/$PID/mountinfo" | sort | tr '\n' ' ')
[ "$rw" = "$DATA /dev/shm /proc /tmp " ] ||
  die "writable mounts in the container are '$rw', expected '$DATA /dev/shm /proc /tmp ' (its data volume, tmpfs, procfs)"
if in_ctr sh -c 'echo x >/.probe' 2>"$WORK/probe.err"; then
  die "even root could write to / in the container: the root is not read-only"
fi
grep -qi "read-only" "$WORK/probe.err" || die "writing to / failed, but not as read-only: $(cat "$WORK/probe.err")"
if in_ctr sh -c 'echo x >/images/.probe' 2>/dev/null; then die "/images is writable"; fi
say "ok: read-only root (root gets: $(tr -d '\n' <"$WORK/probe.err")); writable: $rw"

# --- Register a .npy dataset (paths as the server sees them), select with kmeans.
ctl dataset register vecs --embeddings /images/emb.npy --ids /images/ids.txt \
  >"$WORK/register.out" 2>&1 || die "dataset register: $(tail -5 "$WORK/register.out")"
say "ok: registered /images/emb.npy (200 x 8 float32)"
ctl select vecs --strategy kmeans --budget "$B" --seed 1 --out - >"$WORK/picks.csv" 2>"$WORK/select.err" ||
  die "select --strategy kmeans: $(tail -5 "$WORK/select.err")"
[ "$(head -1 "$WORK/picks.csv")" = "rank,item_id,path,cluster,score" ] || die "no picks CSV: $(head -3 "$WORK/picks.csv")"
n=$(tail -n +2 "$WORK/picks.csv" | cut -d, -f2 | grep -c '^v[0-9][0-9][0-9]$' || true)
u=$(tail -n +2 "$WORK/picks.csv" | cut -d, -f2 | sort -u | wc -l)
[ "$n" = "$B" ] && [ "$u" = "$B" ] || die "kmeans returned $n picks ($u distinct), not $B: $(cat "$WORK/picks.csv")"
say "ok: kmeans selection returned $B distinct picks ($(tail -n +2 "$WORK/picks.csv" | cut -d, -f2 | tr '\n' ' '))"
[ -s "$WORK/data/updp.db" ] || die "nothing was written to the /data volume"
[ "$(stat -c %u "$WORK/data/updp.db")" = "$UID_" ] || die "updp.db in /data is not owned by $UID_"

# --- /metrics on the exposed metrics port, linted by promtool.
in_net curl -fsS --max-time 10 "http://127.0.0.1:$METRICS/metrics" >"$WORK/metrics.txt" ||
  die "GET /metrics on port $METRICS"
grep -q '^updp_jobs_finished_total{kind="SELECT",outcome="succeeded"} 1' "$WORK/metrics.txt" ||
  die "/metrics does not count the finished selection: $(grep updp_jobs_finished "$WORK/metrics.txt")"
promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1 ||
  die "promtool check metrics: $(cat "$WORK/promtool.out")"
say "ok: /metrics on $METRICS passes promtool check metrics ($(grep -c '^updp_' "$WORK/metrics.txt") updp samples)"

# --- The image's HEALTHCHECK, as Docker runs it: in the container, as its user, its env.
case "${HEALTH[0]}" in
  CMD) hc=("${HEALTH[@]:1}") ;;
  CMD-SHELL) hc=(/bin/sh -c "${HEALTH[1]}") ;;
  *) die "HEALTHCHECK test ${HEALTH[*]} is neither CMD nor CMD-SHELL" ;;
esac
hts=$(( ${HT[0]} / 1000000000 ))
if ! in_ctr_user timeout "$hts" /usr/bin/env -i "${ENVV[@]}" HOME="$HOME_" "${hc[@]}" >"$WORK/hc.out" 2>&1; then
  die "the HEALTHCHECK command '${hc[*]}' failed: $(cat "$WORK/hc.out")"
fi
say "ok: HEALTHCHECK '${hc[*]}' exits 0 in the container"

# --- A clean stop: SIGTERM (as Kubernetes sends) ends the server.
kill -TERM "$PID"
for _ in $(seq 1 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
! kill -0 "$PID" 2>/dev/null || die "the server did not exit within 30 s of SIGTERM"
status=0; wait "$LAUNCHER" || status=$?
LAUNCHER=""
[ $status = 0 ] || die "the server exited with status $status on SIGTERM"
say "ok: the server stopped on SIGTERM with status 0"
say "PASS: $IMAGE in $(( $(date +%s) - T0 )) s"
