package models

import (
	"errors"
	"fmt"
	"math"
	"prism/internal/torch"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// AdamW is PyTorch's AdamW (decoupled weight decay) over tensors the
// trainer owns, so its moments go into checkpoints and come back on resume
// (gotch's C++ optimizers cannot save their state).
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	// Step counts the updates applied so far.
	Step   int
	params []*Param
	m, v   []*ts.Tensor
}

// NewAdamW returns an optimizer over params with zero moments.
func NewAdamW(params []*Param, beta1, beta2, eps, wd float64) (*AdamW, error) {
	o := &AdamW{Beta1: beta1, Beta2: beta2, Eps: eps, WeightDecay: wd, params: params}
	for _, p := range params {
		m, err := p.T.ZerosLike(false)
		if err != nil {
			o.Drop()
			return nil, err
		}
		v, err := p.T.ZerosLike(false)
		if err != nil {
			m.Drop()
			o.Drop()
			return nil, err
		}
		o.m = append(o.m, m)
		o.v = append(o.v, v)
	}
	return o, nil
}

// Drop frees the moments.
func (o *AdamW) Drop() {
	for _, t := range append(o.m, o.v...) {
		t.Drop()
	}
	o.m, o.v = nil, nil
}

// moments returns the first and second moments of every parameter (the
// optimizer's handles: the caller must not drop them).
func (o *AdamW) moments() []*ts.Tensor {
	return append(append([]*ts.Tensor{}, o.m...), o.v...)
}

// grads returns each parameter's gradient (nil where none was computed).
// The caller drops the handles.
func (o *AdamW) grads() ([]*ts.Tensor, error) {
	gs := make([]*ts.Tensor, len(o.params))
	for i, p := range o.params {
		g, err := p.T.Grad(false)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		if !g.MustDefined() {
			g.Drop()
			continue
		}
		gs[i] = g
	}
	return gs, nil
}

// GradNorm returns the L2 norm of all gradients.
func (o *AdamW) GradNorm() (float64, error) {
	gs, err := o.grads()
	if err != nil {
		return 0, err
	}
	defer torch.DropAll(gs)
	var ss float64
	for _, g := range gs {
		if g == nil {
			continue
		}
		n, err := g.Norm(false)
		if err != nil {
			return 0, err
		}
		v, err := Float64s(n)
		n.Drop()
		if err != nil {
			return 0, err
		}
		x := v[0]
		ss += x * x
	}
	return math.Sqrt(ss), nil
}

// ClipGradNorm scales the gradients so their norm is at most maxNorm, as
// torch.nn.utils.clip_grad_norm_ does.
func (o *AdamW) ClipGradNorm(norm, maxNorm float64) error {
	coef := maxNorm / (norm + 1e-6)
	if maxNorm <= 0 || coef >= 1 {
		return nil
	}
	gs, err := o.grads()
	if err != nil {
		return err
	}
	defer torch.DropAll(gs)
	for _, g := range gs {
		if g == nil {
			continue
		}
		if err := g.MulScalar_(ts.FloatScalar(coef)); err != nil {
			return err
		}
	}
	return nil
}

// Update applies one AdamW step with learning rate lr.
func (o *AdamW) Update(lr float64) (err error) {
	// Grad mode is per OS thread in libtorch: NoGrad must run on the
	// thread of the updates.
	defer torch.Pin()()
	gs, err := o.grads()
	if err != nil {
		return err
	}
	defer torch.DropAll(gs)
	o.Step++
	t := float64(o.Step)
	bc1 := 1 - math.Pow(o.Beta1, t)
	bc2 := 1 - math.Pow(o.Beta2, t)
	stepSize := lr / bc1
	bc2Sqrt := math.Sqrt(bc2)
	ts.NoGrad(func() {
		for i, p := range o.params {
			g := gs[i]
			if g == nil {
				continue
			}
			if err = o.update(p, g, o.m[i], o.v[i], lr, stepSize, bc2Sqrt); err != nil {
				err = fmt.Errorf("AdamW update of %s: %w", p.Name, err)
				return
			}
		}
	})
	return err
}

