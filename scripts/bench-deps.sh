#!/usr/bin/env bash
# Installs what the benchmarks compare against: Debian's python3-torch (the
# PyTorch eager baseline; on Debian 12 it shares the libtorch prism links)
# for /usr/bin/python3, and the npm package tokenizers (Hugging Face's Rust
# tokenizers through Node). It does nothing when both are present.
set -euo pipefail
py="${PYTHON:-/usr/bin/python3}"
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if ! "$py" -c 'import torch' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    # Debian's CUDA libtorch (contrib) has its own python3-torch-cuda; the
    # CPU python3-torch would replace it. --no-remove makes apt refuse any
    # such swap instead of doing it.
    pkg=python3-torch
    if installed libtorch-cuda-dev || installed libtorch-cuda-2.6 || installed python3-torch-cuda; then
      pkg=python3-torch-cuda
    fi
    echo "bench: installing $pkg (the PyTorch baseline)"
    $sudo apt-get install -y --no-remove "$pkg" >/dev/null || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-remove "$pkg" >/dev/null; } ||
      { echo "bench: apt-get cannot install $pkg without removing packages; install PyTorch for $py by hand, or set PYTHON" >&2; exit 1; }
  else
    echo "bench: $py has no torch; install PyTorch for it or set PYTHON" >&2
    exit 1
  fi
fi
if [ "${1:-}" = "--with-npm" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "bench: the tokenizer benchmark needs node and npm (apt-get install nodejs npm)" >&2
    exit 1
  fi
  (cd bench/tokenizer && npm install --no-audit --no-fund --silent)
fi
