package models

import (
	"fmt"
	"math/rand/v2"
	"prism/internal/torch"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/safetensors"
)

// CausalLM is a Llama-family language model: the decoder of a
// RewardModel with the language-model head. The decomposition uses it as
// the policy π(y | x) whose likelihoods weight the sampled prompts.
type CausalLM struct {
	decoder *RewardModel
	lmHead  *ts.Tensor
	tied    bool
}

// LoadCausalLM reads a Hugging Face causal-LM folder (lm_head.weight, or
// tied embeddings).
func LoadCausalLM(dir string, device gotch.Device) (*CausalLM, error) {
	m, _, err := Load(dir, device, rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		return nil, err
	}
	lm := &CausalLM{decoder: m}
	files, err := weightFiles(dir)
	if err != nil {
		m.Drop()
		return nil, err
	}
	// With tied embeddings transformers uses embed_tokens as the output
	// layer and ignores a stored lm_head.weight.
	if m.Config.TieWordEmbeddings {
		files = nil
	}
	for _, path := range files {
		f, err := safetensors.Open(path)
		if err != nil {
			m.Drop()
			return nil, err
		}
		ti, ok := f.Lookup("lm_head.weight")
		if ok {
			want := []int64{int64(m.Config.VocabSize), int64(m.Config.HiddenSize)}
			if len(ti.Shape) != 2 || ti.Shape[0] != want[0] || ti.Shape[1] != want[1] {
				f.Close()
				m.Drop()
				return nil, fmt.Errorf("%s: lm_head.weight has shape %v, want %v", path, ti.Shape, want)
			}
			raw, err := f.ReadRaw(ti.Name)
			if err == nil {
				lm.lmHead, err = tensorFromRaw(ti, raw, device)
			}
			if err != nil {
				f.Close()
				m.Drop()
				return nil, fmt.Errorf("%s: lm_head.weight: %w", path, err)
			}
		}
		f.Close()
	}
	if lm.lmHead == nil {
		if !m.Config.TieWordEmbeddings {
			m.Drop()
			return nil, fmt.Errorf("%s: no lm_head.weight and tie_word_embeddings is false: not a causal language model", dir)
		}
		lm.lmHead, lm.tied = m.embed, true
	}
	return lm, nil
}

// Drop frees the model.
func (lm *CausalLM) Drop() {
	if lm.lmHead != nil && !lm.tied {
		lm.lmHead.Drop()
	}
	lm.decoder.Drop()
}

// SetAttention chooses how the model computes attention (eager by
// default).
func (lm *CausalLM) SetAttention(a Attention) error { return lm.decoder.SetAttention(a) }

// Config is the model's configuration.
func (lm *CausalLM) Config() *Config { return lm.decoder.Config }

// ResponseLogLik returns, for each (prompt, response), the mean
// log-probability of the response's tokens given the prompt and the
// response tokens before them (the length-normalised log-likelihood).
func (lm *CausalLM) ResponseLogLik(prompts, responses [][]int64, batchSize int) (out []float64, err error) {
	defer torch.Pin()()
	if len(prompts) != len(responses) {
		return nil, fmt.Errorf("%d prompts for %d responses", len(prompts), len(responses))
	}
	out = make([]float64, len(prompts))
	ts.NoGrad(func() {
		for lo := 0; lo < len(prompts) && err == nil; lo += batchSize {
			hi := min(lo+batchSize, len(prompts))
			var v []float64
			v, err = lm.batchLogLik(prompts[lo:hi], responses[lo:hi])
			copy(out[lo:hi], v)
		}
	})
	return out, err
}

