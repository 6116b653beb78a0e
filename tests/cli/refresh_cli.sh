#!/usr/bin/env bash
# Growing pools with updpctl against a real server: `dataset refresh NAME` after new
# files arrive (and one is removed) appends the new items and marks the gone one
# missing; `embed` then embeds only the new items; `select --only-new` picks only
# among them; a manifest dataset grows the same way.
# Usage: refresh_cli.sh BUILD_DIR        Needs: dataset-fashion-mnist.
set -euo pipefail
BUILD="$(cd "${1:?usage: refresh_cli.sh BUILD_DIR}" && pwd)"
TAG=refresh_cli
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/all" --limit 60 >/dev/null
mkdir -p "$WORK/pool"
for i in $(seq -f %05g 0 39); do cp "$WORK/all/$i.png" "$WORK/pool/"; done
start_server --model_dir "$WORK/model"
cd "$WORK"
ctl dataset register pool --images "$WORK/pool" >/dev/null 2>&1 || die "register"
ctl embed pool --wait >/dev/null 2>&1 || die "embed"

# Nothing new yet: --only-new is refused, naming the flag's field.
if ctl select pool --budget 5 --strategy random --only-new --wait >/dev/null 2>only.err; then
  die "--only-new before any refresh succeeded"
fi
grep -q "only_new" only.err || die "--only-new error: $(cat only.err)"

# 20 new files, one removed.
for i in $(seq -f %05g 40 59); do cp "$WORK/all/$i.png" "$WORK/pool/"; done
rm "$WORK/pool/00003.png"
ctl dataset refresh pool >show.txt 2>refresh.err || die "refresh: $(cat refresh.err)"
grep -q "20 new item(s), 1 newly missing" refresh.err || die "refresh summary: $(cat refresh.err)"
grep -q "items: 60 .*missing: 1  generation: 1" show.txt || die "dataset after refresh: $(cat show.txt)"

# The item list keeps the old ids at their indexes and appends the new ones.
ctl dataset items pool --out items.jsonl 2>/dev/null || die "items"
python3 - items.jsonl <<'PY' || die "items after refresh"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])][1:]
ids = [l["id"] for l in lines]
assert ids[:40] == ["%05d.png" % i for i in range(40)], ids[:5]
assert ids[40:] == ["%05d.png" % i for i in range(40, 60)], ids[40:45]
PY

ctl select pool --budget 5 --strategy kmeans --wait >/dev/null 2>sel.err &&
  die "select before embedding the new items succeeded"
grep -q "incomplete" sel.err || die "select before embed: $(cat sel.err)"
ctl embed pool --wait >embed.txt 2>&1 || die "embed after refresh: $(cat embed.txt)"
job=$(ctl jobs list --dataset pool --state succeeded | awk '$2 == "EMBED" {print $1; exit}')
ctl jobs show "$job" >embed_job.txt || die "jobs show"
grep -q '"embedded_this_run":20' embed_job.txt || die "embed did not embed only the new: $(cat embed_job.txt)"

ctl select pool --budget 8 --strategy kmeans --only-new --out new.csv 2>/dev/null || die "select --only-new"
python3 - new.csv <<'PY' || die "only-new picks: $(cat new.csv)"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 8, rows
assert all(int(r["item_id"][:5]) >= 40 for r in rows), rows
PY
# Every item but the missing one can be picked.
ctl select pool --budget 60 --strategy random --out all.csv 2>/dev/null || die "select all"
[ "$(($(wc -l <all.csv) - 1))" = 59 ] || die "picks of all: $(wc -l <all.csv)"
grep -q "00003.png" all.csv && die "the missing item was picked"

# A manifest dataset grows the same way.
printf '%s\n' "$WORK/all/00000.png" "$WORK/all/00001.png" >list.txt
ctl dataset register man --manifest "$WORK/list.txt" >/dev/null 2>&1 || die "register manifest"
echo "$WORK/all/00002.png" >>list.txt
ctl dataset refresh man >man.txt 2>man.err || die "refresh manifest: $(cat man.err)"
grep -q "1 new item(s)" man.err || die "manifest refresh: $(cat man.err)"
grep -q "items: 3" man.txt || die "manifest dataset: $(cat man.txt)"
echo "$TAG: OK"
