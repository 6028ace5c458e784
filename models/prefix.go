package models

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

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
	if len(prompts) != len(responses) {
		return nil, fmt.Errorf("%d prompts for %d responses", len(prompts), len(responses))
	}
	if batchSize < 1 {
		return nil, fmt.Errorf("batch size %d: want at least 1", batchSize)
	}
	// Group the items by prompt; items without a prompt are scored whole.
	type group struct {
		prompt []int64
		items  []int
	}
	var groups []*group
	byKey := map[string]*group{}
	var bare []int
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
	out := make([]float64, len(prompts))
	if len(bare) > 0 {
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
	}
	sort.SliceStable(groups, func(a, b int) bool { return len(groups[a].prompt) < len(groups[b].prompt) })
	defer torch.Pin()()
	var err error
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
			err = m.scoreAfterPrompts(ps, responses, items, rows, batchSize, out)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ScorePrefixed is ScorePrompted for one prompt and many responses.
func (m *RewardModel) ScorePrefixed(prefix []int64, responses [][]int64, batchSize int) ([]float64, error) {
	prompts := make([][]int64, len(responses))
	for i := range prompts {
		prompts[i] = prefix
	}
	return m.ScorePrompted(prompts, responses, batchSize)
}

// scoreAfterPrompts caches the keys and values of prompts, then scores
// responses[items[j]] after prompt rows[j], into out[items[j]].
func (m *RewardModel) scoreAfterPrompts(prompts, responses [][]int64, items, rows []int, batchSize int, out []float64) (err error) {
	cache := &torch.Scope{}
	defer cache.Release()
	pc, err := m.promptKV(cache, prompts)
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
		v, err := m.scoreAfter(pc, Collate(batch, m.PadID()), rs)
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
// returns every layer's keys and values and the prompts' mask, registered
// in cache; the pass's other tensors are freed.
func (m *RewardModel) promptKV(cache *torch.Scope, prompts [][]int64) (pc *promptCache, err error) {
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
	m.decode(s, tb, false)
	pc = &promptCache{layers: layers, mask: tb.mask, P: int64(b.T)}
	for _, p := range prompts {
		pc.lens = append(pc.lens, int64(len(p)))
	}
	for _, l := range layers {
		keep = append(keep, l.k, l.v)
	}
	keep = append(keep, tb.mask)
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
