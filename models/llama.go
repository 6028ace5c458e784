package models

import (
	"fmt"
	"math"
	"math/rand/v2"
	"prism/internal/safetensors"
	"prism/internal/torch"
	"slices"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Param is one named weight of a model. Names follow transformers'
// LlamaForSequenceClassification, so weights move between prism and
// transformers unchanged.
type Param struct {
	Name  string
	Shape []int64
	T     *ts.Tensor
	// Decay says whether AdamW's weight decay applies: it does to weight
	// matrices and embeddings, not to norms.
	Decay bool
}

// SetTrainable switches the parameter's gradient on or off.
func (p *Param) SetTrainable(on bool) error { return requireGrad(p.T, on) }

// requireGrad sets t's requires_grad flag in place. gotch returns a new
// handle to the same tensor, which is dropped.
func requireGrad(t *ts.Tensor, on bool) error {
	h, err := t.SetRequiresGrad(on, false)
	if err != nil {
		return err
	}
	if h != t {
		h.Drop()
	}
	return nil
}

// Numel is the number of elements of the parameter.
func (p *Param) Numel() int64 {
	n := int64(1)
	for _, d := range p.Shape {
		n *= d
	}
	return n
}

type block struct {
	q, k, v, o        *ts.Tensor
	gate, up, down    *ts.Tensor
	attnNorm, mlpNorm *ts.Tensor
	// lora maps projection names ("q_proj") to their adapters.
	lora map[string]*adapter
	// layer is the block's index.
	layer int
}

// RewardModel is a Llama-family decoder with a scalar head ("score") on
// the final hidden state of each sequence's last real token.
type RewardModel struct {
	Config *Config
	// Params lists every weight in a fixed order.
	Params []*Param
	byName map[string]*Param

	embed, norm, score *ts.Tensor
	blocks             []block
	invFreq            *ts.Tensor
	device             gotch.Device
	attention          Attention
	// compute is the dtype of activations (see Precision); weights are
	// float32.
	compute gotch.DType
	// lora holds the adapter factors when LoRA is on (EnableLoRA).
	lora      []*Param
	loraOpt   LoRAOptions
	loraScale float64
}

// ParamNames lists the weight names of a model with this config, in the
// order of RewardModel.Params.
func (c *Config) ParamNames() []string {
	names := []string{"model.embed_tokens.weight"}
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		names = append(names,
			p+"self_attn.q_proj.weight", p+"self_attn.k_proj.weight", p+"self_attn.v_proj.weight", p+"self_attn.o_proj.weight",
			p+"mlp.gate_proj.weight", p+"mlp.up_proj.weight", p+"mlp.down_proj.weight",
			p+"input_layernorm.weight", p+"post_attention_layernorm.weight")
	}
	return append(names, "model.norm.weight", "score.weight")
}

// ParamShape returns the shape of a named weight.
func (c *Config) ParamShape(name string) ([]int64, bool) {
	d := int64(c.HiddenSize)
	q := int64(c.NumAttentionHeads * c.HeadDim)
	kv := int64(c.NumKeyValueHeads * c.HeadDim)
	f := int64(c.IntermediateSize)
	switch {
	case name == "model.embed_tokens.weight":
		return []int64{int64(c.VocabSize), d}, true
	case name == "model.norm.weight":
		return []int64{d}, true
	case name == "score.weight":
		return []int64{1, d}, true
	}
	var layer int
	var rest string
	if _, err := fmt.Sscanf(name, "model.layers.%d.%s", &layer, &rest); err != nil || layer < 0 || layer >= c.NumHiddenLayers {
		return nil, false
	}
	switch rest {
	case "self_attn.q_proj.weight":
		return []int64{q, d}, true
	case "self_attn.k_proj.weight", "self_attn.v_proj.weight":
		return []int64{kv, d}, true
	case "self_attn.o_proj.weight":
		return []int64{d, q}, true
	case "mlp.gate_proj.weight", "mlp.up_proj.weight":
		return []int64{f, d}, true
	case "mlp.down_proj.weight":
		return []int64{d, f}, true
	case "input_layernorm.weight", "post_attention_layernorm.weight":
		return []int64{d}, true
	}
	return nil, false
}

