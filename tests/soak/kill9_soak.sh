#!/usr/bin/env bash
# kill -9 soak: the real updp-server on a real data dir is killed with SIGKILL at
# seeded points of an EMBED, a LEARN_PROMPT and a SELECT (strategy updp, whose
# prompt-features stage writes the prompt feature chunks), restarted on the same data
# dir, and each interrupted job is resumed until all have SUCCEEDED; then a kmeans
# SELECT on the image features. The outcome must equal an uninterrupted reference run
# on a second data dir with the same inputs:
#   (a) every feature chunk file (features/<dataset>/image and prompt_<name>) and the
#       prompt artifact (prompts/<name>.<job>.safetensors) byte for byte (sha256),
#   (b) the picks of both selections, in order (CSV of rank,item_id,path,cluster,score),
#   (c) `PRAGMA integrity_check` of updp.db is `ok` (after every kill and at the end),
#   (d) no job is left QUEUED, RUNNING, INTERRUPTED (or FAILED, CANCELLED).
#
# Usage: kill9_soak.sh BUILD_DIR
# Environment:
#   SEED=N            kill points (default 1); the plan is printed, rerun with the same SEED
#   KILL_PLAN="..."   explicit plan instead of the seeded one, tokens JOB:STAGE:AT:JITTER_MS
#                     (JOB embed|learn|select; the kill fires JITTER_MS after the job's
#                     progress in STAGE reaches AT), e.g. "embed:embed:90:20 learn:train:2:150"
#   SOAK_IMAGES=N     Fashion-MNIST images (default 600)
#   SOAK_MIN_KILLS=N  fail when fewer kills interrupted a job (default 4)
#   SOAK_KEEP=1       keep the work folder (it is always kept on failure)
#   SOAK_TIMEOUT=S    overall limit in seconds (default 480)
#   UPDP_SOAK_SELECTION  the soak_selection helper (default BUILD_DIR/tests/soak_selection)
# Needs: the Debian package dataset-fashion-mnist; sqlite3 (else python3's sqlite3 module).
set -euo pipefail

BUILD="$(cd "${1:?usage: kill9_soak.sh BUILD_DIR}" && pwd)"
SEED="${SEED:-1}"
N_IMAGES="${SOAK_IMAGES:-600}"
MIN_KILLS="${SOAK_MIN_KILLS:-4}"
SOAK_TIMEOUT="${SOAK_TIMEOUT:-480}"
SELECTION="${UPDP_SOAK_SELECTION:-$BUILD/tests/soak_selection}"
SERVER_BIN="$BUILD/updp-server"
CTL_BIN="$BUILD/updpctl"
for b in "$SERVER_BIN" "$CTL_BIN" "$BUILD/updp-make-test-model" "$BUILD/updp-fmnist" \
  "$SELECTION"; do
  [ -x "$b" ] || { echo "kill9_soak: missing $b (build it first)" >&2; exit 2; }
done

# The workload. A chunk of 32 items makes 19 commit points in 600 images (the last one
# partial); small model batches make the progress fine-grained enough to stop at a
# chosen point (the tiny model embeds a few hundred images a second here).
CHUNK=32
SERVER_BATCH=8      # also the batch of the prompt-features stage of SELECT updp
EMBED_BATCH=4
EPOCHS=6
LEARN_BATCH=32
CLUSTERS=10
BUDGET=20
DATASET=fm
PROMPT=soak-p

WORK=$(mktemp -d "${TMPDIR:-/tmp}/updp-kill9-soak.XXXXXX")
T0=$SECONDS
SERVER_PID=""
STARTS=0
OK_EXIT=0
log() { echo "[soak +$((SECONDS - T0))s] $*"; }

