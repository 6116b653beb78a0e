#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan+UBSan) in build-fuzz/, replays
# every committed regression input, then fuzzes each target for UPDP_FUZZ_SECONDS
# (default 60) from a copy of its committed seed corpus. Exits non-zero on any crash,
# leak, timeout or sanitizer report, naming the input that caused it.
#
# Usage: scripts/fuzz.sh [target...]   (default: all; see docs/FUZZING.md)
#   UPDP_FUZZ_SECONDS=600 scripts/fuzz.sh npy   # a longer run of one target
#   UPDP_FUZZ_BUILD_ONLY=1 scripts/fuzz.sh      # build and replay the regressions only
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECONDS_EACH="${UPDP_FUZZ_SECONDS:-60}"
OUT="$ROOT/build-fuzz"
ALL=(blip2_config manifest image npy safetensors prompt_artifact)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")

# Largest input per target: a little over the largest seed, so inputs stay fast.
max_len() {
  case "$1" in
    blip2_config) echo 8192 ;;
    manifest) echo 4096 ;;
    image) echo 16384 ;;
    npy) echo 4096 ;;
    safetensors) echo 8192 ;;
    prompt_artifact) echo 16384 ;;
    *) echo "fuzz: unknown target $1 (one of ${ALL[*]})" >&2; exit 2 ;;
  esac
}
for t in "${TARGETS[@]}"; do max_len "$t" >/dev/null; done

for tool in clang++ cmake; do
  command -v "$tool" >/dev/null || { echo "fuzz: $tool not found (scripts/setup.sh installs it)" >&2; exit 2; }
done

# ccache: the same settings as scripts/setup.sh, so clones in other folders hit.
. scripts/ccache-env.sh
echo "== fuzz: building ${TARGETS[*]} in build-fuzz/ (clang, -fsanitize=fuzzer,address,undefined)"
start=$(date +%s)
CC=clang CXX=clang++ cmake -S fuzz -B "$OUT" -DCMAKE_BUILD_TYPE=Fuzz >/dev/null
cmake --build "$OUT" -j "${UPDP_BUILD_JOBS:-$(nproc)}" --target "${TARGETS[@]/%/_fuzz}"
echo "== fuzz: built in $(( $(date +%s) - start )) s"

# LibTorch's CPU thread pools are not what is fuzzed: one thread keeps runs reproducible
# and leaves the other cores alone.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Leaks are reported per input by libFuzzer; a UBSan report is fatal (-fno-sanitize-recover).
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
COMMON=(-rss_limit_mb=2560 -timeout=30 -print_final_stats=1)

failed=()
for t in "${TARGETS[@]}"; do
  bin="$OUT/${t}_fuzz"
  logs="$OUT/logs"
  mkdir -p "$logs"
  # Every input that ever crashed must stay fixed: libFuzzer runs files given by name once.
  shopt -s nullglob
  regressions=("$ROOT/fuzz/regressions/$t"/*)
  shopt -u nullglob
  if [ ${#regressions[@]} -gt 0 ]; then
    if "$bin" "${COMMON[@]}" "${regressions[@]}" >"$logs/$t.regressions.log" 2>&1; then
      echo "fuzz: $t: ${#regressions[@]} regression inputs pass"
    else
      echo "fuzz: $t: a regression input FAILED (fuzz/regressions/$t):" >&2
      tail -n 40 "$logs/$t.regressions.log" >&2
      failed+=("$t (regressions)")
      continue
    fi
  fi
  [ "${UPDP_FUZZ_BUILD_ONLY:-0}" = 1 ] && continue
  # A copy of the seeds: new corpus units go there, never into the repository.
  work="$OUT/corpus-work/$t"
  artifacts="$OUT/artifacts/$t"
  rm -rf "$work" "$artifacts"
  mkdir -p "$work" "$artifacts"
  cp "$ROOT/fuzz/corpus/$t"/* "$work/"
  if "$bin" "${COMMON[@]}" -max_len="$(max_len "$t")" -max_total_time="$SECONDS_EACH" \
      -artifact_prefix="$artifacts/" "$work" >"$logs/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$t.log" | tail -n 1)"
  else
    echo "fuzz: $t FAILED after $(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$logs/$t.log" || echo '?') (log: $logs/$t.log):" >&2
    grep -E -B2 -A30 'ERROR: |runtime error:|ERROR: libFuzzer' "$logs/$t.log" | head -n 60 >&2 || tail -n 40 "$logs/$t.log" >&2
    for a in "$artifacts"/*; do
      [ -e "$a" ] || continue
      echo "fuzz: $t: input: $a (reproduce: $bin $a; keep it in fuzz/regressions/$t/ once fixed)" >&2
    done
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzz: ${#TARGETS[@]} targets, no crash (total $(( $(date +%s) - start )) s)"
