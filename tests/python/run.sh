#!/usr/bin/env bash
# The Python client (client/python/updp) against a real updp-server on a free loopback
# port, with the tiny BLIP-2 checkpoint so that EMBED runs: tests/python/test_client.py
# (stdlib unittest) under Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf,
# python3-numpy; python3-pandas optional), the package taken from a `cmake --install`
# of the build's python component, as a user would get it.
# Usage: run.sh BUILD_DIR        Needs: dataset-fashion-mnist.
set -euo pipefail
BUILD="$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAG=python
# shellcheck source=tests/cli/cli_lib.sh
source "$SRC/tests/cli/cli_lib.sh"
PY=/usr/bin/python3

cmake --install "$BUILD" --component python --prefix "$WORK/prefix" >/dev/null ||
  die "cmake --install --component python"
export PYTHONPATH="$WORK/prefix/lib/python3/dist-packages"
"$PY" -c "import updp, updp.v1.updp_pb2_grpc" || die "the installed package does not import"

mkdir -p "$WORK/root"
"$BUILD/updp-fmnist" --out "$WORK/root/images" --limit 40 >/dev/null
rm -f "$WORK/root/images/labels.txt" "$WORK/root/images/labels.npy"
cp "$WORK/root/images/00001.png" "$WORK/root/images/with space & more.png"
start_server --model_dir "$SRC/tests/testdata/blip2-tiny-a"

export UPDP_ADDR="127.0.0.1:$PORT" UPDP_WORK="$WORK" UPDP_CTL="$BUILD/updpctl"
export UPDP_EXAMPLE="$SRC/examples/labeling_loop.py"
cd "$SRC/tests/python"
if ! "$PY" -m unittest -v test_client 2>&1; then
  echo "--- server log (tail)" >&2
  tail -20 "$WORK/server.log" >&2
  die "test_client failed"
fi
