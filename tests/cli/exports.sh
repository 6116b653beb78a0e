#!/usr/bin/env bash
# Selection exports for labeling tools, from a real server's selection of real images,
# each checked against its tool's documented import format:
#   Label Studio: a JSON list of tasks; a task is an object with a "data" object (the
#     labeling config's variables, string values: the image URL or local-files path)
#     and optional "meta", "annotations", "predictions", "id";
#     local files: /data/local-files/?d=<path under LOCAL_FILES_DOCUMENT_ROOT>, encoded.
#   CVAT: a file list for task creation: one image reference per line, no header.
#   FiftyOne CSVDataset: a CSV with a header and a "filepath" column (media_field),
#     other columns as fields.
# then the loop back: a Label Studio export of some tasks and a list of image paths as
# --labeled keep those images out of the next picks; and the refusal of a path outside
# --relative-to (no file written).
# Usage: exports.sh BUILD_DIR        Needs: dataset-fashion-mnist.
set -euo pipefail
BUILD="$(cd "${1:?usage: exports.sh BUILD_DIR}" && pwd)"
TAG=exports
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/root/images" --limit 40 >/dev/null
cp "$WORK/root/images/00001.png" "$WORK/root/images/with space & more.png"
start_server --model_dir "$WORK/model"
ctl dataset register imgs --images "$WORK/root/images" >/dev/null 2>&1 || die "register"
ctl embed imgs --wait >/dev/null 2>&1 || die "embed"
# Every item, so that the odd file name is among the picks.
ctl select imgs --strategy random --budget 41 --out "$WORK/all.csv" >/dev/null 2>&1 || die "select"
job=$(ctl jobs list --dataset imgs --state succeeded | awk '$2 == "SELECT" {print $1; exit}')
[ -n "$job" ] || die "no SELECT job"
cd "$WORK"

ctl selection get "$job" --format labelstudio --prefix '/data/local-files/?d=' \
  --relative-to "$WORK" --out ls-local.json 2>/dev/null || die "labelstudio (local files)"
ctl selection get "$job" --format labelstudio --prefix 'http://files.internal/pool/' \
  --relative-to "$WORK/root" --data-key img >ls-http.json || die "labelstudio (http)"
ctl selection get "$job" --format cvat --prefix /share/ --relative-to "$WORK/root" \
  >cvat.txt || die "cvat"
ctl selection get "$job" --format fiftyone >fiftyone.csv || die "fiftyone"

python3 - "$WORK" <<'PY' || die "a format check failed"
import csv, json, os, sys
from urllib.parse import unquote, urlparse, parse_qs
work = sys.argv[1]
picks = list(csv.DictReader(open(os.path.join(work, "all.csv"))))
assert len(picks) == 41, len(picks)
paths = {p["item_id"]: p["path"] for p in picks}

TASK_KEYS = {"data", "meta", "annotations", "predictions", "id"}
def check_ls(name, key, to_path):
    tasks = json.load(open(os.path.join(work, name)))
    assert isinstance(tasks, list) and len(tasks) == 41, name
    for t in tasks:
        assert isinstance(t, dict) and set(t) <= TASK_KEYS and "data" in t, t
        assert isinstance(t["data"], dict) and all(isinstance(v, str) for v in t["data"].values()), t
        assert isinstance(t["meta"], dict), t
        assert {"rank", "cluster", "score"} <= set(t["meta"]), t["meta"]
        item = t["data"]["item_id"]
        assert to_path(t["data"][key]) == paths[item], (t["data"][key], paths[item])
        assert os.path.isfile(to_path(t["data"][key]))
    ranks = sorted(t["meta"]["rank"] for t in tasks)
    assert ranks == sorted(int(p["rank"]) for p in picks), ranks

def local_files(ref):  # Label Studio: /data/local-files/?d=<relative to the document root>
    u = urlparse(ref)
    assert u.path == "/data/local-files/", ref
    return os.path.join(work, parse_qs(u.query)["d"][0])
check_ls("ls-local.json", "image", local_files)
def http(ref):
    assert ref.startswith("http://files.internal/pool/"), ref
    assert " " not in ref and "&" not in ref, ref  # encoded
    return os.path.join(work, "root", unquote(ref[len("http://files.internal/pool/"):]))
check_ls("ls-http.json", "img", http)

lines = open(os.path.join(work, "cvat.txt")).read().splitlines()
assert len(lines) == 41 and len(set(lines)) == 41, len(lines)
for ln in lines:
    assert ln.startswith("/share/images/") and ln.strip() == ln, ln
    assert os.path.isfile(os.path.join(work, "root", ln[len("/share/"):])), ln

rows = list(csv.DictReader(open(os.path.join(work, "fiftyone.csv"))))
assert len(rows) == 41 and "filepath" in rows[0], rows[:1]
for r in rows:
    assert os.path.isabs(r["filepath"]) and os.path.isfile(r["filepath"]), r
    int(r["rank"]); int(r["cluster"]); float(r["score"])
    assert r["tags"].split(",") == ["updp", "random"], r["tags"]
print("exports: Label Studio (local files, http), CVAT list, FiftyOne CSV: 41 tasks each, all resolve")
PY

# Labeled, then pick again: a Label Studio export of 5 of these tasks, and 3 image
# paths, keep those 8 images out of a selection of everything else.
python3 - <<'PY'
import json
tasks = json.load(open("ls-http.json"))
json.dump(tasks[:5], open("ls-labeled.json", "w"))
open("labeled-ids.txt", "w").write("".join(t["data"]["item_id"] + "\n" for t in tasks[:5]))
PY
grep -v "^rank" all.csv | cut -d, -f3 | grep "^/" | grep -v -F -f labeled-ids.txt | head -3 >labeled-paths.txt
[ "$(wc -l <labeled-paths.txt)" = 3 ] || die "could not pick 3 paths"
ctl select imgs --strategy random --budget 100 --labeled ls-labeled.json --out again1.csv \
  >/dev/null 2>&1 || die "select --labeled (Label Studio tasks)"
ctl select imgs --strategy random --budget 100 --labeled labeled-paths.txt --out again2.csv \
  >/dev/null 2>&1 || die "select --labeled (paths)"
[ "$(tail -n +2 again1.csv | wc -l)" = 36 ] || die "Label Studio labeled: $(tail -n +2 again1.csv | wc -l) picks, not 41 - 5"
[ "$(tail -n +2 again2.csv | wc -l)" = 38 ] || die "paths labeled: $(tail -n +2 again2.csv | wc -l) picks, not 41 - 3"
if cut -d, -f2 again1.csv | grep -qx -F -f labeled-ids.txt; then die "a Label Studio-labeled image was picked"; fi
if cut -d, -f3 again2.csv | grep -qx -F -f labeled-paths.txt; then die "a labeled path was picked"; fi

if ctl selection get "$job" --format cvat --relative-to /elsewhere --out bad.txt 2>bad.err; then
  die "a path outside --relative-to was exported"
fi
grep -q "INVALID_ARGUMENT: --relative-to: the path of item" bad.err || die "relative-to: $(cat bad.err)"
[ ! -e bad.txt ] || die "a refused export left bad.txt"
echo "exports: all checks passed"
