package models

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
)

// ScorePrompted returns the reward of prompts[i] followed by responses[i]
// for each i, as Score returns it for the joined sequences, computing each
// distinct prompt's keys and values once. That is the decomposition's
// workload: every response scored under many prompts, every prompt under
// many responses. Prompts are run batchSize at a time; then the responses
// that follow them, batched by length and right-padded, attend to their
// prompt's cached keys as to their own earlier tokens (positions continue
// after the prompt; Mistral's sliding window reaches back into it).
func (m *RewardModel) ScorePrompted(prompts, responses [][]int64, batchSize int) ([]float64, error) {
	out, bare, err := m.prompted(prompts, responses, batchSize, false, func(pc *promptCache, b *Batch, _ [][]int64, rows []int64) ([]float64, error) {
		return m.scoreAfter(pc, b, rows)
	})
	if err != nil || len(bare) == 0 {
		return out, err
	}
	seqs := make([][]int64, len(bare))
	for j, i := range bare {
		seqs[j] = responses[i]
	}
	v, err := m.Score(seqs, batchSize)
	if err != nil {
		return nil, err
	}
	for j, i := range bare {
		out[i] = v[j]
	}
	return out, nil
}

// afterFunc computes one value per row of b, a right-padded batch of
// responses (rs, unpadded), row r continuing cached prompt rows[r].
type afterFunc func(pc *promptCache, b *Batch, rs [][]int64, rows []int64) ([]float64, error)

// prompted groups items by prompt, caches the distinct prompts' keys and
// values batchSize prompts at a time (and, with last, each prompt's final
// hidden state), and calls f on length-bucketed batches of the responses
// that follow them, returning f's values in item order. Items without a
// prompt are left to the caller: their indices are returned in bare.
func (m *RewardModel) prompted(prompts, responses [][]int64, batchSize int, last bool, f afterFunc) (out []float64, bare []int, err error) {
	if len(prompts) != len(responses) {
		return nil, nil, fmt.Errorf("%d prompts for %d responses", len(prompts), len(responses))
	}
	if batchSize < 1 {
		return nil, nil, fmt.Errorf("batch size %d: want at least 1", batchSize)
	}
	type group struct {
		prompt []int64
		items  []int
	}
	var groups []*group
	byKey := map[string]*group{}
	for i, p := range prompts {
		if len(p) == 0 {
			bare = append(bare, i)
			continue
		}
		k := idsKey(p)
		g, ok := byKey[k]
		if !ok {
			g = &group{prompt: p}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, i)
	}
	out = make([]float64, len(prompts))
	sort.SliceStable(groups, func(a, b int) bool { return len(groups[a].prompt) < len(groups[b].prompt) })
	defer torch.Pin()()
	ts.NoGrad(func() {
		for lo := 0; lo < len(groups) && err == nil; lo += batchSize {
			chunk := groups[lo:min(lo+batchSize, len(groups))]
			ps := make([][]int64, len(chunk))
			var items, rows []int
			for r, g := range chunk {
				ps[r] = g.prompt
				for _, i := range g.items {
					items, rows = append(items, i), append(rows, r)
				}
			}
			err = m.afterPrompts(ps, responses, items, rows, batchSize, last, f, out)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return out, bare, nil
}

// ScorePrefixed is ScorePrompted for one prompt and many responses.
func (m *RewardModel) ScorePrefixed(prefix []int64, responses [][]int64, batchSize int) ([]float64, error) {
	prompts := make([][]int64, len(responses))
	for i := range prompts {
		prompts[i] = prefix
	}
	return m.ScorePrompted(prompts, responses, batchSize)
}

// afterPrompts caches the keys and values of prompts, then computes f
// for responses[items[j]] after prompt rows[j], into out[items[j]].
func (m *RewardModel) afterPrompts(prompts, responses [][]int64, items, rows []int, batchSize int, last bool, f afterFunc, out []float64) (err error) {
	cache := &torch.Scope{}
	defer cache.Release()
	pc, err := m.promptKV(cache, prompts, last)
	if err != nil {
		return err
	}
	order := make([]int, len(items))
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return len(responses[items[order[a]]]) < len(responses[items[order[b]]]) })
	for lo := 0; lo < len(order); lo += batchSize {
		js := order[lo:min(lo+batchSize, len(order))]
		batch := make([][]int64, len(js))
		rs := make([]int64, len(js))
		for r, j := range js {
			batch[r], rs[r] = responses[items[j]], int64(rows[j])
		}
		v, err := f(pc, Collate(batch, m.PadID()), batch, rs)
		if err != nil {
			return err
		}
		for r, j := range js {
			out[items[j]] = v[r]
		}
	}
	return nil
}

// promptKV runs the decoder over a right-padded batch of prompts and
// returns every layer's keys and values and the prompts' mask (and, with
// last, each prompt's final normed hidden state at its last token, from
// which a language model predicts the first response token), registered
// in cache; the pass's other tensors are freed.
func (m *RewardModel) promptKV(cache *torch.Scope, prompts [][]int64, last bool) (pc *promptCache, err error) {
	b := Collate(prompts, m.PadID())
	if err := b.Validate(m.Config.VocabSize); err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	s := &torch.Scope{}
	var keep []*ts.Tensor
	defer func() {
		s.Release(keep...)
		for _, t := range keep {
			cache.T(t, nil)
		}
	}()
	defer torch.Catch(&err, "prompt forward")
	var layers []kv
	tb := m.tables(s, b, false, nil, nil)
	tb.keep = &layers
	h, _ := m.decode(s, tb, false)
	pc = &promptCache{layers: layers, mask: tb.mask, P: int64(b.T)}
	at := make([]int64, len(prompts)) // each prompt's last token in h viewed as [Bp*P, D]
	for r, p := range prompts {
		pc.lens = append(pc.lens, int64(len(p)))
		at[r] = int64(r*b.T + len(p) - 1)
	}
	for _, l := range layers {
		keep = append(keep, l.k, l.v)
	}
	keep = append(keep, tb.mask)
	if last {
		flat := s.T(h.Reshape([]int64{int64(b.B * b.T), int64(m.Config.HiddenSize)}, false))
		idx := s.T(onDevice(int64Bytes(at), []int64{int64(len(at))}, gotch.Int64, m.device))
		pc.last = s.T(flat.IndexSelect(0, idx, false))
		keep = append(keep, pc.last)
	}
	return pc, nil
}

// scoreAfter scores a right-padded batch of responses, row r continuing
// cached prompt rows[r].
func (m *RewardModel) scoreAfter(pc *promptCache, b *Batch, rows []int64) (v []float64, err error) {
	if err := b.Validate(m.Config.VocabSize); err != nil {
		return nil, err
	}
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "reward model forward after cached prompts")
	return Float64s(m.rewards(s, m.tables(s, b, true, pc, rows)))
}

// idsKey is a map key holding a sequence's ids.
func idsKey(ids []int64) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(strconv.FormatInt(id, 36))
		b.WriteByte(',')
	}
	return b.String()
}
