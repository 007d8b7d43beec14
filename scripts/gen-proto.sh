#!/usr/bin/env bash
# Generate the Python code of proto/sheep/runtime/v1/runtime.proto into its two homes:
#   clients/python/sheep/runtime/v1/   (package sheep.runtime.v1, for clients)
#   sheep_runtime/api/v1/              (package sheep_runtime.api.v1, for the daemon)
# Usage: gen-proto.sh PYTHON [--check]   (--check: fail if a committed file is stale)
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1 mode=${2:-write}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m grpc_tools.protoc -I proto --python_out="$tmp" --pyi_out="$tmp" \
  --grpc_python_out="$tmp" proto/sheep/runtime/v1/runtime.proto
mkdir -p "$tmp/daemon"
for f in runtime_pb2.py runtime_pb2.pyi runtime_pb2_grpc.py; do
  sed 's/^from sheep\.runtime\.v1 import /from sheep_runtime.api.v1 import /' \
    "$tmp/sheep/runtime/v1/$f" >"$tmp/daemon/$f"
done
stale=0
for f in runtime_pb2.py runtime_pb2.pyi runtime_pb2_grpc.py; do
  for pair in "sheep/runtime/v1:clients/python/sheep/runtime/v1" "daemon:sheep_runtime/api/v1"; do
    src=$tmp/${pair%%:*}/$f dst=${pair#*:}/$f
    if [ "$mode" = --check ]; then
      cmp -s "$src" "$dst" || { echo "generated $dst is stale: run 'make proto'"; stale=1; }
    else
      cp "$src" "$dst"
    fi
  done
done
if [ "$stale" = 0 ]; then
  [ "$mode" = --check ] && echo "generated code is fresh" || echo "generated code written"
fi
exit "$stale"
