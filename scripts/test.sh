#!/usr/bin/env bash
# The whole test suite: installs and builds the main Debian LibTorch 1.13 build
# (scripts/setup.sh) and the CUDA LibTorch 2.x build (scripts/build-cuda.sh), then runs
# ctest in both (the CUDA build's tests run on the CPU; they include the GPU check's
# dry run), then the GoogleTest suites under AddressSanitizer + UndefinedBehaviorSanitizer
# and ThreadSanitizer (scripts/sanitize.sh), then the fuzzers for UPDP_FUZZ_SECONDS each
# (scripts/fuzz.sh; 0 only replays their regression inputs). Arguments go to both
# ctest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The CUDA build needs the CUDA toolkit (nvcc; no GPU). CI requires it
# (UPDP_REQUIRE_CUDA_BUILD=1 in .ci/run); elsewhere it is skipped, loudly, without one.
cuda=1
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  if [ "${UPDP_REQUIRE_CUDA_BUILD:-0}" = 1 ]; then
    echo "test: no CUDA toolkit (nvcc) found, and UPDP_REQUIRE_CUDA_BUILD=1" >&2
    exit 1
  fi
  echo "test: WARNING: no CUDA toolkit (nvcc) found: SKIPPING the CUDA LibTorch build and its tests" >&2
  cuda=0
fi
[ $cuda = 1 ] && scripts/build-cuda.sh
rc=0
echo "== tests: Debian LibTorch 1.13 build (build/)"
(cd build && ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "$@") || rc=1
if [ $cuda = 1 ]; then
  echo "== tests: CUDA LibTorch 2.x build, on the CPU (build-cuda/)"
  (cd build-cuda && ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "$@") || rc=1
fi
echo "== sanitizers: the GoogleTest suites under ASan+UBSan (build-asan/) and TSan (build-tsan/)"
scripts/sanitize.sh || rc=1
echo "== fuzz: libFuzzer targets (build-fuzz/), ${UPDP_FUZZ_SECONDS:-60} s each"
if [ "${UPDP_FUZZ_SECONDS:-60}" = 0 ]; then
  UPDP_FUZZ_BUILD_ONLY=1 scripts/fuzz.sh || rc=1
else
  scripts/fuzz.sh || rc=1
fi
# --- container image (issue 16) ---------------------------------------------------------
# The CPU image from Dockerfile, built with buildah (no Docker engine, no registry: the
# debootstrapped base is localhost/debian:12; its compiles are ccache hits of build/), then
# compose/k8s checked against the built image and its smoke test (scripts/image.sh,
# tests/deploy/image_smoke.sh, docs/IMAGES.md). UPDP_IMAGE_TEST=0 skips it, loudly.
if [ "${UPDP_IMAGE_TEST:-1}" = 0 ]; then
  echo "test: WARNING: UPDP_IMAGE_TEST=0: SKIPPING the container image build and smoke test" >&2
else
  echo "== image: Dockerfile built with buildah and smoke-tested (scripts/image.sh cpu --smoke)"
  scripts/image.sh cpu --smoke || rc=1
fi
# --- end container image -----------------------------------------------------------------
exit $rc
