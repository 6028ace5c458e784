#!/usr/bin/env bash
# The libtorch 2.x lane: a Debian 13 (trixie) root, made with debootstrap
# from Debian's mirror, with trixie's libtorch 2.6 and python3-torch 2.6,
# in which prism is built and tested as on any Debian machine.
#
#   scripts/debian13.sh test        make setup build test against libtorch-dev,
#                                   then make setup test with LIBTORCH=/usr/bin/python3
#   scripts/debian13.sh run CMD...  CMD in a copy of this tree inside the root
#   scripts/debian13.sh enter CMD... CMD in the root's copy as it is (no copy)
#   scripts/debian13.sh shell       an interactive shell there
#   scripts/debian13.sh root        only make (or check) the root
#
# The root is cached outside the clone (PRISM_DEBIAN13_ROOT, default
# ~/.cache/prism/debian13): reused when it is complete and was made from the
# same package list, made again otherwise. Go is the host's /usr/local/go,
# copied in when its version differs; Go modules come from the host's module
# cache, mounted read-only (inside the root the module proxy's certificate
# chain is not trusted on every machine, and the host already has them).
# The tree is copied to /work/prism in the root, whose build folders, Go
# caches and prism's object cache persist between runs.
#
# Needs root (debootstrap, chroot and mounts), which CI and Docker have; the
# mounts live in a private mount namespace and vanish with the command.
#
# scripts/debian13-cuda.sh sources this file for its functions (a second
# root, with Debian's CUDA build of libtorch): it then redefines ROOT,
# PACKAGES, RECIPE, LANE, ROOT_ID_EXTRA, ROOT_MINUTES, install_packages,
# root_summary and sync_tree, and the commands below do not run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${PRISM_DEBIAN13_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/prism/debian13}
SUITE=trixie
# What the root holds. Changing this list makes the root again.
PACKAGES=(libtorch-dev python3-torch libgloo-dev libopenblas0-openmp g++ make git ca-certificates)
# Bump when the way the root is made changes.
RECIPE=1
# The name in messages, and anything else that decides what the root
# holds, hashed into its id when set (nothing here).
LANE=debian13
ROOT_ID_EXTRA=

