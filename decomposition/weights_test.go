package decomposition

import (
	"errors"
	"math"
	"testing"
)

func sum(w []float64) float64 {
	var s float64
	for _, x := range w {
		s += x
	}
	return s
}

func TestUniformWeights(t *testing.T) {
	for _, m := range []int{1, 3, 8, 1000} {
		w := UniformWeights(m)
		if len(w) != m {
			t.Fatalf("UniformWeights(%d) has length %d", m, len(w))
		}
		for i, x := range w {
			if x != 1/float64(m) {
				t.Errorf("UniformWeights(%d)[%d] = %v, want %v", m, i, x, 1/float64(m))
			}
		}
		if s := sum(w); math.Abs(s-1) > 1e-12 {
			t.Errorf("UniformWeights(%d) sums to %v", m, s)
		}
	}
	for _, m := range []int{0, -2} {
		if w := UniformWeights(m); w != nil {
			t.Errorf("UniformWeights(%d) = %v, want nil", m, w)
		}
	}
}

func TestPolicyWeights(t *testing.T) {
	ln2 := math.Ln2
	tests := []struct {
		name   string
		l1, l2 []float64
		tau    float64
		want   []float64
	}{
		{"equal likelihoods", []float64{-2, -2, -2, -2}, []float64{-1, -1, -1, -1}, 3, []float64{0.25, 0.25, 0.25, 0.25}},
		{"tau zero", []float64{-1, -5, -20}, []float64{0, -3, -1}, 0, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"factor two", []float64{0, -ln2}, []float64{0, 0}, 1, []float64{2.0 / 3, 1.0 / 3}},
		{"split across responses", []float64{-ln2 / 2, 0}, []float64{-ln2 / 2, -ln2}, 2, []float64{1.0 / 2, 1.0 / 2}},
		{"tau sharpens", []float64{0, -ln2}, []float64{0, 0}, 2, []float64{4.0 / 5, 1.0 / 5}},
		{"single prompt", []float64{-9}, []float64{-4}, 1, []float64{1}},
		// Raw exp(τ·(ℓ1+ℓ2)) would underflow to 0 for every prompt here.
		{"very negative", []float64{-1e4, -1e4 - ln2/100}, []float64{-1e4, -1e4}, 100, []float64{2.0 / 3, 1.0 / 3}},
		// Raw exponents of ±1e6 would overflow or underflow.
		{"large tau", []float64{-1e4, -1e4 + 1e-3, -1e4 + 2}, []float64{-1e4, -1e4, -1e4}, 1e3, []float64{0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := PolicyWeights(tt.l1, tt.l2, tt.tau)
			if err != nil {
				t.Fatal(err)
			}
			if s := sum(w); math.Abs(s-1) > 1e-12 {
				t.Errorf("weights sum to %v, want 1", s)
			}
			for i := range tt.want {
				if math.IsNaN(w[i]) || math.Abs(w[i]-tt.want[i]) > 1e-9 {
					t.Errorf("w = %v, want %v", w, tt.want)
					break
				}
			}
		})
	}
}

func TestPolicyWeightsErrors(t *testing.T) {
	tests := []struct {
		name   string
		l1, l2 []float64
		tau    float64
	}{
		{"empty", nil, nil, 1},
		{"length mismatch", []float64{-1, -2}, []float64{-1}, 1},
		{"NaN likelihood", []float64{-1, math.NaN()}, []float64{-1, -1}, 1},
		{"-Inf likelihood", []float64{-1, -1}, []float64{math.Inf(-1), -1}, 1},
		{"negative tau", []float64{-1}, []float64{-1}, -0.5},
		{"NaN tau", []float64{-1}, []float64{-1}, math.NaN()},
		{"Inf tau", []float64{-1}, []float64{-1}, math.Inf(1)},
		{"overflowing exponent", []float64{-1e300}, []float64{-1e300}, 1e10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if w, err := PolicyWeights(tt.l1, tt.l2, tt.tau); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("PolicyWeights = %v, %v; want error wrapping ErrInvalidInput", w, err)
			}
		})
	}
}

func TestESS(t *testing.T) {
	tests := []struct {
		name string
		w    []float64
		want float64
	}{
		{"uniform 1", UniformWeights(1), 1},
		{"uniform 8", UniformWeights(8), 8},
		{"uniform 100", UniformWeights(100), 100},
		{"one-hot", []float64{0, 0, 1, 0, 0}, 1},
		{"unnormalised one-hot", []float64{0, 7}, 1},
		{"unnormalised uniform", []float64{3, 3, 3}, 3},
		{"two to one", []float64{2.0 / 3, 1.0 / 3}, 1.8},
		{"empty", nil, 0},
		{"all zero", []float64{0, 0}, 0},
	}
	for _, tt := range tests {
		if got := ESS(tt.w); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: ESS(%v) = %v, want %v", tt.name, tt.w, got, tt.want)
		}
	}
}
