package models

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestScorePrefixedMatchesFull: scoring responses after a cached prefix
// gives the rewards of the whole sequences to 1e-5 (fp32), on every preset
// (Llama, Llama 3's rope scaling, Mistral's sliding window of 8 with
// prefixes shorter than, equal to and longer than it, so the window
// crosses the prefix boundary), with eager and SDPA attention where this
// libtorch has it.
func TestScorePrefixedMatchesFull(t *testing.T) {
	eachPresetAttention(t, 29, func(t *testing.T, m *RewardModel) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, plen := range []int{1, 5, 8, 13} {
			prefix := randomSeqs(rng, 1, plen, plen, m.Config.VocabSize)[0]
			responses := randomSeqs(rng, 7, 1, 20, m.Config.VocabSize)
			got, err := m.ScorePrefixed(prefix, responses, 3)
			if err != nil {
				t.Fatal(err)
			}
			full := make([][]int64, len(responses))
			for i, r := range responses {
				full[i] = append(append([]int64{}, prefix...), r...)
			}
			want, err := m.Score(full, 4)
			if err != nil {
				t.Fatal(err)
			}
			worst, scale := 0.0, 0.0
			for i := range want {
				worst = max(worst, math.Abs(got[i]-want[i]))
				scale = max(scale, math.Abs(want[i]))
			}
			if scale == 0 {
				t.Fatal("all rewards are zero: the test checks nothing")
			}
			if worst > 1e-5*max(1, scale) {
				t.Errorf("prefix %d: cached %v, full %v (max difference %.2g)", plen, got, want, worst)
			}
		}
	})
}

// TestScorePromptedMatchesFull: many prompts of different lengths (some
// repeated, one empty), each with several responses, scored with prompts
// cached two at a time and responses three to a batch, give the rewards
// of the joined sequences to 1e-5.
func TestScorePromptedMatchesFull(t *testing.T) {
	eachPresetAttention(t, 31, func(t *testing.T, m *RewardModel) {
		rng := rand.New(rand.NewPCG(8, 9))
		pool := append(randomSeqs(rng, 5, 1, 14, m.Config.VocabSize), nil)
		var prompts, responses, full [][]int64
		for i := 0; i < 30; i++ {
			p := pool[rng.IntN(len(pool))]
			r := randomSeqs(rng, 1, 1, 12, m.Config.VocabSize)[0]
			prompts, responses = append(prompts, p), append(responses, r)
			full = append(full, append(append([]int64{}, p...), r...))
		}
		got, err := m.ScorePrompted(prompts, responses, 2)
		if err != nil {
			t.Fatal(err)
		}
		want, err := m.Score(full, 5)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if d := math.Abs(got[i] - want[i]); d > 1e-5*max(1, math.Abs(want[i])) {
				t.Errorf("item %d (prompt of %d, response of %d): cached %v, full %v", i, len(prompts[i]), len(responses[i]), got[i], want[i])
			}
		}
	})
}

// eachPresetAttention runs f on a random model of every preset, with eager
// attention and with SDPA where this libtorch has it.
func eachPresetAttention(t *testing.T, seed uint64, f func(t *testing.T, m *RewardModel)) {
	atts := []Attention{AttentionEager}
	if SDPAAvailable() {
		atts = append(atts, AttentionSDPA)
	}
	for _, preset := range PresetNames() {
		for _, att := range atts {
			t.Run(preset+"/"+string(att), func(t *testing.T) {
				m, _ := newRandom(t, preset, seed)
				if err := m.SetAttention(att); err != nil {
					t.Fatal(err)
				}
				f(t, m)
			})
		}
	}
}

// TestResponseLogLikPromptedMatchesFull: the policy's log-likelihoods
// with each prompt cached (prompts two at a time, responses three to a
// batch, one-token responses included) equal the joined sequences' to
// 1e-5 on every preset and attention.
func TestResponseLogLikPromptedMatchesFull(t *testing.T) {
	eachPresetAttention(t, 37, func(t *testing.T, m *RewardModel) {
		lm := TiedCausalLM(m)
		rng := rand.New(rand.NewPCG(10, 11))
		pool := randomSeqs(rng, 5, 1, 14, m.Config.VocabSize)
		var prompts, responses [][]int64
		for range 30 {
			prompts = append(prompts, pool[rng.IntN(len(pool))])
			responses = append(responses, randomSeqs(rng, 1, 1, 12, m.Config.VocabSize)[0])
		}
		got, err := lm.ResponseLogLikPrompted(prompts, responses, 2)
		if err != nil {
			t.Fatal(err)
		}
		want, err := lm.ResponseLogLik(prompts, responses, 5)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if want[i] >= 0 {
				t.Fatalf("item %d: log-likelihood %v is not negative", i, want[i])
			}
			if d := math.Abs(got[i] - want[i]); d > 1e-5*max(1, math.Abs(want[i])) {
				t.Errorf("item %d (prompt of %d, response of %d): cached %v, full %v", i, len(prompts[i]), len(responses[i]), got[i], want[i])
			}
		}
		if _, err := lm.ResponseLogLikPrompted([][]int64{{}}, [][]int64{{3}}, 2); err == nil {
			t.Error("an empty prompt gave a log-likelihood")
		}
	})
}
