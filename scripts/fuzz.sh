#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (default 5s: the CI smoke run;
# `make fuzz` uses 10m). A crasher is written under the package's
# testdata/fuzz/ by go test and fails the run: commit it as a regression case.
set -euo pipefail
t="${FUZZTIME:-5s}"
targets=(
  "./internal/safetensors FuzzParseHeader"
  "./data FuzzDecodeTokenRow"
  "./data FuzzDecodeTextRow"
  "./configs FuzzLoad"
  "./data/tokenizer FuzzEncode"
  "./data/tokenizer FuzzFastMatchers"
  "./data/chattemplate FuzzRender"
  "./internal/torchpickle FuzzRun"
)
# Go's fuzzer can end a short run with "context deadline exceeded" and no
# failing input when a worker answers late (a loaded machine); that is the
# harness, not a finding, so such a target runs once more. A real crasher
# names its input under testdata/fuzz/ and fails at once.
for tgt in "${targets[@]}"; do
  set -- $tgt
  for try in 1 2; do
    echo "fuzz: $1 $2 for $t"
    if out=$(GOWORK=off go test -run='^$' -fuzz="^$2\$" -fuzztime="$t" -fuzzminimizetime=2s "$1" 2>&1); then
      echo "$out" | tail -2
      break
    fi
    echo "$out"
    if [ "$try" = 2 ] || ! grep -q "context deadline exceeded" <<<"$out" || grep -q "Failing input written" <<<"$out"; then
      exit 1
    fi
    echo "fuzz: $2 stopped on the harness's deadline without a failing input; once more"
  done
done
