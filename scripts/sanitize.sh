#!/usr/bin/env bash
# The GoogleTest suites again under sanitizers, each in a build folder of its own:
#   asan  build-asan/: AddressSanitizer + UndefinedBehaviorSanitizer (and LeakSanitizer)
#         over core_test, service_test, client_test, model_test and updp_prompt_test
#   tsan  build-tsan/: ThreadSanitizer over core_test (the job manager), service_test
#         (the job, watch-stream and concurrency tests) and client_test
# Any sanitizer report fails the run. Usage: scripts/sanitize.sh [asan] [tsan] [-- ctest args]
#
# What is instrumented, and why not everything (docs/SECURITY.md, "Sanitizers"): the
# LibTorch-heavy libraries are left uninstrumented in both builds (UPDP_SANITIZE_SKIP)
# so that they are ccache hits from build/ instead of another 15 minutes of compiling on
# CI's 2 cores; they still run on the sanitizer's allocator and interceptors, and their
# parsers are instrumented in the fuzz build (scripts/fuzz.sh). Under ThreadSanitizer the
# gRPC layer is left uninstrumented too: Debian's gRPC and Abseil synchronize with
# absl::Mutex, which ThreadSanitizer cannot see into, so instrumenting code that relies
# on them would only report false races.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

KINDS=()
CTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    asan|tsan) KINDS+=("$1") ;;
    --) shift; CTEST_ARGS=("$@"); break ;;
    *) echo "sanitize: unknown argument $1 (asan, tsan, -- ctest args)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#KINDS[@]} -eq 0 ] && KINDS=(asan tsan)

# ccache: the same settings as scripts/setup.sh, so that the uninstrumented targets hit
# the main build's entries (same compiler, build type and compile lines).
. scripts/ccache-env.sh
JOBS="${UPDP_BUILD_JOBS:-$(nproc)}"
TORCH_LIBS="updp_model;updp_features;updp_engine;updp_fmnist"

# LibTorch's intra-op pool: one thread keeps the runs short and the reports about our code.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

rc=0
for kind in "${KINDS[@]}"; do
  start=$(date +%s)
  case "$kind" in
    asan)
      dir=build-asan
      san="address,undefined"
      skip="$TORCH_LIBS;model_test;updp_prompt_test"
      model_tests=ON
      targets=(core_test service_test client_test model_test updp_prompt_test updp-parity)
      ;;
    tsan)
      dir=build-tsan
      san="thread"
      skip="$TORCH_LIBS;updp_proto;updp_rpc;updp_app"
      model_tests=OFF
      targets=(core_test service_test client_test)
      ;;
  esac
  echo "== sanitize: $kind: building ${targets[*]} in $dir/ (-fsanitize=$san)"
  mkdir -p "$dir"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUPDP_SANITIZE="$san" \
    -DUPDP_SANITIZE_SKIP="$skip" -DUPDP_MODEL_TESTS=$model_tests -DUPDP_SCRIPT_TESTS=OFF \
    >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log" >&2; exit 1; }
  if ! cmake --build "$dir" -j "$JOBS" --target "${targets[@]}"; then
    echo "sanitize: $kind: build FAILED" >&2
    rc=1
    continue
  fi
  built=$(( $(date +%s) - start ))
  case "$kind" in
    asan)
      export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1"
      export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
      ;;
    tsan)
      # Races are reported only between two instrumented accesses; calls into the
      # uninstrumented libraries (gRPC, Abseil, LibTorch, OpenBLAS) are not reported.
      export TSAN_OPTIONS="ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/sanitizers/tsan.supp"
      ;;
  esac
  echo "== sanitize: $kind: built in $built s; running the tests"
  if (cd "$dir" && ctest --output-on-failure -j "${UPDP_TEST_JOBS:-2}" "${CTEST_ARGS[@]}"); then
    echo "== sanitize: $kind: no report ($(( $(date +%s) - start )) s in all)"
  else
    echo "== sanitize: $kind: FAILED (a test failed or the sanitizer reported; see above)" >&2
    rc=1
  fi
done
exit $rc
