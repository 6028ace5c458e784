package decomposition

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const tol = 1e-6

func TestSigmoid(t *testing.T) {
	tests := []struct {
		x, want float64
	}{
		{0, 0.5},
		{1, 0.7310585786300049},
		{-1, 0.2689414213699951},
		{20, 0.9999999979388463},
		{800, 1},
		{-700, math.Exp(-700)},
		{-800, 0},
		{math.Inf(1), 1},
		{math.Inf(-1), 0},
	}
	for _, tt := range tests {
		got := Sigmoid(tt.x)
		if math.Abs(got-tt.want) > 1e-15*math.Max(1, math.Abs(tt.want)) && got != tt.want {
			t.Errorf("Sigmoid(%v) = %v, want %v", tt.x, got, tt.want)
		}
		if math.IsNaN(got) {
			t.Errorf("Sigmoid(%v) is NaN", tt.x)
		}
	}
	// The tail is kept to full relative precision rather than flushed to 0.
	if got, want := Sigmoid(-700), math.Exp(-700); math.Abs(got-want) > 1e-12*want {
		t.Errorf("Sigmoid(-700) = %v, want %v to relative 1e-12", got, want)
	}
	for _, x := range []float64{0.3, 2, 17, 36} {
		if s := Sigmoid(x) + Sigmoid(-x); math.Abs(s-1) > 1e-15 {
			t.Errorf("Sigmoid(%v) + Sigmoid(%v) = %v, want 1", x, -x, s)
		}
	}
}

// randomProblem returns m deltas in [-scale, scale] and m positive weights
// summing to one.
func randomProblem(r *rand.Rand, m int, scale float64) (deltas, weights []float64) {
	deltas = make([]float64, m)
	weights = make([]float64, m)
	var sum float64
	for i := range m {
		deltas[i] = scale * (2*r.Float64() - 1)
		weights[i] = r.ExpFloat64()
		sum += weights[i]
	}
	for i := range weights {
		weights[i] /= sum
	}
	return deltas, weights
}

func TestPromptFreeGapAntisymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		m := 1 + r.IntN(16)
		scale := []float64{0.1, 3, 50}[trial%3]
		deltas, weights := randomProblem(r, m, scale)
		neg := make([]float64, m)
		for i, d := range deltas {
			neg[i] = -d
		}
		c, err := PromptFreeGap(deltas, weights, tol)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		cn, err := PromptFreeGap(neg, weights, tol)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		if math.Abs(c+cn) > 2*tol {
			t.Errorf("trial %d: Δr2(y1,y2) = %v but Δr2(y2,y1) = %v, want negatives", trial, c, cn)
		}
	}
}

func TestPromptFreeGapConstant(t *testing.T) {
	for _, d := range []float64{0, 1, -1, 0.25, -3.5, 40, -40, 1e6} {
		for _, m := range []int{1, 2, 8} {
			deltas := make([]float64, m)
			for i := range deltas {
				deltas[i] = d
			}
			got, err := PromptFreeGap(deltas, UniformWeights(m), tol)
			if err != nil {
				t.Fatalf("d=%v m=%d: %v", d, m, err)
			}
			if got != d {
				t.Errorf("d=%v m=%d: got %v, want exactly %v", d, m, got, d)
			}
		}
	}
}

func TestPromptFreeGapSingle(t *testing.T) {
	for _, d := range []float64{-7.25, -0.001, 0, 2.5, 40} {
		got, err := PromptFreeGap([]float64{d}, []float64{1}, tol)
		if err != nil {
			t.Fatalf("Δ=%v: %v", d, err)
		}
		if got != d {
			t.Errorf("Δ=%v: got %v, want %v", d, got, d)
		}
	}
}

