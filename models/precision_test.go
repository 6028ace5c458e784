package models

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
)

// TestBF16RewardsTrackFP32: on the same weights, bf16 mixed precision
// gives float32's rewards to within what bfloat16's 8-bit mantissa allows
// (relative rounding 2^-8 per operation, compounded over the layers: the
// bound is 2% of the rewards' spread, against 0.3-0.6% measured), for every preset, left and right
// padding and both attentions, and ranks the pairs alike.
func TestBF16RewardsTrackFP32(t *testing.T) {
	atts := []Attention{AttentionEager}
	if SDPAAvailable() {
		atts = append(atts, AttentionSDPA)
	}
	for _, preset := range PresetNames() {
		for _, att := range atts {
			for _, left := range []bool{false, true} {
				t.Run(preset+"/"+string(att)+map[bool]string{false: "/right", true: "/left"}[left], func(t *testing.T) {
					c, err := Preset(preset)
					if err != nil {
						t.Fatal(err)
					}
					m, err := FromValues(c, RandomInit(c, rand.New(rand.NewPCG(21, 1))), gotch.CPU)
					if err != nil {
						t.Fatal(err)
					}
					defer m.Drop()
					if err := m.SetAttention(att); err != nil {
						t.Fatal(err)
					}
					b := pad(randomSeqs(rand.New(rand.NewPCG(4, 4)), 16, 2, 40, c.VocabSize), left, 0)
					r32 := rewards(t, m, b)
					if err := m.SetPrecision(PrecisionBF16); err != nil {
						t.Fatal(err)
					}
					r16 := rewards(t, m, b)
					lo, hi, worst := math.Inf(1), math.Inf(-1), 0.0
					for i := range r32 {
						lo, hi = math.Min(lo, r32[i]), math.Max(hi, r32[i])
						worst = math.Max(worst, math.Abs(r16[i]-r32[i]))
					}
					spread := hi - lo
					t.Logf("rewards spread %.4g, largest bf16 difference %.3g (%.2g of the spread)", spread, worst, worst/spread)
					if worst > 0.02*spread {
						t.Errorf("bf16 rewards differ from float32 by up to %.3g, more than 2%% of their spread %.3g", worst, spread)
					}
					if worst == 0 {
						t.Error("bf16 gave float32's rewards exactly: the precision was not applied")
					}
				})
			}
		}
	}
}

// TestNonFiniteWeightsAreRefused: a model folder whose weights hold a NaN
// or an infinity is refused at load, naming the file and the tensor.
func TestNonFiniteWeightsAreRefused(t *testing.T) {
	c, err := Preset("tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		vals := RandomInit(c, rand.New(rand.NewPCG(1, 1)))
		vals["score.weight"][3] = bad
		dir := t.TempDir()
		if err := SaveValues(dir, c, vals, nil); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(dir, gotch.CPU, nil)
		if err == nil || !strings.Contains(err.Error(), `tensor "score.weight"`) || !strings.Contains(err.Error(), "1 of its values are NaN or infinite") {
			t.Errorf("a score head holding %v: %v", bad, err)
		}
	}
}
