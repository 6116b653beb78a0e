#!/usr/bin/env bash
# updpctl's selection output against a real server: `select --out -` puts the picks and
# nothing else on stdout (its job line and progress go to stderr; no file named "-"),
# `selection get JOB` writes any finished selection again in csv, json or paths, to
# stdout by default or to --out, `select --wait` keeps its progress off stdout, and
# `--labeled` takes the tool's own picks (CSV, JSON) and warns about (or, strict,
# refuses) ids that are not items.
# Usage: selection_cli.sh BUILD_DIR
set -euo pipefail
BUILD="$(cd "${1:?usage: selection_cli.sh BUILD_DIR}" && pwd)"
TAG=selection_cli
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# 200 random unit vectors of dimension 8 as a float32 .npy, ids v000..v199.
python3 "$(dirname "${BASH_SOURCE[0]}")/make_npy.py" "$WORK" 200 8 5
start_server
ctl dataset register vecs --embeddings "$WORK/emb.npy" --ids "$WORK/ids.txt" >/dev/null 2>&1 ||
  die "register"

cd "$WORK"
ctl select vecs --strategy kmeans --budget 5 --seed 1 --out - >picks.csv 2>select.err ||
  die "select --out -: $(cat select.err)"
[ ! -e "$WORK/-" ] || die "select --out - created a file named '-'"
[ "$(head -1 picks.csv)" = "rank,item_id,path,cluster,score" ] || die "stdout is not the CSV: $(head -3 picks.csv)"
[ "$(wc -l <picks.csv)" = 6 ] || die "stdout has $(wc -l <picks.csv) lines, not a header and 5 picks"
job=$(awk 'NR == 1 {print $1}' select.err)
[[ "$job" == job-* ]] || die "the job line is not on stderr: $(head -2 select.err)"

ctl selection get "$job" >again.csv || die "selection get"
cmp -s picks.csv again.csv || die "selection get differs from select --out -"
ctl selection get "$job" --format json >picks.json || die "selection get --format json"
python3 - picks.json "$job" picks.csv <<'PY' || die "json: $(head -c 300 picks.json)"
import csv, json, sys
j = json.load(open(sys.argv[1]))
assert j["job_id"] == sys.argv[2] and j["dataset"] == "vecs" and j["strategy"] == "kmeans", j
rows = list(csv.DictReader(open(sys.argv[3])))
assert [(str(it["rank"]), it["item_id"]) for it in j["items"]] == \
       [(r["rank"], r["item_id"]) for r in rows], (j["items"], rows)
PY
ctl selection get "$job" --format paths >paths.txt || die "selection get --format paths"
[ "$(cut -d, -f2 picks.csv | tail -n +2)" = "$(cat paths.txt)" ] ||
  die "paths (ids for an embeddings dataset) differ from the CSV's ids"
out=$(ctl selection get "$job" --out saved.json 2>get.err) || die "selection get --out"
[ -z "$out" ] || die "selection get --out wrote to stdout: $out"
python3 -c "import json,sys; json.load(open('saved.json'))" || die "--out saved.json is not JSON"
grep -q "wrote 5 picks to saved.json" get.err || die "no confirmation on stderr"
if ctl selection get job-nope >/dev/null 2>nope.err; then die "an unknown job succeeded"; fi
grep -q "NOT_FOUND" nope.err || die "unknown job: $(cat nope.err)"
if ctl selection get "$job" --format xml >/dev/null 2>fmt.err; then die "--format xml accepted"; fi
grep -q "is not csv, json, paths, labelstudio, cvat or fiftyone" fmt.err || die "bad format: $(cat fmt.err)"

# --labeled: the tool's own picks (CSV and JSON) are kept out of the next picks.
for f in picks.csv picks.json; do
  ctl select vecs --strategy kmeans --budget 5 --seed 1 --labeled "$f" --out - >next.csv 2>next.err ||
    die "select --labeled $f: $(cat next.err)"
  [ "$(wc -l <next.csv)" = 6 ] || die "--labeled $f: $(wc -l <next.csv) lines"
  if grep -qxF -f <(cut -d, -f2 picks.csv | tail -n +2) <(cut -d, -f2 next.csv | tail -n +2); then
    die "--labeled $f: a labeled item was picked again"
  fi
done
# Unknown ids: ignored with a warning (the known one is still excluded) ...
printf 'v000\nghost-1\n\nghost-2\n' >labeled.txt
ctl select vecs --strategy kmeans --budget 199 --seed 1 --labeled labeled.txt --out - \
  >lenient.csv 2>lenient.err || die "lenient --labeled: $(cat lenient.err)"
grep -q "warning: 2 labeled id(s) are not items of 'vecs' and were ignored (first: ghost-1, ghost-2)" \
  lenient.err || die "no warning: $(cat lenient.err)"
[ "$(wc -l <lenient.csv)" = 200 ] || die "lenient: $(wc -l <lenient.csv) lines, not 199 picks"
if cut -d, -f2 lenient.csv | grep -qx v000; then die "lenient: labeled v000 was picked"; fi
# ... or an error with --strict-labeled.
if ctl select vecs --strategy kmeans --budget 5 --labeled labeled.txt --strict-labeled \
  --out - >strict.csv 2>strict.err; then
  die "--strict-labeled accepted an unknown id"
fi
grep -q "INVALID_ARGUMENT: labeled_ids: unknown item id 'ghost-1'" strict.err || die "strict: $(cat strict.err)"
echo '{"not": "picks"}' >bad.json
if ctl select vecs --strategy kmeans --budget 5 --labeled bad.json >/dev/null 2>bad.err; then
  die "a JSON object without items was accepted as --labeled"
fi
grep -q 'bad.json: a JSON object without an "items" list' bad.err || die "bad json: $(cat bad.err)"

ctl select vecs --strategy random --budget 3 --wait >wait.out 2>wait.err || die "select --wait"
[ "$(wc -l <wait.out)" = 1 ] || die "select --wait: stdout has more than the job line: $(cat wait.out)"
grep -q "SUCCEEDED" wait.err || die "select --wait: no progress on stderr"
echo "selection_cli: all checks passed"
