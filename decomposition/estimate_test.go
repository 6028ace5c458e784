package decomposition

import (
	"errors"
	"math"
	"testing"
)

// TestEstimateAllRecoversResponseTerm scores with a synthetic reward
// r(x, y) = f(x, y) + g(y): f rewards responses that repeat the prompt's
// topic token, g is a response-only bonus (length). The prompt-free part of
// each gap must be close to g(y1) - g(y2) plus the topic term averaged over
// prompts, and the prompt-related part carries the rest.
func TestEstimateAllRecoversResponseTerm(t *testing.T) {
	// Prompts are [topic]; a response is [topic, filler...].
	pool := [][]int64{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}
	g := func(y []int64) float64 { return 0.5 * float64(len(y)) }
	reward := func(seq []int64) float64 {
		x, y := seq[0], seq[1:]
		f := 0.0
		if y[0] == x {
			f = 3
		}
		return f + g(y)
	}
	score := func(seqs [][]int64) ([]float64, error) {
		out := make([]float64, len(seqs))
		for i, s := range seqs {
			out[i] = reward(s)
		}
		return out, nil
	}
	pairs := []Pair{
		{Prompt: []int64{1}, Y1: []int64{1, 9}, Y2: []int64{2, 9, 9, 9}}, // on-topic but shorter
		{Prompt: []int64{2}, Y1: []int64{2, 9, 9, 9}, Y2: []int64{5, 9}}, // on-topic and longer
	}
	est, st, err := EstimateAll(pairs, pool, Options{Samples: 7, Tol: 1e-9, Seed: 1}, Concat(score), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sequences != 2*2*8 {
		t.Errorf("scored %d sequences, want 32", st.Sequences)
	}
	for i, p := range pairs {
		e := est[i]
		if want := reward(concat(p.Prompt, p.Y1)) - reward(concat(p.Prompt, p.Y2)); e.Gap != want {
			t.Errorf("pair %d: own gap %v, want %v", i, e.Gap, want)
		}
		if math.Abs(e.PromptFree+e.PromptRelated-e.Gap) > 1e-12 {
			t.Errorf("pair %d: parts do not add up", i)
		}
		// Under foreign prompts the topic bonus of each side appears only
		// when the drawn prompt matches, so Δr2 sits near the length gap.
		lengthGap := g(p.Y1) - g(p.Y2)
		if math.Abs(e.PromptFree-lengthGap) > 1.5 {
			t.Errorf("pair %d: prompt-free %v, length gap %v", i, e.PromptFree, lengthGap)
		}
		if math.Abs(e.ESS-7) > 1e-9 {
			t.Errorf("pair %d: ESS %v with uniform weights over 7 prompts", i, e.ESS)
		}
	}
	// Pair 0's own prompt favours y1 against its length: the prompt-related
	// part is positive and large, the prompt-free part negative.
	if est[0].PromptFree >= 0 || est[0].PromptRelated <= 2 {
		t.Errorf("pair 0: %+v", est[0])
	}
}

func TestEstimateAllDeterministicAndErrors(t *testing.T) {
	pool := [][]int64{{1}, {2}, {3}}
	score := func(seqs [][]int64) ([]float64, error) {
		out := make([]float64, len(seqs))
		for i, s := range seqs {
			out[i] = float64(s[0]*7%5) + float64(len(s))
		}
		return out, nil
	}
	pairs := []Pair{{Prompt: []int64{1}, Y1: []int64{4}, Y2: []int64{5, 6}}}
	a, _, err := EstimateAll(pairs, pool, Options{Samples: 2, IncludeOwn: true, Tol: 1e-9, Seed: 3}, Concat(score), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := EstimateAll(pairs, pool, Options{Samples: 2, IncludeOwn: true, Tol: 1e-9, Seed: 3}, Concat(score), nil)
	if a[0] != b[0] {
		t.Error("same seed, different estimate")
	}
	if _, _, err := EstimateAll(pairs, pool[:1], Options{Samples: 1, Tol: 1e-6}, Concat(score), nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("pool of one: %v", err)
	}
	if _, _, err := EstimateAll(pairs, pool, Options{Samples: 0, Tol: 1e-6}, Concat(score), nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("zero samples: %v", err)
	}
	bad := func([][]int64) ([]float64, error) { return []float64{math.NaN(), 0, 0, 0, 0, 0}, nil }
	if _, _, err := EstimateAll(pairs, pool, Options{Samples: 2, Tol: 1e-6}, Concat(bad), nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NaN reward: %v", err)
	}
}

// TestEstimateAllPolicyWeights: with a policy that finds y1 and y2 far more
// likely under prompt 3 than under any other, the estimate follows the gap
// under prompt 3, and the effective sample size drops toward 1.
func TestEstimateAllPolicyWeights(t *testing.T) {
	pool := [][]int64{{0}, {1}, {2}, {3}, {4}}
	score := func(seqs [][]int64) ([]float64, error) {
		out := make([]float64, len(seqs))
		for i, s := range seqs {
			// y1 = [9] gains 5 under prompt 3 and loses 1 elsewhere.
			if s[1] == 9 {
				if s[0] == 3 {
					out[i] = 5
				} else {
					out[i] = -1
				}
			}
		}
		return out, nil
	}
	loglik := func(ps, rs [][]int64) ([]float64, error) {
		out := make([]float64, len(ps))
		for i, p := range ps {
			out[i] = -10
			if p[0] == 3 {
				out[i] = -0.1
			}
		}
		return out, nil
	}
	pairs := []Pair{{Prompt: []int64{0}, Y1: []int64{9}, Y2: []int64{8}}}
	opt := Options{Samples: 4, Tol: 1e-9, Seed: 1, PolicyTau: 1}
	uni, _, err := EstimateAll(pairs, pool, opt, Concat(score), nil)
	if err != nil {
		t.Fatal(err)
	}
	pol, _, err := EstimateAll(pairs, pool, opt, Concat(score), loglik)
	if err != nil {
		t.Fatal(err)
	}
	if pol[0].PromptFree < 4.5 {
		t.Errorf("policy-weighted Δr2 = %v, want near the gap 5 under the likely prompt", pol[0].PromptFree)
	}
	if uni[0].PromptFree > 1 {
		t.Errorf("uniform Δr2 = %v, want near -1 (three of four prompts give -1)", uni[0].PromptFree)
	}
	if pol[0].ESS > 1.01 || uni[0].ESS != 4 {
		t.Errorf("ESS policy %v uniform %v", pol[0].ESS, uni[0].ESS)
	}
	bad := func(ps, rs [][]int64) ([]float64, error) { return []float64{1}, nil }
	if _, _, err := EstimateAll(pairs, pool, opt, Concat(score), bad); err == nil {
		t.Error("a short log-likelihood list was accepted")
	}
}

// TestEstimateAllShare: with Share = K, each run of K consecutive pairs is
// scored under one draw of M prompts, none of them a group member's own;
// Share 0 and 1 both mean per-pair draws and give the same estimates; and
// a group whose own prompts crowd a small pool falls back to per-pair
// draws rather than score a pair under its own prompt.
func TestEstimateAllShare(t *testing.T) {
	var pool [][]int64
	for i := range 40 {
		pool = append(pool, []int64{int64(i)})
	}
	var pairs []Pair
	for i := range 10 {
		pairs = append(pairs, Pair{Prompt: []int64{int64(i)}, Y1: []int64{100 + int64(i)}, Y2: []int64{200 + int64(i)}})
	}
	// record lists the prompts each pair's responses were scored under,
	// from the layout's y1 rows (own prompt first).
	record := func(opt Options) (map[int64][]int64, []PairEstimate) {
		under := map[int64][]int64{}
		score := func(ps, rs [][]int64) ([]float64, error) {
			out := make([]float64, len(ps))
			for i := range ps {
				if rs[i][0] < 200 {
					under[rs[i][0]-100] = append(under[rs[i][0]-100], ps[i][0])
				}
				out[i] = float64(ps[i][0]*rs[i][0]%7) - float64(rs[i][0]%5)
			}
			return out, nil
		}
		est, _, err := EstimateAll(pairs, pool, opt, score, nil)
		if err != nil {
			t.Fatal(err)
		}
		return under, est
	}
	under, _ := record(Options{Samples: 4, Tol: 1e-9, Seed: 3, Share: 4})
	for i := range pairs {
		drawn := under[int64(i)][1:]
		if len(drawn) != 4 {
			t.Fatalf("pair %d scored under %d drawn prompts, want 4", i, len(drawn))
		}
		first := under[int64(i-i%4)][1:]
		for j, x := range drawn {
			if x != first[j] {
				t.Errorf("pair %d drew %v, its group's first pair %v", i, drawn, first)
				break
			}
		}
		for _, x := range drawn {
			if x >= int64(i-i%4) && x < int64(min(i-i%4+4, len(pairs))) {
				t.Errorf("pair %d of group %d drew prompt %d, a group member's own", i, i/4, x)
			}
		}
	}
	if a, b := under[0][1:], under[4][1:]; a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] {
		t.Errorf("groups 0 and 1 drew the same prompts %v", a)
	}
	_, e0 := record(Options{Samples: 4, Tol: 1e-9, Seed: 3})
	_, e1 := record(Options{Samples: 4, Tol: 1e-9, Seed: 3, Share: 1})
	for i := range e0 {
		if e0[i] != e1[i] {
			t.Errorf("pair %d: Share 0 gives %+v, Share 1 %+v", i, e0[i], e1[i])
		}
	}
	// A pool of 12 prompts, groups of 10 pairs (10 own prompts) and M = 4:
	// the group cannot avoid every member's own prompt.
	pool = pool[:12]
	under, _ = record(Options{Samples: 4, Tol: 1e-9, Seed: 3, Share: 10})
	for i := range pairs {
		for _, x := range under[int64(i)][1:] {
			if x == int64(i) {
				t.Errorf("pair %d scored under its own prompt among the drawn ones", i)
			}
		}
		if len(under[int64(i)]) != 5 {
			t.Errorf("pair %d: %d prompts, want own + 4", i, len(under[int64(i)]))
		}
	}
	if _, _, err := EstimateAll(pairs, pool, Options{Samples: 4, Share: -1}, func(ps, rs [][]int64) ([]float64, error) { return nil, nil }, nil); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Share -1: err = %v, want ErrInvalidInput", err)
	}
}
