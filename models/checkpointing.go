package models

import (
	"prism/internal/torch"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// LossFunc turns a batch's rewards [B] into the scalar to minimise.
type LossFunc func(rewards *ts.Tensor) (*ts.Tensor, error)

// ForwardBackward runs the forward pass of b, hands the rewards to loss
// and backpropagates the scalar it returns into the parameters' gradients.
//
// With checkpoint set it does so with gradient checkpointing per decoder
// block: the forward pass runs without autograd and keeps only each
// block's input; the backward pass then recomputes one block at a time,
// in reverse order, with autograd, and pushes the gradient arriving at
// its output through it (as the gradient of sum(output * grad_output)).
// Activation memory drops from every block's intermediates to one block's
// plus the blocks' inputs, for about one extra forward pass. gotch has no
// custom autograd functions, hence the explicit loop.
func (m *RewardModel) ForwardBackward(b *Batch, checkpoint bool, loss LossFunc) (err error) {
	defer torch.Pin()()
	if !checkpoint {
		rewards, err := m.Forward(b)
		if err != nil {
			return err
		}
		defer rewards.Drop()
		l, err := loss(rewards)
		if err != nil {
			return err
		}
		return l.Backward()
	}
	if err := b.Validate(m.Config.VocabSize); err != nil {
		return err
	}
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "reward model forward and backward (gradient checkpointing)")

	tb := m.tables(s, b, true, nil, nil)
	L := len(m.blocks)
	// inputs[i] is block i's input; inputs[0] the embeddings.
	inputs := make([]*ts.Tensor, L)
	withoutGrad(func() {
		h := m.c(s, s.T(ts.Embedding(m.embed, tb.ids, -1, false, false)))
		for i := 0; i < L-1; i++ {
			inputs[i] = h
			bs := &torch.Scope{}
			h = m.block(bs, m.blocks[i], h, tb)
			bs.Release(h)
			s.T(h, nil) // the outer scope frees it
		}
		inputs[L-1] = h
	})

	// The last block, the final norm and the head, with autograd, then
	// the loss's backward: this fills their gradients and the gradient
	// arriving at the last block's input.
	x := leaf(s, inputs[L-1])
	hs := &torch.Scope{}
	func() {
		defer hs.Release()
		h := m.lastBlock(hs, m.blocks[L-1], x, tb)
		h = m.rmsNorm(hs, h, m.norm)
		B, D := tb.B, int64(m.Config.HiddenSize)
		r := hs.T(ts.Linear(hs.T(h.View([]int64{B, D}, false)), m.c(hs, m.score), ts.None))
		rewards := m.f32(hs, hs.T(r.View([]int64{B}, false)))
		l, err := loss(rewards)
		torch.Check(err)
		torch.Check(l.Backward())
	}()
	g := s.T(x.Grad(false))

	for i := L - 2; i >= 0; i-- {
		x := leaf(s, inputs[i])
		bs := &torch.Scope{}
		func() {
			defer bs.Release()
			y := m.block(bs, m.blocks[i], x, tb)
			torch.Check(bs.T(bs.T(y.Mul(g, false)).Sum(gotch.Float, false)).Backward())
		}()
		g = s.T(x.Grad(false))
	}
	if m.embed.MustRequiresGrad() {
		e := m.c(s, s.T(ts.Embedding(m.embed, tb.ids, -1, false, false)))
		torch.Check(s.T(s.T(e.Mul(g, false)).Sum(gotch.Float, false)).Backward())
	}
	return nil
}

// leaf returns a copy of x cut from any graph that records its gradient.
func leaf(s *torch.Scope, x *ts.Tensor) *ts.Tensor {
	d := s.T(x.Detach(false))
	torch.Check(requireGrad(d, true))
	return d
}

// withoutGrad runs fn with autograd off and restores it even when fn
// panics (gotch's NoGrad does not).
func withoutGrad(fn func()) {
	// Grad mode is per OS thread: switching it back on another thread
	// would leave this one without autograd for whoever runs on it next.
	defer torch.Pin()()
	prev, err := ts.GradSetEnabled(false)
	torch.Check(err)
	defer ts.GradSetEnabled(prev)
	fn()
}
