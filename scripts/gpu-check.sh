#!/usr/bin/env bash
# The one script to run on a GPU machine: builds prism against the machine's
# PyTorch, then measures reward parity with transformers, a saved model
# loading in transformers, training throughput against PyTorch +
# transformers at a ~1B shape, an 8B-shaped LoRA run's memory against the
# plan, and the Δr2 recompute's throughput (scripts/gpucheck/check.py says
# what each part does). Writes bench/results/gpu-<card>.json.
#
# On a machine with Go and the module proxy:
#   scripts/gpu-check.sh
# On an offline GPU box with no Go, first make a bundle here (a trimmed Go
# toolchain and the vendored modules, about 40 MB) and bring it with the tree:
#   scripts/gpu-check.sh --pack gpu-bundle.tar.xz         # here
#   scripts/gpu-check.sh --bundle gpu-bundle.tar.xz       # there
# The CPU rehearsal (libtorch 2.x, small stand-in shapes, no GPU needed):
#   scripts/debian13.sh run scripts/gpu-check.sh --rehearse
#
# Options:
#   --python PY     the Python whose torch prism builds against and whose
#                   transformers is the reference (default
#                   /opt/torch/.venv/bin/python3)
#   --device D      cuda, cuda:N or cpu (default cuda)
#   --out F         results file (default bench/results/gpu-<card>.json)
#   --skip P,...    parts of check.py to skip (a rerun after a timeout)
#   --no-build      use bin/prism as it is
#   --quick         small stand-ins for the 1B and 8B shapes
#   --rehearse      --quick --device cpu --python /usr/bin/python3, results
#                   to $TMPDIR: the script end to end on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."

python=/opt/torch/.venv/bin/python3 device=cuda out= skip= build=1 quick= bundle= pack=
die() { echo "gpu-check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--python) python=${2:?--python needs a path}; shift ;;
	--device) device=${2:?--device needs a value}; shift ;;
	--out) out=${2:?--out needs a file}; shift ;;
	--skip) skip=${2:?--skip needs parts}; shift ;;
	--bundle) bundle=${2:?--bundle needs a file}; shift ;;
	--pack) pack=${2:?--pack needs a file}; shift ;;
	--no-build) build= ;;
	--quick) quick=1 ;;
	--rehearse) quick=1 device=cpu python=/usr/bin/python3 out=${out:-${TMPDIR:-/tmp}/gpu-check-rehearsal.json} ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done

if [ -n "$pack" ]; then
	# The Go toolchain trimmed to what go build and go run need, and the
	# modules (make vendor), in one archive.
	case $pack in /*) ;; *) pack=$PWD/$pack ;; esac
	make vendor >/dev/null
	root=$(go env GOROOT)
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' EXIT
	tar -C "$(dirname "$root")" --exclude="$(basename "$root")/test" --exclude='*_test.go' --exclude=testdata \
		--exclude="$(basename "$root")/doc" --exclude="$(basename "$root")/api" --exclude="$(basename "$root")/misc" \
		--transform "s,^$(basename "$root"),go," -cf "$stage/go.tar" "$(basename "$root")"
	# gotch's examples and binding generator (90 of its 94 MB) are not
	# used: the adapter writes its own binding.
	tar --exclude=vendor/.gotch-pristine/example --exclude=vendor/.gotch-pristine/gen -cf "$stage/vendor.tar" vendor
	tar -C "$stage" -cf - go.tar vendor.tar | xz -6 -T0 >"$pack.tmp"
	mv "$pack.tmp" "$pack"
	ls -l "$pack"
	exit 0
fi

[ -x "$python" ] || die "--python $python: not an executable"
"$python" -c 'import torch' 2>/dev/null || die "--python $python cannot import torch"

if [ -n "$bundle" ]; then
	[ -f "$bundle" ] || die "$bundle: no such bundle (make one with --pack on a machine with Go)"
	rm -rf build/gpu-check vendor
	mkdir -p build/gpu-check
	# Python's tarfile reads xz without the xz tool, which minimal
	# images lack.
	"$python" - "$bundle" <<'PY'
import sys, tarfile
kw = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
with tarfile.open(sys.argv[1], "r:xz") as t:
    t.extractall("build/gpu-check", **kw)
for name, dest in (("go.tar", "build/gpu-check"), ("vendor.tar", ".")):
    with tarfile.open(f"build/gpu-check/{name}") as t:
        t.extractall(dest, **kw)
PY
	export GOROOT=$PWD/build/gpu-check/go PATH=$PWD/build/gpu-check/go/bin:$PATH GOFLAGS=-mod=vendor GOPROXY=off
fi
export GOTOOLCHAIN=local
command -v go >/dev/null || die "no go on PATH: bring one with --bundle (see --help)"

start=$(date +%s)
if [ -n "$build" ]; then
	echo "gpu-check: building against $python ($(nproc) cores)"
	make build LIBTORCH="$python" GO=go
fi
build_s=$(($(date +%s) - start))
[ -x bin/prism ] || die "bin/prism is missing (run without --no-build)"

if [ -z "$out" ]; then
	card=$("$python" -c "import torch,re; print(re.sub(r'[^a-z0-9]+','-',torch.cuda.get_device_name('$device').lower()).strip('-'))") ||
		die "no card name for $device: is it a GPU?"
	out=bench/results/gpu-$card.json
fi
args=(--prism "$PWD/bin/prism" --go "$(command -v go)" --device "$device" --out "$out" --build-seconds "$build_s")
[ -n "$quick" ] && args+=(--quick)
[ -n "$skip" ] && args+=(--skip "$skip")
echo "gpu-check: measuring on $device, results to $out"
rc=0
"$python" scripts/gpucheck/check.py "${args[@]}" || rc=$?
echo "gpu-check: $out written in $(($(date +%s) - start))s (exit $rc)"
exit $rc
