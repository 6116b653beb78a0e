#!/usr/bin/env bash
# Fetches the CUDA LibTorch that the GPU build compiles and links against: PyPI's torch
# wheel (CUDA 13.0; the same version the GPU machines run), plus the three CUDA runtime
# libraries it needs that the CUDA toolkit package does not ship (cuSPARSELt, NVSHMEM,
# cuFile). Downloads are cached outside the clone, in $UPDP_CACHE (default
# ~/.cache/updp), and unpacked once. Prints the LibTorch prefix (the folder holding
# share/cmake/Torch and lib/).
#
#   scripts/cuda-libtorch.sh            -> /root/.cache/updp/libtorch-2.11.0-cu130/torch
set -euo pipefail
VERSION="${UPDP_TORCH_VERSION:-2.11.0}"
CACHE="${UPDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/updp}"
WHEELS="$CACHE/wheels"
PREFIX="$CACHE/libtorch-$VERSION-cu130"
EXTRA=(nvidia-cusparselt-cu13==0.8.0 nvidia-nvshmem-cu13==3.4.5 nvidia-cufile==1.15.1.6)

if [ ! -f "$PREFIX/.complete" ]; then
  mkdir -p "$WHEELS"
  PY="$(command -v python3)"
  if ! ls "$WHEELS"/torch-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "cuda-libtorch: downloading torch==$VERSION (CUDA 13.0) into $WHEELS" >&2
    "$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$WHEELS" "torch==$VERSION" >&2
  fi
  for spec in "${EXTRA[@]}"; do
    name="${spec%%==*}"
    if ! ls "$WHEELS"/"${name//-/_}"-*.whl >/dev/null 2>&1; then
      "$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$WHEELS" "$spec" >&2
    fi
  done
  rm -rf "$PREFIX.tmp"
  mkdir -p "$PREFIX.tmp"
  echo "cuda-libtorch: unpacking into $PREFIX" >&2
  # Headers, CMake config and the C++ libraries only (no Python package). The wheel's
  # bundled protobuf headers (an older protobuf, for Caffe2's protos) are left out: they
  # would shadow the system protobuf that the gRPC service compiles against.
  unzip -q -o "$(ls "$WHEELS"/torch-"$VERSION"-*.whl | head -1)" \
    'torch/lib/*' 'torch/include/*' 'torch/share/*' \
    -x 'torch/lib/libtorch_python.so' 'torch/include/google/*' -d "$PREFIX.tmp"
  for spec in "${EXTRA[@]}"; do
    name="${spec%%==*}"
    unzip -q -o "$(ls "$WHEELS"/"${name//-/_}"-*.whl | head -1)" -d "$PREFIX.tmp/extra.$name"
    # Next to libtorch_cuda.so, whose RUNPATH ($ORIGIN) then finds them.
    find "$PREFIX.tmp/extra.$name" -name '*.so*' -exec mv -f {} "$PREFIX.tmp/torch/lib/" \;
    rm -rf "$PREFIX.tmp/extra.$name"
  done
  rm -rf "$PREFIX"
  mv "$PREFIX.tmp" "$PREFIX"
  touch "$PREFIX/.complete"
fi
echo "$PREFIX/torch"
