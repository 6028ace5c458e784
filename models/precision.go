package models

import (
	"fmt"
	"math"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// Precision is the dtype a model computes in. Its weights (and AdamW's
// moments) stay float32 whatever the precision: with bf16 each forward
// pass rounds the weights to bfloat16 (autograd carries the gradients back
// to the float32 masters), activations are bfloat16, and normalisation
// statistics, softmax, the rewards, the loss and every reduction a caller
// sees are float32. That is mixed precision as TRL's and OpenRLHF's --bf16
// give it.
type Precision string

const (
	// PrecisionFP32 computes in float32.
	PrecisionFP32 Precision = "fp32"
	// PrecisionBF16 computes in bfloat16 over float32 master weights.
	PrecisionBF16 Precision = "bf16"
)

// ResolvePrecision turns a model.precision value into a precision.
func ResolvePrecision(name string) (Precision, error) {
	switch p := Precision(name); p {
	case "", PrecisionFP32:
		return PrecisionFP32, nil
	case PrecisionBF16:
		return p, nil
	}
	return "", fmt.Errorf("precision %q: want fp32 or bf16", name)
}

// Compute is how a model computes: its attention and its precision,
// resolved together wherever a model is loaded to run.
type Compute struct {
	Attention Attention
	Precision Precision
}

// SetCompute sets the model's attention and precision.
func (m *RewardModel) SetCompute(c Compute) error {
	if err := m.SetAttention(c.Attention); err != nil {
		return err
	}
	return m.SetPrecision(c.Precision)
}

// SetCompute sets the policy's attention and precision.
func (lm *CausalLM) SetCompute(c Compute) error { return lm.decoder.SetCompute(c) }

// SetPrecision chooses the dtype the model computes in (fp32 by default).
func (m *RewardModel) SetPrecision(p Precision) error {
	p, err := ResolvePrecision(string(p))
	if err != nil {
		return err
	}
	m.compute = gotch.Float
	if p == PrecisionBF16 {
		m.compute = gotch.BFloat16
	}
	return nil
}

// Precision is the dtype the model computes in.
func (m *RewardModel) Precision() Precision {
	if m.bf16() {
		return PrecisionBF16
	}
	return PrecisionFP32
}

// SetPrecision chooses the dtype the policy computes in.
func (lm *CausalLM) SetPrecision(p Precision) error { return lm.decoder.SetPrecision(p) }

func (m *RewardModel) bf16() bool { return m.compute == gotch.BFloat16 }

// c casts x to the compute dtype (a no-op in fp32).
func (m *RewardModel) c(s *torch.Scope, x *ts.Tensor) *ts.Tensor {
	if !m.bf16() {
		return x
	}
	return s.T(x.Totype(gotch.BFloat16, false))
}

// f32 casts x to float32 (a no-op in fp32).
func (m *RewardModel) f32(s *torch.Scope, x *ts.Tensor) *ts.Tensor {
	if !m.bf16() {
		return x
	}
	return s.T(x.Totype(gotch.Float, false))
}

// lowest is the masking value of attention scores: the most negative
// finite number of the compute dtype, so a row with every key masked
// stays finite (-MaxFloat32 rounds to -inf in bfloat16).
func (m *RewardModel) lowest() float64 {
	if m.bf16() {
		return -0x1.fep127 // bfloat16's lowest finite value
	}
	return -math.MaxFloat32
}