func (lm *CausalLM) batchLogLik(prompts, responses [][]int64) (out []float64, err error) {
	seqs := make([][]int64, len(prompts))
	for i := range prompts {
		if len(prompts[i]) == 0 || len(responses[i]) == 0 {
			return nil, fmt.Errorf("row %d: a log-likelihood needs a prompt and a response", i)
		}
		seqs[i] = append(append([]int64{}, prompts[i]...), responses[i]...)
	}
	b := Collate(seqs, lm.decoder.PadID())
	if err := b.Validate(lm.decoder.Config.VocabSize); err != nil {
		return nil, err
	}
	// Position t predicts token t+1; it counts when t+1 is a response token.
	B, T := b.B, b.T
	target := make([]int64, B*T)
	weight := make([]float32, B*T)
	for r, s := range seqs {
		for t := 0; t+1 < len(s); t++ {
			target[r*T+t] = s[t+1]
			if t+1 >= len(prompts[r]) {
				weight[r*T+t] = 1 / float32(len(responses[r]))
			}
		}
	}
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "policy log-likelihood")
	h, _ := lm.decoder.hidden(s, b, false)
	logits := s.T(ts.Linear(h, lm.decoder.c(s, lm.lmHead), ts.None))
	logp := s.T(logits.LogSoftmax(-1, gotch.Float, false))
	tgt := s.T(onDevice(int64Bytes(target), []int64{int64(B), int64(T), 1}, gotch.Int64, lm.decoder.device))
	w := s.T(onDevice(Float32Bytes(weight), []int64{int64(B), int64(T)}, gotch.Float, lm.decoder.device))
	picked := s.T(s.T(logp.Gather(-1, tgt, false, false)).SqueezeDim(-1, false))
	ll := s.T(s.T(picked.Mul(w, false)).SumDimIntlist([]int64{1}, false, gotch.Float, false))
	return Float64s(ll)
}

// ResponseLogLikPrompted is ResponseLogLik computing each distinct
// prompt's keys and values once: the responses that follow it, batched by
// length, continue from its cache, and its final hidden state predicts
// their first token. The values equal ResponseLogLik's to float rounding.
func (lm *CausalLM) ResponseLogLikPrompted(prompts, responses [][]int64, batchSize int) ([]float64, error) {
	for i := range prompts {
		if i < len(responses) && (len(prompts[i]) == 0 || len(responses[i]) == 0) {
			return nil, fmt.Errorf("row %d: a log-likelihood needs a prompt and a response", i)
		}
	}
	out, _, err := lm.decoder.prompted(prompts, responses, batchSize, true, lm.logLikAfter)
	return out, err
}

// logLikAfter is the length-normalised log-likelihood of each row of b
// (the responses rs, right-padded) after its cached prompt.
func (lm *CausalLM) logLikAfter(pc *promptCache, b *Batch, rs [][]int64, rows []int64) (out []float64, err error) {
	d := lm.decoder
	if err := b.Validate(d.Config.VocabSize); err != nil {
		return nil, err
	}
	// Position t of the input [prompt's last token, response[:T-1]]
	// predicts response token t.
	B, T := b.B, b.T
	target := make([]int64, B*T)
	weight := make([]float32, B*T)
	for r, y := range rs {
		for t, id := range y {
			target[r*T+t], weight[r*T+t] = id, 1/float32(len(y))
		}
	}
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "policy log-likelihood after cached prompts")
	tb := d.tables(s, b, false, pc, rows)
	h, _ := d.decode(s, tb, false) // [B,T,D]
	first := s.T(s.T(pc.last.IndexSelect(0, tb.rows, false)).Unsqueeze(1, false))
	x := first
	if T > 1 {
		x = s.T(ts.Cat([]*ts.Tensor{first, s.T(h.Narrow(1, 0, int64(T-1), false))}, 1))
	}
	logits := s.T(ts.Linear(x, d.c(s, lm.lmHead), ts.None))
	logp := s.T(logits.LogSoftmax(-1, gotch.Float, false))
	tgt := s.T(onDevice(int64Bytes(target), []int64{int64(B), int64(T), 1}, gotch.Int64, d.device))
	w := s.T(onDevice(Float32Bytes(weight), []int64{int64(B), int64(T)}, gotch.Float, d.device))
	picked := s.T(s.T(logp.Gather(-1, tgt, false, false)).SqueezeDim(-1, false))
	ll := s.T(s.T(picked.Mul(w, false)).SumDimIntlist([]int64{1}, false, gotch.Float, false))
	return Float64s(ll)
}

// TiedCausalLM is m as a causal LM whose output layer is its token
// embeddings (tie_word_embeddings), for random policies in tests and
// benchmarks. m stays owned by the caller: the result's Drop frees it.
func TiedCausalLM(m *RewardModel) *CausalLM {
	return &CausalLM{decoder: m, lmHead: m.embed, tied: true}
}