func (o *AdamW) update(p *Param, g, m, v *ts.Tensor, lr, stepSize, bc2Sqrt float64) error {
	if p.Decay && o.WeightDecay != 0 {
		if err := p.T.MulScalar_(ts.FloatScalar(1 - lr*o.WeightDecay)); err != nil {
			return err
		}
	}
	// m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g.
	if err := m.Lerp_(g, ts.FloatScalar(1-o.Beta1)); err != nil {
		return err
	}
	if err := v.MulScalar_(ts.FloatScalar(o.Beta2)); err != nil {
		return err
	}
	g2, err := g.Mul(g, false)
	if err != nil {
		return err
	}
	defer g2.Drop()
	if err := g2.MulScalar_(ts.FloatScalar(1 - o.Beta2)); err != nil {
		return err
	}
	if err := v.Add_(g2); err != nil {
		return err
	}
	// p -= stepSize * m / (sqrt(v)/sqrt(bc2) + eps)
	denom, err := v.Sqrt(false)
	if err != nil {
		return err
	}
	defer denom.Drop()
	if err := denom.MulScalar_(ts.FloatScalar(1 / bc2Sqrt)); err != nil {
		return err
	}
	if err := denom.AddScalar_(ts.FloatScalar(o.Eps)); err != nil {
		return err
	}
	upd, err := m.Div(denom, false)
	if err != nil {
		return err
	}
	defer upd.Drop()
	if err := upd.MulScalar_(ts.FloatScalar(stepSize)); err != nil {
		return err
	}
	return p.T.Sub_(upd)
}

// ZeroGrad clears the gradients (gotch's Tensor.ZeroGrad leaks the
// gradient handle it creates).
func (o *AdamW) ZeroGrad() error {
	gs, err := o.grads()
	if err != nil {
		return err
	}
	defer torch.DropAll(gs)
	for _, g := range gs {
		if g != nil {
			if err := g.Zero_(); err != nil {
				return err
			}
		}
	}
	return nil
}

// State copies the moments out, keyed "exp_avg.<param>" and
// "exp_avg_sq.<param>" (PyTorch's names).
func (o *AdamW) State() (map[string][]float32, error) {
	out := map[string][]float32{}
	for i, p := range o.params {
		for _, x := range []struct {
			key string
			t   *ts.Tensor
		}{{"exp_avg." + p.Name, o.m[i]}, {"exp_avg_sq." + p.Name, o.v[i]}} {
			n := x.t.Numel()
			vals := make([]float32, n)
			if err := x.t.CopyData(vals, n); err != nil {
				return nil, err
			}
			out[x.key] = vals
		}
	}
	return out, nil
}

// ErrState marks optimizer state that does not fit the model.
var ErrState = errors.New("optimizer state does not match the model")

// SetState restores the moments saved by State.
func (o *AdamW) SetState(state map[string][]float32) error {
	for i, p := range o.params {
		for _, x := range []struct {
			key string
			t   **ts.Tensor
		}{{"exp_avg." + p.Name, &o.m[i]}, {"exp_avg_sq." + p.Name, &o.v[i]}} {
			vals, ok := state[x.key]
			if !ok {
				return fmt.Errorf("%w: %s is missing", ErrState, x.key)
			}
			if int64(len(vals)) != p.Numel() {
				return fmt.Errorf("%w: %s has %d values, the parameter %v", ErrState, x.key, len(vals), p.Shape)
			}
			t, err := onDevice(Float32Bytes(vals), p.Shape, gotch.Float, p.T.MustDevice())
			if err != nil {
				return err
			}
			(*x.t).Drop()
			*x.t = t
		}
	}
	if len(state) != 2*len(o.params) {
		return fmt.Errorf("%w: %d tensors for %d parameters", ErrState, len(state), len(o.params))
	}
	return nil
}
