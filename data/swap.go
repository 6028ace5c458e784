package data

import (
	"fmt"
	"math/rand/v2"
	"slices"
)

// SwapTies returns pairs followed by tie pairs made by prompt swapping: for
// a fraction of the pairs (drawn with seed), the same two responses under
// another pair's prompt, with no preference between them. Responses
// written for one prompt say nothing about which is better for another,
// so a reward model should give them equal rewards there: the
// augmentation teaches a model to read the prompt and to drop
// response-only shortcuts (RRM, Liu et al., "RRM: Robust Reward Model
// Training Mitigates Reward Hacking", arXiv:2409.13156, augments
// preference data with responses moved across prompts in this spirit).
// The tie pairs get IDs after the last pair's and the tag swap_tie=true.
func SwapTies(pairs []Pair, fraction float64, seed uint64) ([]Pair, error) {
	if fraction < 0 || fraction > 1 {
		return nil, fmt.Errorf("prompt-swap fraction %v: want a value in [0, 1]", fraction)
	}
	n := int(fraction*float64(len(pairs)) + 0.5)
	if n == 0 {
		return pairs, nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a1e))
	next := 0
	for _, p := range pairs {
		next = max(next, p.ID+1)
	}
	out := slices.Clip(pairs)
	for _, i := range rng.Perm(len(pairs))[:n] {
		p := pairs[i]
		// Another pair's prompt, different from this one's (a few tries:
		// a data set of one prompt has none to swap in).
		for try := 0; try < 16; try++ {
			j := rng.IntN(len(pairs))
			if j == i || slices.Equal(pairs[j].Prompt, p.Prompt) {
				continue
			}
			out = append(out, Pair{ID: next, Source: p.Source, Prompt: pairs[j].Prompt, Chosen: p.Chosen, Rejected: p.Rejected,
				Tie: true, Tags: map[string]string{"swap_tie": "true"}})
			next++
			break
		}
	}
	return out, nil
}
