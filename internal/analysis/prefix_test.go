package analysis

import (
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
// mean and spread of the gaps) are the same with the prompt cache on and
// off for the same draws, to 1e-5, on Llama and on Mistral (whose sliding
// window crosses the prompt boundary).
func TestPromptCacheKeepsEstimates(t *testing.T) {
	for _, preset := range []string{"tiny-llama", "tiny-mistral"} {
		t.Run(preset, func(t *testing.T) {
			c, err := models.Preset(preset)
			if err != nil {
				t.Fatal(err)
			}
			m, err := models.FromValues(c, models.RandomInit(c, rand.New(rand.NewPCG(5, 6))), torch.CPU())
			if err != nil {
				t.Fatal(err)
			}
			defer m.Drop()
			pairs, _, err := data.Toy("length_bias", 120, c.VocabSize, 2)
			if err != nil {
				t.Fatal(err)
			}
			pool := decomposition.PromptPool(pairs)
			opt := decomposition.Options{Samples: 4, IncludeOwn: true, Tol: 1e-9, Seed: 11}
			whole, _, err := EstimatePairs(pairs, pool, opt, ModelPrefixScorer(m, 16, false), nil)
			if err != nil {
				t.Fatal(err)
			}
			cached, st, err := EstimatePairs(pairs, pool, opt, ModelPrefixScorer(m, 16, true), nil)
			if err != nil {
				t.Fatal(err)
			}
			worst, moved := 0.0, false
			for i := range whole {
				a, b := whole[i], cached[i]
				for _, d := range []float64{a.PromptFree - b.PromptFree, a.PromptRelated - b.PromptRelated, a.Mean - b.Mean, a.Std - b.Std, a.Gap - b.Gap} {
					worst = max(worst, math.Abs(d))
				}
				moved = moved || a.PromptFree != 0
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
