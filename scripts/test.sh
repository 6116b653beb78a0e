#!/usr/bin/env bash
# The whole test suite: installs and builds the main Debian LibTorch 1.13 build
# (scripts/setup.sh) and the CUDA LibTorch 2.x build (scripts/build-cuda.sh), then runs
# ctest in both (the CUDA build's tests run on the CPU; they include the GPU check's
# dry run). Arguments go to both ctest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-cuda.sh
rc=0
echo "== tests: Debian LibTorch 1.13 build (build/)"
(cd build && ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "$@") || rc=1
echo "== tests: CUDA LibTorch 2.x build, on the CPU (build-cuda/)"
(cd build-cuda && ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "$@") || rc=1
exit $rc
