#!/usr/bin/env bash
# updpctl report against a real server, opened in a real headless browser (Debian's
# chromium): the page must run its own check without a script error, every thumbnail
# must decode, a damaged image must show as a placeholder, and names with HTML
# characters must stay text. Saves a screenshot (copied to $UPDP_REPORT_SCREENSHOT when
# set, e.g. docs/report.png).
# Usage: report_cli.sh BUILD_DIR     Needs: dataset-fashion-mnist, chromium.
set -euo pipefail
BUILD="$(cd "${1:?usage: report_cli.sh BUILD_DIR}" && pwd)"
TAG=report_cli
# shellcheck source=tests/cli/cli_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
CHROMIUM=${CHROMIUM:-chromium}
command -v "$CHROMIUM" >/dev/null || die "chromium is not installed (scripts/setup.sh installs it)"

# browse PAGE OUT: the page's DOM after its scripts ran, into OUT.
browse() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$WORK/chromium" --virtual-time-budget=5000 --dump-dom "file://$1" \
    >"$2" 2>>"$WORK/chromium.log" || die "chromium failed on $1: $(tail -5 "$WORK/chromium.log")"
}
# body_attr DOM NAME: the value of <body NAME="...">.
body_attr() {
  python3 - "$1" "$2" <<'PY'
import re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
body = re.search(r"<body([^>]*)>", dom)
m = body and re.search(r'\s%s="([^"]*)"' % re.escape(sys.argv[2]), body.group(1))
print(m.group(1) if m else "")
PY
}
# check_page PAGE THUMBS PLACEHOLDERS: rendered without errors, THUMBS thumbnails decoded.
check_page() {
  browse "$1" "$1.dom"
  [ "$(body_attr "$1.dom" data-checked)" = 1 ] || die "$1: the page's check did not run"
  [ "$(body_attr "$1.dom" data-errors)" = 0 ] ||
    die "$1: script errors: $(python3 -c 'import re,sys; print(re.search(r"<pre id=\"page-errors\">(.*?)</pre>", open(sys.argv[1]).read(), re.S).group(1))' "$1.dom")"
  [ "$(body_attr "$1.dom" data-thumbs-expected)" = "$2" ] ||
    die "$1: $(body_attr "$1.dom" data-thumbs-expected) thumbnails in the page, expected $2"
  [ "$(body_attr "$1.dom" data-thumbs-ok)" = "$2" ] ||
    die "$1: $(body_attr "$1.dom" data-thumbs-ok) of $2 thumbnails decoded"
  [ "$(grep -c 'class="ph failed"' "$1.dom" || true)" = "$3" ] || die "$1: placeholders"
}

"$BUILD/updp-make-test-model" --out "$WORK/model" --preset tiny --seed 1 >/dev/null
"$BUILD/updp-fmnist" --out "$WORK/root/images" --limit 200 >/dev/null
rm -f "$WORK/root/images/labels.txt" "$WORK/root/images/labels.npy"
odd="$WORK/root/images/<b>odd & \"quoted\" 'name'.png"
cp "$WORK/root/images/00001.png" "$odd"
start_server --model_dir "$WORK/model"
ctl dataset register fm --images "$WORK/root/images" >/dev/null 2>&1 || die "register"
ctl embed fm --wait >/dev/null 2>&1 || die "embed"
cd "$WORK"
ctl select fm --strategy kmeans --budget 20 --seed 3 --out kmeans.csv >/dev/null 2>&1 || die "select"
job=$(ctl jobs list --dataset fm --state succeeded | awk '$2 == "SELECT" {print $1; exit}')
[ -n "$job" ] || die "no SELECT job"

ctl report "$job" --out picks.html 2>report.err || die "report: $(cat report.err)"
grep -q "report of 20 picks" report.err || die "summary: $(cat report.err)"
grep -q '^<!DOCTYPE html>' picks.html || die "not HTML"
# Self-contained: no reference outside the page.
if grep -Eq '(src|href)="(https?:|//|/)' picks.html; then die "external reference"; fi
check_page "$WORK/picks.html" 20 0
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$WORK/chromium" --virtual-time-budget=5000 --hide-scrollbars \
  --window-size=1200,1600 --screenshot="$WORK/report.png" "file://$WORK/picks.html" \
  >>"$WORK/chromium.log" 2>&1 || die "screenshot: $(tail -5 "$WORK/chromium.log")"
python3 - report.png <<'PY' || die "the screenshot is not a 1200x1600 PNG with content"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000, len(data)
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1200, 1600), (w, h)
PY
[ -z "${UPDP_REPORT_SCREENSHOT:-}" ] || cp report.png "$UPDP_REPORT_SCREENSHOT"

# --out -: the page on stdout, nothing else there.
ctl report "$job" --out - --thumbnail-size 64 >stdout.html 2>/dev/null || die "report --out -"
grep -q '^<!DOCTYPE html>' stdout.html && tail -1 stdout.html | grep -q '</html>$' ||
  die "stdout is not just the page"

# A pick's image damaged after the selection: a placeholder, not a failure.
first=$(python3 -c 'import csv, sys; print(list(csv.DictReader(open(sys.argv[1])))[0]["path"])' kmeans.csv)
printf 'garbage' >"$first"
ctl report "$job" --out damaged.html 2>damaged.err || die "report (damaged): $(cat damaged.err)"
grep -q "(1 could not be decoded)" damaged.err || die "damaged summary: $(cat damaged.err)"
check_page "$WORK/damaged.html" 19 1

# Every item (the odd file name among them): its name stays text.
ctl select fm --strategy random --budget 500 --out all.csv >/dev/null 2>&1 || die "select all"
all=$(ctl jobs list --dataset fm --state succeeded | awk '$2 == "SELECT" {print $1}' |
  grep -v "^$job\$" | head -1)
ctl report "$all" --out all.html 2>all.err || die "report (all): $(cat all.err)"
if grep -q '<b>odd' all.html; then die "a file name was not escaped"; fi
grep -q '&lt;b&gt;odd &amp; &quot;quoted&quot; &#39;name&#39;' all.html || die "odd name missing"
check_page "$WORK/all.html" 200 1

# Errors name the job; nothing on stdout.
if ctl report no-such-job --out - >bad.out 2>bad.err; then die "unknown job accepted"; fi
grep -q "NOT_FOUND.*no-such-job" bad.err || die "error: $(cat bad.err)"
[ ! -s bad.out ] || die "stdout not empty on error"
echo "report_cli: OK"
