#!/usr/bin/env bash
# The CUDA build check: prism compiled and linked against Debian 13's CUDA
# build of libtorch 2.6 (libtorch-cuda-dev, contrib: CUDA 12.4, NCCL 2.22),
# on a machine without a GPU. A second Debian 13 root, made by
# scripts/debian13.sh's functions (sourced), with its own package list.
#
#   scripts/debian13-cuda.sh check       make setup build, prism version and
#                                        the CPU tests in the root; writes a
#                                        summary to $PRISM_CUDA_RESULT
#                                        (default build/cuda-build.json)
#   scripts/debian13-cuda.sh run CMD...  CMD in a copy of this tree inside the root
#   scripts/debian13-cuda.sh enter CMD... CMD in the root's copy as it is
#   scripts/debian13-cuda.sh shell       an interactive shell there
#   scripts/debian13-cuda.sh root        only make (or check) the root
#
# The root is cached in PRISM_DEBIAN13_CUDA_ROOT (default
# ~/.cache/prism/debian13-cuda) and made again when its package list or the
# way it is made changes. Making it downloads about 2.6 GB.
#
# cuDNN. libtorch-cuda-2.6 depends on nvidia-cudnn, a package that
# downloads cuDNN from NVIDIA when installed; where NVIDIA is out of reach
# it fails and leaves dpkg failing on every later install. The root gets a
# placeholder nvidia-cudnn instead (built here with dpkg-deb, empty, held),
# and libtorch_cuda.so's NEEDED libcudnn.so.9 is met by a generated
# link-only stub: every cudnn* function libtorch uses, under the same
# version node, each returning an error. It lives in
# /usr/local/lib/prism-cudnn-link-stub inside the root only, with a README
# saying so. It is not cuDNN: a binary built here cannot run a convolution
# on a GPU, and nothing built here is meant to be copied out.
set -euo pipefail

# shellcheck source=scripts/debian13.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian13.sh"

ROOT=${PRISM_DEBIAN13_CUDA_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/prism/debian13-cuda}
# What the root holds. nvidia-cuda-dev has the CUDA headers (cuda.h,
# cuda_runtime_api.h) that libtorch's ATen/cuda headers include, so the
# c10d shim's NCCL process group needs them; the real nvidia-cudnn pulls it
# in (1.1 GB), the placeholder does not. jq writes the check's summary.
PACKAGES=(libtorch-cuda-dev nvidia-cuda-dev libgloo-cuda-dev libnccl-dev libopenblas0-openmp g++ make git ca-certificates jq)
RECIPE=1
LANE=debian13-cuda
ROOT_MINUTES="2 to 7 minutes, 2.6 GB to download"

# setup_root runs inside the new root: the placeholder nvidia-cudnn, the
# packages, then the cuDNN link stub. Arguments: the packages.
# shellcheck disable=SC2016
setup_root='set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq

# 1. A placeholder for nvidia-cudnn (the installer that downloads cuDNN
# from NVIDIA): same name, a version just above the archive'"'"'s, no files
# but a note; held, so apt never replaces it with the installer.
real=$(apt-cache show nvidia-cudnn 2>/dev/null | sed -n "s/^Version: //p" | sort -V | tail -1)
[ -n "$real" ] || { echo "no nvidia-cudnn in the archive (is contrib enabled?)" >&2; exit 1; }
pkg=/usr/local/src/prism-nvidia-cudnn-placeholder
rm -rf "$pkg"; mkdir -p "$pkg/DEBIAN" "$pkg/usr/share/doc/nvidia-cudnn"
cat >"$pkg/DEBIAN/control" <<EOF
Package: nvidia-cudnn
Version: $real+prism.placeholder1
Architecture: $(dpkg --print-architecture)
Maintainer: prism scripts/debian13-cuda.sh <root@localhost>
Section: contrib/libs
Priority: optional
Description: placeholder for nvidia-cudnn (NOT cuDNN; installs nothing)
 Stands in for the nvidia-cudnn installer, which downloads cuDNN from
 NVIDIA and fails without access to it, so that libtorch-cuda-2.6 installs
 in prism'"'"'s link-check root. It provides no library.
EOF
cat >"$pkg/usr/share/doc/nvidia-cudnn/README.prism" <<EOF
This nvidia-cudnn is a placeholder made by prism'"'"'s scripts/debian13-cuda.sh:
it installs no cuDNN. The link-only stub libcudnn.so.9 is described in
/usr/local/lib/prism-cudnn-link-stub/README.
EOF
dpkg-deb --root-owner-group --build "$pkg" /usr/local/src/nvidia-cudnn-placeholder.deb >/dev/null
dpkg -i /usr/local/src/nvidia-cudnn-placeholder.deb >/dev/null
apt-mark hold nvidia-cudnn >/dev/null

