#!/usr/bin/env bash
# Builds updp against PyPI's CUDA LibTorch 2.x (scripts/cuda-libtorch.sh) with the CUDA
# code on (UPDP_WITH_CUDA) into ./build-cuda: the model library, updp-parity,
# updp-bench-encoder, the server and the tests. No GPU is needed to build, and a CUDA
# LibTorch runs the CPU tests too. The Debian LibTorch 1.13 CPU build (./build,
# scripts/setup.sh) stays the main one.
#
#   scripts/build-cuda.sh [cmake --build args...]
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH="$(scripts/cuda-libtorch.sh)"
# The reference implementation (transformers) for the side-by-side benchmark and the
# GPU check's dry run, which run as tests of this build.
HF_PYTHON="$(scripts/hf-venv.sh)"
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
. scripts/ccache-env.sh
mkdir -p build-cuda
cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$TORCH/share/cmake" -DUPDP_WITH_CUDA=ON -DUPDP_HF_PYTHON="$HF_PYTHON" \
  -DUPDP_SERVICE_TESTS=OFF \
  -DTORCH_CUDA_ARCH_LIST="9.0" >build-cuda/configure.log 2>&1 || {
  cat build-cuda/configure.log
  exit 1
}
grep -E "updp: LibTorch" build-cuda/configure.log || true
cmake --build build-cuda -j "${UPDP_BUILD_JOBS:-$(nproc)}" "$@"
