#!/usr/bin/env bash
# updpctl's near-duplicate commands against a real server: `dataset duplicates NAME
# --threshold T` lists the groups (text, csv, json; representative first, summary on
# stderr, nothing else on stdout), and `select --dedup T` never picks two of a group.
# Usage: duplicates_cli.sh BUILD_DIR
set -euo pipefail
BUILD="$(cd "${1:?usage: duplicates_cli.sh BUILD_DIR}" && pwd)"
TAG=duplicates_cli
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"

# 100 random vectors of dimension 16 (ids v000..v099), then d000..d009: copies of
# v000..v009 with a little noise (cosine > 0.99), as a float32 .npy.
python3 - "$WORK" <<'PY'
import random, struct, sys
d = sys.argv[1]
n, dups, dim = 100, 10, 16
rng = random.Random(7)
rows = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(n)]
rows += [[v + rng.gauss(0, 0.02) for v in rows[i]] for i in range(dups)]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (len(rows), dim)
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open(d + "/emb.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for r in rows:
        f.write(struct.pack("<%df" % dim, *r))
with open(d + "/ids.txt", "w") as f:
    f.write("".join("v%03d\n" % i for i in range(n)) + "".join("d%03d\n" % i for i in range(dups)))
PY
start_server
ctl dataset register vecs --embeddings "$WORK/emb.npy" --ids "$WORK/ids.txt" >/dev/null 2>&1 ||
  die "register"
cd "$WORK"

ctl dataset duplicates vecs --threshold 0.97 >groups.txt 2>dups.err || die "duplicates: $(cat dups.err)"
grep -q "10 group(s) of near-duplicates, 20 items" dups.err || die "summary: $(cat dups.err)"
[ "$(grep -c '^group ' groups.txt)" = 10 ] || die "text: $(cat groups.txt)"
grep -q '^group 0 (2 items)$' groups.txt || die "text: $(head -3 groups.txt)"
# The representative (*) is the original, its copy follows.
[ "$(sed -n 2p groups.txt | awk '{print $1, $3}')" = "* v000" ] || die "text: $(head -3 groups.txt)"
[ "$(sed -n 3p groups.txt | awk '{print $2}')" = "d000" ] || die "text: $(head -3 groups.txt)"

ctl dataset duplicates vecs --threshold 0.97 --format csv --out groups.csv 2>/dev/null ||
  die "duplicates --format csv"
[ "$(head -1 groups.csv)" = "group,representative,item_id,path,similarity" ] || die "csv header"
[ "$(wc -l <groups.csv)" = 21 ] || die "csv rows: $(wc -l <groups.csv)"
awk -F, 'NR > 1 && $2 == 1 && $3 !~ /^v/ {exit 1} NR > 1 && $2 == 0 && ($3 !~ /^d/ || $5 < 0.97) {exit 1}' \
  groups.csv || die "csv content: $(head -5 groups.csv)"

ctl dataset duplicates vecs --threshold 0.97 --format json >groups.json 2>/dev/null ||
  die "duplicates --format json"
python3 - groups.json <<'PY' || die "json content"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["dataset"] == "vecs" and doc["threshold"] == 0.97, doc
assert len(doc["groups"]) == 10
for g in doc["groups"]:
    ids = [i["item_id"] for i in g["items"]]
    assert ids == ["v%03d" % g["group"], "d%03d" % g["group"]], ids
    assert g["items"][0]["representative"] and not g["items"][1]["representative"]
PY

# Bad threshold: refused, naming the field, nothing on stdout.
if ctl dataset duplicates vecs --threshold 1.5 >bad.out 2>bad.err; then die "threshold 1.5 accepted"; fi
grep -q "threshold" bad.err || die "error does not name the threshold: $(cat bad.err)"
[ ! -s bad.out ] || die "stdout not empty on error"

# select --dedup: with a budget of everything, one of each pair at most, and never a
# copy of a labeled item.
printf 'v001\n' >labeled.txt
ctl select vecs --strategy random --budget 200 --dedup 0.97 --labeled labeled.txt --out - \
  >picks.csv 2>select.err || die "select --dedup: $(cat select.err)"
[ "$(tail -n +2 picks.csv | wc -l)" = $((110 - 1 - 10)) ] || die "picks: $(wc -l <picks.csv)"
if grep -q ',d0' picks.csv; then die "a copy was picked: $(grep ',d0' picks.csv | head -2)"; fi
if grep -q ',v001,' picks.csv; then die "the labeled item was picked"; fi
echo "duplicates_cli: OK"