# 2. The packages.
apt-get install -y -qq --no-install-recommends "$@" >/dev/null

# 3. The link-only libcudnn.so.9: the symbols libtorch'"'"'s libraries take
# from it, each under its version node, each an error.
tp=$(dpkg-query -W -f="\${db:Status-Abbrev} \${Package}\n" "libtorch-cuda-[0-9]*" | awk "\$1 == \"ii\" {print \$2}")
[ -n "$tp" ] || { echo "libtorch-cuda is not installed" >&2; exit 1; }
needers=()
while read -r f; do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  d=$(readelf -d "$f" 2>/dev/null || true)
  case "$d" in *"[libcudnn"*) needers+=("$f") ;; esac
done < <(dpkg-query -L $tp | grep "\.so")
((${#needers[@]})) || { echo "no library of $tp needs libcudnn" >&2; exit 1; }
other=$(for f in "${needers[@]}"; do readelf -d "$f"; done | sed -n "s/.*NEEDED.*\[\(libcudnn[^]]*\)\].*/\1/p" | sort -u | grep -vx "libcudnn.so.9" || true)
[ -z "$other" ] || { echo "libtorch also needs $other: the stub covers libcudnn.so.9 only" >&2; exit 1; }
src=/usr/local/src/prism-cudnn-link-stub
rm -rf "$src"; mkdir -p "$src"
for f in "${needers[@]}"; do nm -D --undefined-only "$f"; done | awk "{print \$NF}" |
  grep "@libcudnn\.so\.9\$" | sed "s/@.*//" | sort -u >"$src/symbols"
n=$(wc -l <"$src/symbols")
[ "$n" -gt 0 ] || { echo "no versioned libcudnn.so.9 symbols found" >&2; exit 1; }
{
  echo "/* prism'"'"'s link-only stand-in for libcudnn.so.9, generated by"
  echo "   scripts/debian13-cuda.sh from nm -D --undefined-only of ${needers[*]}."
  echo "   NOT cuDNN: every function returns an error. */"
  echo "#include <stddef.h>"
  echo "#include <stdio.h>"
  echo "const char prism_cudnn_link_stub[] = \"libcudnn.so.9 here is prism'"'"'s link-only stub, not NVIDIA cuDNN\";"
  echo "static int said;"
  echo "static int refuse(const char *fn) {"
  echo "  if (!said) { said = 1; fprintf(stderr, \"%s (%s called)\\n\", prism_cudnn_link_stub, fn); }"
  echo "  return 1001; /* CUDNN_STATUS_NOT_INITIALIZED */"
  echo "}"
  while read -r s; do
    case "$s" in
    cudnnGetErrorString) echo "const char *$s(int status) { (void)status; return prism_cudnn_link_stub; }" ;;
    cudnnGetVersion | cudnnGetCudartVersion | cudnnGetMaxDeviceVersion) echo "size_t $s(void) { return 0; }" ;;
    *) echo "int $s(void) { return refuse(\"$s\"); }" ;;
    esac
  done <"$src/symbols"
} >"$src/stub.c"
{ echo "libcudnn.so.9 {"; echo "  global:"; sed "s/.*/    &;/" "$src/symbols"; echo "    prism_cudnn_link_stub;"; echo "  local: *;"; echo "};"; } >"$src/libcudnn.map"
lib=/usr/local/lib/prism-cudnn-link-stub
rm -rf "$lib"; mkdir -p "$lib"
gcc -shared -fPIC -O1 -Wl,-soname,libcudnn.so.9 -Wl,--version-script,"$src/libcudnn.map" -o "$lib/libcudnn.so.9" "$src/stub.c"
got=$(nm -D --defined-only "$lib/libcudnn.so.9" | grep -c "@@libcudnn\.so\.9\$" || true)
[ "$got" -eq $((n + 1)) ] || { echo "the stub exports $got versioned symbols, want $((n + 1))" >&2; exit 1; }
cat >"$lib/README" <<EOF
libcudnn.so.9 in this folder is NOT NVIDIA cuDNN. It is a link-only stub made by
prism'"'"'s scripts/debian13-cuda.sh so that programs linking Debian'"'"'s
libtorch-cuda-2.6 link and start on a machine without cuDNN: it defines the
$n cudnn* functions libtorch uses (symbols: $src/symbols), each of which
returns an error (CUDNN_STATUS_NOT_INITIALIZED) and says on stderr that it
is this stub. It is found through /etc/ld.so.conf.d/prism-cudnn-link-stub.conf
in this root only. Nothing built here can use cuDNN; do not copy it out.
EOF
echo "$lib" >/etc/ld.so.conf.d/prism-cudnn-link-stub.conf
ldconfig
cp "$lib/README" /README.prism-cuda-root

