#!/usr/bin/env bash
# Packs what the GPU check (bench/gpu/check.sh) needs on a bare GPU machine into
# .gpu/bundle.tar.xz (git-ignored; name `.gpu` in the device tool's `carry`):
#   bin/   updp-parity, updp-bench-encoder, updp-make-test-model, updp-server, updpctl,
#          built here by scripts/build-cuda.sh against PyPI's torch 2.11 (CUDA 13), the
#          LibTorch the GPU machine's Python carries
#   usr/   the Debian libraries they need that such a machine lacks (everything but
#          glibc, libstdc++/libgcc and the LibTorch/CUDA libraries), plus the headers
#          and CMake/pkg-config files of the -dev packages, so that check.sh can
#          rebuild the model-only targets there if the binaries do not run
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGETS=(updp-parity updp-bench-encoder updp-make-test-model updp-server updpctl)
scripts/build-cuda.sh --target "${TARGETS[@]}"
TORCH="$(scripts/cuda-libtorch.sh)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
LIBDIR="$STAGE/usr/lib/x86_64-linux-gnu"
mkdir -p "$STAGE/bin" "$LIBDIR"
for t in "${TARGETS[@]}"; do
  f="$(find build-cuda -maxdepth 2 -type f -name "$t" | head -1)"
  strip -o "$STAGE/bin/$t" "$f"
done
# Runtime closure, minus what every Linux with a CUDA PyTorch has.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libstdc\+\+\.so|libgcc_s\.so|libtorch|libc10|libcu|libnv|libnccl|libcaffe2|libgomp|libshm)'
for b in "$STAGE"/bin/*; do ldd "$b"; done | awk '/=>/ && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    cp -L "$path" "$LIBDIR/$name"
  done
# Headers and build files for a rebuild there (LibTorch comes from that machine).
DEV=(libabsl-dev nlohmann-json3-dev libicu-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libexif-dev)
for p in "${DEV[@]}"; do
  dpkg -L "$p" 2>/dev/null | while read -r f; do
    case "$f" in
      *.a | /usr/share/doc/* | /usr/share/man/*) continue ;;
    esac
    if [ -L "$f" ] || [ -f "$f" ]; then
      mkdir -p "$STAGE$(dirname "$f")"
      cp -P "$f" "$STAGE$f"
    fi
  done
done
# Development symlinks (libfoo.so -> libfoo.so.N) need their targets.
find "$STAGE/usr" -type l -name '*.so' | while read -r l; do
  tgt="$(readlink "$l")"
  [ -e "$(dirname "$l")/$tgt" ] || cp -L "/usr/lib/x86_64-linux-gnu/$tgt" "$(dirname "$l")/" 2>/dev/null || true
done
mkdir -p .gpu
tar -C "$STAGE" -cJf .gpu/bundle.tar.xz bin usr
echo "pack: .gpu/bundle.tar.xz $(du -h .gpu/bundle.tar.xz | cut -f1) ($(ls "$LIBDIR" | grep -c '\.so') libraries, torch $TORCH)"
