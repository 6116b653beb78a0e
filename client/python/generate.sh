#!/usr/bin/env bash
# Generates the updp Python package's proto modules (updp/v1/updp_pb2.py and
# updp_pb2_grpc.py) without CMake, with Debian's protoc and grpc_python_plugin
# (apt-get install protobuf-compiler protobuf-compiler-grpc).
# Usage: client/python/generate.sh [OUT]
#   no OUT: in place, into client/python/updp/v1 (then PYTHONPATH=client/python);
#   OUT: a copy of the whole package in OUT/updp (then PYTHONPATH=OUT).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-$here}"
command -v protoc >/dev/null || { echo "generate.sh: needs protoc (protobuf-compiler)" >&2; exit 1; }
plugin="$(command -v grpc_python_plugin)" ||
  { echo "generate.sh: needs grpc_python_plugin (protobuf-compiler-grpc)" >&2; exit 1; }
mkdir -p "$out/updp/v1"
out="$(cd "$out" && pwd)"
[ "$out" = "$here" ] || cp "$here"/updp/*.py "$out/updp/"
# proto/ is the root: the generated code imports updp.v1.updp_pb2, inside this package.
protoc --proto_path="$root/proto" --python_out="$out" --grpc_out="$out" \
  --plugin=protoc-gen-grpc="$plugin" "$root/proto/updp/v1/updp.proto"
touch "$out/updp/v1/__init__.py"
echo "generate.sh: $out/updp (PYTHONPATH=$out)"
