package decomposition

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLowestFraction(t *testing.T) {
	tests := []struct {
		name string
		pool []float64
		rho  float64
		want []int
	}{
		{"half", []float64{3, -1, 2, 0.5}, 0.5, []int{1, 3}},
		{"all", []float64{3, -1, 2, 0.5}, 1, []int{0, 1, 2, 3}},
		{"rounds up", []float64{3, -1, 2, 0.5}, 0.3, []int{1, 3}},
		{"at least one", []float64{3, -1, 2, 0.5}, 1e-9, []int{1}},
		{"signed not absolute", []float64{-5, 0.1, -0.1, 4}, 0.5, []int{0, 2}},
		{"exact product", []float64{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}, 0.3, []int{7, 8, 9}},
		{"ties to lower index", []float64{1, 0, 1, 0, 1}, 0.6, []int{0, 1, 3}},
		{"all tied", []float64{2, 2, 2, 2}, 0.5, []int{0, 1}},
		{"infinite values", []float64{math.Inf(1), 0, math.Inf(-1)}, 0.5, []int{1, 2}},
		{"single", []float64{7}, 0.1, []int{0}},
		{"empty", nil, 0.5, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := slices.Clone(tt.pool)
			got, err := LowestFraction(pool, tt.rho)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("LowestFraction(%v, %v) = %v, want %v", tt.pool, tt.rho, got, tt.want)
			}
			if !slices.Equal(pool, tt.pool) {
				t.Errorf("LowestFraction modified its input: %v", pool)
			}
		})
	}
}

func TestLowestFractionErrors(t *testing.T) {
	pool := []float64{1, 2, 3}
	for _, rho := range []float64{0, -0.1, 1.0000001, 2, math.NaN(), math.Inf(1)} {
		if got, err := LowestFraction(pool, rho); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("LowestFraction(ρ=%v) = %v, %v; want ErrInvalidInput", rho, got, err)
		}
	}
	if got, err := LowestFraction([]float64{1, math.NaN()}, 0.5); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("LowestFraction with NaN = %v, %v; want ErrInvalidInput", got, err)
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		name string
		pool []float64
		tau  float64
		want []int
	}{
		{"mixed", []float64{3, -1, 2, 0.5}, 1, []int{1, 3}},
		{"strict", []float64{1, 0.999, 1.001}, 1, []int{1}},
		{"negative threshold", []float64{-3, -1, 0, -2.5}, -2, []int{0, 3}},
		{"none", []float64{1, 2}, 0, []int{}},
		{"all", []float64{1, 2}, 5, []int{0, 1}},
		{"NaN skipped", []float64{math.NaN(), -1}, 0, []int{1}},
		{"empty", nil, 0, []int{}},
	}
	for _, tt := range tests {
		if got := Threshold(tt.pool, tt.tau); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Threshold(%v, %v) = %v, want %v", tt.name, tt.pool, tt.tau, got, tt.want)
		}
	}
}

