#!/usr/bin/env bash
# Builds the container images without a Docker engine: buildah (Debian's package) with
# chroot isolation, no registry reached. Then, with --smoke, runs the image smoke test
# (tests/deploy/image_smoke.sh) on what was built.
#
#   scripts/image.sh base                 # localhost/debian:12 only
#   scripts/image.sh cpu  [--smoke]       # Dockerfile      -> localhost/updp:cpu
#   scripts/image.sh cuda [--smoke]       # Dockerfile.cuda -> localhost/updp:cuda
#
# The base: the Dockerfiles say `FROM debian:12`; here that is a `debootstrap --variant=minbase
# bookworm` root file system from the same Debian mirror and suites as this machine's apt
# (so the image's packages are the versions this machine builds with), with the upgrades
# of those suites applied, kept as a tarball in $UPDP_CACHE (default ~/.cache/updp) and
# imported into buildah's storage as localhost/debian:12 when that image is missing.
# UPDP_DEBIAN_MIRROR overrides the mirror (an air-gapped site's own).
#
# The build mounts caches that live outside the clone into every RUN step (buildah bud -v):
#   /root/.cache/ccache    this machine's ccache (`ccache -k cache_dir`): the build stage
#                          compiles /src with CCACHE_BASEDIR=/src, the same compiler and
#                          flags as scripts/setup.sh's build/, so its compiles are cache hits
#                          of a host build of the same sources;
#   /var/cache/apt/archives  this machine's apt archive (the .debs its setup.sh installed);
#   /wheels                the PyPI wheels of the CUDA image ($UPDP_CACHE/wheels, the cache
#                          of scripts/cuda-libtorch.sh), read-only.
# Storage: buildah's default (/var/lib/containers/storage), driver $STORAGE_DRIVER (vfs
# unless set: it needs no kernel overlay support). Images are saved in Docker format so that
# HEALTHCHECK is kept (the OCI format has no such field).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC="$PWD"
CACHE="${UPDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/updp}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"
BASE_TAR="$CACHE/debian-12-minbase.tar"
BASE_IMAGE=localhost/debian:12

die() { echo "image: $*" >&2; exit 1; }
log() { echo "image: $*" >&2; }

# The first bookworm mirror of this machine's apt sources (deb822 or one-line format).
host_mirror() {
  if [ -n "${UPDP_DEBIAN_MIRROR:-}" ]; then echo "$UPDP_DEBIAN_MIRROR"; return; fi
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)/ && u {print u; exit}' "$f"
  done | head -1 | grep . && return
  awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null | grep . ||
    die "no bookworm mirror in /etc/apt/sources.list*; set UPDP_DEBIAN_MIRROR"
}