stop_server() {  # SIGTERM, then SIGKILL after 10 s
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  local rc=$?
  stop_server
  if [ "$OK_EXIT" = 1 ] && [ "${SOAK_KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
  else
    echo "kill9_soak: work folder kept: $WORK (server logs: $WORK/*/server.*.log)" >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
  echo "kill9_soak: FAIL: $*" >&2
  local last="${RUN_DIR:-}/server.$STARTS.log"
  if [ -f "$last" ]; then echo "--- tail of $last" >&2; tail -20 "$last" >&2; fi
  exit 1
}
check_deadline() {
  [ $((SECONDS - T0)) -lt "$SOAK_TIMEOUT" ] || die "over SOAK_TIMEOUT=${SOAK_TIMEOUT}s ($*)"
}

# shellcheck source=scripts/lib/free_port.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/free_port.sh"

ctl() { timeout 20 "$CTL_BIN" --addr "127.0.0.1:$PORT" "$@"; }

integrity() {  # integrity DB: prints the result of PRAGMA integrity_check (read-only)
  if command -v sqlite3 >/dev/null; then
    sqlite3 -readonly "$1" 'PRAGMA integrity_check;' 2>&1 || true
  else
    python3 - "$1" <<'PY' 2>&1 || true
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print("\n".join(str(r[0]) for r in c.execute("PRAGMA integrity_check")))
PY
  fi
}

start_server() {  # start_server DATA_DIR: (re)starts on the same port, waits for SERVING
  local data=$1 tries=0
  while :; do
    STARTS=$((STARTS + 1))
    local slog="$RUN_DIR/server.$STARTS.log"
    "$SERVER_BIN" --host 127.0.0.1 --port "$PORT" --metrics_port 0 --data_dir "$data" \
      --model_dir "$WORK/model" --allowed_roots "$WORK" --chunk_size "$CHUNK" \
      --batch_size "$SERVER_BATCH" --shutdown_grace_ms 5000 >"$slog" 2>&1 &
    SERVER_PID=$!
    local waited=0
    while :; do
      if "$CTL_BIN" --addr "127.0.0.1:$PORT" health --timeout 1 >/dev/null 2>&1; then return 0; fi
      if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
      waited=$((waited + 1))
      [ "$waited" -lt 600 ] || die "server not SERVING after 60 s (log $slog)"
      sleep 0.1
    done
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    tries=$((tries + 1))
    # The port may have been taken by someone else between runs: one more try elsewhere.
    if [ "$tries" -lt 3 ] && grep -qi "address\|bind\|listen" "$slog"; then
      PORT=$(free_port)
      continue
    fi
    echo "--- $slog" >&2
    tail -20 "$slog" >&2
    die "updp-server exited during start-up"
  done
}

# ---------------------------------------------------------------------------
# The kill plan: JOB:STAGE:AT:JITTER_MS tokens, in the order the jobs run.
# A 64-bit linear congruential generator (Knuth's MMIX constants) in bash arithmetic,
# so that a SEED gives the same plan with every bash.
RNG_STATE=0
rnd() {  # rnd LO HI: sets RND to the next seeded integer in [LO, HI)
  RNG_STATE=$((RNG_STATE * 6364136223846793005 + 1442695040888963407))
  RND=$(($1 + ((RNG_STATE >> 33) & 0x7fffffff) % ($2 - $1)))
}
point() {  # point JOB STAGE LO HI JITTER_MAX: appends JOB:STAGE:AT:JITTER_MS to PLAN
  rnd "$3" "$4"
  local at=$RND
  rnd 0 "$5"
  PLAN+=("$1:$2:$at:$RND")
}
PLAN=()
if [ -n "${KILL_PLAN:-}" ]; then
  read -r -a PLAN <<<"$KILL_PLAN"
else
  RNG_STATE=$((SEED))
  rnd 0 2  # mixes the seed in
  N=$N_IMAGES
  point embed embed $((N / 10)) $((N * 45 / 100)) 60
  point embed embed $((N * 55 / 100)) $((N * 9 / 10)) 60
  point learn cache-views $((N / 10)) $((N * 45 / 100)) 60
  point learn cache-views $((N * 55 / 100)) $((N * 9 / 10)) 60
  point learn train 1 "$EPOCHS" 300  # after epoch AT, up to 300 ms into the next one
  point select prompt-features $((N / 5)) $((N * 4 / 5)) 40
fi
PLAN_AT=0
KILLS=0
INTERRUPTS=0  # kills after which the job was INTERRUPTED (it had not finished)
MISSED=0
KILL_LOG=()

stage_rank() {  # stage_rank JOB STAGE: the order of the stages inside a job
  case "$1:$2" in
    embed:embed | learn:cache-views | select:prompt-features) echo 1 ;;
    learn:train) echo 2 ;;
    *:"") echo 0 ;;
    *) echo 3 ;;
  esac
}