func isNorm(name string) bool {
	n := len(name)
	return n >= 11 && (name[n-11:] == "norm.weight")
}

// newModel wires a model from fully populated float32 weights on device.
// It takes ownership of the tensors and makes them leaves that require
// gradients.
func newModel(c *Config, weights map[string]*ts.Tensor, device gotch.Device) (m *RewardModel, err error) {
	m = &RewardModel{Config: c, byName: map[string]*Param{}, device: device, compute: gotch.Float}
	defer func() {
		if err != nil {
			m.Drop()
			for _, w := range weights {
				w.Drop()
			}
		}
	}()
	for _, name := range c.ParamNames() {
		w, ok := weights[name]
		if !ok {
			return nil, fmt.Errorf("weight %s is missing", name)
		}
		delete(weights, name)
		shape, _ := c.ParamShape(name)
		got, err := w.Size()
		if err != nil {
			return nil, err
		}
		if !slices.Equal(got, shape) {
			w.Drop()
			return nil, fmt.Errorf("weight %s has shape %v, the config says %v", name, got, shape)
		}
		if err := requireGrad(w, true); err != nil {
			return nil, err
		}
		p := &Param{Name: name, Shape: shape, T: w, Decay: !isNorm(name)}
		m.Params = append(m.Params, p)
		m.byName[name] = p
	}
	if len(weights) > 0 {
		for name := range weights {
			return nil, fmt.Errorf("unexpected weight %s", name)
		}
	}
	get := func(n string) *ts.Tensor { return m.byName[n].T }
	m.embed = get("model.embed_tokens.weight")
	m.norm = get("model.norm.weight")
	m.score = get("score.weight")
	for i := 0; i < c.NumHiddenLayers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		m.blocks = append(m.blocks, block{
			q: get(p + "self_attn.q_proj.weight"), k: get(p + "self_attn.k_proj.weight"),
			v: get(p + "self_attn.v_proj.weight"), o: get(p + "self_attn.o_proj.weight"),
			gate: get(p + "mlp.gate_proj.weight"), up: get(p + "mlp.up_proj.weight"), down: get(p + "mlp.down_proj.weight"),
			attnNorm: get(p + "input_layernorm.weight"), mlpNorm: get(p + "post_attention_layernorm.weight"),
			layer: i,
		})
	}
	inv := c.InvFreq()
	m.invFreq, err = onDevice(Float32Bytes(inv), []int64{int64(len(inv))}, gotch.Float, device)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Param returns the named weight, or nil.
func (m *RewardModel) Param(name string) *Param { return m.byName[name] }

// Drop frees the model's tensors.
func (m *RewardModel) Drop() {
	for _, p := range m.Params {
		if p.T != nil {
			p.T.Drop()
		}
	}
	for _, p := range m.lora {
		p.T.Drop()
	}
	if m.invFreq != nil {
		m.invFreq.Drop()
	}
	m.Params, m.lora = nil, nil
}

// NumParams is the number of weights.
func (m *RewardModel) NumParams() int64 {
	var n int64
	for _, p := range m.Params {
		n += p.Numel()
	}
	return n
}

// Batch is a right- or left-padded batch of token sequences.
type Batch struct {
	// IDs and Mask are B*T values, row-major; Mask is 1 for real tokens and
	// 0 for padding.
	IDs  []int64
	Mask []int64
	B, T int
}

// Validate checks shapes and that every row has a real token.
func (b *Batch) Validate(vocab int) error {
	if b.B < 1 || b.T < 1 || len(b.IDs) != b.B*b.T || len(b.Mask) != b.B*b.T {
		return fmt.Errorf("batch of %dx%d has %d ids and %d mask values", b.B, b.T, len(b.IDs), len(b.Mask))
	}
	for r := 0; r < b.B; r++ {
		real := 0
		for j := 0; j < b.T; j++ {
			k := r*b.T + j
			switch b.Mask[k] {
			case 0:
			case 1:
				real++
				if b.IDs[k] < 0 || b.IDs[k] >= int64(vocab) {
					return fmt.Errorf("row %d: token id %d is outside the vocabulary (%d)", r, b.IDs[k], vocab)
				}
			default:
				return fmt.Errorf("row %d: mask value %d is not 0 or 1", r, b.Mask[k])
			}
		}
		if real == 0 {
			return fmt.Errorf("row %d has no real token", r)
		}
	}
	return nil
}