// TestPromptFreeGapRecoversResponseTerm builds a reward r(x, y) = f(x, y) +
// g(y) whose prompt part, over the sampled prompts, contributes gaps in ±a_j
// pairs of equal weight, and checks that the estimate is g(y1) − g(y2).
func TestPromptFreeGapRecoversResponseTerm(t *testing.T) {
	const y1, y2 = 0, 1
	tests := []struct {
		name   string
		g      [2]float64 // g(y1), g(y2)
		a      []float64  // prompt-part gaps, each used as +a_j and −a_j
		pairW  []float64  // weight of each ± pair (both members share it)
		offset float64    // size of the common prompt-only term in f
	}{
		{"small", [2]float64{0.7, 0.2}, []float64{0.3}, []float64{1}, 0},
		{"negative", [2]float64{-1.5, 2}, []float64{1, 2, 4}, []float64{1, 1, 1}, 5},
		{"unequal pair weights", [2]float64{3, 1}, []float64{0.5, 6, 2, 0.1}, []float64{0.1, 0.4, 0.3, 0.2}, -2},
		{"large prompt part", [2]float64{0.25, -0.25}, []float64{30, 45, 8}, []float64{2, 1, 1}, 100},
		{"zero gap", [2]float64{4, 4}, []float64{1, 3}, []float64{1, 5}, 0},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := 2 * len(tt.a)
			// f[x][y]: a prompt-only offset common to both responses plus
			// the signed prompt–response interaction ±a_j on y1.
			f := make([][2]float64, m)
			weights := make([]float64, m)
			for j, a := range tt.a {
				for s, sign := range []float64{1, -1} {
					x := 2*j + s
					base := tt.offset * r.Float64()
					f[x] = [2]float64{base + sign*a, base}
					weights[x] = tt.pairW[j]
				}
			}
			reward := func(x, y int) float64 { return f[x][y] + tt.g[y] }
			deltas := make([]float64, m)
			for x := range deltas {
				deltas[x] = reward(x, y1) - reward(x, y2)
			}
			got, err := PromptFreeGap(deltas, weights, tol)
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.g[y1] - tt.g[y2]; math.Abs(got-want) > tol {
				t.Errorf("got %v, want g(y1)−g(y2) = %v", got, want)
			}
		})
	}
}

func TestPromptFreeGapSolvesEquation(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 300 {
		m := 1 + r.IntN(32)
		scale := []float64{0.01, 1, 10, 60}[trial%4]
		deltas, weights := randomProblem(r, m, scale)
		c, err := PromptFreeGap(deltas, weights, tol)
		if err != nil {
			t.Fatalf("trial %d: %v", trial, err)
		}
		var s float64
		for i, d := range deltas {
			s += weights[i] * Sigmoid(d-c)
		}
		if math.Abs(s-0.5) > 1e-6 {
			t.Errorf("trial %d (M=%d): Σ w σ(Δ−c) = %v at c = %v, want 1/2", trial, m, s, c)
		}
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, d := range deltas {
			lo, hi = min(lo, d), max(hi, d)
		}
		if c < lo || c > hi {
			t.Errorf("trial %d: c = %v outside [%v, %v]", trial, c, lo, hi)
		}
	}
}

func TestPromptFreeGapWeightHandling(t *testing.T) {
	deltas := []float64{-1, 0.5, 2, 3.5}
	w := []float64{0.1, 0.2, 0.3, 0.4}
	want, err := PromptFreeGap(deltas, w, tol)
	if err != nil {
		t.Fatal(err)
	}
	scaled := []float64{10, 20, 30, 40}
	if got, err := PromptFreeGap(deltas, scaled, tol); err != nil || math.Abs(got-want) > tol {
		t.Errorf("unnormalised weights: got %v, %v; want %v", got, err, want)
	}
	// A zero-weight outlier must not move the estimate.
	withOutlier := append([]float64{1e9}, deltas...)
	wOutlier := append([]float64{0}, w...)
	if got, err := PromptFreeGap(withOutlier, wOutlier, tol); err != nil || math.Abs(got-want) > tol {
		t.Errorf("zero-weight outlier: got %v, %v; want %v", got, err, want)
	}
	// A one-hot weight selects that prompt's gap.
	if got, err := PromptFreeGap(deltas, []float64{0, 0, 1, 0}, tol); err != nil || got != 2 {
		t.Errorf("one-hot weights: got %v, %v; want 2", got, err)
	}
}

