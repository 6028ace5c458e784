#!/usr/bin/env bash
# The toy study: does prioritising by Δr2 generalise better than vanilla
# Bradley-Terry training, and than the other common fix (prompt-swapped
# ties)? For each toy task, 20 paired seeds of the three arms (the
# headline), then one-key-at-a-time ablations of the prioritised arm on
# length_bias and prompt_decides with 10 seeds each. Every run is a
# tiny Llama trained from scratch on 2 CPU cores. Resumable: rerun the
# same command after an interruption and it continues.
#
#   scripts/toy-study.sh [OUT]   (default experiments/toy/results/study)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-experiments/toy/results/study}
prism=${PRISM:-bin/prism}
arms=(--arms vanilla,prioritised,swap --swap-fraction 0.5)

for task in length-bias adversarial prompt-decides; do
	"$prism" compare --config "experiments/toy/$task.yaml" --seeds 20 "${arms[@]}" --out "$out/$task" >/dev/null
done

ablations=(
	--sweep decomposition.rho=0.25,0.75
	--sweep decomposition.strategy=softmax,threshold
	--sweep decomposition.every_steps=30,120
	--sweep decomposition.samples=8,16
	--sweep decomposition.include_own_prompt=false
	--sweep decomposition.weights=policy
)
for task in length-bias prompt-decides; do
	# Policy weights use the toy generator's own policy; every other key
	# is as in the experiment file (lowest_fraction, rho 0.5, M 4, ...).
	"$prism" compare --config "experiments/toy/$task.yaml" --seeds 10 \
		--set decomposition.policy_model=toy "${ablations[@]}" --out "$out/$task-ablations" >/dev/null
	# The softmax strategy at a second temperature (the first, 1, is in
	# the strategy sweep above).
	"$prism" compare --config "experiments/toy/$task.yaml" --seeds 10 \
		--set decomposition.strategy=softmax --sweep decomposition.temperature=0.25 --out "$out/$task-softmax" >/dev/null
done
echo "study written to $out"