log() { printf '%s: %s\n' "$LANE" "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mounts): run it as root or through sudo"

mirror() {
  if [ -n "${PRISM_DEBIAN_MIRROR:-}" ]; then
    echo "$PRISM_DEBIAN_MIRROR"
    return
  fi
  # The mirror this machine's apt already uses for the main archive.
  local m=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

host_tools() {
  local need=()
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v rsync >/dev/null 2>&1 || need+=(rsync)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  if ((${#need[@]})); then
    log "installing ${need[*]} on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
  fi
}

# in_root DIR CMD...: CMD inside the root DIR, with /proc, /dev, /sys and
# the host's resolver, in a private mount namespace; extra bind mounts come
# from the BINDS array ("host-path:root-path:ro|rw").
BINDS=()
in_root() {
  local dir=$1
  shift
  local script='set -e; d=$1; shift
    mount -t proc proc "$d/proc"
    mount --rbind /dev "$d/dev"; mount --make-rslave "$d/dev"
    mount -t sysfs sys "$d/sys"
    n=$1; shift
    for ((i = 0; i < n; i++)); do
      b=$1; shift
      src=${b%%:*}; rest=${b#*:}; dst=${rest%%:*}; mode=${rest##*:}
      mkdir -p "$d$dst"
      mount --bind "$src" "$d$dst"
      if [ "$mode" = ro ]; then mount -o remount,bind,ro "$d$dst"; fi
    done
    exec chroot "$d" "$@"'
  cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  unshare --mount --propagation private bash -c "$script" debian13 "$dir" "${#BINDS[@]}" "${BINDS[@]}" "$@"
}

root_id() {
  printf '%s\n' "recipe $RECIPE" "suite $SUITE" "${PACKAGES[@]}" ${ROOT_ID_EXTRA:+"$ROOT_ID_EXTRA"} | sha256sum | cut -c1-16
}

# install_packages DIR installs PACKAGES in the new root DIR; its output
# goes to the root's log.
install_packages() {
  BINDS=()
  in_root "$1" /usr/bin/env DEBIAN_FRONTEND=noninteractive bash -c \
    "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${PACKAGES[*]} >/dev/null"
}

# root_summary names what the finished root holds.
root_summary() {
  chroot "$ROOT" dpkg-query -W -f='libtorch-dev ${Version}' libtorch-dev
}

make_root() {
  local id
  id=$(root_id)
  if [ -f "$ROOT/.prism-root" ] && [ "$(cat "$ROOT/.prism-root")" = "$id" ]; then
    return
  fi
  host_tools
  local m new="$ROOT.new"
  m=$(mirror)
  log "making the Debian 13 root in $ROOT from $m (${ROOT_MINUTES:-about 4 minutes})"
  rm -rf "$new"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase --components=main,contrib,non-free "$SUITE" "$new" "$m" >"$new.log" 2>&1 ||
    die "debootstrap failed; its log: $new.log"
  # The security archive sits beside the main one on Debian's mirrors.
  local sec=http://security.debian.org/debian-security
  case "$m" in */debian | */debian/) sec=${m%/}; sec=${sec%/debian}/debian-security ;; esac
  cat >"$new/etc/apt/sources.list" <<EOF
deb $m $SUITE main contrib non-free
deb $m $SUITE-updates main contrib non-free
deb $sec $SUITE-security main contrib non-free
EOF
  install_packages "$new" >>"$new.log" 2>&1 ||
    die "installing packages in the root failed; its log: $new.log"
  echo "$id" >"$new/.prism-root"
  rm -rf "$ROOT" "$new.log"
  mv "$new" "$ROOT"
  log "root ready: $(root_summary)"
}

sync_go() {
  local goroot
  goroot=$(go env GOROOT 2>/dev/null || echo /usr/local/go)
  [ -x "$goroot/bin/go" ] || die "no Go on the host (looked in $goroot)"
  local want have=""
  want=$("$goroot/bin/go" version | awk '{print $3}')
  [ -f "$ROOT/usr/local/go/VERSION" ] && have=$(head -1 "$ROOT/usr/local/go/VERSION")
  if [ "$want" != "$have" ]; then
    log "copying $want into the root"
    rm -rf "$ROOT/usr/local/go"
    cp -a "$goroot" "$ROOT/usr/local/go"
  fi
}

# sync_tree copies the tree (tracked files and untracked ones git does not
# ignore) to /work/prism in the root; build outputs there are kept.
sync_tree() {
  mkdir -p "$ROOT/work/prism"
  (cd "$here" && git ls-files -z -co --exclude-standard) |
    rsync -a --delete --from0 --files-from=- \
      --filter='P /build*' --filter='P /bin/' --filter='P /go.work*' \
      "$here/" "$ROOT/work/prism/"
  # --files-from does not delete: drop files that left the tree.
  (cd "$here" && git ls-files -co --exclude-standard | sort) >"$ROOT/work/.tree"
  (cd "$ROOT/work/prism" && find . -type f -not -path './build*' -not -path './bin/*' -not -path './go.work*' \
    -not -path './runs/*' -not -path './bench/tokenizer/node_modules/*' -printf '%P\n' | sort) |
    comm -23 - "$ROOT/work/.tree" | (cd "$ROOT/work/prism" && xargs -r -d '\n' rm -f)
}

run() {
  make_root
  sync_go
  sync_tree
  host_modules
  enter "$@"
}

# enter runs CMD in the root's copy of the tree as it is (no copy, no
# build): for timing what an earlier run built.
enter() {
  [ -f "$ROOT/.prism-root" ] || die "no root at $ROOT: run $0 root first"
  local modcache
  modcache=$(go env GOMODCACHE)
  BINDS=("$modcache:/gomodcache:ro")
  local fix="${PRISM_FIXTURES:-}"
  if [ -z "$fix" ] && [ -d "$here/../shared/tokenizers" ]; then
    fix=$(cd "$here/../shared" && pwd)
  fi
  local fixenv=()
  if [ -n "$fix" ] && [ -d "$fix/tokenizers" ]; then
    BINDS+=("$fix:/fixtures:ro")
    fixenv=(PRISM_FIXTURES=/fixtures PRISM_REQUIRE_FIXTURES="${PRISM_REQUIRE_FIXTURES:-}")
  fi
  in_root "$ROOT" /usr/bin/env -i \
    PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    GOTOOLCHAIN=local GOFLAGS="-buildvcs=false" GOPROXY=off GOMODCACHE=/gomodcache \
    GONOSUMDB='*' GOSUMDB=off \
    PRISM_THREADS="${PRISM_THREADS:-}" PRISM_BUILD_JOBS="${PRISM_BUILD_JOBS:-}" \
    "${fixenv[@]}" \
    bash -c 'cd /work/prism && "$@"' debian13 "$@"
}

# host_modules makes sure the host's module cache has every module the
# build needs (the root has no proxy).
host_modules() {
  (cd "$here" && GOWORK=off GOFLAGS=-mod=mod go mod download) >/dev/null ||
    die "go mod download failed on the host"
}

# Sourced (by scripts/debian13-cuda.sh): functions only.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  return 0
fi

cmd=${1:-test}
shift || true
case "$cmd" in
root) make_root; sync_go ;;
run) [ $# -gt 0 ] || die "usage: $0 run CMD..."; run "$@" ;;
enter) [ $# -gt 0 ] || die "usage: $0 enter CMD..."; enter "$@" ;;
shell) run bash -i ;;
test)
  log "lane 1: Debian 13's libtorch-dev"
  run make setup build test
  log "lane 2: LIBTORCH=/usr/bin/python3 (Debian 13's python3-torch)"
  run make setup test LIBTORCH=/usr/bin/python3 BUILD=build/python
  ;;
*) die "unknown command $cmd (want test, run, shell or root)" ;;
esac