# drive TAG JOB_ID DATA_DIR KILLS(0|1): polls the job until it SUCCEEDED; with KILLS=1
# fires the plan's kill points that belong to TAG, restarting and resuming after each.
drive() {
  local tag=$1 id=$2 data=$3 kills=$4
  local line jid state stage prog done_n
  local started=$SECONDS
  while :; do
    check_deadline "job $id"
    [ $((SECONDS - started)) -lt 240 ] || die "job $id ($tag) did not finish in 240 s"
    line=$(ctl jobs show "$id" 2>&1) || true
    line=${line%%$'\n'*}
    # "ID KIND STATE DATASET [STAGE DONE/TOTAL ...]" (client::JobLine)
    jid="" state="" stage="" prog=""
    read -r jid _ state _ stage prog _ <<<"$line" || true
    [ "$jid" = "$id" ] || die "jobs show $id: $line"
    done_n=-1
    if [[ "$prog" =~ ^([0-9]+)/[0-9]+$ ]]; then done_n=${BASH_REMATCH[1]}; fi
    # The plan's next kill point, if it belongs to this job.
    local pjob="" pstage="" pat=0 pjit=0
    if [ "$kills" = 1 ] && [ "$PLAN_AT" -lt "${#PLAN[@]}" ]; then
      IFS=: read -r pjob pstage pat pjit <<<"${PLAN[$PLAN_AT]}"
      [ "$pjob" = "$tag" ] || pjob=""
    fi
    case "$state" in
      SUCCEEDED)
        # Points of this job that it ended before are missed.
        while [ "$kills" = 1 ] && [ "$PLAN_AT" -lt "${#PLAN[@]}" ] &&
          [ "${PLAN[$PLAN_AT]%%:*}" = "$tag" ]; do
          KILL_LOG+=("missed ${PLAN[$PLAN_AT]}: $id ended first")
          MISSED=$((MISSED + 1))
          PLAN_AT=$((PLAN_AT + 1))
        done
        return 0
        ;;
      QUEUED | RUNNING) ;;
      *) die "job $id ($tag) is $state: $line" ;;
    esac
    if [ -n "$pjob" ] && [ "$state" = RUNNING ]; then
      local have want
      have=$(stage_rank "$tag" "${stage:-}")
      want=$(stage_rank "$tag" "$pstage")
      if [ "$have" -gt "$want" ]; then
        KILL_LOG+=("missed ${PLAN[$PLAN_AT]}: $id already at '$stage ${prog:-}'")
        MISSED=$((MISSED + 1))
        PLAN_AT=$((PLAN_AT + 1))
        continue
      fi
      if [ "$have" -eq "$want" ] && [ "$done_n" -ge "$pat" ]; then
        sleep "$(printf '0.%03d' "$pjit")"
        kill -9 "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        KILLS=$((KILLS + 1))
        PLAN_AT=$((PLAN_AT + 1))
        local ic
        ic=$(integrity "$data/updp.db")
        [ "$ic" = ok ] || die "integrity_check after kill $KILLS: $ic"
        start_server "$data"
        local after
        after=$(ctl jobs show "$id") || die "jobs show $id after restart: $after"
        after=${after%%$'\n'*}
        read -r _ _ state _ <<<"$after"
        local what="kill $KILLS (${PLAN[$((PLAN_AT - 1))]}): seen '$stage ${prog:-}'"
        KILL_LOG+=("$what, after restart $state")
        log "kill $KILLS at $tag '$stage ${prog:-}' (+${pjit} ms): after restart $state"
        case "$state" in
          INTERRUPTED)
            INTERRUPTS=$((INTERRUPTS + 1))
            ctl jobs resume "$id" >/dev/null || die "jobs resume $id failed"
            ;;
          SUCCEEDED) ;;  # the kill came after the job's last commit
          *) die "after kill $KILLS job $id is $state, expected INTERRUPTED: $after" ;;
        esac
        continue
      fi
    fi
    sleep 0.02
  done
}

