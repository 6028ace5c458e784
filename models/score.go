package models

import (
	"prism/internal/torch"
	"sort"

	"github.com/sugarme/gotch/ts"
)

// Collate right-pads sequences into a batch with the given pad id.
func Collate(seqs [][]int64, padID int64) *Batch {
	T := 0
	for _, s := range seqs {
		T = max(T, len(s))
	}
	b := &Batch{B: len(seqs), T: T, IDs: make([]int64, len(seqs)*T), Mask: make([]int64, len(seqs)*T)}
	for i, s := range seqs {
		row := b.IDs[i*T : (i+1)*T]
		for j := range row {
			row[j] = padID
		}
		copy(row, s)
		for j := range s {
			b.Mask[i*T+j] = 1
		}
	}
	return b
}

// PadID is the id used for padding: the config's pad token, else 0 (the
// mask decides what is real, so any id works).
func (m *RewardModel) PadID() int64 {
	if m.Config.PadTokenID != nil {
		return int64(*m.Config.PadTokenID)
	}
	return 0
}

// Score returns the reward of each sequence, in input order, without
// gradients. Sequences are batched by length so that padding stays small;
// a sequence's reward does not depend on its batch.
func (m *RewardModel) Score(seqs [][]int64, batchSize int) ([]float64, error) {
	defer torch.Pin()()
	order := make([]int, len(seqs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(seqs[order[a]]) < len(seqs[order[b]]) })
	out := make([]float64, len(seqs))
	var err error
	ts.NoGrad(func() {
		for lo := 0; lo < len(order) && err == nil; lo += batchSize {
			hi := min(lo+batchSize, len(order))
			batch := make([][]int64, 0, hi-lo)
			for _, i := range order[lo:hi] {
				batch = append(batch, seqs[i])
			}
			var rw *ts.Tensor
			if rw, err = m.Forward(Collate(batch, m.PadID())); err != nil {
				return
			}
			var v []float64
			v, err = Float64s(rw)
			rw.Drop()
			for r, i := range order[lo:hi] {
				if err == nil {
					out[i] = v[r]
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