// Forward returns the reward of each sequence, shape [B]. Under autograd
// the result carries the graph; the caller drops it.
func (m *RewardModel) Forward(b *Batch) (rewards *ts.Tensor, err error) {
	defer torch.Pin()()
	if err := b.Validate(m.Config.VocabSize); err != nil {
		return nil, err
	}
	s := &torch.Scope{}
	defer func() { s.Release(rewards) }()
	defer torch.Catch(&err, "reward model forward")

	return m.rewards(s, m.tables(s, b, true, nil, nil)), nil
}

// rewards runs the decoder over the batch tb describes and returns each
// row's reward [B], from its last real token.
func (m *RewardModel) rewards(s *torch.Scope, tb *tables) *ts.Tensor {
	h, _ := m.decode(s, tb, true) // [B,1,D]: the last real token of each row
	B, D := tb.B, int64(m.Config.HiddenSize)
	final := s.T(h.View([]int64{B, D}, false))
	r := s.T(ts.Linear(final, m.c(s, m.score), ts.None)) // [B,1]
	return m.f32(s, s.T(r.View([]int64{B}, false)))
}

// hidden runs the decoder and returns the final normed hidden states
// [B,T,D] and the mask tensor [B,T], both registered in s. With lastOnly
// it returns [B,1,D], the state of each row's last real token only: the
// reward reads nothing else, so the final block computes its queries,
// attention and MLP for that one position (keys and values still cover
// every position). For a model of L blocks that saves nearly 1/L of the
// work, forward and backward, with the same result.
func (m *RewardModel) hidden(s *torch.Scope, b *Batch, lastOnly bool) (h, mask *ts.Tensor) {
	return m.decode(s, m.tables(s, b, lastOnly, nil, nil), lastOnly)
}

// decode runs the decoder over the batch tb describes.
func (m *RewardModel) decode(s *torch.Scope, tb *tables, lastOnly bool) (h, mask *ts.Tensor) {
	h = m.c(s, s.T(ts.Embedding(m.embed, tb.ids, -1, false, false))) // [B,T,D]
	for i, bl := range m.blocks {
		if lastOnly && i == len(m.blocks)-1 {
			h = m.lastBlock(s, bl, h, tb)
			break
		}
		h = m.block(s, bl, h, tb)
	}
	return m.rmsNorm(s, h, m.norm), tb.mask
}

// tables are what every block of one forward pass shares: the token ids,
// mask, rotary tables and attention mask of a batch.
type tables struct {
	ids, mask            *ts.Tensor
	last                 *ts.Tensor // [B], the last real token of each row (lastOnly)
	cosQ, sinQ, cos, sin *ts.Tensor
	blocked              *ts.Tensor // [B,1,1,T,P+T]
	attend               *ts.Tensor // [B,1,T,P+T], SDPA's mask (sdpa only)
	B, T, H, KV, hd, rep int64
	// P is the length of the cached prompts the batch's rows continue
	// (0: none), past those prompts and rows which prompt each row
	// continues; keep, when set, collects this pass's keys and values per
	// layer (a prompt pass).
	P    int64
	past *promptCache
	rows *ts.Tensor // [B] int64
	keep *[]kv
}

// kv are one layer's keys and values, [B,KV,T,hd] after rotary embedding.
type kv struct{ k, v *ts.Tensor }

// promptCache holds the keys and values of a batch of prompts: per layer
// [Bp,KV,P,hd], right-padded to P, mask [Bp,P] and each prompt's length.
type promptCache struct {
	layers []kv
	mask   *ts.Tensor
	last   *ts.Tensor // [Bp,D], each prompt's final hidden state at its last token (when asked for)
	lens   []int64
	P      int64
}

