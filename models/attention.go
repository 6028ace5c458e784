package models

import (
	"fmt"
	"slices"

	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// Attention is how a model computes attention. Both give the same result
// (to float rounding; tested on libtorch 2.6, forward and gradients).
type Attention string

const (
	// AttentionEager is matmul, mask and softmax written out: the
	// reference, and what every libtorch runs.
	AttentionEager Attention = "eager"
	// AttentionSDPA is libtorch's fused scaled_dot_product_attention
	// (libtorch 2.0 and later): flash or memory-efficient kernels where
	// the device has them.
	AttentionSDPA Attention = "sdpa"
)

// SDPAAvailable says whether this libtorch has scaled_dot_product_attention.
func SDPAAvailable() bool {
	return !slices.Contains(torch.DisabledFunctions(), "atg_scaled_dot_product_attention")
}

// ResolveAttention turns a model.attention value into the attention a
// model runs: auto is SDPA where this libtorch has it, eager otherwise; sdpa
// where it has not is an error.
func ResolveAttention(name string) (Attention, error) {
	switch Attention(name) {
	case "", "auto":
		if SDPAAvailable() {
			return AttentionSDPA, nil
		}
		return AttentionEager, nil
	case AttentionEager:
		return AttentionEager, nil
	case AttentionSDPA:
		if !SDPAAvailable() {
			return "", fmt.Errorf("attention sdpa: scaled_dot_product_attention is not in libtorch %s (use eager or auto)", torch.Inspect().LibtorchVersion)
		}
		return AttentionSDPA, nil
	}
	return "", fmt.Errorf("attention %q: want auto, sdpa or eager", name)
}

// SetAttention chooses how the model computes attention (eager by
// default).
func (m *RewardModel) SetAttention(a Attention) error {
	if a == AttentionSDPA && !SDPAAvailable() {
		return fmt.Errorf("attention sdpa: scaled_dot_product_attention is not in libtorch %s", torch.Inspect().LibtorchVersion)
	}
	if a != AttentionSDPA && a != AttentionEager {
		return fmt.Errorf("attention %q: want sdpa or eager", a)
	}
	m.attention = a
	return nil
}

// Attention is how the model computes attention.
func (m *RewardModel) Attention() Attention {
	if m.attention == "" {
		return AttentionEager
	}
	return m.attention
}

// attendMask is SDPA's boolean mask [B,1,T,Tk] (true: may attend) from
// blocked [B,1,1,T,Tk] (Tk keys: a cached prefix's, then the batch's). A query that may attend to no key (a padding
// position before a left-padded row's first token) is let attend to
// every key instead, as transformers does for SDPA: a row with no key
// gives NaN, and NaN in a padding row would reach real rows through
// 0·NaN in the next layer's attention. Padding rows' outputs are never
// read, so what they attend to does not matter.
func attendMask(s *torch.Scope, blocked *ts.Tensor, B, T, Tk int64) *ts.Tensor {
	allowed := s.T(s.T(blocked.LogicalNot(false)).View([]int64{B, 1, T, Tk}, false))
	none := s.T(s.T(allowed.AnyDim(-1, true, false)).LogicalNot(false)) // [B,1,T,1]
	return s.T(allowed.LogicalOr(none, false))
}

// sdpa runs scaled_dot_product_attention on queries q [B,H,Tq,hd] (already
// scaled by 1/sqrt(hd): the scale is folded into their rotary tables),
// keys and values [B,KV,T,hd] and the mask attend [B,1,Tq,T], and returns
// [B,Tq,H*hd]. Key/value heads are repeated for grouped-query attention
// (this binding of SDPA has no enable_gqa).
func sdpa(s *torch.Scope, q, k, v, attend *ts.Tensor, rep int64) *ts.Tensor {
	qs, err := q.Size()
	torch.Check(err)
	B, H, Tq, hd := qs[0], qs[1], qs[2], qs[3]
	if rep > 1 {
		k, v = repeatKV(s, k, rep), repeatKV(s, v, rep)
	}
	o := s.T(ts.ScaledDotProductAttention(q, k, v, attend, 0, false, []float64{1}))
	return s.T(s.T(o.Transpose(1, 2, false)).Reshape([]int64{B, Tq, H * hd}, false))
}

// repeatKV expands x [B,KV,T,hd] to [B,KV·rep,T,hd], each head rep times
// in a row (transformers' repeat_kv).
func repeatKV(s *torch.Scope, x *ts.Tensor, rep int64) *ts.Tensor {
	xs, err := x.Size()
	torch.Check(err)
	B, KV, T, hd := xs[0], xs[1], xs[2], xs[3]
	e := s.T(s.T(x.Unsqueeze(2, false)).Expand([]int64{B, KV, rep, T, hd}, false, false))
	return s.T(e.Reshape([]int64{B, KV * rep, T, hd}, false))
}
