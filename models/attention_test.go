package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestSDPAMatchesEager: on a libtorch with scaled_dot_product_attention,
// SDPA gives eager attention's rewards and gradients (every parameter's)
// to 1e-5, on every preset (grouped-query heads, Llama 3 rope scaling,
// Mistral's sliding window shorter than the sequences), with left and
// right padding, with and without the last block's one-query shortcut
// (the gradient-checkpointed path runs every block in full).
func TestSDPAMatchesEager(t *testing.T) {
	if !SDPAAvailable() {
		t.Skip("scaled_dot_product_attention is not in this libtorch")
	}
	for _, preset := range PresetNames() {
		for _, left := range []bool{false, true} {
			for _, ckpt := range []bool{false, true} {
				name := preset + map[bool]string{false: "/right", true: "/left"}[left] + map[bool]string{false: "", true: "/checkpointed"}[ckpt]
				t.Run(name, func(t *testing.T) {
					m, _ := newRandom(t, preset, 13)
					seqs := randomSeqs(rand.New(rand.NewPCG(9, 9)), 5, 2, 40, m.Config.VocabSize)
					b := pad(seqs, left, 0)
					run := func(a Attention) ([]float64, map[string][]float64) {
						if err := m.SetAttention(a); err != nil {
							t.Fatal(err)
						}
						return rewardsAndGrads(t, m, b, ckpt)
					}
					re, ge := run(AttentionEager)
					rs, gs := run(AttentionSDPA)
					for i := range re {
						if d := math.Abs(re[i] - rs[i]); d > 1e-5*math.Max(1, math.Abs(re[i])) {
							t.Errorf("row %d: sdpa reward %v, eager %v", i, rs[i], re[i])
						}
					}
					for name, e := range ge {
						scale := 0.0
						for _, x := range e {
							scale = math.Max(scale, math.Abs(x))
						}
						for j := range e {
							if d := math.Abs(e[j] - gs[name][j]); d > 1e-5*math.Max(1, scale) {
								t.Fatalf("%s[%d]: sdpa gradient %v, eager %v (largest %v)", name, j, gs[name][j], e[j], scale)
							}
						}
					}
				})
			}
		}
	}
}

// rewardsAndGrads returns the rewards of b and the gradient of
// sum_i (i+1)·reward_i with respect to every parameter.
func rewardsAndGrads(t *testing.T, m *RewardModel, b *Batch, checkpoint bool) ([]float64, map[string][]float64) {
	t.Helper()
	opt, err := NewAdamW(m.Params, 0.9, 0.999, 1e-8, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Drop()
	if err := opt.ZeroGrad(); err != nil {
		t.Fatal(err)
	}
	var out []float64
	var keep []*ts.Tensor
	defer func() {
		for _, x := range keep {
			x.MustDrop()
		}
	}()
	coef := make([]float32, b.B)
	for i := range coef {
		coef[i] = float32(i + 1)
	}
	err = m.ForwardBackward(b, checkpoint, func(r *ts.Tensor) (*ts.Tensor, error) {
		out = r.Float64Values()
		c := ts.MustOfSlice(coef)
		l := r.MustMul(c, false).MustSum(gotch.Float, true)
		keep = append(keep, c, l)
		return l, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float64{}
	for _, p := range m.Params {
		g := p.T.MustGrad(false)
		grads[p.Name] = g.Float64Values()
		g.MustDrop()
	}
	return out, grads
}
