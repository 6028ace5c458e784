package decomposition

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// This file is the paper's mechanism as prism runs it: every few steps the
// trainer asks the PrioritySampler to Recompute, which draws a candidate
// pool, has its pairs' prompt-free gaps estimated, selects the pairs to
// train on next by one of the strategies below, and restarts the epoch
// order over them; between recomputes the trainer takes batches with
// Next. Its whole state is SamplerState (in every checkpoint): each
// phase's random draws derive from the run's seed and the phase number,
// so a resumed run draws exactly what an uninterrupted one would.

// Strategy names a selection rule (configs' decomposition.strategy).
type Strategy string

// The strategies.
const (
	StrategyLowestFraction Strategy = "lowest_fraction"
	StrategySoftmax        Strategy = "softmax"
	StrategyThreshold      Strategy = "threshold"
)

// PriorityOptions configure the sampler.
type PriorityOptions struct {
	Strategy Strategy
	// Rho is the fraction kept (lowest_fraction) or drawn (softmax).
	Rho float64
	// Threshold keeps pairs with Δr2 below it (threshold).
	Threshold float64
	// Temperature of the softmax over −Δr2 (softmax).
	Temperature float64
	// PoolSize bounds the candidates estimated per recompute (0: every
	// training pair).
	PoolSize int
}

// SamplerState is the sampler's part of a checkpoint.
type SamplerState struct {
	// Epoch and EpochPos place the sampler in its epoch order.
	Epoch    int `json:"epoch"`
	EpochPos int `json:"epoch_pos"`
	// Phase counts the recomputes so far; Selected are the training pairs
	// of this phase (none in phase 0: every pair) and Priorities their
	// prompt-free gaps.
	Phase      int       `json:"phase"`
	Selected   []int     `json:"selected,omitempty"`
	Priorities []float64 `json:"priorities,omitempty"`
}

// PrioritySampler serves the training pairs of a run in batches: every
// pair, in seeded epochs, until the first Recompute; then the pairs each
// recompute selects.
type PrioritySampler struct {
	n          int
	seed       uint64
	opt        PriorityOptions
	phase      int
	selected   []int
	priorities []float64
	order      *epochOrder
}

// NewPrioritySampler returns a sampler over n training pairs at the start
// of phase 0. seed is the run's data seed.
func NewPrioritySampler(n int, seed uint64, opt PriorityOptions) *PrioritySampler {
	return &PrioritySampler{n: n, seed: seed, opt: opt, order: newEpochOrder(n, seed)}
}

// PhaseSeed derives the seed of a phase's draws (pool, prompts, softmax
// sampling and batch order) from the run's seed.
func PhaseSeed(seed uint64, phase int) uint64 {
	return seed + uint64(phase)*0x9e3779b97f4a7c15
}

// Restore puts the sampler where st says (a resumed run).
func (p *PrioritySampler) Restore(st SamplerState) error {
	for _, i := range st.Selected {
		if i < 0 || i >= p.n {
			return fmt.Errorf("selected pair %d is outside the training set (%d pairs)", i, p.n)
		}
	}
	size := p.n
	if st.Phase > 0 {
		size = len(st.Selected)
	}
	switch {
	case st.Phase < 0 || st.Epoch < 0:
		return fmt.Errorf("phase %d, epoch %d: want at least 0", st.Phase, st.Epoch)
	case st.Phase > 0 && size == 0:
		return fmt.Errorf("phase %d has no selected pairs", st.Phase)
	case st.EpochPos < 0 || st.EpochPos > size:
		return fmt.Errorf("epoch position %d is outside the phase's %d pairs", st.EpochPos, size)
	}
	p.phase, p.selected, p.priorities = st.Phase, st.Selected, st.Priorities
	if st.Phase > 0 {
		p.order = newEpochOrder(len(st.Selected), PhaseSeed(p.seed, st.Phase))
	} else {
		p.order = newEpochOrder(p.n, p.seed)
	}
	p.order.epoch, p.order.pos = st.Epoch, st.EpochPos
	return nil
}

// State is what a checkpoint saves of the sampler.
func (p *PrioritySampler) State() SamplerState {
	return SamplerState{Epoch: p.order.epoch, EpochPos: p.order.pos, Phase: p.phase, Selected: p.selected, Priorities: p.priorities}
}

