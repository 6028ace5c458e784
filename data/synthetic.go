package data

import (
	"fmt"
	"math/rand/v2"
)

// Synthetic makes a learnable preference task from a seed: responses are
// random tokens, and the chosen response holds more "good" tokens (ids
// 3..18) than the rejected one. A model can only solve it by reading the
// response's content, which makes it a check that training works end to
// end. Ids 0, 1 and 2 are reserved for padding, BOS and EOS.
func Synthetic(n, minLen, maxLen, vocab int, seed uint64) ([]Pair, error) {
	const good0, goodN = 3, 16
	if vocab < good0+goodN+8 {
		return nil, fmt.Errorf("synthetic task needs a vocabulary of at least %d tokens, have %d", good0+goodN+8, vocab)
	}
	if minLen < 2 || maxLen < minLen {
		return nil, fmt.Errorf("synthetic task needs 2 <= min length <= max length, have %d and %d", minLen, maxLen)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e47))
	response := func(l, goodCount int) []int64 {
		ids := make([]int64, l)
		for i := range ids {
			ids[i] = int64(good0 + goodN + rng.IntN(vocab-good0-goodN))
		}
		for _, i := range rng.Perm(l - 1)[:goodCount] {
			ids[i] = int64(good0 + rng.IntN(goodN))
		}
		ids[l-1] = 2 // EOS
		return ids
	}
	pairs := make([]Pair, n)
	for i := range pairs {
		lc := minLen + rng.IntN(maxLen-minLen+1)
		lr := minLen + rng.IntN(maxLen-minLen+1)
		// Distinct good-token counts, the larger for the chosen side; both
		// fit in either response (the last position holds EOS).
		room := min(lc, lr) - 1
		hi := 1 + rng.IntN(room)
		lo := rng.IntN(hi)
		prompt := []int64{1, int64(good0 + goodN + rng.IntN(vocab-good0-goodN))}
		pairs[i] = Pair{ID: i, Prompt: prompt, Chosen: response(lc, hi), Rejected: response(lr, lo)}
	}
	return pairs, nil
}
