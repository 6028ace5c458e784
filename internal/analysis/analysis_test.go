package analysis

import (
	"math"
	"strings"
	"testing"

	"prism/data"
)

func TestPairMetricsTiesAreWrong(t *testing.T) {
	ev := PairMetrics([]float64{1, 2, 3, 0}, []float64{0, 2, 4, -1})
	if ev.Accuracy != 0.5 {
		t.Errorf("accuracy %v, want 0.5 (a tie counts as wrong)", ev.Accuracy)
	}
	if math.Abs(ev.Margin-0.25) > 1e-12 {
		t.Errorf("margin %v, want 0.25", ev.Margin)
	}
	wantLoss := (softplus(-1) + softplus(0) + softplus(1) + softplus(-1)) / 4
	if math.Abs(ev.Loss-wantLoss) > 1e-12 {
		t.Errorf("loss %v, want %v", ev.Loss, wantLoss)
	}
	if math.Abs(ev.RewardMean-1.375) > 1e-12 {
		t.Errorf("reward mean %v", ev.RewardMean)
	}
}

// TestScorePairsRefusesNonFinite: a NaN or infinite reward is an error
// naming the pair and the side, not a metric.
func TestScorePairsRefusesNonFinite(t *testing.T) {
	pairs := []data.Pair{{ID: 7, Prompt: []int64{1}, Chosen: []int64{2}, Rejected: []int64{3}}, {ID: 9, Prompt: []int64{1}, Chosen: []int64{4}, Rejected: []int64{5}}}
	for _, tt := range []struct {
		rewards []float64
		want    string
	}{
		{[]float64{1, math.NaN(), 0, 0}, "pair 1 (id 9): the chosen reward is NaN"},
		{[]float64{1, 2, math.Inf(1), 0}, "pair 0 (id 7): the rejected reward is +Inf"},
	} {
		_, _, err := ScorePairs(func([][]int64) ([]float64, error) { return tt.rewards, nil }, pairs)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("rewards %v: %v, want %q", tt.rewards, err, tt.want)
		}
	}
	c, r, err := ScorePairs(func([][]int64) ([]float64, error) { return []float64{1, 2, 3, 4}, nil }, pairs)
	if err != nil || c[1] != 2 || r[0] != 3 {
		t.Errorf("finite rewards: %v %v %v", c, r, err)
	}
}
