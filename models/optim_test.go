package models

import (
	"math"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestAdamWMatchesFormula runs two AdamW steps on loss = sum(c * p) and
// checks the weights against PyTorch's AdamW update worked out in float64.
func TestAdamWMatchesFormula(t *testing.T) {
	p0 := []float32{0.5, -1.5, 2}
	c := []float32{0.3, -2, 0.01}
	mk := func(v []float32, grad bool) *ts.Tensor {
		x, err := ts.OfSlice(v)
		if err != nil {
			t.Fatal(err)
		}
		if grad {
			x = x.MustSetRequiresGrad(true, true)
		}
		return x
	}
	w := mk(p0, true)
	defer w.Drop()
	ct := mk(c, false)
	defer ct.Drop()
	decayed := &Param{Name: "w", Shape: []int64{3}, T: w, Decay: true}
	const lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-8, 0.1
	opt, err := NewAdamW([]*Param{decayed}, b1, b2, eps, wd)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Drop()
	want := make([]float64, 3)
	m := make([]float64, 3)
	v := make([]float64, 3)
	for i := range want {
		want[i] = float64(p0[i])
	}
	for step := 1; step <= 2; step++ {
		if err := opt.ZeroGrad(); err != nil {
			t.Fatal(err)
		}
		prod := w.MustMul(ct, false)
		loss := prod.MustSum(gotch.Float, true)
		if err := loss.Backward(); err != nil {
			t.Fatal(err)
		}
		loss.MustDrop()
		if err := opt.Update(lr); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			g := float64(c[i])
			want[i] *= 1 - lr*wd
			m[i] = b1*m[i] + (1-b1)*g
			v[i] = b2*v[i] + (1-b2)*g*g
			bc1 := 1 - math.Pow(b1, float64(step))
			bc2 := 1 - math.Pow(b2, float64(step))
			want[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
		}
		got := w.Float64Values()
		for i := range want {
			if math.Abs(got[i]-want[i]) > 1e-6 {
				t.Fatalf("step %d: weights %v, want %v", step, got, want)
			}
		}
	}
	// The state survives a round trip.
	st, err := opt.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st["exp_avg.w"]) != 3 || math.Abs(float64(st["exp_avg.w"][1])-m[1]) > 1e-6 {
		t.Fatalf("state %v, want exp_avg %v", st, m)
	}
	if err := opt.SetState(st); err != nil {
		t.Fatal(err)
	}
	delete(st, "exp_avg_sq.w")
	if err := opt.SetState(st); err == nil {
		t.Fatal("incomplete optimizer state accepted")
	}
	st["exp_avg_sq.w"] = []float32{1}
	if err := opt.SetState(st); err == nil {
		t.Fatal("optimizer state of the wrong shape accepted")
	}
}
