package models

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// grads runs ForwardBackward and returns every parameter's gradient.
func grads(t *testing.T, m *RewardModel, b *Batch, checkpoint bool, coef []float32) map[string][]float64 {
	t.Helper()
	for _, p := range m.Params {
		g, err := p.T.Grad(false)
		if err != nil {
			t.Fatal(err)
		}
		if g.MustDefined() {
			if err := g.Zero_(); err != nil {
				t.Fatal(err)
			}
		}
		g.Drop()
	}
	c := ts.MustOfSlice(coef)
	defer c.Drop()
	var keep []*ts.Tensor
	defer func() {
		for _, x := range keep {
			x.Drop()
		}
	}()
	// A loss that weights each row differently, so every row's gradient
	// path is checked.
	err := m.ForwardBackward(b, checkpoint, func(r *ts.Tensor) (*ts.Tensor, error) {
		p, err := r.Mul(c, false)
		if err != nil {
			return nil, err
		}
		keep = append(keep, p)
		l, err := p.Sum(gotch.Float, false)
		if err != nil {
			return nil, err
		}
		keep = append(keep, l)
		return l, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float64{}
	for _, p := range m.Params {
		g, err := p.T.Grad(false)
		if err != nil {
			t.Fatal(err)
		}
		if !g.MustDefined() {
			t.Fatalf("%s has no gradient (checkpoint %v)", p.Name, checkpoint)
		}
		out[p.Name] = g.Float64Values()
		g.Drop()
	}
	return out
}

// TestGradientCheckpointingMatches: per-block checkpointing gives every
// parameter the gradient of the ordinary backward pass, to fp32
// tolerance, for Llama, Llama 3 (one KV head) and Mistral (sequences
// longer than its sliding window), left and right padded.
func TestGradientCheckpointingMatches(t *testing.T) {
	for _, preset := range []string{"tiny-llama", "tiny-llama3", "tiny-mistral"} {
		for _, left := range []bool{false, true} {
			m, _ := newRandom(t, preset, 3)
			rng := rand.New(rand.NewPCG(5, 6))
			b := pad(randomSeqs(rng, 5, 3, 20, m.Config.VocabSize), left, 0)
			coef := []float32{1, -0.5, 2, 0.25, -1}
			want := grads(t, m, b, false, coef)
			got := grads(t, m, b, true, coef)
			worst, where := 0.0, ""
			for name, w := range want {
				scale := 0.0
				for _, x := range w {
					scale = math.Max(scale, math.Abs(x))
				}
				if scale == 0 {
					t.Fatalf("%s %s: zero gradient, the test checks nothing there", preset, name)
				}
				for i := range w {
					if d := math.Abs(got[name][i]-w[i]) / scale; d > worst {
						worst, where = d, name
					}
				}
			}
			t.Logf("%s left=%v: largest gradient difference %.2g of the tensor's largest (%s)", preset, left, worst, where)
			if worst > 1e-5 {
				t.Errorf("%s left=%v: checkpointed gradient of %s differs by %.2g", preset, left, where, worst)
			}
		}
	}
}