// Phase is the number of recomputes so far.
func (p *PrioritySampler) Phase() int { return p.phase }

// Next returns the training-pair indices of the next batch of up to k
// pairs: the rest of the epoch when fewer than k remain, so each epoch
// visits every pair of the phase exactly once.
func (p *PrioritySampler) Next(k int) []int {
	idx := p.order.next(k)
	if p.phase > 0 {
		for j, i := range idx {
			idx[j] = p.selected[i]
		}
	}
	return idx
}

// EstimateFunc estimates the pairs at the given training indices, with
// seed for its prompt draws.
type EstimateFunc func(pool []int, seed uint64) ([]PairEstimate, Stats, error)

// Recomputed is the outcome of one recompute.
type Recomputed struct {
	// Phase is the phase it starts.
	Phase int
	// Pool are the training pairs estimated, Estimates theirs.
	Pool      []int
	Estimates []PairEstimate
	Stats     Stats
	// Selected are the training pairs of the new phase; InPool marks the
	// selected pool positions.
	Selected []int
	InPool   map[int]bool
	// FellBack is set when the threshold kept no pair and the phase
	// trains on the whole pool.
	FellBack bool
}

// Recompute draws the candidate pool, has estimate score it, selects the
// pairs of the next phase and restarts the epoch order over them.
func (p *PrioritySampler) Recompute(estimate EstimateFunc) (*Recomputed, error) {
	phase := p.phase + 1
	seed := PhaseSeed(p.seed, phase)
	pool := make([]int, p.n)
	for i := range pool {
		pool[i] = i
	}
	if p.opt.PoolSize > 0 && p.opt.PoolSize < len(pool) {
		perm := rand.New(rand.NewPCG(seed, 0x9001)).Perm(len(pool))[:p.opt.PoolSize]
		sort.Ints(perm)
		pool = perm
	}
	ests, stats, err := estimate(pool, seed)
	if err != nil {
		return nil, err
	}
	pf := make([]float64, len(ests))
	for i, e := range ests {
		pf[i] = e.PromptFree
	}
	chosen, err := p.choose(pf, seed)
	if err != nil {
		return nil, err
	}
	rc := &Recomputed{Phase: phase, Pool: pool, Estimates: ests, Stats: stats, InPool: map[int]bool{}}
	if len(chosen) == 0 {
		rc.FellBack = true
		chosen = make([]int, len(pf))
		for i := range chosen {
			chosen[i] = i
		}
	}
	rc.Selected = make([]int, len(chosen))
	prio := make([]float64, len(chosen))
	for i, c := range chosen {
		rc.Selected[i] = pool[c]
		prio[i] = pf[c]
		rc.InPool[c] = true
	}
	p.phase, p.selected, p.priorities = phase, rc.Selected, prio
	p.order = newEpochOrder(len(rc.Selected), seed)
	return rc, nil
}

// choose applies the strategy to the pool's prompt-free gaps.
func (p *PrioritySampler) choose(pf []float64, seed uint64) ([]int, error) {
	switch p.opt.Strategy {
	case StrategyThreshold:
		return Threshold(pf, p.opt.Threshold), nil
	case StrategySoftmax:
		k := int(math.Ceil(p.opt.Rho * float64(len(pf))))
		return SoftmaxSample(pf, p.opt.Temperature, k, rand.New(rand.NewPCG(seed, 0x50f7)))
	default:
		return LowestFraction(pf, p.opt.Rho)
	}
}

// epochOrder serves n items in epochs, each in its own seeded random
// order. Its whole state is (epoch, pos): the order of an epoch is a pure
// function of the seed and the epoch, so a resumed run sees the same
// batches as one that never stopped.
type epochOrder struct {
	n, epoch, pos int
	seed          uint64
	perm          []int
}

func newEpochOrder(n int, seed uint64) *epochOrder { return &epochOrder{n: n, seed: seed} }

// next returns up to k item indices: the rest of the epoch when fewer
// than k remain. The next call starts the next epoch.
func (o *epochOrder) next(k int) []int {
	if o.pos >= o.n {
		o.epoch++
		o.pos = 0
		o.perm = nil
	}
	if o.perm == nil {
		o.perm = rand.New(rand.NewPCG(o.seed, uint64(o.epoch)+1)).Perm(o.n)
	}
	end := min(o.pos+k, o.n)
	out := append([]int(nil), o.perm[o.pos:end]...)
	o.pos = end
	return out
}

