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
	// Share is how many consecutive pairs share one draw of M prompts
	// (0 or 1: each pair draws its own). Shared prompts are computed once
	// for all of those pairs' responses by a prefix-caching scorer; each
	// pair's estimator is unchanged, but the estimates of pairs in one
	// group are correlated through their common prompts.
	Share int
}

// ScoreFunc scores sequences (prompt + response), returning one reward per
// sequence in order.
type ScoreFunc func(seqs [][]int64) ([]float64, error)

// PrefixScoreFunc scores each prompt followed by its response (prompts[i]
// + responses[i]), returning one reward per index in order. The
// decomposition scores every response under many prompts, and a prompt
// under many responses: a scorer that sees the pairs apart can compute
// each prompt's work once (models.RewardModel.ScorePrefixed).
type PrefixScoreFunc func(prompts, responses [][]int64) ([]float64, error)

// Concat makes a PrefixScoreFunc of a sequence scorer: each prompt and
// response joined, scored in one call.
func Concat(score ScoreFunc) PrefixScoreFunc {
	return func(prompts, responses [][]int64) ([]float64, error) {
		seqs := make([][]int64, len(prompts))
		for i := range prompts {
			seqs[i] = concat(prompts[i], responses[i])
		}
		return score(seqs)
	}
}

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
	// Tokens counts prompt plus response tokens over the sequences, as if
	// each were scored whole (a prefix-caching scorer computes fewer).
	Tokens  int
	Seconds float64
}

// EstimateAll decomposes every pair's reward gap: the gap under its own
// prompt, and the prompt-free part estimated from the gaps under M prompts
// drawn (without replacement, never the pair's own unless IncludeOwn) from
// pool. All sequences are scored with one call to score, so the caller can
// batch and bucket them.
//
// With loglik nil the importance weights are uniform; otherwise they are the
// self-normalised policy weights for P(x | y1, y2) ∝ P(x) π(y1|x) π(y2|x).
func EstimateAll(pairs []Pair, pool [][]int64, opt Options, score PrefixScoreFunc, loglik LogLikFunc) ([]PairEstimate, Stats, error) {
	start := time.Now()
	if opt.Samples < 1 {
		return nil, Stats{}, fmt.Errorf("%w: samples must be at least 1, got %d", ErrInvalidInput, opt.Samples)
	}
	if len(pool) < 2 {
		return nil, Stats{}, fmt.Errorf("%w: the prompt pool needs at least 2 prompts, has %d", ErrInvalidInput, len(pool))
	}
	if opt.Share < 0 {
		return nil, Stats{}, fmt.Errorf("%w: share must be at least 0, got %d", ErrInvalidInput, opt.Share)
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0xdec0))
	drawn := make([][]int, len(pairs))
	group := max(opt.Share, 1)
	for lo := 0; lo < len(pairs); lo += group {
		hi := min(lo+group, len(pairs))
		own := make([][]int64, 0, hi-lo)
		for _, p := range pairs[lo:hi] {
			own = append(own, p.Prompt)
		}
		d := drawPrompts(rng, len(pool), opt.Samples, own, pool)
		if len(d) < opt.Samples && len(pool) > opt.Samples {
			// The group's own prompts crowd the pool: each pair draws
			// its own, so none is scored under its own prompt.
			for i := lo; i < hi; i++ {
				drawn[i] = drawPrompts(rng, len(pool), opt.Samples, own[i-lo:i-lo+1], pool)
			}
			continue
		}
		for i := lo; i < hi; i++ {
			drawn[i] = d
		}
	}
	// Sequence layout per pair: own prompt (y1, y2), then each drawn
	// prompt (y1, y2).
	ps, rs := layout(pairs, drawn, pool)
	n := len(ps)
	tokens := 0
	for i := range ps {
		tokens += len(ps[i]) + len(rs[i])
	}
	rewards, err := score(ps, rs)
	if err != nil {
		return nil, Stats{}, err
	}
	var ll []float64
	if loglik != nil {
		if ll, err = loglik(ps, rs); err != nil {
			return nil, Stats{}, fmt.Errorf("policy log-likelihoods: %w", err)
		}
		if len(ll) != n {
			return nil, Stats{}, fmt.Errorf("policy returned %d log-likelihoods for %d sequences", len(ll), n)
		}
	}
	if len(rewards) != n {
		return nil, Stats{}, fmt.Errorf("scorer returned %d rewards for %d sequences", len(rewards), n)
	}
	out := make([]PairEstimate, len(pairs))
	pos := 0
	for i := range pairs {
		n := 2 * (len(drawn[i]) + 1)
		var pll []float64
		if ll != nil {
			pll = ll[pos : pos+n]
		}
		if out[i], err = estimateOne(rewards[pos:pos+n], pll, opt); err != nil {
			return nil, Stats{}, fmt.Errorf("pair %d: %w", i, err)
		}
		pos += n
	}
	return out, Stats{Pairs: len(pairs), Sequences: n, Tokens: tokens, Seconds: time.Since(start).Seconds()}, nil
}

// layout lists the (prompt, response) combinations scored: per pair, its
// own prompt with y1 and y2, then each drawn prompt with y1 and y2.
func layout(pairs []Pair, drawn [][]int, pool [][]int64) (prompts, responses [][]int64) {
	for i, p := range pairs {
		prompts = append(prompts, p.Prompt, p.Prompt)
		responses = append(responses, p.Y1, p.Y2)
		for _, k := range drawn[i] {
			prompts = append(prompts, pool[k], pool[k])
			responses = append(responses, p.Y1, p.Y2)
		}
	}
	return prompts, responses
}

// estimateOne decomposes one pair from the rewards (and, with a policy,
// log-likelihoods) of its sequences in layout order.
func estimateOne(rewards, ll []float64, opt Options) (PairEstimate, error) {
	own := rewards[0] - rewards[1]
	deltas := make([]float64, 0, len(rewards)/2)
	var l1, l2 []float64
	for j := 2; j < len(rewards); j += 2 {
		deltas = append(deltas, rewards[j]-rewards[j+1])
		if ll != nil {
			l1, l2 = append(l1, ll[j]), append(l2, ll[j+1])
		}
	}
	mean, std := meanStd(deltas)
	if opt.IncludeOwn {
		deltas = append(deltas, own)
		if ll != nil {
			l1, l2 = append(l1, ll[0]), append(l2, ll[1])
		}
	}
	w := UniformWeights(len(deltas))
	if ll != nil {
		var err error
		if w, err = PolicyWeights(l1, l2, opt.PolicyTau); err != nil {
			return PairEstimate{}, fmt.Errorf("policy weights: %w", err)
		}
	}
	est, err := Decompose(own, deltas, w, opt.Tol)
	if err != nil {
		return PairEstimate{}, err
	}
	return PairEstimate{Estimate: est, Mean: mean, Std: std}, nil
}

// drawPrompts picks m distinct pool indices whose prompts differ from
// every prompt in own (when the pool has enough of them).
func drawPrompts(rng *rand.Rand, n, m int, own [][]int64, pool [][]int64) []int {
	out := make([]int, 0, m)
	seen := map[int]bool{}
	for tries := 0; len(out) < m && tries < 20*m+n; tries++ {
		k := rng.IntN(n)
		if seen[k] {
			continue
		}
		seen[k] = true
		if n > m && slices.ContainsFunc(own, func(p []int64) bool { return slices.Equal(pool[k], p) }) {
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