# 4. apt and dpkg left consistent, and nothing libtorch needs missing.
[ -z "$(dpkg --audit)" ] || { dpkg --audit >&2; exit 1; }
apt-get check -qq
for f in "${needers[@]}"; do
  if ldd "$f" | grep "not found" >&2; then echo "$f: libraries not found" >&2; exit 1; fi
  ldd "$f" | grep -q "libcudnn.so.9 => $lib/libcudnn.so.9" || { echo "$f does not load the stub" >&2; exit 1; }
done
echo "cudnn link stub: $n symbols for ${needers[*]}"
# The downloaded packages (2.6 GB) are not needed again.
apt-get clean
'

install_packages() {
  BINDS=()
  in_root "$1" /usr/bin/env bash -c "$setup_root" setup-root "${PACKAGES[@]}"
}

root_summary() {
  chroot "$ROOT" dpkg-query -W -f='libtorch-cuda-dev ${Version}, ' libtorch-cuda-dev
  chroot "$ROOT" dpkg-query -W -f='libnccl2 ${Version}, ' libnccl2
  printf 'cudnn: link-only stub (%s symbols)' "$(wc -l <"$ROOT/usr/local/src/prism-cudnn-link-stub/symbols")"
}

# The way the root is made is part of its id.
ROOT_ID_EXTRA=$(printf '%s\n' "$setup_root")

# A build/ or bin/ that is a symbolic link in this tree (a git worktree
# sharing another's outputs) is not ignored by /build/ and would be copied
# as a link that dangles in the root: the root keeps its own folders.
eval "tree_$(declare -f sync_tree)"
sync_tree() {
  tree_sync_tree
  local p
  for p in build bin; do
    if [ -L "$ROOT/work/prism/$p" ]; then rm -f "$ROOT/work/prism/$p"; fi
  done
}

# The tests that run: the libtorch boundary (set-up facts, device
# resolution, the c10d shim with Gloo), and the packages whose tests build
# tensors through it (configs, data, the decomposition estimators), all on
# the CPU. PRISM_CUDA_TESTS replaces the list (./... runs everything).
TESTS=${PRISM_CUDA_TESTS:-./internal/torch/... ./configs ./decomposition ./data/...}

# check_root runs inside the root's copy of the tree.
# shellcheck disable=SC2016
check_root='set -euo pipefail
out=build/cuda-check
rm -rf "$out"; mkdir -p "$out"
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" "BEGIN {printf \"%.1f\", b - a}"; }

echo "== make setup build"
t=$(now)
make setup build 2>&1 | tee "$out/build.log"
build_s=$(secs "$t" "$(now)")

echo "== bin/prism version"
bin/prism version | tee "$out/version.txt"
bin/prism version --json >"$out/version.json"

echo "== go test $TESTS"
t=$(now)
go build -o build/testreport ./internal/cmd/testreport
set +e
# shellcheck disable=SC2086
go test -count=1 -json $TESTS >"$out/test.json" 2>"$out/test.stderr"
rc=$?
build/testreport <"$out/test.json"
rep=$?
set -e
cat "$out/test.stderr" >&2
test_s=$(secs "$t" "$(now)")