job_id() {  # job_id OUTPUT_OF_A_START_COMMAND: the id in its first line
  local id
  read -r id _ <<<"$1"
  [[ "$id" =~ ^[A-Za-z0-9._-]+$ ]] || die "no job id in: $1"
  echo "$id"
}

# run_pipeline NAME KILLS(0|1): one complete run on WORK/NAME/data.
run_pipeline() {
  local name=$1 kills=$2
  RUN_DIR="$WORK/$name"
  local data="$RUN_DIR/data"
  mkdir -p "$RUN_DIR"
  PORT=$(free_port)
  start_server "$data"
  ctl dataset register "$DATASET" --images "$WORK/images" >"$RUN_DIR/register.txt" ||
    die "dataset register"
  local out id
  out=$(ctl embed "$DATASET" --batch-size "$EMBED_BATCH") || die "embed: $out"
  id=$(job_id "$out")
  drive embed "$id" "$data" "$kills"
  log "$name: EMBED $id succeeded"
  out=$(ctl prompt learn "$DATASET" --name "$PROMPT" --budget "$BUDGET" --clusters "$CLUSTERS" \
    --epochs "$EPOCHS" --batch-size "$LEARN_BATCH" --seed 7) || die "prompt learn: $out"
  id=$(job_id "$out")
  drive learn "$id" "$data" "$kills"
  log "$name: LEARN_PROMPT $id succeeded"
  out=$(ctl select "$DATASET" --strategy updp --prompt "$PROMPT" --budget "$BUDGET" --seed 11) ||
    die "select updp: $out"
  id=$(job_id "$out")
  drive select "$id" "$data" "$kills"
  timeout 30 "$SELECTION" "127.0.0.1:$PORT" "$id" "$RUN_DIR/picks-updp.csv" >/dev/null ||
    die "soak_selection $id"
  log "$name: SELECT updp $id succeeded"
  ctl select "$DATASET" --strategy kmeans --features image --budget "$BUDGET" --seed 11 \
    --out "$RUN_DIR/picks-kmeans.csv" >/dev/null || die "select kmeans"
  log "$name: SELECT kmeans succeeded"
  # (d) nothing left queued, running, interrupted (or failed/cancelled).
  ctl jobs list >"$RUN_DIR/jobs.txt" || die "jobs list"
  ctl dataset show "$DATASET" | sed "s|$WORK|WORK|g" >"$RUN_DIR/dataset.txt" || die "dataset show"
  ctl prompt list >"$RUN_DIR/prompts.txt" || die "prompt list"
  stop_server
  integrity "$data/updp.db" >"$RUN_DIR/integrity.txt"
  # (a) every feature chunk and prompt artifact, by path relative to the data dir.
  # (A missing folder only shortens the list; the counts below notice.)
  (cd "$data" && find features prompts -type f -name '*.safetensors' -print0 2>/dev/null |
    sort -z | xargs -0 -r sha256sum) >"$RUN_DIR/sha256.txt" || true
}

# ---------------------------------------------------------------------------
log "work folder $WORK; SEED=$SEED; kill plan: ${PLAN[*]}"
"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/images" --limit "$N_IMAGES" >/dev/null
log "inputs: tiny random BLIP-2, $N_IMAGES Fashion-MNIST PNGs"

run_pipeline reference 0
log "reference run done"
run_pipeline soak 1
log "soak run done: $KILLS kills ($INTERRUPTS interrupted a job), $MISSED missed"

