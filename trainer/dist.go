package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"prism/trainer/checkpoint"
	"strconv"
	"strings"

	"prism/internal/analysis"
)

// The collectives a run needs beyond the gradient sum, over r.comm (a
// process group, or torch.Single for one process, where each is the
// identity).

// shard is this rank's contiguous part [lo, hi) of n items.
func shard(n, rank, world int) (lo, hi int) {
	return n * rank / world, n * (rank + 1) / world
}

// agree makes every rank learn whether any rank failed: a rank whose err
// is nil returns an error naming the failed ranks, so no rank goes on to
// wait for a peer that has given up.
func (r *run) agree(what string, err error) error {
	failed, cerr := r.raised(err != nil)
	switch {
	case err != nil:
		return err
	case cerr != nil:
		return fmt.Errorf("%s: %w", what, cerr)
	case len(failed) > 0:
		names := make([]string, len(failed))
		for i, k := range failed {
			names[i] = strconv.Itoa(k)
		}
		return fmt.Errorf("%s failed on rank %s (its log says why)", what, strings.Join(names, ", "))
	}
	return nil
}

// anyTrue is true on every rank when v is true on any.
func (r *run) anyTrue(v bool) (bool, error) {
	ranks, err := r.raised(v)
	return len(ranks) > 0, err
}

// raised gathers a flag from every rank and returns the ranks that set
// it (the same list on every rank).
func (r *run) raised(v bool) ([]int, error) {
	f := 0.0
	if v {
		f = 1
	}
	all, err := r.comm.AllGatherFloat64([]float64{f})
	if err != nil {
		return nil, err
	}
	var ranks []int
	for k, x := range all {
		if len(x) == 1 && x[0] != 0 {
			ranks = append(ranks, k)
		}
	}
	return ranks, nil
}

// sumAcross adds v element-wise over the ranks, in rank order, so every
// rank gets the same bits.
func (r *run) sumAcross(v []float64) ([]float64, error) {
	all, err := r.comm.AllGatherFloat64(v)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(v))
	for k, part := range all {
		if len(part) != len(v) {
			return nil, errors.New("ranks disagree on the number of step metrics")
		}
		for i, x := range part {
			if k == 0 {
				out[i] = x
			} else {
				out[i] += x
			}
		}
	}
	return out, nil
}

// sharded runs f on this rank's contiguous share [lo, hi) of n items
// and returns the results of every rank, in order (f returns one value
// per item). Every rank gets the same values: the decomposition's
// selection is then the same on every rank.
func (r *run) sharded(n int, f func(lo, hi int) ([]float64, error)) ([]float64, error) {
	lo, hi := shard(n, r.comm.Rank(), r.world())
	var part []float64
	var err error
	if hi > lo {
		part, err = f(lo, hi)
	}
	// Every rank reaches the gather, failed or not.
	if err = r.agree("scoring", err); err != nil {
		return nil, err
	}
	all, err := r.comm.AllGatherFloat64(part)
	if err != nil {
		return nil, err
	}
	out := make([]float64, 0, n)
	for _, p := range all {
		out = append(out, p...)
	}
	if len(out) != n {
		return nil, fmt.Errorf("the ranks returned %d values for %d items", len(out), n)
	}
	return out, nil
}

// scorer scores sequences under the model being trained, the work split
// across the ranks.
func (r *run) scorer(batchSize int) analysis.ScoreFunc {
	return func(seqs [][]int64) ([]float64, error) {
		return r.sharded(len(seqs), func(lo, hi int) ([]float64, error) { return r.model.Score(seqs[lo:hi], batchSize) })
	}
}

// syncStart makes every rank start from rank 0's state: the run state
// (step, sampler position, selected pairs) and every weight and optimizer
// moment. Only rank 0 reads the checkpoint, so ranks on other machines
// need no shared filesystem.
func (r *run) syncStart() error {
	type start struct {
		Resumed   bool             `json:"resumed"`
		ResumeDir string           `json:"resume_dir"`
		State     checkpoint.State `json:"state"`
		Params    []string         `json:"params"`
	}
	names := r.model.Signature()
	var msg []byte
	if r.lead() {
		b, err := json.Marshal(start{Resumed: r.resumed, ResumeDir: r.resumeDir, State: r.state, Params: names})
		if err != nil {
			return err
		}
		msg = b
	}
	b, err := r.comm.BroadcastBytes(msg, 0)
	if err != nil {
		return fmt.Errorf("receiving the run state from rank 0: %w", err)
	}
	var s start
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("the run state from rank 0: %w", err)
	}
	var mismatch error
	if strings.Join(s.Params, " ") != strings.Join(names, " ") {
		mismatch = fmt.Errorf("rank %d builds a model with parameters %v, rank 0 %v", r.comm.Rank(), names, s.Params)
	}
	if err := r.agree("comparing the model across ranks", mismatch); err != nil {
		return err
	}
	if !r.lead() {
		r.resumed, r.resumeDir, r.state = s.Resumed, "rank 0's "+s.ResumeDir, s.State
	}
	if err := r.model.Broadcast(r.comm, 0); err != nil {
		return fmt.Errorf("receiving the weights from rank 0: %w", err)
	}
	if err := r.adam.Broadcast(r.comm, 0); err != nil {
		return fmt.Errorf("receiving the optimizer state from rank 0: %w", err)
	}
	r.adam.Step = r.state.AdamStep()
	return nil
}