// tables prepares a batch. With past, row r of the batch continues prompt
// rows[r] of the cache: rows must be right-padded, their positions start
// after the prompt's last token, and they attend to the prompt's keys as
// to their own earlier tokens (within the sliding window, if any).
func (m *RewardModel) tables(s *torch.Scope, b *Batch, lastOnly bool, past *promptCache, rows []int64) *tables {
	c := m.Config
	B, T := int64(b.B), int64(b.T)
	H, KV, hd := int64(c.NumAttentionHeads), int64(c.NumKeyValueHeads), int64(c.HeadDim)

	ids := s.T(onDevice(int64Bytes(b.IDs), []int64{B, T}, gotch.Int64, m.device))
	mask := s.T(onDevice(int64Bytes(b.Mask), []int64{B, T}, gotch.Int64, m.device))

	// Positions count real tokens, so a left-padded row sees the same
	// positions as the unpadded sequence; after a cached prompt they
	// continue from its length.
	pos := s.T(s.T(mask.Cumsum(1, gotch.Float, false)).AddScalar(f(-1), false))
	pos = s.T(pos.ClampMin(f(0), false))
	var P int64
	var rowIdx, start *ts.Tensor // [B]: each row's prompt and its length
	if past != nil {
		P = past.P
		rowIdx = s.T(onDevice(int64Bytes(rows), []int64{B}, gotch.Int64, m.device))
		lens := make([]int64, len(rows))
		for i, r := range rows {
			lens[i] = past.lens[r]
		}
		start = s.T(s.T(onDevice(int64Bytes(lens), []int64{B}, gotch.Int64, m.device)).Totype(gotch.Float, false))
		pos = s.T(pos.Add(s.T(start.Unsqueeze(1, false)), false))
	}
	// The last real token of each row, from the mask: argmax of mask*(j+1)
	// picks the highest position holding a real token whatever the padding
	// side, and whatever token the padding uses.
	var last *ts.Tensor // [B]
	if lastOnly {
		idx := s.T(ts.Arange(ts.IntScalar(T), gotch.Int64, m.device))
		idx = s.T(s.T(idx.AddScalar(ts.IntScalar(1), false)).Mul(mask, false))
		last = s.T(idx.Argmax([]int64{1}, false, false))
	}
	angles := s.T(s.T(pos.Unsqueeze(-1, false)).Mul(m.invFreq, false)) // [B,T,hd/2]
	cosH := s.T(angles.Cos(false))
	sinH := s.T(angles.Sin(false))
	// rotate_half(x)*sin equals cat(x2, x1) * cat(-sin, sin): the sign goes
	// into the table once per forward instead of a negation per layer.
	cos := s.T(s.T(ts.Cat([]*ts.Tensor{cosH, cosH}, -1)).Unsqueeze(1, false))                 // [B,1,T,hd]
	sin := s.T(s.T(ts.Cat([]*ts.Tensor{s.T(sinH.Neg(false)), sinH}, -1)).Unsqueeze(1, false)) // [B,1,T,hd]
	// The softmax scale 1/sqrt(hd) is folded into the queries' tables:
	// [B,1,T,hd] once instead of the [B,H,T,T] scores per layer.
	scale := f(1 / math.Sqrt(float64(hd)))
	cosQ := m.c(s, s.T(cos.MulScalar(scale, false)))
	sinQ := m.c(s, s.T(sin.MulScalar(scale, false)))
	cos, sin = m.c(s, cos), m.c(s, sin)

	// Which keys each query may attend to: causal, not padding, and inside
	// the sliding window when the model has one.
	var blocked *ts.Tensor // [B,1,1,T,P+T]
	if past == nil {
		ones := s.T(ts.Ones([]int64{T, T}, gotch.Bool, m.device))
		allowed := s.T(ones.Tril(0, false))
		if c.SlidingWindow > 0 && int64(c.SlidingWindow) < T {
			allowed = s.T(allowed.Triu(-int64(c.SlidingWindow-1), false))
		}
		keyOK := s.T(s.T(mask.Eq(f(1), false)).View([]int64{B, 1, 1, 1, T}, false))
		allowed = s.T(allowed.View([]int64{1, 1, 1, T, T}, false))
		blocked = s.T(s.T(allowed.LogicalAnd(keyOK, false)).LogicalNot(false))
	} else {
		blocked = m.blockedAfter(s, mask, past, rowIdx, start, B, T)
	}
	var attend *ts.Tensor
	if m.Attention() == AttentionSDPA {
		attend = attendMask(s, blocked, B, T, P+T)
	}
	return &tables{ids: ids, mask: mask, last: last, cosQ: cosQ, sinQ: sinQ, cos: cos, sin: sin, blocked: blocked, attend: attend,
		B: B, T: T, H: H, KV: KV, hd: hd, rep: H / KV, P: P, past: past, rows: rowIdx}
}

