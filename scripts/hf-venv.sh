#!/usr/bin/env bash
# Creates (once) the Python environment of the reference implementation used by the
# side-by-side benchmarks (bench/hf_compare.py) and the GPU check's dry run: PyPI's
# torch (the same CUDA 13 wheel scripts/cuda-libtorch.sh caches) and transformers.
# Cached outside the clone in $UPDP_CACHE (default ~/.cache/updp). Prints the python.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${UPDP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/updp}"
TORCH_VERSION="${UPDP_TORCH_VERSION:-2.11.0}"
TRANSFORMERS_VERSION="${UPDP_TRANSFORMERS_VERSION:-5.17.0}"
VENV="$CACHE/venv-torch$TORCH_VERSION-transformers$TRANSFORMERS_VERSION"
if [ ! -f "$VENV/.complete" ]; then
  TORCH="$(scripts/cuda-libtorch.sh)"   # downloads the wheels and the extra CUDA libraries
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  # The CUDA runtime comes from the CUDA toolkit package and the libraries unpacked by
  # cuda-libtorch.sh, not from ~3 GB of nvidia-* wheels: install torch without them.
  "${PIP[@]}" --no-deps "$CACHE"/wheels/torch-"$TORCH_VERSION"-*.whl >&2
  "${PIP[@]}" filelock typing-extensions sympy networkx jinja2 fsspec numpy pillow safetensors \
    "transformers==$TRANSFORMERS_VERSION" >&2
  SITE_TORCH="$("$VENV/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')/torch/lib"
  for f in "$TORCH"/lib/libcufile* "$TORCH"/lib/libcusparseLt* "$TORCH"/lib/libnvshmem* "$TORCH"/lib/nvshmem*; do
    ln -sf "$f" "$SITE_TORCH/"
  done
  "$VENV/bin/python" -c 'import torch, transformers' >&2
  touch "$VENV/.complete"
fi
echo "$VENV/bin/python"
