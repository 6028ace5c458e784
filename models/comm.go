package models

import (
	"fmt"
	"time"

	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// allParams is every parameter of m: the base weights, then the LoRA
// factors.
func (m *RewardModel) allParams() []*Param {
	return append(append([]*Param{}, m.Params...), m.lora...)
}

// Signature names every parameter with its shape, in order: ranks compare
// it before copying weights into each other.
func (m *RewardModel) Signature() []string {
	var names []string
	for _, p := range m.allParams() {
		names = append(names, fmt.Sprintf("%s%v", p.Name, p.Shape))
	}
	return names
}

// Broadcast copies root's weights (and LoRA factors) into every rank's.
func (m *RewardModel) Broadcast(c torch.Comm, root int) error {
	ps := m.allParams()
	tensors := make([]*ts.Tensor, len(ps))
	for i, p := range ps {
		tensors[i] = p.T
	}
	return c.Broadcast(tensors, root)
}

// Broadcast copies root's moments into every rank's.
func (o *AdamW) Broadcast(c torch.Comm, root int) error {
	return c.Broadcast(append(append([]*ts.Tensor{}, o.m...), o.v...), root)
}

// AllReduceGrads sums the gradients of the optimised parameters over the
// ranks and returns the seconds it took (0 alone). Each rank's gradient
// is already weighted by its share of the global batch, so the sum is the
// gradient of the global batch's mean.
func (o *AdamW) AllReduceGrads(c torch.Comm) (seconds float64, err error) {
	if c.World() == 1 {
		return 0, nil
	}
	gs, err := o.grads()
	if err != nil {
		return 0, err
	}
	defer torch.DropAll(gs)
	for i, g := range gs {
		if g == nil {
			return 0, fmt.Errorf("%s has no gradient on rank %d: every rank must compute every trained gradient", o.params[i].Name, c.Rank())
		}
	}
	start := time.Now()
	err = c.AllReduceSum(gs)
	return time.Since(start).Seconds(), err
}
