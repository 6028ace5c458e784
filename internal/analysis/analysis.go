// Package analysis scores preference pairs under a reward model and sums
// up what it finds: the held-out metrics (loss, accuracy, margin, reward
// statistics) and the decomposition of the pairs' reward gaps into their
// prompt-free and prompt-related parts. `prism train` (its evaluations,
// recomputes and final analysis), `prism eval` and `prism decompose` all
// use it.
package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"prism/data"
	"prism/decomposition"
	"prism/models"
)

// ScoreFunc returns one reward per sequence, in order.
type ScoreFunc = decomposition.ScoreFunc

// ModelScorer scores with m, batchSize sequences per forward pass.
func ModelScorer(m *models.RewardModel, batchSize int) ScoreFunc {
	return func(seqs [][]int64) ([]float64, error) { return m.Score(seqs, batchSize) }
}

// ModelPrefixScorer scores (prompt, response) pairs with m: with cache,
// each distinct prompt's keys and values are computed once and its
// responses scored after them (RewardModel.ScorePrompted); without, each
// prompt and response are joined and scored whole (Score). Both give the
// same rewards to float rounding.
func ModelPrefixScorer(m *models.RewardModel, batchSize int, cache bool) decomposition.PrefixScoreFunc {
	if !cache {
		return decomposition.Concat(ModelScorer(m, batchSize))
	}
	return func(prompts, responses [][]int64) ([]float64, error) {
		return m.ScorePrompted(prompts, responses, batchSize)
	}
}

// PolicyLogLik is the likelihood function of the policy weights, or nil
// (uniform weights) without a policy. With cache each distinct prompt is
// run once, as ModelPrefixScorer does for the rewards.
func PolicyLogLik(policy *models.CausalLM, batchSize int, cache bool) decomposition.LogLikFunc {
	if policy == nil {
		return nil
	}
	if cache {
		return func(ps, rs [][]int64) ([]float64, error) { return policy.ResponseLogLikPrompted(ps, rs, batchSize) }
	}
	return func(ps, rs [][]int64) ([]float64, error) { return policy.ResponseLogLik(ps, rs, batchSize) }
}

// Metrics are the held-out figures of a set of pairs.
type Metrics struct {
	Loss       float64 `json:"eval_loss"`
	Accuracy   float64 `json:"eval_accuracy"`
	Margin     float64 `json:"eval_margin"`
	RewardMean float64 `json:"eval_reward_mean"`
	RewardStd  float64 `json:"eval_reward_std"`
	Pairs      int     `json:"eval_pairs"`
}

// ScorePairs returns the rewards of every pair's chosen and rejected
// sequence.
// A reward that is NaN or infinite is an error naming the pair: it would
// make every metric NaN, or JSON output impossible, far from its cause.
func ScorePairs(score ScoreFunc, pairs []data.Pair) (chosen, rejected []float64, err error) {
	r, err := score(data.Stack(pairs))
	if err != nil {
		return nil, nil, err
	}
	for i, x := range r {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			side, k := "chosen", i
			if i >= len(pairs) {
				side, k = "rejected", i-len(pairs)
			}
			return nil, nil, fmt.Errorf("pair %d (id %d): the %s reward is %v: the model's config or weights overflow", k, pairs[k].ID, side, x)
		}
	}
	return r[:len(pairs)], r[len(pairs):], nil
}

// Evaluate scores pairs and sums them up with PairMetrics.
func Evaluate(score ScoreFunc, pairs []data.Pair) (*Metrics, error) {
	chosen, rejected, err := ScorePairs(score, pairs)
	if err != nil {
		return nil, err
	}
	return PairMetrics(chosen, rejected), nil
}

// PairMetrics computes the Bradley-Terry loss, pairwise accuracy (strict:
// a tie is wrong), mean margin and reward statistics of chosen and
// rejected rewards.
func PairMetrics(chosen, rejected []float64) *Metrics {
	n := len(chosen)
	ev := &Metrics{Pairs: n}
	var sum, sumSq float64
	for i := range chosen {
		d := chosen[i] - rejected[i]
		ev.Loss += softplus(-d)
		if d > 0 {
			ev.Accuracy++
		}
		ev.Margin += d
		for _, x := range []float64{chosen[i], rejected[i]} {
			sum += x
			sumSq += x * x
		}
	}
	ev.Loss /= float64(n)
	ev.Accuracy /= float64(n)
	ev.Margin /= float64(n)
	k := float64(2 * n)
	ev.RewardMean = sum / k
	ev.RewardStd = math.Sqrt(math.Max(0, sumSq/k-ev.RewardMean*ev.RewardMean))
	return ev
}

// softplus(x) = log(1 + e^x), stable for large |x|; -log σ(d) = softplus(-d).
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

// EstimatePairs decomposes each pair's reward gap under score, drawing
// comparison prompts from prompts (see decomposition.EstimateAll); with
// loglik the prompts are importance-weighted by the policy's likelihoods
// of the two responses, without it uniformly.
func EstimatePairs(pairs []data.Pair, prompts [][]int64, opt decomposition.Options, score decomposition.PrefixScoreFunc, loglik decomposition.LogLikFunc) ([]decomposition.PairEstimate, decomposition.Stats, error) {
	return decomposition.EstimateAll(decomposition.Views(pairs), prompts, opt, score, loglik)
}

// SwapSurvival is the prompt-swap probe: the share of pairs still ranked
// as their label says when both responses are scored under another
// pair's prompt (drawn with seed, a different text) instead of their own.
// A model that ignores the prompt keeps every preference (1); one that
// reads it loses those that depended on the prompt.
func SwapSurvival(score ScoreFunc, pairs []data.Pair, seed uint64) (float64, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5ee9))
	var seqs [][]int64
	for i, p := range pairs {
		j := i
		for try := 0; try < 32 && (j == i || slices.Equal(pairs[j].Prompt, p.Prompt)); try++ {
			j = rng.IntN(len(pairs))
		}
		if j == i || slices.Equal(pairs[j].Prompt, p.Prompt) {
			return 0, fmt.Errorf("prompt-swap probe: pair %d has no other prompt to swap in", p.ID)
		}
		x := pairs[j].Prompt
		seqs = append(seqs, append(append([]int64{}, x...), p.Chosen...), append(append([]int64{}, x...), p.Rejected...))
	}
	r, err := score(seqs)
	if err != nil {
		return 0, err
	}
	kept := 0
	for i := range pairs {
		if r[2*i] > r[2*i+1] {
			kept++
		}
	}
	return float64(kept) / float64(len(pairs)), nil
}