# What the build must show: a CUDA libtorch, NCCL in the shim, and a
# prism that knows it is a CUDA build (and, here, has no device).
fails=()
[ "$(jq -r .libtorch.cuda build/gotch/prism-adapt.json)" = true ] || fails+=("the adapter did not find a CUDA libtorch")
case "$(jq -r .dist_backends build/gotch/prism-adapt.json)" in *nccl*) ;; *) fails+=("the c10d shim was built without NCCL") ;; esac
grep -q "CUDA build" "$out/version.txt" || fails+=("prism version does not say CUDA build")
[ $rc -eq 0 ] && [ $rep -eq 0 ] || fails+=("tests failed")
for f in "${fails[@]}"; do echo "check failed: $f" >&2; done
[ ${#fails[@]} -eq 0 ] && result=pass || result=fail

jq -n \
  --slurpfile adapt build/gotch/prism-adapt.json \
  --slurpfile version "$out/version.json" \
  --rawfile version_text "$out/version.txt" \
  --rawfile tests "$out/test.json" \
  --arg pkgs "$TESTS" --arg result "$result" --arg fails "$(printf "%s\n" "${fails[@]}")" \
  --arg root_s "$ROOT_S" --arg build_s "$build_s" --arg test_s "$test_s" \
  --arg debs "$(dpkg-query -W -f="\${Package} \${Version}\n" libtorch-cuda-dev libnccl2 libgloo-cuda-0 nvidia-cudnn libcudart12 2>/dev/null)" \
  --arg stub "$(wc -l </usr/local/src/prism-cudnn-link-stub/symbols)" \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg cores "$(nproc)" '"'"'
  ($tests | split("\n") | map(select(length > 0) | fromjson)) as $ev |
  {
    what: "prism built against Debian 13 libtorch-cuda-dev in a root without a GPU (scripts/debian13-cuda.sh check)",
    date: $date,
    result: $result,
    failed_checks: ($fails | split("\n") | map(select(length > 0))),
    cores: ($cores | tonumber),
    packages: ($debs | split("\n") | map(select(length > 0) | split(" ") | {(.[0]): .[1]}) | add),
    cudnn: ("link-only stub: " + $stub + " cudnn* symbols of libcudnn.so.9, each returning an error; nvidia-cudnn is an empty held placeholder"),
    adapter: {
      libtorch_version: $adapt[0].libtorch.version,
      libtorch_source: $adapt[0].libtorch.source,
      cuda: $adapt[0].libtorch.cuda,
      cxx11_abi: $adapt[0].libtorch.cxx11_abi,
      libs: $adapt[0].libtorch.libs,
      generated_functions: $adapt[0].generated_functions,
      disabled_functions: ($adapt[0].disabled_functions | length),
      disabled: $adapt[0].disabled_functions,
      dist_backends: $adapt[0].dist_backends,
      compiler: $adapt[0].compiler,
      native_build_seconds: $adapt[0].build_seconds
    },
    prism_version: $version[0],
    prism_version_text: ($version_text | rtrimstr("\n") | split("\n")),
    tests: {
      command: ("go test -count=1 " + $pkgs),
      packages: [$ev[] | select(.Test == null and (.Action == "pass" or .Action == "fail" or .Action == "skip")) |
        {package: .Package, result: .Action, seconds: .Elapsed}],
      passed: [$ev[] | select(.Test != null and .Action == "pass")] | length,
      failed: [$ev[] | select(.Test != null and .Action == "fail") | .Package + " " + .Test],
      skipped: [$ev[] | select(.Test != null and .Action == "skip") | .Package + " " + .Test]
    },
    seconds: {
      root: (if $root_s == "" then null else ($root_s | tonumber) end),
      setup_build: ($build_s | tonumber),
      tests: ($test_s | tonumber)
    }
  }'"'"' >"$out/cuda-build.json"
echo "== summary: $out/cuda-build.json"
[ "$result" = pass ]
'

check() {
  local t0 t1 root_s=""
  t0=$(date +%s)
  local had=""
  [ -f "$ROOT/.prism-root" ] && [ "$(cat "$ROOT/.prism-root")" = "$(root_id)" ] && had=1
  make_root
  t1=$(date +%s)
  # Only a root made by this run is timed.
  [ -n "$had" ] || root_s=$((t1 - t0))
  sync_go
  sync_tree
  host_modules
  local rc=0
  enter env TESTS="$TESTS" ROOT_S="$root_s" bash -c "$check_root" check || rc=$?
  local res=$ROOT/work/prism/build/cuda-check/cuda-build.json
  if [ -f "$res" ]; then
    local dst=${PRISM_CUDA_RESULT:-$here/build/cuda-build.json}
    mkdir -p "$(dirname "$dst")"
    cp "$res" "$dst"
    log "summary written to $dst"
  fi
  [ "$rc" -eq 0 ] || die "the check failed (logs in $ROOT/work/prism/build/cuda-check)"
  log "CUDA build check passed"
}

cmd=${1:-check}
shift || true
case "$cmd" in
check) check ;;
root) make_root; sync_go ;;
run) [ $# -gt 0 ] || die "usage: $0 run CMD..."; run "$@" ;;
enter) [ $# -gt 0 ] || die "usage: $0 enter CMD..."; enter "$@" ;;
shell) run bash -i ;;
*) die "unknown command $cmd (want check, run, enter, shell or root)" ;;
esac
