package analysis

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"prism/data"
	"prism/decomposition"
	"prism/internal/torch"
	"prism/models"
)

func TestMain(m *testing.M) {
	if _, err := torch.Setup(0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// TestPromptCacheKeepsEstimates: the whole recompute's Δr2 (and Δr1, the
// mean and spread of the gaps, and the weights' ESS) are the same with
// the prompt cache on and off for the same draws, to 1e-5, on Llama and
// on Mistral (whose sliding window crosses the prompt boundary), with
// uniform and policy weights (the policy's pass cached too), each pair
// drawing its own prompts or groups of 16 sharing them.
func TestPromptCacheKeepsEstimates(t *testing.T) {
	type variant struct {
		preset string
		policy bool
		share  int
	}
	for _, v := range []variant{{"tiny-llama", false, 0}, {"tiny-mistral", false, 0}, {"tiny-llama", true, 0}, {"tiny-mistral", true, 16}, {"tiny-llama", false, 16}} {
		preset := v.preset
		t.Run(fmt.Sprintf("%s/policy=%v/share=%d", preset, v.policy, v.share), func(t *testing.T) {
			c, err := models.Preset(preset)
			if err != nil {
				t.Fatal(err)
			}
			m, err := models.FromValues(c, models.RandomInit(c, rand.New(rand.NewPCG(5, 6))), torch.CPU())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Drop()
			var policy *models.CausalLM
			if v.policy {
				pm, err := models.FromValues(c, models.RandomInit(c, rand.New(rand.NewPCG(7, 8))), torch.CPU())
				if err != nil {
					t.Fatal(err)
				}
				policy = models.TiedCausalLM(pm)
				defer policy.Drop()
			}
			pairs, _, err := data.Toy("length_bias", 120, c.VocabSize, 2)
			if err != nil {
				t.Fatal(err)
			}
			pool := decomposition.PromptPool(pairs)
			opt := decomposition.Options{Samples: 4, IncludeOwn: true, Tol: 1e-9, Seed: 11, PolicyTau: 1, Share: v.share}
			whole, _, err := EstimatePairs(pairs, pool, opt, ModelPrefixScorer(m, 16, false), PolicyLogLik(policy, 16, false))
			if err != nil {
				t.Fatal(err)
			}
			cached, st, err := EstimatePairs(pairs, pool, opt, ModelPrefixScorer(m, 16, true), PolicyLogLik(policy, 16, true))
			if err != nil {
				t.Fatal(err)
			}
			worst, moved := 0.0, false
			for i := range whole {
				a, b := whole[i], cached[i]
				for _, d := range []float64{a.PromptFree - b.PromptFree, a.PromptRelated - b.PromptRelated, a.Mean - b.Mean, a.Std - b.Std, a.Gap - b.Gap, a.ESS - b.ESS} {
					worst = max(worst, math.Abs(d))
				}
				moved = moved || a.PromptFree != 0
				if v.policy && math.Abs(a.ESS-5) < 1e-9 {
					t.Fatalf("pair %d: ESS %v with a policy: the weights are uniform, the policy checks nothing", i, a.ESS)
				}
			}
			if !moved {
				t.Fatal("every Δr2 is zero: the test checks nothing")
			}
			if worst > 1e-5 {
				t.Errorf("the prompt cache changes the estimates by up to %.2g", worst)
			}
			t.Logf("%d pairs, %d sequences: largest difference %.2g", st.Pairs, st.Sequences, worst)
		})
	}
}

// TestSwapSurvival: a model that ignores the prompt keeps every
// preference it had under a swapped prompt; one that only rewards a
// response matching its prompt keeps none.
func TestSwapSurvival(t *testing.T) {
	var pairs []data.Pair
	for i := range 40 {
		x := int64(10 + i%5)
		pairs = append(pairs, data.Pair{ID: i, Prompt: []int64{x, int64(i)}, Chosen: []int64{x, 1, 1}, Rejected: []int64{x + 1, 1}})
	}
	blind := func(seqs [][]int64) ([]float64, error) {
		out := make([]float64, len(seqs))
		for i, s := range seqs {
			out[i] = float64(len(s))
		}
		return out, nil
	}
	reads := func(seqs [][]int64) ([]float64, error) {
		out := make([]float64, len(seqs))
		for i, s := range seqs {
			if s[2] == s[0] { // the response's first token answers the prompt
				out[i] = 1
			}
		}
		return out, nil
	}
	if s, err := SwapSurvival(blind, pairs, 1); err != nil || s != 1 {
		t.Errorf("prompt-blind: %v %v, want 1", s, err)
	}
	s, err := SwapSurvival(reads, pairs, 1)
	if err != nil || s > 0.3 {
		t.Errorf("prompt-reading: %v %v, want about 1/5 (the swapped prompt shares the topic)", s, err)
	}
	if _, err := SwapSurvival(blind, pairs[:1], 1); err == nil {
		t.Error("one pair: no prompt to swap in, yet no error")
	}
}
