package trainer

import (
	"math"
	"time"

	"prism/data"
	"prism/models"
)

// step runs one optimizer step over the sampler's next batch, in
// micro-batches whose gradients accumulate. Each rank takes a contiguous
// share of the batch; weighting each micro-batch by its share of the
// global batch makes the sum over micro-batches and ranks the gradient of
// the batch mean.
func (r *run) step() (s StepInfo, err error) {
	start := time.Now()
	c := r.cfg.Train
	idx := r.sampler.Next(c.BatchSize)
	if err := r.adam.ZeroGrad(); err != nil {
		return s, err
	}
	n := len(idx)
	r.poisoned = r.opt.FailNonFinite != nil && r.opt.FailNonFinite(r.state.Step+1)
	first, last := shard(n, r.comm.Rank(), r.world())
	var correct, prefs int
	for lo := first; lo < last; lo += c.MicroBatch() {
		hi := min(lo+c.MicroBatch(), last)
		st, tokens, err := r.microBatch(idx[lo:hi], float64(hi-lo)/float64(n))
		if err != nil {
			return s, err
		}
		s.Loss += st.Loss
		correct, prefs = correct+st.Correct, prefs+st.Preferences
		s.Tokens += tokens
	}
	if s.AllReduceSeconds, err = r.adam.AllReduceGrads(r.comm); err != nil {
		return s, err
	}
	tot, err := r.sumAcross([]float64{s.Loss, float64(correct), float64(s.Tokens), float64(prefs)})
	if err != nil {
		return s, err
	}
	s.Loss, correct, s.Tokens, prefs = tot[0], int(tot[1]), int64(tot[2]), int(tot[3])
	// Accuracy over the pairs with a preference (tie pairs have none).
	s.Accuracy = math.NaN()
	if prefs > 0 {
		s.Accuracy = float64(correct) / float64(prefs)
	}
	s.LR = r.sched.LR(r.state.Step)
	if s.GradNorm, err = r.adam.GradNorm(); err != nil {
		return s, err
	}
	defer func() {
		s.Seconds = time.Since(start).Seconds()
		s.TokensPerS = float64(s.Tokens) / s.Seconds
	}()
	if math.IsNaN(s.Loss) || math.IsInf(s.Loss, 0) || math.IsNaN(s.GradNorm) || math.IsInf(s.GradNorm, 0) {
		// A non-finite loss or gradient would poison the weights: skip the
		// update and count it.
		s.Skipped = true
		r.state.BadSteps++
		r.log.Warn("non-finite loss or gradient norm: update skipped", "step", r.state.Step+1, "loss", s.Loss, "grad_norm", s.GradNorm)
		return s, nil
	}
	if err := r.adam.ClipGradNorm(s.GradNorm, c.MaxGradNorm); err != nil {
		return s, err
	}
	if err := r.adam.Update(s.LR); err != nil {
		return s, err
	}
	r.state.Tokens += s.Tokens
	return s, nil
}

// microBatch runs forward and backward over the pairs at idx, their mean
// loss scaled by weight, and returns what it measured and its tokens.
func (r *run) microBatch(idx []int, weight float64) (models.PairStats, int64, error) {
	pairs := make([]data.Pair, len(idx))
	for k, i := range idx {
		pairs[k] = r.train[i]
	}
	loss := models.PairLoss{Weight: weight, CenterCoef: r.cfg.Train.CenterRewardsCoef, Poison: r.poisoned}
	for k, p := range pairs {
		if p.Tie {
			if loss.Ties == nil {
				loss.Ties = make([]bool, len(pairs))
			}
			loss.Ties[k] = true
		}
	}
	if r.cfg.Train.UseMargin {
		loss.Margins = make([]float32, len(pairs))
		for k, p := range pairs {
			loss.Margins[k] = float32(p.Margin)
		}
	}
	batch := models.Collate(data.Stack(pairs), r.model.PadID())
	var tokens int64
	for _, v := range batch.Mask {
		tokens += v
	}
	st, err := r.model.PairLossBackward(batch, len(pairs), r.cfg.Train.GradientCheckpointing, loss)
	return st, tokens, err
}