func TestPromptFreeGapErrors(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name            string
		deltas, weights []float64
		tol             float64
	}{
		{"empty", nil, nil, tol},
		{"empty deltas", []float64{}, []float64{1}, tol},
		{"length mismatch", []float64{1, 2}, []float64{1}, tol},
		{"NaN delta", []float64{1, nan}, []float64{0.5, 0.5}, tol},
		{"+Inf delta", []float64{inf, 1}, []float64{0.5, 0.5}, tol},
		{"-Inf delta", []float64{-inf, 1}, []float64{0.5, 0.5}, tol},
		{"NaN weight", []float64{1, 2}, []float64{nan, 0.5}, tol},
		{"Inf weight", []float64{1, 2}, []float64{inf, 0.5}, tol},
		{"negative weight", []float64{1, 2}, []float64{1.5, -0.5}, tol},
		{"zero weights", []float64{1, 2}, []float64{0, 0}, tol},
		{"overflowing weights", []float64{1, 2}, []float64{math.MaxFloat64, math.MaxFloat64}, tol},
		{"zero tol", []float64{1, 2}, []float64{0.5, 0.5}, 0},
		{"negative tol", []float64{1, 2}, []float64{0.5, 0.5}, -1e-6},
		{"NaN tol", []float64{1, 2}, []float64{0.5, 0.5}, nan},
		{"Inf tol", []float64{1, 2}, []float64{0.5, 0.5}, inf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PromptFreeGap(tt.deltas, tt.weights, tt.tol)
			if !errors.Is(err, ErrInvalidInput) {
				t.Errorf("PromptFreeGap = %v, %v; want error wrapping ErrInvalidInput", got, err)
			}
			if _, err := Decompose(0, tt.deltas, tt.weights, tt.tol); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("Decompose error = %v, want ErrInvalidInput", err)
			}
		})
	}
}

func TestDecompose(t *testing.T) {
	tests := []struct {
		name            string
		own             float64
		deltas, weights []float64
		want            Estimate
	}{
		{
			name:    "constant gaps",
			own:     2.5,
			deltas:  []float64{1, 1, 1, 1},
			weights: UniformWeights(4),
			want:    Estimate{Gap: 2.5, PromptFree: 1, PromptRelated: 1.5, ESS: 4},
		},
		{
			name:    "symmetric prompt part",
			own:     -1,
			deltas:  []float64{0.5 + 2, 0.5 - 2, 0.5 + 7, 0.5 - 7},
			weights: []float64{1, 1, 3, 3},
			want:    Estimate{Gap: -1, PromptFree: 0.5, PromptRelated: -1.5, ESS: 64.0 / 20},
		},
		{
			name:    "one-hot",
			own:     0,
			deltas:  []float64{-3, 4},
			weights: []float64{0, 2},
			want:    Estimate{Gap: 0, PromptFree: 4, PromptRelated: -4, ESS: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decompose(tt.own, tt.deltas, tt.weights, tol)
			if err != nil {
				t.Fatal(err)
			}
			if got.Gap != tt.want.Gap ||
				math.Abs(got.PromptFree-tt.want.PromptFree) > tol ||
				math.Abs(got.PromptRelated-tt.want.PromptRelated) > tol ||
				math.Abs(got.ESS-tt.want.ESS) > 1e-12 {
				t.Errorf("Decompose = %+v, want %+v", got, tt.want)
			}
			if got.PromptFree+got.PromptRelated != got.Gap {
				t.Errorf("PromptFree + PromptRelated = %v, want Gap %v", got.PromptFree+got.PromptRelated, got.Gap)
			}
		})
	}
	for _, own := range []float64{math.NaN(), math.Inf(-1)} {
		if _, err := Decompose(own, []float64{1}, []float64{1}, tol); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Decompose(%v, ...) error = %v, want ErrInvalidInput", own, err)
		}
	}
}

func ExampleDecompose() {
	// Gaps of one response pair scored under four sampled prompts.
	deltas := []float64{1.2, 0.4, 0.9, -0.3}
	est, err := Decompose(1.5, deltas, UniformWeights(len(deltas)), 1e-6)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("prompt-free %.4f, prompt-related %.4f, ESS %.1f\n", est.PromptFree, est.PromptRelated, est.ESS)
	// Output: prompt-free 0.5561, prompt-related 0.9439, ESS 4.0
}

func BenchmarkPromptFreeGap(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	deltas, weights := randomProblem(r, 8, 5)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := PromptFreeGap(deltas, weights, tol); err != nil {
			b.Fatal(err)
		}
	}
}
