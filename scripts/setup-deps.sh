#!/usr/bin/env bash
# Installs what prism's native build needs on Debian/Ubuntu when no LIBTORCH
# is given: Debian's libtorch, Gloo's headers (libtorch's c10d headers
# include them; Debian's libtorch-dev does not pull them in), OpenBLAS in
# the threading variant that matches libtorch's, and g++.
#
# - A CUDA libtorch from Debian (libtorch-cuda-dev) is kept: its Gloo and
#   NCCL headers are installed instead, never the CPU packages that would
#   replace it. apt-get runs with --no-remove, so no installed package is
#   ever swapped out; a libtorch in /usr that no package owns is left alone.
# - BLAS: Debian's libtorch uses OpenMP threads (it links libgomp). With
#   OpenBLAS's pthreads variant, the two thread pools fight over the cores:
#   measured on 2 cores, toy training ran 21-25 s with libopenblas0-pthread
#   and 10-11 s with libopenblas0-openmp on libtorch 1.13, 37-40 s against
#   5-7 s on 2.6. Setup installs the matching variant and selects it for
#   libblas.so.3, liblapack.so.3 and libopenblas.so.0 together (selecting
#   one alone fails with "undefined symbol: blas_omp_number_max"), unless
#   the administrator chose a BLAS by hand.
#
# It does nothing when everything is in place, and nothing on other systems
# (the adapter then says what it looked for).
set -euo pipefail

if [ -n "${LIBTORCH:-}" ]; then
  exit 0
fi
if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  exit 0
fi

# Tests run this script against a fake system: PRISM_SETUP_SYSROOT
# prefixes the files it looks at (empty on a real machine).
sysroot=${PRISM_SETUP_SYSROOT:-}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
say() { echo "setup: $*" >&2; }

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
torch_h=$sysroot/usr/include/torch/csrc/api/include/torch/torch.h

want=()
if installed libtorch-cuda-dev; then
  # Debian's CUDA build (contrib): keep it, add its Gloo and NCCL headers.
  want+=(libgloo-cuda-dev libnccl-dev)
elif installed libtorch-dev; then
  want+=(libgloo-dev)
elif [ -e "$torch_h" ]; then
  say "a libtorch that no Debian package owns is installed in /usr: using it as it is"
else
  want+=(libtorch-dev libgloo-dev)
fi

# The OpenBLAS variant whose threads match libtorch's (decided after
# libtorch is installed; OpenMP for every Debian build so far).
blas_variant() {
  local so
  so=$(readlink -f "$sysroot/usr/lib/$arch/libtorch_cpu.so" 2>/dev/null || true)
  if [ -n "$so" ] && [ -e "$so" ] && command -v readelf >/dev/null 2>&1; then
    # Not a pipe into grep -q: with pipefail, grep's early exit would fail
    # readelf with SIGPIPE and the test with it.
    local dyn
    dyn=$(readelf -d "$so" 2>/dev/null || true)
    if [[ "$dyn" == *"NEEDED"*"libgomp"* ]]; then
      echo openmp
    else
      echo pthread
    fi
    return
  fi
  echo openmp
}

apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      say "need root to install $*: run 'apt-get install $*' as root, or set LIBTORCH"
      exit 1
    fi
    sudo=sudo
  fi
  say "installing $* with apt-get"
  # --no-remove: never trade an installed package (a CUDA libtorch, a BLAS)
  # for one of these.
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-remove "$@" >/dev/null 2>&1; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-remove "$@" >/dev/null ||
      { say "apt-get could not install $* without removing other packages; install them by hand"; exit 1; }
  fi
}

need=()
for p in "${want[@]}" g++; do
  installed "$p" || need+=("$p")
done
if ((${#need[@]})); then
  apt_install "${need[@]}"
fi

variant=$(blas_variant)
if ! installed "libopenblas0-$variant"; then
  apt_install "libopenblas0-$variant"
fi

# Select the variant for all three alternatives, or for none.
command -v update-alternatives >/dev/null 2>&1 || exit 0
alts=(libblas.so.3 liblapack.so.3 libopenblas.so.0)
change=()
for a in "${alts[@]}"; do
  target=/usr/lib/$arch/openblas-$variant/$a
  [ -e "$sysroot$target" ] || continue
  q=$(update-alternatives --query "$a-$arch" 2>/dev/null || true)
  [ -n "$q" ] || continue
  status=$(sed -n 's/^Status: //p' <<<"$q")
  value=$(sed -n 's/^Value: //p' <<<"$q")
  [ "$value" = "$target" ] && continue
  if [ "$status" = manual ]; then
    say "warning: $a points at $value, chosen by hand; libtorch here uses $variant threads."
    say "  prism is fastest with: update-alternatives --set $a-$arch $target (and the same for ${alts[*]})"
    change=()
    break
  fi
  change+=("$a-$arch=$target")
done
if ((${#change[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  for c in "${change[@]}"; do
    $sudo update-alternatives --quiet --set "${c%%=*}" "${c#*=}"
  done
  say "selected OpenBLAS's $variant variant (libtorch uses $variant threads); undo with update-alternatives --auto for ${alts[*]}"
fi

# The reference BLAS, chosen by hand, costs a factor of ~30: say so.
cur=$(update-alternatives --query "libblas.so.3-$arch" 2>/dev/null | sed -n 's/^Value: //p')
case "$cur" in
  *openblas* | *blis* | *mkl* | "") ;;
  *) say "warning: libblas.so.3 points at $cur (the reference BLAS): libtorch will be tens of times slower."
     say "fix: update-alternatives --auto libblas.so.3-$arch" ;;
esac
