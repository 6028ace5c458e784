package decomposition

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// The selection strategies below prioritise pairs by their signed prompt-free
// gap Δr2, smallest first. This follows the paper's reading that pairs in the
// left half of its quadrant figure (x axis Δr2) are the ones a reward model
// cannot separate by the responses alone, so they carry the prompt-related
// signal worth training on.

// LowestFraction returns the indices of the ⌈ρ·n⌉ smallest values in
// promptFree, n = len(promptFree), in ascending index order. Ties are broken
// in favour of the lower index. ρ must lie in (0, 1] and the values must not
// be NaN; otherwise the error wraps ErrInvalidInput. An empty pool yields no
// indices.
func LowestFraction(promptFree []float64, rho float64) ([]int, error) {
	if !(rho > 0 && rho <= 1) {
		return nil, fmt.Errorf("%w: fraction %v is outside (0, 1]", ErrInvalidInput, rho)
	}
	for i, v := range promptFree {
		if math.IsNaN(v) {
			return nil, fmt.Errorf("%w: prompt-free gap %d is NaN", ErrInvalidInput, i)
		}
	}
	n := len(promptFree)
	if n == 0 {
		return []int{}, nil
	}
	// The slack absorbs representation error, so that 0.3·10 selects 3
	// rather than ⌈3.0000000000000004⌉ = 4.
	k := int(math.Ceil(rho*float64(n) - 1e-9))
	k = min(max(k, 1), n)

	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(promptFree[a], promptFree[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	idx = idx[:k]
	slices.Sort(idx)
	return idx, nil
}

// Threshold returns, in ascending order, the indices i with
// promptFree[i] < tau. NaN values are never selected.
func Threshold(promptFree []float64, tau float64) []int {
	idx := []int{}
	for i, v := range promptFree {
		if v < tau {
			idx = append(idx, i)
		}
	}
	return idx
}

// SoftmaxSample draws k indices with replacement, index i with probability
// proportional to exp(−promptFree[i]/T), using rng as the only source of
// randomness, so the draw is reproducible for a given seed. The exponents
// are shifted by their maximum before exponentiating, so the probabilities
// are well defined for any finite values and temperature; values whose
// probability underflows are never drawn.
//
// The temperature must be positive and finite, k non-negative, the values
// finite, the pool non-empty when k > 0 and rng non-nil; otherwise the
// error wraps ErrInvalidInput.
func SoftmaxSample(promptFree []float64, temperature float64, k int, rng *rand.Rand) ([]int, error) {
	if !(temperature > 0) || math.IsInf(temperature, 1) {
		return nil, fmt.Errorf("%w: temperature %v is not a positive finite number", ErrInvalidInput, temperature)
	}
	if k < 0 {
		return nil, fmt.Errorf("%w: sample size %d is negative", ErrInvalidInput, k)
	}
	if k == 0 {
		return []int{}, nil
	}
	if len(promptFree) == 0 {
		return nil, fmt.Errorf("%w: cannot draw %d samples from an empty pool", ErrInvalidInput, k)
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: nil random source", ErrInvalidInput)
	}
	lowest := math.Inf(1)
	for i, v := range promptFree {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: prompt-free gap %d is %v", ErrInvalidInput, i, v)
		}
		lowest = min(lowest, v)
	}
	// Measuring from the smallest value makes every exponent (lowest−v)/T
	// non-positive, so nothing overflows, not even −v/T for a tiny T; the
	// smallest value's term is exp(0) = 1, so the total is at least 1.
	cum := make([]float64, len(promptFree))
	var total float64
	last := 0 // last index with positive mass, for the u = total edge case
	for i, v := range promptFree {
		p := math.Exp((lowest - v) / temperature)
		if p > 0 {
			last = i
		}
		total += p
		cum[i] = total
	}
	out := make([]int, k)
	for j := range out {
		u := rng.Float64() * total
		// First index whose cumulative mass exceeds u; indices with zero
		// mass leave cum unchanged and so are never chosen.
		i := sort.Search(len(cum), func(i int) bool { return cum[i] > u })
		out[j] = min(i, last)
	}
	return out, nil
}