// blockedAfter is the attention mask of rows that continue cached prompts:
// keys are the prompt's P slots (real up to its length) then the row's T
// tokens. Query i of a row whose prompt has n tokens sits at n+i; prompt
// key j at j, row key t at n+t.
func (m *RewardModel) blockedAfter(s *torch.Scope, mask *ts.Tensor, past *promptCache, rowIdx, start *ts.Tensor, B, T int64) *ts.Tensor {
	P := past.P
	ar := func(n int64) *ts.Tensor { return s.T(ts.Arange(ts.IntScalar(n), gotch.Float, m.device)) }
	st := s.T(start.Unsqueeze(1, false))                       // [B,1]
	qpos := s.T(s.T(ar(T).Unsqueeze(0, false)).Add(st, false)) // [B,T]
	kRow := s.T(s.T(ar(T).Unsqueeze(0, false)).Add(st, false)) // [B,T]
	kPrompt := s.T(s.T(ar(P).Unsqueeze(0, false)).Expand([]int64{B, P}, false, false))
	kpos := s.T(ts.Cat([]*ts.Tensor{kPrompt, kRow}, 1)) // [B,P+T]
	q3 := s.T(qpos.Unsqueeze(2, false))                 // [B,T,1]
	k3 := s.T(kpos.Unsqueeze(1, false))                 // [B,1,P+T]
	allowed := s.T(k3.LeTensor(q3, false))              // [B,T,P+T]
	if w := m.Config.SlidingWindow; w > 0 {
		dist := s.T(q3.Sub(k3, false))
		allowed = s.T(allowed.LogicalAnd(s.T(dist.Lt(f(float64(w)), false)), false))
	}
	promptOK := s.T(s.T(past.mask.IndexSelect(0, rowIdx, false)).Eq(f(1), false)) // [B,P]
	keyOK := s.T(ts.Cat([]*ts.Tensor{promptOK, s.T(mask.Eq(f(1), false))}, 1))    // [B,P+T]
	allowed = s.T(allowed.LogicalAnd(s.T(keyOK.Unsqueeze(1, false)), false))
	return s.T(s.T(allowed.LogicalNot(false)).View([]int64{B, 1, 1, T, P + T}, false))
}

// withPast puts the cached prompt keys and values of layer in front of
// k and v [B,KV,T,hd] (a no-op without a cache), and records them when
// the pass keeps them.
func (tb *tables) withPast(s *torch.Scope, layer int, k, v *ts.Tensor) (*ts.Tensor, *ts.Tensor) {
	if tb.keep != nil {
		*tb.keep = append(*tb.keep, kv{k, v})
	}
	if tb.past == nil {
		return k, v
	}
	p := tb.past.layers[layer]
	pk := s.T(p.k.IndexSelect(0, tb.rows, false))
	pv := s.T(p.v.IndexSelect(0, tb.rows, false))
	return s.T(ts.Cat([]*ts.Tensor{pk, k}, 2)), s.T(ts.Cat([]*ts.Tensor{pv, v}, 2))
}

