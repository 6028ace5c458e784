package models

import (
	"math"
	"testing"

	"github.com/sugarme/gotch"

	"prism/internal/torch"
)

// TestPairLossTies: a tie pair's term is −(log σ(d) + log σ(−d))/2 and it
// is left out of the accuracy; without ties the loss is the plain
// Bradley-Terry mean.
func TestPairLossTies(t *testing.T) {
	logsig := func(x float64) float64 { return -math.Log1p(math.Exp(-x)) }
	// Pairs (chosen, rejected): (2, 0.5), (1, 1.5), (0.25, 3).
	rewards := []float32{2, 1, 0.25, 0.5, 1.5, 3}
	tests := []struct {
		ties        []bool
		want        float64
		correct, of int
	}{
		{nil, -(logsig(1.5) + logsig(-0.5) + logsig(-2.75)) / 3, 1, 3},
		{[]bool{false, true, false}, -(logsig(1.5) + (logsig(-0.5)+logsig(0.5))/2 + logsig(-2.75)) / 3, 1, 2},
		{[]bool{true, true, true}, -((logsig(1.5)+logsig(-1.5))/2 + (logsig(-0.5)+logsig(0.5))/2 + (logsig(-2.75)+logsig(2.75))/2) / 3, 0, 0},
	}
	for _, tt := range tests {
		s := &torch.Scope{}
		r := s.T(onDevice(Float32Bytes(rewards), []int64{6}, gotch.Float, gotch.CPU))
		_, st := PairLoss{Weight: 1, Ties: tt.ties}.of(s, r, 3)
		s.Release()
		if math.Abs(st.Loss-tt.want) > 1e-6 || st.Correct != tt.correct || st.Preferences != tt.of {
			t.Errorf("ties %v: loss %v (want %v), %d of %d correct (want %d of %d)", tt.ties, st.Loss, tt.want, st.Correct, st.Preferences, tt.correct, tt.of)
		}
	}
}
