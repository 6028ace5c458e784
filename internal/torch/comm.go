package torch

import "github.com/sugarme/gotch/ts"

// Comm is the process group of a data-parallel run (internal/torch/dist
// implements it over libtorch's c10d; Single is the group of one). Every
// rank runs the same computation on the same data; the collectives keep
// them in step.
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

// Single is the process group of a single process: every collective is
// the identity, so code written for ranks runs unchanged alone.
type Single struct{}

func (Single) Rank() int                                      { return 0 }
func (Single) World() int                                     { return 1 }
func (Single) AllReduceSum([]*ts.Tensor) error                { return nil }
func (Single) Broadcast([]*ts.Tensor, int) error              { return nil }
func (Single) BroadcastBytes(b []byte, _ int) ([]byte, error) { return b, nil }
func (Single) AllGatherFloat64(v []float64) ([][]float64, error) {
	return [][]float64{append([]float64(nil), v...)}, nil
}
func (Single) Barrier() error { return nil }
