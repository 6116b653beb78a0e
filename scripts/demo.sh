#!/usr/bin/env bash
# End to end on a small real sample: installs and builds, then starts updp-server,
# registers 500 Fashion-MNIST images (Debian's dataset-fashion-mnist), embeds them with
# BLIP-2, learns a UP-DP prompt, selects 20 items and prints the picks.
#
# The model is $UPDP_MODEL_DIR if set (e.g. the real Salesforce/blip2-itm-vit-g from
# scripts/fetch-model.sh), else a randomly initialised "small" checkpoint in the same
# Hugging Face layout: the full pipeline runs, but random weights carry no meaning.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

WORK="${UPDP_DEMO_DIR:-$PWD/demo}"
PORT="${UPDP_DEMO_PORT:-50151}"
METRICS_PORT="${UPDP_DEMO_METRICS_PORT:-9564}"
N="${UPDP_DEMO_IMAGES:-500}"
mkdir -p "$WORK"
MODEL="${UPDP_MODEL_DIR:-$WORK/model-small}"
if [ -z "${UPDP_MODEL_DIR:-}" ]; then
  echo "demo: no UPDP_MODEL_DIR: using a randomly initialised BLIP-2 checkpoint (same layout"
  echo "demo: and code path as the real one): the run is real, its picks are meaningless."
fi
if [ ! -f "$MODEL/model.safetensors" ]; then
  build/updp-make-test-model --out "$MODEL" --preset small --seed 1
fi
[ -f "$WORK/images/labels.txt" ] || build/updp-fmnist --out "$WORK/images" --split train --limit "$N"

rm -rf "$WORK/data"
build/updp-server --port "$PORT" --metrics_port "$METRICS_PORT" --data_dir "$WORK/data" \
  --model_dir "$MODEL" --allowed_roots "$WORK" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
export UPDP_ADDR="localhost:$PORT"
CTL=build/updpctl
for _ in $(seq 1 100); do $CTL dataset list >/dev/null 2>&1 && break; sleep 0.2; done

set -x
$CTL dataset register fmnist --images "$WORK/images"
$CTL embed fmnist --wait
$CTL prompt learn fmnist --name fmnist-prompt --budget 20 --epochs 5 --batch-size 128 --wait
$CTL select fmnist --prompt fmnist-prompt --budget 20 --out "$WORK/picks.csv"
$CTL select fmnist --strategy kmeans --budget 20 --out "$WORK/picks-kmeans.csv"
$CTL select fmnist --strategy random --budget 20 --seed 1 --out "$WORK/picks-random.csv"
set +x
echo "== UP-DP picks ($WORK/picks.csv) =="
cat "$WORK/picks.csv"
# How many of Fashion-MNIST's 10 classes each pick covers (labels.txt is in file-name
# order: NNNNN.png is line NNNNN + 1); the labels never reach the server.
classes() {
  awk -F, 'NR == FNR { label[FNR - 1] = $1; next }
           FNR > 1 { sub(/\.png$/, "", $2); seen[label[$2 + 0]] = 1 }
           END { n = 0; for (c in seen) n++; print n }' "$WORK/images/labels.txt" "$1"
}
echo "== classes covered by 20 picks (of 10): updp $(classes "$WORK/picks.csv"), kmeans" \
  "$(classes "$WORK/picks-kmeans.csv"), random $(classes "$WORK/picks-random.csv") =="
if [ -z "${UPDP_MODEL_DIR:-}" ]; then
  echo "!! These picks come from a RANDOMLY INITIALISED checkpoint (no UPDP_MODEL_DIR): they"
  echo "!! exercise the pipeline but mean nothing; compare strategies with the real BLIP-2"
  echo "!! (scripts/fetch-model.sh, then UPDP_MODEL_DIR=... scripts/demo.sh)."
fi
echo "== metrics sample (http://localhost:$METRICS_PORT/metrics) =="
curl -s "localhost:$METRICS_PORT/metrics" | grep -E '^updp_(jobs_finished_total|images_embedded_total)' || true