func TestSoftmaxSample(t *testing.T) {
	tests := []struct {
		name string
		pool []float64
		temp float64
		k    int
		want []int // every draw must be one of these
	}{
		{"single", []float64{3}, 1, 5, []int{0}},
		{"cold picks minimum", []float64{2, -1, 0.5, 3}, 1e-3, 50, []int{1}},
		// exp(−1e3) underflows after stabilisation: only the minimum has mass.
		{"underflowing mass", []float64{1e3, 0, 1e3}, 1, 50, []int{1}},
		{"large values", []float64{1e300, -1e300}, 1, 20, []int{1}},
		// −v/T alone would overflow to +Inf here.
		{"tiny temperature", []float64{-1e300, 1e300, -1e300}, 1e-10, 50, []int{0, 2}},
		{"tied minima", []float64{0, 5, 0}, 0.01, 200, []int{0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SoftmaxSample(tt.pool, tt.temp, tt.k, rand.New(rand.NewPCG(9, 10)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.k {
				t.Fatalf("got %d draws, want %d", len(got), tt.k)
			}
			seen := map[int]bool{}
			for _, i := range got {
				if !slices.Contains(tt.want, i) {
					t.Fatalf("drew index %d, want only %v (draws %v)", i, tt.want, got)
				}
				seen[i] = true
			}
			if len(seen) != len(tt.want) {
				t.Errorf("drew %v, want each of %v", got, tt.want)
			}
		})
	}
	if got, err := SoftmaxSample([]float64{1}, 1, 0, rand.New(rand.NewPCG(1, 1))); err != nil || len(got) != 0 {
		t.Errorf("k = 0: got %v, %v; want no draws", got, err)
	}
}

func TestSoftmaxSampleReproducible(t *testing.T) {
	pool := []float64{0.3, -0.2, 1.5, 0, -1, 2}
	a, err := SoftmaxSample(pool, 0.7, 100, rand.New(rand.NewPCG(42, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := SoftmaxSample(pool, 0.7, 100, rand.New(rand.NewPCG(42, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Errorf("same seed gave different draws:\n%v\n%v", a, b)
	}
	c, err := SoftmaxSample(pool, 0.7, 100, rand.New(rand.NewPCG(43, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a, c) {
		t.Errorf("different seeds gave identical draws %v", a)
	}
}

// TestSoftmaxSampleFavoursSmall checks empirical frequencies against
// p_i ∝ exp(−Δr2_i/T) with a fixed seed.
func TestSoftmaxSampleFavoursSmall(t *testing.T) {
	pool := []float64{1, -1, 0, 2}
	const temp, k = 1.0, 20000
	got, err := SoftmaxSample(pool, temp, k, rand.New(rand.NewPCG(2025, 11)))
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, len(pool))
	for _, i := range got {
		counts[i]++
	}
	var z float64
	for _, v := range pool {
		z += math.Exp(-v / temp)
	}
	for i, v := range pool {
		p := math.Exp(-v/temp) / z
		freq := float64(counts[i]) / k
		// Four standard errors of a binomial proportion.
		if se := math.Sqrt(p * (1 - p) / k); math.Abs(freq-p) > 4*se {
			t.Errorf("index %d (Δr2 = %v): frequency %.4f, want %.4f ± %.4f", i, v, freq, p, 4*se)
		}
	}
	// Ordered by Δr2: −1 (index 1) < 0 (2) < 1 (0) < 2 (3).
	if !(counts[1] > counts[2] && counts[2] > counts[0] && counts[0] > counts[3]) {
		t.Errorf("counts %v do not decrease with Δr2 %v", counts, pool)
	}
}

func TestSoftmaxSampleErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	tests := []struct {
		name string
		pool []float64
		temp float64
		k    int
		rng  *rand.Rand
	}{
		{"zero temperature", []float64{1}, 0, 1, rng},
		{"negative temperature", []float64{1}, -1, 1, rng},
		{"NaN temperature", []float64{1}, math.NaN(), 1, rng},
		{"Inf temperature", []float64{1}, math.Inf(1), 1, rng},
		{"negative k", []float64{1}, 1, -1, rng},
		{"empty pool", nil, 1, 1, rng},
		{"NaN value", []float64{1, math.NaN()}, 1, 1, rng},
		{"Inf value", []float64{math.Inf(-1), 1}, 1, 1, rng},
		{"nil rng", []float64{1}, 1, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := SoftmaxSample(tt.pool, tt.temp, tt.k, tt.rng); !errors.Is(err, ErrInvalidInput) {
				t.Errorf("SoftmaxSample = %v, %v; want ErrInvalidInput", got, err)
			}
		})
	}
}

// TestEpochOrder checks that each epoch visits every item once, in an
// order of its own, and that an order restored from (epoch, pos)
// continues identically.
func TestEpochOrder(t *testing.T) {
	s := newEpochOrder(10, 7)
	var epoch0 []int
	for _, k := range []int{4, 4, 4} {
		epoch0 = append(epoch0, s.next(k)...)
	}
	if len(epoch0) != 10 {
		t.Fatalf("an epoch of 10 in batches of 4 gave %d items", len(epoch0))
	}
	first := s.next(4)
	if s.epoch != 1 {
		t.Fatalf("epoch %d after the first epoch", s.epoch)
	}
	// A sampler restored from (epoch, pos) continues identically.
	r := newEpochOrder(10, 7)
	r.epoch, r.pos = 1, 4
	if got, want := r.next(4), s.next(4); !reflect.DeepEqual(got, want) {
		t.Errorf("restored sampler gave %v, original %v", got, want)
	}
	if reflect.DeepEqual(first, epoch0[:4]) {
		t.Error("epoch 1 repeats epoch 0's order")
	}
}

// TestPrioritySampler runs two recomputes over a fake estimator and checks
// what a reader of the paper expects: each phase trains on the pairs with
// the smallest Δr2 of its pool, only on them, in epochs; a sampler
// restored from its state continues identically; an empty threshold
// selection falls back to the whole pool.
func TestPrioritySampler(t *testing.T) {
	const n = 40
	gap := func(i int) float64 { return float64((i*17)%n) - 20 } // distinct
	est := func(pool []int, seed uint64) ([]PairEstimate, Stats, error) {
		out := make([]PairEstimate, len(pool))
		for k, i := range pool {
			out[k] = PairEstimate{Estimate: Estimate{PromptFree: gap(i)}}
		}
		return out, Stats{Pairs: len(pool)}, nil
	}
	tests := []struct {
		name     string
		opt      PriorityOptions
		selected int
		fellBack bool
	}{
		{"lowest quarter of a pool of 20", PriorityOptions{Strategy: StrategyLowestFraction, Rho: 0.25, PoolSize: 20}, 5, false},
		{"lowest half of every pair", PriorityOptions{Strategy: StrategyLowestFraction, Rho: 0.5}, 20, false},
		{"threshold", PriorityOptions{Strategy: StrategyThreshold, Threshold: -10}, 10, false},
		{"threshold keeps none", PriorityOptions{Strategy: StrategyThreshold, Threshold: -100, PoolSize: 8}, 8, true},
		{"softmax", PriorityOptions{Strategy: StrategySoftmax, Rho: 0.5, Temperature: 1}, 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewPrioritySampler(n, 11, tt.opt)
			if got := s.Next(n); len(got) != n {
				t.Fatalf("phase 0 served %d of %d pairs in one epoch", len(got), n)
			}
			rc, err := s.Recompute(est)
			if err != nil {
				t.Fatal(err)
			}
			if rc.Phase != 1 || s.Phase() != 1 || len(rc.Selected) != tt.selected || rc.FellBack != tt.fellBack {
				t.Fatalf("phase %d, %d selected, fell back %v; want phase 1, %d, %v", rc.Phase, len(rc.Selected), rc.FellBack, tt.selected, tt.fellBack)
			}
			inPool := map[int]bool{}
			for _, i := range rc.Pool {
				inPool[i] = true
			}
			sel := map[int]bool{}
			for _, i := range rc.Selected {
				if !inPool[i] {
					t.Fatalf("selected pair %d is not in the pool", i)
				}
				sel[i] = true
			}
			if tt.opt.Strategy == StrategyLowestFraction {
				// Every selected pair's gap is below every unselected pool pair's.
				for _, i := range rc.Pool {
					for j := range sel {
						if !sel[i] && gap(i) < gap(j) {
							t.Fatalf("pair %d (gap %v) left out, pair %d (gap %v) selected", i, gap(i), j, gap(j))
						}
					}
				}
			}
			// Batches come from the selection only; a restored copy
			// continues identically.
			first := s.Next(3)
			r := NewPrioritySampler(n, 11, tt.opt)
			if err := r.Restore(s.State()); err != nil {
				t.Fatal(err)
			}
			for range 5 {
				a, b := s.Next(3), r.Next(3)
				if !reflect.DeepEqual(a, b) {
					t.Fatalf("restored sampler served %v, original %v", b, a)
				}
				for _, i := range append(a, first...) {
					if !sel[i] {
						t.Fatalf("served pair %d, which was not selected", i)
					}
				}
			}
		})
	}
	s := NewPrioritySampler(4, 1, PriorityOptions{Strategy: StrategyLowestFraction, Rho: 1})
	for _, bad := range []struct {
		st   SamplerState
		want string
	}{
		{SamplerState{Phase: 1, Selected: []int{0, 4}}, "selected pair 4"},
		{SamplerState{Phase: 1}, "no selected pairs"},
		{SamplerState{EpochPos: -3}, "epoch position -3"},
		{SamplerState{EpochPos: 5}, "epoch position 5"},
		{SamplerState{Phase: 1, Selected: []int{1, 2}, EpochPos: 3}, "epoch position 3"},
		{SamplerState{Phase: -1}, "phase -1"},
		{SamplerState{Epoch: -2}, "epoch -2"},
	} {
		if err := s.Restore(bad.st); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Restore(%+v) = %v, want an error naming %q", bad.st, err, bad.want)
		}
	}
	// A restored sampler at the end of an epoch goes on to the next.
	if err := s.Restore(SamplerState{Phase: 1, Selected: []int{1, 3}, EpochPos: 2}); err != nil {
		t.Fatal(err)
	}
	if got := s.Next(2); len(got) != 2 {
		t.Errorf("Next after a full epoch = %v", got)
	}
}