// block runs one decoder block over every position of h [B,T,D].
func (m *RewardModel) block(s *torch.Scope, bl block, h *ts.Tensor, tb *tables) *ts.Tensor {
	c := m.Config
	B, T, H, KV, hd, rep := tb.B, tb.T, tb.H, tb.KV, tb.hd, tb.rep
	cosQ, sinQ, cos, sin, blocked := tb.cosQ, tb.sinQ, tb.cos, tb.sin, tb.blocked
	minVal := f(m.lowest())
	// One matmul for q, k and v and one for gate and up: fewer, wider
	// GEMMs run faster than three narrow ones (the weights are joined
	// per forward; autograd splits their gradients back).
	x := m.rmsNorm(s, h, bl.attnNorm)
	qkv := s.T(ts.Linear(x, s.T(ts.Cat([]*ts.Tensor{m.proj(s, bl, "q_proj", bl.q), m.proj(s, bl, "k_proj", bl.k), m.proj(s, bl, "v_proj", bl.v)}, 0)), ts.None)) // [B,T,(H+2KV)*hd]
	q := s.T(s.T(s.T(qkv.Narrow(-1, 0, H*hd, false)).Reshape([]int64{B, T, H, hd}, false)).Transpose(1, 2, false))
	k := s.T(s.T(s.T(qkv.Narrow(-1, H*hd, KV*hd, false)).Reshape([]int64{B, T, KV, hd}, false)).Transpose(1, 2, false))
	v := s.T(s.T(s.T(qkv.Narrow(-1, (H+KV)*hd, KV*hd, false)).Reshape([]int64{B, T, KV, hd}, false)).Transpose(1, 2, false))
	q = rope(s, q, cosQ, sinQ, hd)
	k = rope(s, k, cos, sin, hd)
	k, v = tb.withPast(s, bl.layer, k, v)
	Tk := tb.P + T
	var att *ts.Tensor // [B,T,H*hd]
	if m.Attention() == AttentionSDPA {
		att = sdpa(s, q, k, v, tb.attend, rep)
	} else {
		// Grouped-query attention without repeating keys and values: the
		// rep query heads that share a key/value head are stacked along the
		// query axis ([B,KV,rep*T,hd]), which also means B*KV larger
		// matmuls instead of B*H small ones.
		qg := s.T(q.Reshape([]int64{B, KV, rep * T, hd}, false))
		scores := s.T(qg.Matmul(s.T(k.Transpose(2, 3, false)), false)) // [B,KV,rep*T,Tk]
		scores = s.T(scores.View([]int64{B, KV, rep, T, Tk}, false))
		torch.Check(scores.MaskedFill_(blocked, minVal))
		probs := m.c(s, s.T(scores.Softmax(-1, gotch.Float, false)))
		probs = s.T(probs.View([]int64{B, KV, rep * T, Tk}, false))
		att = s.T(probs.Matmul(v, false)) // [B,KV,rep*T,hd] = [B,H,T,hd]
		att = s.T(s.T(s.T(att.View([]int64{B, H, T, hd}, false)).Transpose(1, 2, false)).Reshape([]int64{B, T, H * hd}, false))
	}
	h = s.T(h.Add(s.T(ts.Linear(att, m.proj(s, bl, "o_proj", bl.o), ts.None)), false))

	x = m.rmsNorm(s, h, bl.mlpNorm)
	F := int64(c.IntermediateSize)
	gu := s.T(ts.Linear(x, s.T(ts.Cat([]*ts.Tensor{m.proj(s, bl, "gate_proj", bl.gate), m.proj(s, bl, "up_proj", bl.up)}, 0)), ts.None)) // [B,T,2F]
	gate := s.T(s.T(gu.Narrow(-1, 0, F, false)).Silu(false))
	up := s.T(gu.Narrow(-1, F, F, false))
	h = s.T(h.Add(s.T(ts.Linear(s.T(gate.Mul(up, false)), m.proj(s, bl, "down_proj", bl.down), ts.None)), false))
	return h
}

