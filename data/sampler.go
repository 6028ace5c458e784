package data

import "math/rand/v2"

// Sampler serves a pool of items in epochs, each in its own seeded random
// order. Its whole state is (Epoch, Pos): the order of an epoch is a pure
// function of the seed and the epoch, so a resumed run sees the same
// batches as one that never stopped.
type Sampler struct {
	N     int
	Seed  uint64
	Epoch int
	Pos   int
	order []int
}

// NewSampler returns a sampler over n items at the start of epoch 0.
func NewSampler(n int, seed uint64) *Sampler {
	return &Sampler{N: n, Seed: seed}
}

// Order returns the order of the current epoch.
func (s *Sampler) Order() []int {
	if s.order == nil {
		s.order = rand.New(rand.NewPCG(s.Seed, uint64(s.Epoch)+1)).Perm(s.N)
	}
	return s.order
}

// Next returns up to k item indices: the rest of the epoch when fewer than
// k remain, so each epoch visits every item exactly once. The next call
// starts the next epoch.
func (s *Sampler) Next(k int) []int {
	if s.Pos >= s.N {
		s.Epoch++
		s.Pos = 0
		s.order = nil
	}
	o := s.Order()
	end := min(s.Pos+k, s.N)
	out := append([]int(nil), o[s.Pos:end]...)
	s.Pos = end
	return out
}

// StepsPerEpoch is the number of batches of size k in an epoch.
func StepsPerEpoch(n, k int) int { return (n + k - 1) / k }
