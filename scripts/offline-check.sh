#!/usr/bin/env bash
# Checks that the tree builds with no network: clones it, runs `make vendor`,
# then builds prism with vendoring on, no module proxy and an empty module
# cache (which must stay empty), and runs `prism version`.
set -euo pipefail
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$root" "$tmp/prism"
cd "$tmp/prism"
make vendor >/dev/null
GOFLAGS=-mod=vendor GOPROXY=off GOMODCACHE="$tmp/no-module-cache" GOTOOLCHAIN=local \
  make setup build >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
# Go may create the (empty) cache folder; any file in it means a download.
if [ -n "$(find "$tmp/no-module-cache" -type f 2>/dev/null | head -1)" ]; then
  echo "offline-check: the offline build put files in the module cache:" >&2
  find "$tmp/no-module-cache" -type f | head >&2
  exit 1
fi
bin/prism version
echo "offline-check: the vendored tree builds with no network"