make_base_tar() {
  command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/setup.sh --no-build)"
  local mirror root
  mirror="$(host_mirror)"
  root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2; rm -rf "$root" "$root.log"; die "debootstrap failed"
  }
  # This machine's Debian suites (bookworm-updates, bookworm-security as configured here).
  if ls /etc/apt/sources.list.d/debian.sources >/dev/null 2>&1; then
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
    rm -f "$root/etc/apt/sources.list"
  elif [ -f /etc/apt/sources.list ]; then
    grep -E '^deb .*bookworm' /etc/apt/sources.list >"$root/etc/apt/sources.list"
  fi
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean && rm -rf /var/lib/apt/lists/*' \
    >>"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -rf "$root" "$root.log"; die "apt-get upgrade in the base failed"; }
  tar --numeric-owner --xattrs -C "$root" -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$root" "$root.log"
}

ensure_base() {
  if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then return; fi
  mkdir -p "$CACHE"
  [ -f "$BASE_TAR" ] || make_base_tar
  log "importing $BASE_TAR as $BASE_IMAGE"
  local ctr
  ctr="$(buildah from scratch)"
  trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' RETURN
  buildah add "$ctr" "$BASE_TAR" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --os linux --arch amd64 "$ctr"
  buildah commit --quiet --format docker "$ctr" "$BASE_IMAGE" >/dev/null
}

# image_size TAG: the image's size as `buildah images` (and `docker images`) shows it: its
# layers uncompressed, in decimal units.
image_size() {
  buildah images --format '{{.Size}}' "$1" | head -1
}

what="${1:-}"
shift || true
smoke=0
for a in "$@"; do
  case "$a" in
    --smoke) smoke=1 ;;
    *) die "unknown argument $a (usage: scripts/image.sh base|cpu|cuda [--smoke])" ;;
  esac
done
case "$what" in
  base) ensure_base; exit 0 ;;
  cpu) FILE=Dockerfile; TAG=localhost/updp:cpu ;;
  cuda) FILE=Dockerfile.cuda; TAG=localhost/updp:cuda ;;
  *) die "usage: scripts/image.sh base|cpu|cuda [--smoke]" ;;
esac
command -v buildah >/dev/null || die "buildah is not installed (scripts/setup.sh --no-build)"
ensure_base

CCACHE_HOST="${UPDP_CCACHE_DIR:-$(ccache -k cache_dir 2>/dev/null || echo "$HOME/.cache/ccache")}"
APT_ARCHIVES="${UPDP_APT_ARCHIVES:-/var/cache/apt/archives}"
mkdir -p "$CCACHE_HOST" "$APT_ARCHIVES/partial" "$CACHE/wheels"
VOLS=(-v "$CCACHE_HOST:/root/.cache/ccache" -v "$APT_ARCHIVES:/var/cache/apt/archives")
if [ "$what" = cuda ]; then
  # The wheels, once (pip resolves the pins of scripts/cuda-image-wheels.txt for Debian
  # 12's Python 3.11; wheels already there are not fetched again).
  if [ ! -f "$CACHE/wheels/.image-$(sha256sum scripts/cuda-image-wheels.txt | cut -c1-16)" ]; then
    log "downloading the CUDA image's wheels into $CACHE/wheels"
    python3 -m pip download -q --only-binary=:all: --python-version 3.11 --dest "$CACHE/wheels" \
      -r scripts/cuda-image-wheels.txt >&2
    touch "$CACHE/wheels/.image-$(sha256sum scripts/cuda-image-wheels.txt | cut -c1-16)"
  fi
  VOLS+=(-v "$CACHE/wheels:/wheels:ro")
fi
# ccache hashes the locale variables (they change the compiler's messages): the build sees
# this machine's, so that its compiles hit the host build's cache entries.
LOCALE_ARGS=()
for v in LANG LC_ALL LC_CTYPE LC_MESSAGES; do
  LOCALE_ARGS+=(--build-arg "$v=${!v:-}")
done
LOG="$CACHE/image-$what.log"
log "building $TAG from $FILE (log: $LOG; ccache $CCACHE_HOST)"
start=$(date +%s)
if ! nice -n "${UPDP_IMAGE_NICE:-10}" buildah bud --isolation chroot --pull=never --format docker \
    --layers=false -f "$FILE" -t "$TAG" "${VOLS[@]}" \
    --build-arg UPDP_BUILD_JOBS="${UPDP_BUILD_JOBS:-$(nproc)}" "${LOCALE_ARGS[@]}" "$SRC" >"$LOG" 2>&1; then
  tail -40 "$LOG" >&2
  die "buildah bud -f $FILE failed (log: $LOG)"
fi
secs=$(( $(date +%s) - start ))
# Stage images and the previous build of this tag, now untagged.
buildah rmi --prune >/dev/null 2>&1 || true
size=$(image_size "$TAG")
grep -A12 '^ccache in this build:' "$LOG" | grep -E 'Hits|Misses|Cacheable' | sed 's/^/image:   ccache /' >&2 || true
log "built $TAG from $FILE in ${secs} s: $size"
if [ $smoke = 1 ]; then
  python3 tests/deploy/check_images.py "$SRC" --built "$what=$TAG"
  if [ "$what" = cuda ]; then
    # No GPU here: the image's own entrypoint (--device=cuda) must refuse, clearly; then
    # the smoke test on the CPU.
    tests/deploy/image_smoke.sh --refuses 'no CUDA GPU is visible' "$TAG"
    tests/deploy/image_smoke.sh "$TAG" --device=cpu
  else
    tests/deploy/image_smoke.sh "$TAG"
  fi
fi
