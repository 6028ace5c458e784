#!/usr/bin/env bash
# Installs what prism's native build needs on Debian/Ubuntu when no LIBTORCH
# is given: Debian's libtorch and OpenBLAS (libtorch on Debian's reference
# BLAS runs a 1024^3 fp32 matmul at 2.8 GFLOP/s; on OpenBLAS at ~93 per core)
# and Gloo's headers, which libtorch's c10d headers include (multi-process
# training; Debian's libtorch-dev does not pull them in).
# It does nothing when everything is installed, and nothing on other systems
# (the adapter then says what it looked for).
set -euo pipefail

if [ -n "${LIBTORCH:-}" ]; then
  exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  exit 0
fi

need=()
for p in libtorch-dev libgloo-dev libopenblas0-pthread g++; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$p")
  fi
done
if ((${#need[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: need root to install ${need[*]}: run 'apt-get install ${need[*]}' as root, or set LIBTORCH" >&2
      exit 1
    fi
    sudo=sudo
  fi
  echo "setup: installing ${need[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Debian selects libblas.so.3 through alternatives. OpenBLAS has the higher
# priority, so the automatic choice is right; a manual choice of the
# reference BLAS is the user's, but say what it costs.
arch=$(gcc -print-multiarch 2>/dev/null || true)
if [ -n "$arch" ] && command -v update-alternatives >/dev/null 2>&1; then
  cur=$(update-alternatives --query "libblas.so.3-$arch" 2>/dev/null | sed -n 's/^Value: //p')
  case "$cur" in
    *openblas*|*blis*|*mkl*|"") ;;
    *) echo "setup: warning: libblas.so.3 points at $cur (the reference BLAS): libtorch will be tens of times slower." >&2
       echo "setup: fix: update-alternatives --auto libblas.so.3-$arch" >&2 ;;
  esac
fi
