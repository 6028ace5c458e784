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
for tgt in "${targets[@]}"; do
  set -- $tgt
  echo "fuzz: $1 $2 for $t"
  GOWORK=off go test -run='^$' -fuzz="^$2\$" -fuzztime="$t" -fuzzminimizetime=2s "$1"
done