// The selection strategies below prioritise pairs by their signed prompt-free
// gap Δr2, smallest first. This follows the paper's reading that pairs in the
// left half of its quadrant figure (x axis Δr2) are the ones a reward model
// cannot separate by the responses alone, so they carry the prompt-related
// signal worth training on.

// LowestFraction returns the indices of the ⌈ρ·n⌉ smallest values in
// promptFree, n = len(promptFree), in ascending index order. Ties are broken
// in favour of the lower index. ρ must lie in (0, 1] and the values must not
// be NaN; otherwise the error wraps ErrInvalidInput. An empty pool yields no
// indices.
func LowestFraction(promptFree []float64, rho float64) ([]int, error) {
	if !(rho > 0 && rho <= 1) {
		return nil, fmt.Errorf("%w: fraction %v is outside (0, 1]", ErrInvalidInput, rho)
	}
	for i, v := range promptFree {
		if math.IsNaN(v) {
			return nil, fmt.Errorf("%w: prompt-free gap %d is NaN", ErrInvalidInput, i)
		}
	}
	n := len(promptFree)
	if n == 0 {
		return []int{}, nil
	}
	// The slack absorbs representation error, so that 0.3·10 selects 3
	// rather than ⌈3.0000000000000004⌉ = 4.
	k := int(math.Ceil(rho*float64(n) - 1e-9))
	k = min(max(k, 1), n)

	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		if c := cmp.Compare(promptFree[a], promptFree[b]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	idx = idx[:k]
	slices.Sort(idx)
	return idx, nil
}

// Threshold returns, in ascending order, the indices i with
// promptFree[i] < tau. NaN values are never selected.
func Threshold(promptFree []float64, tau float64) []int {
	idx := []int{}
	for i, v := range promptFree {
		if v < tau {
			idx = append(idx, i)
		}
	}
	return idx
}

// SoftmaxSample draws k indices with replacement, index i with probability
// proportional to exp(−promptFree[i]/T), using rng as the only source of
// randomness, so the draw is reproducible for a given seed. The exponents
// are shifted by their maximum before exponentiating, so the probabilities
// are well defined for any finite values and temperature; values whose
// probability underflows are never drawn.
//
// The temperature must be positive and finite, k non-negative, the values
// finite, the pool non-empty when k > 0 and rng non-nil; otherwise the
// error wraps ErrInvalidInput.
func SoftmaxSample(promptFree []float64, temperature float64, k int, rng *rand.Rand) ([]int, error) {
	if !(temperature > 0) || math.IsInf(temperature, 1) {
		return nil, fmt.Errorf("%w: temperature %v is not a positive finite number", ErrInvalidInput, temperature)
	}
	if k < 0 {
		return nil, fmt.Errorf("%w: sample size %d is negative", ErrInvalidInput, k)
	}
	if k == 0 {
		return []int{}, nil
	}
	if len(promptFree) == 0 {
		return nil, fmt.Errorf("%w: cannot draw %d samples from an empty pool", ErrInvalidInput, k)
	}
	if rng == nil {
		return nil, fmt.Errorf("%w: nil random source", ErrInvalidInput)
	}
	lowest := math.Inf(1)
	for i, v := range promptFree {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: prompt-free gap %d is %v", ErrInvalidInput, i, v)
		}
		lowest = min(lowest, v)
	}
	// Measuring from the smallest value makes every exponent (lowest−v)/T
	// non-positive, so nothing overflows, not even −v/T for a tiny T; the
	// smallest value's term is exp(0) = 1, so the total is at least 1.
	cum := make([]float64, len(promptFree))
	var total float64
	last := 0 // last index with positive mass, for the u = total edge case
	for i, v := range promptFree {
		p := math.Exp((lowest - v) / temperature)
		if p > 0 {
			last = i
		}
		total += p
		cum[i] = total
	}
	out := make([]int, k)
	for j := range out {
		u := rng.Float64() * total
		// First index whose cumulative mass exceeds u; indices with zero
		// mass leave cum unchanged and so are never chosen.
		i := sort.Search(len(cum), func(i int) bool { return cum[i] > u })
		out[j] = min(i, last)
	}
	return out, nil
}
