package decomposition

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Pair is what the estimator needs of a preference pair: its own prompt
// and the two responses, as token ids.
type Pair struct {
	Prompt, Y1, Y2 []int64
}

// Options configure the estimate.
type Options struct {
	// Samples is M, the number of prompts drawn from the pool per pair.
	Samples int
	// IncludeOwn adds the pair's own prompt to the M sampled ones.
	IncludeOwn bool
	// Tol is the bisection tolerance.
	Tol float64
	// Seed makes the prompt draws reproducible.
	Seed uint64
	// PolicyTau is τ of the policy weights w_i ∝ exp(τ (ℓ(y1|x_i) +
	// ℓ(y2|x_i))), used when EstimateAll is given a LogLikFunc.
	PolicyTau float64
}

// ScoreFunc scores sequences (prompt + response), returning one reward per
// sequence in order.
type ScoreFunc func(seqs [][]int64) ([]float64, error)

// LogLikFunc returns, for each (prompt, response), the length-normalised
// log-likelihood of the response given the prompt under a policy (a causal
// language model).
type LogLikFunc func(prompts, responses [][]int64) ([]float64, error)

// PairEstimate is the decomposition of one pair.
type PairEstimate struct {
	Estimate
	// Mean and Std are the mean and standard deviation of the gaps under
	// the sampled prompts (the paper's Figure 1 analysis: a model that
	// ignores the prompt shows the same gap under every prompt).
	Mean, Std float64
}

// Stats reports the cost of an estimate.
type Stats struct {
	Pairs     int
	Sequences int
	Seconds   float64
}

// EstimateAll decomposes every pair's reward gap: the gap under its own
// prompt, and the prompt-free part estimated from the gaps under M prompts
// drawn (without replacement, never the pair's own unless IncludeOwn) from
// pool. All sequences are scored with one call to score, so the caller can
// batch and bucket them.
//
// With loglik nil the importance weights are uniform; otherwise they are the
// self-normalised policy weights for P(x | y1, y2) ∝ P(x) π(y1|x) π(y2|x).
func EstimateAll(pairs []Pair, pool [][]int64, opt Options, score ScoreFunc, loglik LogLikFunc) ([]PairEstimate, Stats, error) {
	start := time.Now()
	if opt.Samples < 1 {
		return nil, Stats{}, fmt.Errorf("%w: samples must be at least 1, got %d", ErrInvalidInput, opt.Samples)
	}
	if len(pool) < 2 {
		return nil, Stats{}, fmt.Errorf("%w: the prompt pool needs at least 2 prompts, has %d", ErrInvalidInput, len(pool))
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0xdec0))
	prompts := make([][]int, len(pairs))
	var seqs [][]int64
	for i, p := range pairs {
		prompts[i] = drawPrompts(rng, len(pool), opt.Samples, p.Prompt, pool)
		// Sequence layout per pair: own prompt (y1, y2), then each drawn
		// prompt (y1, y2).
		seqs = append(seqs, concat(p.Prompt, p.Y1), concat(p.Prompt, p.Y2))
		for _, k := range prompts[i] {
			seqs = append(seqs, concat(pool[k], p.Y1), concat(pool[k], p.Y2))
		}
	}
	rewards, err := score(seqs)
	if err != nil {
		return nil, Stats{}, err
	}
	var ll []float64
	if loglik != nil {
		// The same (prompt, response) combinations, in the same order.
		var ps, rs [][]int64
		for i, p := range pairs {
			ps = append(ps, p.Prompt, p.Prompt)
			rs = append(rs, p.Y1, p.Y2)
			for _, k := range prompts[i] {
				ps = append(ps, pool[k], pool[k])
				rs = append(rs, p.Y1, p.Y2)
			}
		}
		if ll, err = loglik(ps, rs); err != nil {
			return nil, Stats{}, fmt.Errorf("policy log-likelihoods: %w", err)
		}
		if len(ll) != len(seqs) {
			return nil, Stats{}, fmt.Errorf("policy returned %d log-likelihoods for %d sequences", len(ll), len(seqs))
		}
	}
	if len(rewards) != len(seqs) {
		return nil, Stats{}, fmt.Errorf("scorer returned %d rewards for %d sequences", len(rewards), len(seqs))
	}
	out := make([]PairEstimate, len(pairs))
	pos := 0
	for i := range pairs {
		start := pos
		own := rewards[pos] - rewards[pos+1]
		pos += 2
		deltas := make([]float64, 0, len(prompts[i])+1)
		var l1, l2 []float64
		for range prompts[i] {
			deltas = append(deltas, rewards[pos]-rewards[pos+1])
			if ll != nil {
				l1, l2 = append(l1, ll[pos]), append(l2, ll[pos+1])
			}
			pos += 2
		}
		mean, std := meanStd(deltas)
		if opt.IncludeOwn {
			deltas = append(deltas, own)
			if ll != nil {
				l1, l2 = append(l1, ll[start]), append(l2, ll[start+1])
			}
		}
		w := UniformWeights(len(deltas))
		if ll != nil {
			if w, err = PolicyWeights(l1, l2, opt.PolicyTau); err != nil {
				return nil, Stats{}, fmt.Errorf("pair %d: policy weights: %w", i, err)
			}
		}
		est, err := Decompose(own, deltas, w, opt.Tol)
		if err != nil {
			return nil, Stats{}, fmt.Errorf("pair %d: %w", i, err)
		}
		out[i] = PairEstimate{Estimate: est, Mean: mean, Std: std}
	}
	return out, Stats{Pairs: len(pairs), Sequences: len(seqs), Seconds: time.Since(start).Seconds()}, nil
}

// drawPrompts picks m distinct pool indices whose prompts differ from own
// (when the pool has enough of them).
func drawPrompts(rng *rand.Rand, n, m int, own []int64, pool [][]int64) []int {
	out := make([]int, 0, m)
	seen := map[int]bool{}
	for tries := 0; len(out) < m && tries < 20*m+n; tries++ {
		k := rng.IntN(n)
		if seen[k] {
			continue
		}
		seen[k] = true
		if slices.Equal(pool[k], own) && n > m {
			continue
		}
		out = append(out, k)
	}
	return out
}

func concat(a, b []int64) []int64 {
	out := make([]int64, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

func meanStd(x []float64) (float64, float64) {
	if len(x) == 0 {
		return 0, 0
	}
	var s, ss float64
	for _, v := range x {
		s += v
	}
	mean := s / float64(len(x))
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(ss / float64(len(x)))
}