# ---------------------------------------------------------------------------
FAILS=0
result() {  # result NAME OK(0|1) DETAIL
  if [ "$2" = 1 ]; then printf '  PASS  %-34s %s\n' "$1" "$3"; else
    printf '  FAIL  %-34s %s\n' "$1" "$3"
    FAILS=$((FAILS + 1))
  fi
}
R="$WORK/reference" S="$WORK/soak"
# same_sha PATTERN EXPECTED: both runs have EXPECTED files matching PATTERN (a regex on
# the path) with equal sha256; prints "1 COUNT" or "0 COUNT".
same_sha() {
  grep -E " $1" "$R/sha256.txt" >"$R/sha-part.txt" || true
  grep -E " $1" "$S/sha256.txt" >"$S/sha-part.txt" || true
  local n
  n=$(wc -l <"$R/sha-part.txt")
  if [ "$n" -eq "$2" ] && cmp -s "$R/sha-part.txt" "$S/sha-part.txt"; then echo "1 $n"; else
    echo "0 $n"
  fi
}
bool() { if "$@"; then echo 1; else echo 0; fi; }

echo
echo "== kill -9 soak summary (SEED=$SEED, $N_IMAGES images, chunk $CHUNK) =="
for k in "${KILL_LOG[@]}"; do echo "  $k"; done
chunks=$(((N_IMAGES + CHUNK - 1) / CHUNK))
read -r ok n < <(same_sha "features/$DATASET/image/chunk_" "$chunks")
result "(a) image feature chunks" "$ok" "$n chunk files (expected $chunks)"
read -r ok n < <(same_sha "features/$DATASET/prompt_$PROMPT/chunk_" "$chunks")
result "(a) prompt feature chunks" "$ok" "$n chunk files (expected $chunks)"
# The learning job writes prompts/<name>.<job id>.safetensors (its own file; the store row
# is the commit).
read -r ok n < <(same_sha "prompts/$PROMPT\\.job-[0-9]+\\.safetensors" 1)
result "(a) prompt artifact" "$ok" "prompts/$PROMPT.<job>.safetensors ($n file)"
result "(a) all feature/prompt files" "$(bool cmp -s "$R/sha256.txt" "$S/sha256.txt")" \
  "$(wc -l <"$R/sha256.txt") files"
for strat in updp kmeans; do
  rows=$(($(wc -l <"$R/picks-$strat.csv") - 1))
  ok=$(bool cmp -s "$R/picks-$strat.csv" "$S/picks-$strat.csv")
  [ "$rows" -eq "$BUDGET" ] || ok=0
  result "(b) picks, $strat" "$ok" "$rows picks (budget $BUDGET)"
done
for run in reference soak; do
  ic=$(cat "$WORK/$run/integrity.txt")
  result "(c) integrity_check, $run" "$(bool [ "$ic" = ok ])" "$ic"
done
for run in reference soak; do
  bad=$(awk '$3 != "SUCCEEDED"' "$WORK/$run/jobs.txt")
  total=$(wc -l <"$WORK/$run/jobs.txt")
  ok=$(bool [ -z "$bad" ])
  [ "$total" -eq 5 ] || ok=0  # REGISTER, EMBED, LEARN_PROMPT and two SELECTs
  result "(d) all jobs SUCCEEDED, $run" "$ok" "$total jobs${bad:+; not succeeded: $bad}"
done
ok=$(bool cmp -s "$R/dataset.txt" "$S/dataset.txt")
cmp -s "$R/prompts.txt" "$S/prompts.txt" || ok=0
result "dataset and prompt listings" "$ok" "items/failed/feature sources, prompt list"
result "kills that interrupted a job" "$(bool [ "$INTERRUPTS" -ge "$MIN_KILLS" ])" \
  "$INTERRUPTS (minimum $MIN_KILLS); $KILLS of ${#PLAN[@]} planned kills fired, $MISSED missed"
echo "  $STARTS server starts, wall time $((SECONDS - T0)) s"

if [ "$FAILS" -gt 0 ]; then
  echo
  echo "== differences (< reference, > soak) =="
  diff "$R/sha256.txt" "$S/sha256.txt" || true
  for f in picks-updp.csv picks-kmeans.csv dataset.txt prompts.txt; do
    diff "$R/$f" "$S/$f" || true
  done
  echo "kill9_soak: $FAILS check(s) failed; reproduce with" \
    "SEED=$SEED SOAK_IMAGES=$N_IMAGES KILL_PLAN=\"${PLAN[*]}\"" >&2
  exit 1
fi
echo "kill9_soak: passed"
OK_EXIT=1
