package analysis

import (
	"math"
	"testing"
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
