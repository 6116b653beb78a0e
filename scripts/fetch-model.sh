#!/usr/bin/env bash
# Downloads Salesforce/blip2-itm-vit-g (Blip2ForImageTextRetrieval, 4.7 GB float32
# safetensors) from the Hugging Face hub into models/blip2-itm-vit-g, for machines
# with internet access. (Our build and CI machines have none: there the tests use
# random checkpoints of the same layout made by updp-make-test-model.)
#
#   scripts/fetch-model.sh [DEST]           # default: models/blip2-itm-vit-g
#   HF_TOKEN=... scripts/fetch-model.sh     # if your network needs authentication
set -euo pipefail
DEST="${1:-$(dirname "$0")/../models/blip2-itm-vit-g}"
REPO="Salesforce/blip2-itm-vit-g"
BASE="https://huggingface.co/${REPO}/resolve/main"
mkdir -p "$DEST"
auth=()
[ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer ${HF_TOKEN}")
for f in config.json vocab.txt model.safetensors; do
  if [ -s "$DEST/$f" ]; then
    echo "have $DEST/$f"
    continue
  fi
  echo "downloading $f"
  curl -fL --retry 3 -C - "${auth[@]}" -o "$DEST/$f.part" "$BASE/$f"
  mv "$DEST/$f.part" "$DEST/$f"
done
# The Hugging Face repo keeps the tokenizer vocab at the top level; verify the layout
# loads and matches the architecture before a server uses it.
if [ -x "$(dirname "$0")/../build/bench/updp-bench-encoder" ]; then
  echo "checking the checkpoint loads..."
  "$(dirname "$0")/../build/bench/updp-bench-encoder" --model_dir "$DEST" --batch_size 1 --batches 1 >/dev/null \
    && echo "ok: $DEST"
fi
