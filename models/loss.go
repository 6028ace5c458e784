package models

import (
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// PairLoss configures the Bradley-Terry loss of a group of preference
// pairs scored in one forward pass: the chosen rows, then the rejected
// rows, so rewards [2B] split into r_c = rewards[:B], r_r = rewards[B:].
//
//	loss = -Weight · mean(log σ(r_c − r_r − margin))
//	     + CenterCoef · Weight · mean((r_c + r_r)²)
//
// With Ties, a tie pair's term is the Bradley-Terry loss against a target
// of 1/2, −(log σ(d) + log σ(−d))/2, whose gradient pulls its two rewards
// together.
//
// The second term is TRL's center_rewards_coefficient; Weight is the
// group's share of the optimizer batch, so gradients accumulated over the
// groups of a batch are those of the batch mean.
type PairLoss struct {
	// Margins, when set, holds each pair's margin (subtracted from its gap).
	Margins []float32
	// Ties, when set, marks each pair without a preference.
	Ties       []bool
	Weight     float64
	CenterCoef float64
	// Poison makes the loss NaN, as a diverging step would (fault
	// injection for crash tests).
	Poison bool
}

// PairStats are what one group's loss computation reads back.
type PairStats struct {
	// Loss is the group's weighted loss value.
	Loss float64
	// Correct counts the pairs ranked right (equal rewards count as
	// wrong) among the Preferences pairs that have a preference (not
	// ties).
	Correct, Preferences int
}

// PairLossBackward runs the forward pass of b (2·pairs rows, chosen then
// rejected), the loss and its backward pass, accumulating gradients into
// the trained parameters.
func (m *RewardModel) PairLossBackward(b *Batch, pairs int, checkpoint bool, pl PairLoss) (st PairStats, err error) {
	s := &torch.Scope{}
	// The loss's intermediates belong to the autograd graph until the
	// backward pass is done.
	defer s.Release()
	err = m.ForwardBackward(b, checkpoint, func(rewards *ts.Tensor) (l *ts.Tensor, err error) {
		defer torch.Catch(&err, "pair loss")
		l, st = pl.of(s, rewards, int64(pairs))
		return l, nil
	})
	return st, err
}

func (pl PairLoss) of(s *torch.Scope, rewards *ts.Tensor, b int64) (*ts.Tensor, PairStats) {
	var st PairStats
	rc := s.T(rewards.Narrow(0, 0, b, false))
	rr := s.T(rewards.Narrow(0, b, b, false))
	diff := s.T(rc.Sub(rr, false))
	if pl.Margins != nil {
		diff = s.T(diff.Sub(s.T(onDevice(Float32Bytes(pl.Margins), []int64{int64(len(pl.Margins))}, gotch.Float, rewards.MustDevice())), false))
	}
	logp := s.T(diff.LogSigmoid(false))
	if pl.Ties != nil {
		// t·log σ(d) + (1−t)·log σ(−d), t = 1/2 for a tie, else 1.
		t, u := make([]float32, len(pl.Ties)), make([]float32, len(pl.Ties))
		for i, tie := range pl.Ties {
			t[i], u[i] = 1, 0
			if tie {
				t[i], u[i] = 0.5, 0.5
			}
		}
		dev := rewards.MustDevice()
		tt := s.T(onDevice(Float32Bytes(t), []int64{int64(len(t))}, gotch.Float, dev))
		ut := s.T(onDevice(Float32Bytes(u), []int64{int64(len(u))}, gotch.Float, dev))
		neg := s.T(s.T(diff.Neg(false)).LogSigmoid(false))
		logp = s.T(s.T(logp.Mul(tt, false)).Add(s.T(neg.Mul(ut, false)), false))
	}
	l := s.T(s.T(logp.Mean(gotch.Float, false)).MulScalar(f(-pl.Weight), false))
	if pl.CenterCoef > 0 {
		sum := s.T(rc.Add(rr, false))
		center := s.T(s.T(s.T(sum.Square(false)).Mean(gotch.Float, false)).MulScalar(f(pl.CenterCoef*pl.Weight), false))
		l = s.T(l.Add(center, false))
	}
	lv, err := Float64s(l)
	torch.Check(err)
	st.Loss = lv[0]
	rcv, err := Float64s(rc)
	torch.Check(err)
	rrv, err := Float64s(rr)
	torch.Check(err)
	for i := range rcv {
		if pl.Ties != nil && pl.Ties[i] {
			continue
		}
		st.Preferences++
		if rcv[i] > rrv[i] {
			st.Correct++
		}
	}
	if pl.Poison {
		l = s.T(l.MulScalar(f(math.NaN()), false))
		st.Loss = math.NaN()
	}
	return l, st
}
