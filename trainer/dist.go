package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sugarme/gotch/ts"

	"prism/models"
)

// Comm is the process group of a data-parallel run (internal/dist
// implements it over libtorch's c10d). Every rank runs the same trainer on
// the same data and configuration; the collectives keep them in step.
type Comm interface {
	Rank() int
	World() int
	// AllReduceSum sums the tensors over the ranks, in place.
	AllReduceSum(tensors []*ts.Tensor) error
	// Broadcast copies root's tensors into every rank's, in place.
	Broadcast(tensors []*ts.Tensor, root int) error
	// BroadcastBytes returns root's b on every rank.
	BroadcastBytes(b []byte, root int) ([]byte, error)
	// AllGatherFloat64 returns every rank's v in rank order.
	AllGatherFloat64(v []float64) ([][]float64, error)
	Barrier() error
}

// world is the number of ranks (1 without a group).
func (r *run) world() int {
	if r.opt.Comm == nil {
		return 1
	}
	return r.opt.Comm.World()
}

// lead says whether this process writes the run folder: the only process,
// or rank 0 of a group.
func (r *run) lead() bool { return r.opt.Comm == nil || r.opt.Comm.Rank() == 0 }

// shard is this rank's contiguous part [lo, hi) of n items.
func shard(n, rank, world int) (lo, hi int) {
	return n * rank / world, n * (rank + 1) / world
}

// agree makes every rank learn whether any rank failed: a rank whose err
// is nil returns an error naming the failed ranks, so no rank goes on to
// wait for a peer that has given up.
func (r *run) agree(what string, err error) error {
	if r.opt.Comm == nil {
		return err
	}
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
	if r.opt.Comm == nil {
		return v, nil
	}
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
	all, err := r.opt.Comm.AllGatherFloat64([]float64{f})
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
	if r.opt.Comm == nil {
		return v, nil
	}
	all, err := r.opt.Comm.AllGatherFloat64(v)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(v))
	for _, part := range all {
		if len(part) != len(v) {
			return nil, errors.New("ranks disagree on the number of step metrics")
		}
		for i, x := range part {
			out[i] += x
		}
	}
	return out, nil
}

// sharded runs f on this rank's contiguous share [lo, hi) of n items
// and returns the results of every rank, in order (f returns one value
// per item). Every rank gets the same values: the decomposition's
// selection is then the same on every rank.
func (r *run) sharded(n int, f func(lo, hi int) ([]float64, error)) ([]float64, error) {
	if r.opt.Comm == nil {
		return f(0, n)
	}
	c := r.opt.Comm
	lo, hi := shard(n, c.Rank(), c.World())
	var part []float64
	var err error
	if hi > lo {
		part, err = f(lo, hi)
	}
	// Every rank reaches the gather, failed or not.
	if err = r.agree("scoring", err); err != nil {
		return nil, err
	}
	all, err := c.AllGatherFloat64(part)
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

// score returns the rewards of seqs under the model being trained, the
// work split across the ranks.
func (r *run) score(seqs [][]int64, batchSize int) ([]float64, error) {
	return r.sharded(len(seqs), func(lo, hi int) ([]float64, error) { return r.model.Score(seqs[lo:hi], batchSize) })
}

// syncStart makes every rank start from rank 0's state: the run state
// (step, sampler position, selected pairs) and every weight and optimizer
// moment. Only rank 0 reads the checkpoint, so ranks on other machines
// need no shared filesystem.
func (r *run) syncStart() error {
	c := r.opt.Comm
	if c == nil {
		return nil
	}
	type start struct {
		Resumed   bool     `json:"resumed"`
		ResumeDir string   `json:"resume_dir"`
		State     State    `json:"state"`
		Params    []string `json:"params"`
	}
	params := append(append([]*models.Param{}, r.model.Params...), r.model.LoRA()...)
	var names []string
	for _, p := range params {
		names = append(names, fmt.Sprintf("%s%v", p.Name, p.T.MustSize()))
	}
	var msg []byte
	if c.Rank() == 0 {
		b, err := json.Marshal(start{Resumed: r.resumed, ResumeDir: r.resumeDir, State: r.state, Params: names})
		if err != nil {
			return err
		}
		msg = b
	}
	b, err := c.BroadcastBytes(msg, 0)
	if err != nil {
		return fmt.Errorf("receiving the run state from rank 0: %w", err)
	}
	var s start
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("the run state from rank 0: %w", err)
	}
	mismatch := ""
	if strings.Join(s.Params, " ") != strings.Join(names, " ") {
		mismatch = fmt.Sprintf("rank %d builds a model with parameters %v, rank 0 %v", c.Rank(), names, s.Params)
	}
	var merr error
	if mismatch != "" {
		merr = errors.New(mismatch)
	}
	if err := r.agree("comparing the model across ranks", merr); err != nil {
		return err
	}
	if c.Rank() != 0 {
		r.resumed, r.resumeDir, r.state = s.Resumed, "rank 0's "+s.ResumeDir, s.State
	}
	tensors := make([]*ts.Tensor, 0, len(params))
	for _, p := range params {
		tensors = append(tensors, p.T)
	}
	if err := c.Broadcast(tensors, 0); err != nil {
		return fmt.Errorf("receiving the weights from rank 0: %w", err)
	}
	if err := c.Broadcast(r.adam.moments(), 0); err != nil {
		return fmt.Errorf("receiving the optimizer state from rank 0: %w", err)
	}
	r.adam.Step = r.state.optimizerStep()
	return nil
}

// reduceGrads sums the gradients of the trained parameters over the
// ranks. Each rank's gradient is already weighted by its share of the
// global batch, so the sum is the gradient of the global batch's mean.
func (r *run) reduceGrads() (seconds float64, err error) {
	if r.opt.Comm == nil {
		return 0, nil
	}
	gs, err := r.adam.grads()
	if err != nil {
		return 0, err
	}
	defer dropAll(gs)
	for i, g := range gs {
		if g == nil {
			return 0, fmt.Errorf("%s has no gradient on rank %d: every rank must compute every trained gradient", r.adam.params[i].Name, r.opt.Comm.Rank())
		}
	}
	start := time.Now()
	err = r.opt.Comm.AllReduceSum(gs)
	return time.Since(start).Seconds(), err
}