// lastBlock runs the final decoder block for one query per row, the token
// at last [B]: keys and values come from every position of h [B,T,D]; the
// result is [B,1,D].
func (m *RewardModel) lastBlock(s *torch.Scope, bl block, h *ts.Tensor, tb *tables) *ts.Tensor {
	c := m.Config
	last, cosQ, sinQ, cos, sin, blocked := tb.last, tb.cosQ, tb.sinQ, tb.cos, tb.sin, tb.blocked
	sz, err := h.Size()
	torch.Check(err)
	B, T := sz[0], sz[1]
	H, KV, hd := int64(c.NumAttentionHeads), int64(c.NumKeyValueHeads), int64(c.HeadDim)
	rep := H / KV
	// at picks position last of each row along dim of x, keeping the dim.
	at := func(x *ts.Tensor, dim int64) *ts.Tensor {
		shape, err := x.Size()
		torch.Check(err)
		ishape := make([]int64, len(shape))
		for i := range ishape {
			ishape[i] = 1
		}
		ishape[0] = B
		shape[dim] = 1
		idx := s.T(s.T(last.View(ishape, false)).Expand(shape, false, false))
		return s.T(x.Gather(dim, idx, false, false))
	}
	x := m.rmsNorm(s, h, bl.attnNorm)
	kv := s.T(ts.Linear(x, s.T(ts.Cat([]*ts.Tensor{m.proj(s, bl, "k_proj", bl.k), m.proj(s, bl, "v_proj", bl.v)}, 0)), ts.None)) // [B,T,2KV*hd]
	k := s.T(s.T(s.T(kv.Narrow(-1, 0, KV*hd, false)).Reshape([]int64{B, T, KV, hd}, false)).Transpose(1, 2, false))
	v := s.T(s.T(s.T(kv.Narrow(-1, KV*hd, KV*hd, false)).Reshape([]int64{B, T, KV, hd}, false)).Transpose(1, 2, false))
	k = rope(s, k, cos, sin, hd)
	k, v = tb.withPast(s, bl.layer, k, v)
	Tk := tb.P + T
	xl := at(x, 1)                                                                                                                     // [B,1,D]
	q := s.T(s.T(s.T(ts.Linear(xl, m.proj(s, bl, "q_proj", bl.q), ts.None)).View([]int64{B, 1, H, hd}, false)).Transpose(1, 2, false)) // [B,H,1,hd]
	q = rope(s, q, at(cosQ, 2), at(sinQ, 2), hd)
	var att *ts.Tensor // [B,1,H*hd]
	if m.Attention() == AttentionSDPA {
		att = sdpa(s, q, k, v, at(tb.attend, 2), rep)
	} else {
		qg := s.T(q.Reshape([]int64{B, KV, rep, hd}, false))
		scores := s.T(qg.Matmul(s.T(k.Transpose(2, 3, false)), false)) // [B,KV,rep,Tk]
		scores = s.T(scores.View([]int64{B, KV, rep, 1, Tk}, false))
		torch.Check(scores.MaskedFill_(at(blocked, 3), f(m.lowest())))
		probs := s.T(m.c(s, s.T(scores.Softmax(-1, gotch.Float, false))).View([]int64{B, KV, rep, Tk}, false))
		att = s.T(probs.Matmul(v, false)) // [B,KV,rep,hd]
		att = s.T(att.Reshape([]int64{B, 1, H * hd}, false))
	}
	hl := s.T(at(h, 1).Add(s.T(ts.Linear(att, m.proj(s, bl, "o_proj", bl.o), ts.None)), false)) // [B,1,D]

	x = m.rmsNorm(s, hl, bl.mlpNorm)
	F := int64(c.IntermediateSize)
	gu := s.T(ts.Linear(x, s.T(ts.Cat([]*ts.Tensor{m.proj(s, bl, "gate_proj", bl.gate), m.proj(s, bl, "up_proj", bl.up)}, 0)), ts.None))
	gate := s.T(s.T(gu.Narrow(-1, 0, F, false)).Silu(false))
	up := s.T(gu.Narrow(-1, F, F, false))
	return s.T(hl.Add(s.T(ts.Linear(s.T(gate.Mul(up, false)), m.proj(s, bl, "down_proj", bl.down), ts.None)), false))
}

// rmsNorm is Llama's RMSNorm: x / sqrt(mean(x^2) + eps) * w, the
// statistics in float32 and the result in the compute dtype (as
// transformers' LlamaRMSNorm: normalise in float32, cast, scale).
func (m *RewardModel) rmsNorm(s *torch.Scope, x, w *ts.Tensor) *ts.Tensor {
	x = m.f32(s, x)
	v := s.T(s.T(x.Square(false)).MeanDim([]int64{-1}, true, gotch.Float, false))
	inv := s.T(s.T(v.AddScalar(f(m.Config.RMSNormEps), false)).Rsqrt(false))
	return s.T(m.c(s, s.T(x.Mul(inv, false))).Mul(m.c(s, w), false))
}

// rope rotates x [B,H,T,hd] by the position angles: x*cos + cat(x2,x1)*sin
// with the sign of rotate_half already in sin (see hidden).
func rope(s *torch.Scope, x, cos, sin *ts.Tensor, hd int64) *ts.Tensor {
	x1 := s.T(x.Narrow(-1, 0, hd/2, false))
	x2 := s.T(x.Narrow(-1, hd/2, hd/2, false))
	rot := s.T(ts.Cat([]*ts.Tensor{x2, x1}, -1))
	return s.T(s.T(x.Mul(cos, false)).Add(s.T(rot.Mul(sin, false)), false))
}

// RandomInit returns float32 weights for a new model drawn from rng:
// N(0, initializer_range) for matrices and embeddings (transformers'
// init), ones for norms, and N(0, 1/(d+1)) variance for the reward head.
func RandomInit(c *Config, rng *rand.Rand) map[string][]float32 {
	out := map[string][]float32{}
	for _, name := range c.ParamNames() {
		shape, _ := c.ParamShape(name)
		out[name] = initValues(c, name, shape, rng)
	}
	return out
}

func initValues(c *Config, name string, shape []int64, rng *rand.Rand) []float32 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	switch {
	case isNorm(name):
		for i := range v {
			v[i] = 1
		}
	default:
		std := c.InitializerRange
		if name == "score.weight" {
			std = 1 / math.Sqrt(float64(c.HiddenSize+1))
		}
		for i := range v {
			v[i] = float32(rng.NormFloat64() * std)
		}
	}
	return v
}

// FromValues builds a model from float32 weight values (as RandomInit
// returns).
func FromValues(c *Config, values map[string][]float32, device gotch.Device) (*RewardModel, error) {
	weights := map[string]*ts.Tensor{}
	for name, v := range values {
		shape, ok := c.ParamShape(name)
		if !ok {
			for _, w := range weights {
				w.Drop()
			}
			return nil, fmt.Errorf("unexpected weight %s", name)
		}
		t, err := onDevice(Float32Bytes(v), shape, gotch.Float, device)
		if err != nil {
			for _, w := range weights {
				w.Drop()
			}
			return nil, fmt.Errorf("weight %s: %w", name, err)
		}
		weights[name] = t
	}
	return newModel(c, weights, device)
}

// Values copies every weight out as float32.
func (m *RewardModel) Values() (map[string][]float32, error) {
	out := map[string][]float32{}
	for _, p := range m.Params {
		v, err := tensorFloat32(p.T)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		out[p.Name] = v
	}
	return out, nil
}

// tensorFloat32 copies a float32 tensor's values.
func tensorFloat32(t *ts.Tensor) ([]float32, error) {
	src := t
	if t.DType() != gotch.Float || t.MustDevice() != torch.CPU() {
		c, err := t.ToDevice(torch.CPU(), gotch.Float, false, true, false)
		if err != nil {
			return nil, err
		}
		defer c.Drop()
		src = c
	}
	n := src.Numel()
	v := make([]float32, n)
	if err := src.CopyData(v, n); err != nil {
		return nil, err
	}
	return v, nil
}

// Float32Bytes views float32 values as little-endian bytes (the host
// order on every platform libtorch supports), without copying.
func Float32Bytes(v []float32) []byte { return safetensors.F32Bytes(v) }

func int64Bytes(v []int64) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 8*len(v))
}

// Float64s copies a tensor's values out as float64. The tensor is detached
// first, so no copy made here holds a reference to an autograd graph, and
// every temporary is freed before returning (gotch's Float64Values leaves
// its copy to the garbage collector).
func Float64s(t *ts.Tensor) ([]float64, error) {
	defer torch.Pin()()
	d, err := t.Detach(false)
	if err != nil {
		return nil, err
	}
	defer d.Drop()
	c, err := d.ToDevice(torch.CPU(), gotch.Double, false, true, false)
	if err != nil {
		return nil, err
	}
	defer c.Drop()
	n := c.Numel()
	v := make([]float64, n)
	if err := c.CopyData(v, n); err != nil {
		return nil, err
	}
	return v, nil
}

func f(x float64) *ts.Scalar { return ts.FloatScalar(x) }
