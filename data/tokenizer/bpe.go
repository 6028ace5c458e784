package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpeJSON is the "model" object of a BPE tokenizer.json.
type bpeJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// bpe is a byte-pair-encoding model.
type bpe struct {
	vocab        map[string]int
	merges       map[uint64]mergeRule // key: pairKey(left, right)
	unkID        int                  // -1: no unk_token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	byteIDs      [256]int // ids of the <0xNN> tokens, -1 where absent

	cache *wordCache
	work  sync.Pool // *workspace
}

// mergeRule says what a pair merges into and how early (lower rank first).
type mergeRule struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func parseModel(raw json.RawMessage) (*bpe, error) {
	var c bpeJSON
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if c.Type == "" && c.Merges != nil {
		c.Type = "BPE" // old files leave the type out
	}
	if c.Type != "BPE" {
		return nil, fmt.Errorf("unsupported type %q", c.Type)
	}
	switch {
	case c.Dropout != nil:
		return nil, errors.New("BPE: dropout is not supported")
	case c.ContinuingSubwordPrefix != nil && *c.ContinuingSubwordPrefix != "":
		return nil, fmt.Errorf("BPE: continuing_subword_prefix %q is not supported", *c.ContinuingSubwordPrefix)
	case c.EndOfWordSuffix != nil && *c.EndOfWordSuffix != "":
		return nil, fmt.Errorf("BPE: end_of_word_suffix %q is not supported", *c.EndOfWordSuffix)
	case c.Vocab == nil:
		return nil, errors.New("BPE: missing vocab")
	}
	m := &bpe{
		vocab:        c.Vocab,
		unkID:        -1,
		fuseUnk:      c.FuseUnk,
		byteFallback: c.ByteFallback,
		ignoreMerges: c.IgnoreMerges,
		cache:        &wordCache{m: make(map[string][]int), capacity: cacheCapacity},
	}
	m.work.New = func() any { return new(workspace) }

	maxID := -1
	for tok, id := range c.Vocab {
		if id < 0 || id >= maxTokenID {
			return nil, fmt.Errorf("BPE: vocab: token %q has id %d out of range", tok, id)
		}
		maxID = max(maxID, id)
	}
	seen := make([]bool, maxID+1)
	for tok, id := range c.Vocab {
		if seen[id] {
			return nil, fmt.Errorf("BPE: vocab: id %d is used twice (one is %q)", id, tok)
		}
		seen[id] = true
	}
	if c.UnkToken != nil {
		id, ok := c.Vocab[*c.UnkToken]
		if !ok {
			return nil, fmt.Errorf("BPE: unk_token %q is not in the vocab", *c.UnkToken)
		}
		m.unkID = id
	}
	for b := range m.byteIDs {
		m.byteIDs[b] = -1
		if id, ok := c.Vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	pairs, err := parseMerges(c.Merges)
	if err != nil {
		return nil, fmt.Errorf("BPE: %w", err)
	}
	m.merges = make(map[uint64]mergeRule, len(pairs))
	for rank, p := range pairs {
		a, ok := c.Vocab[p[0]]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: token %q is not in the vocab", rank, p[0])
		}
		b, ok := c.Vocab[p[1]]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: token %q is not in the vocab", rank, p[1])
		}
		id, ok := c.Vocab[p[0]+p[1]]
		if !ok {
			return nil, fmt.Errorf("BPE: merges[%d]: merged token %q is not in the vocab", rank, p[0]+p[1])
		}
		// A repeated pair keeps its last rank, as in the Hugging Face library.
		m.merges[pairKey(int32(a), int32(b))] = mergeRule{rank: int32(rank), id: int32(id)}
	}
	return m, nil
}

// parseMerges accepts both serializations: ["a b", ...] and [["a", "b"], ...].
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		pairs := make([][2]string, len(strs))
		for i, s := range strs {
			a, b, ok := strings.Cut(s, " ")
			if !ok {
				return nil, fmt.Errorf("merges[%d]: %q is not two tokens separated by a space", i, s)
			}
			pairs[i] = [2]string{a, b}
		}
		return pairs, nil
	}
	var lists [][]string
	if err := json.Unmarshal(raw, &lists); err != nil {
		return nil, fmt.Errorf("merges: want a list of \"a b\" strings or of [a, b] pairs: %w", err)
	}
	pairs := make([][2]string, len(lists))
	for i, l := range lists {
		if len(l) != 2 {
			return nil, fmt.Errorf("merges[%d]: want 2 tokens, got %d", i, len(l))
		}
		pairs[i] = [2]string{l[0], l[1]}
	}
	return pairs, nil
}

// tokenize appends the ids of the pre-token s to dst.
func (m *bpe) tokenize(dst []int, s string) []int {
	if s == "" {
		return dst
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[s]; ok {
			return append(dst, id)
		}
	}
	cacheable := len(s) <= cacheMaxWordLen
	if cacheable {
		if ids, ok := m.cache.get(s); ok {
			return append(dst, ids...)
		}
	}
	start := len(dst)
	dst = m.mergeWord(dst, s)
	if cacheable {
		// Clone the key: s may point into a large input.
		m.cache.put(strings.Clone(s), append([]int(nil), dst[start:]...))
	}
	return dst
}

// symbol is one part of a word being merged; the parts form a linked list.
type symbol struct {
	id         int32
	prev, next int32 // -1 at the ends
	gone       bool  // merged into its left neighbour
}

// mergeItem is a candidate merge of the symbol at pos with its right
// neighbour.
type mergeItem struct{ rank, pos, id int32 }

func (a mergeItem) less(b mergeItem) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// workspace holds the scratch buffers of one mergeWord call.
type workspace struct {
	syms []symbol
	heap []mergeItem
}

// mergeWord splits s into characters (with byte fallback and unknown-token
// handling) and applies merges, lowest rank first and leftmost on ties,
// using a heap over a linked list of symbols. This is the Hugging Face
// library's algorithm step for step, so that even its tie-breaking on stale
// heap entries gives the same ids.
func (m *bpe) mergeWord(dst []int, s string) []int {
	w := m.work.Get().(*workspace)
	defer m.work.Put(w)
	syms := w.syms[:0]
	add := func(id int) {
		n := int32(len(syms))
		if n > 0 {
			syms[n-1].next = n
		}
		syms = append(syms, symbol{id: int32(id), prev: n - 1, next: -1})
	}

	pendingUnk := false
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		ch := s[i : i+size]
		i += size
		if id, ok := m.vocab[ch]; ok {
			if pendingUnk {
				add(m.unkID)
				pendingUnk = false
			}
			add(id)
			continue
		}
		if m.byteFallback && m.hasByteTokens(ch) {
			// Like the Hugging Face library, a pending unknown token is
			// not flushed before byte tokens.
			for j := 0; j < len(ch); j++ {
				add(m.byteIDs[ch[j]])
			}
			continue
		}
		if m.unkID < 0 {
			// No unk_token: the Hugging Face library drops the character.
			continue
		}
		if pendingUnk && !m.fuseUnk {
			add(m.unkID)
		}
		pendingUnk = true
	}
	if pendingUnk {
		add(m.unkID)
	}

	h := w.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if r, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = heapPush(h, mergeItem{rank: r.rank, pos: int32(i), id: r.id})
		}
	}
	for len(h) > 0 {
		var top mergeItem
		top, h = heapPop(h)
		cur := &syms[top.pos]
		if cur.gone || cur.next < 0 {
			continue
		}
		right := syms[cur.next]
		// Skip entries made stale by an earlier merge.
		if r, ok := m.merges[pairKey(cur.id, right.id)]; !ok || r.id != top.id {
			continue
		}
		syms[cur.next].gone = true
		cur.id = top.id
		cur.next = right.next
		if right.next >= 0 {
			syms[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if r, ok := m.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				h = heapPush(h, mergeItem{rank: r.rank, pos: cur.prev, id: r.id})
			}
		}
		if cur.next >= 0 {
			if r, ok := m.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				h = heapPush(h, mergeItem{rank: r.rank, pos: top.pos, id: r.id})
			}
		}
	}
	for _, sym := range syms {
		if !sym.gone {
			dst = append(dst, int(sym.id))
		}
	}
	w.syms, w.heap = syms, h
	return dst
}

func (m *bpe) hasByteTokens(ch string) bool {
	for j := 0; j < len(ch); j++ {
		if m.byteIDs[ch[j]] < 0 {
			return false
		}
	}
	return true
}

// heapPush and heapPop keep h a binary min-heap ordered by mergeItem.less.
func heapPush(h []mergeItem, it mergeItem) []mergeItem {
	h = append(h, it)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	return h
}

func heapPop(h []mergeItem) (mergeItem, []mergeItem) {
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for i := 0; ; {
		l, r, small := 2*i+1, 2*i+2, i
		if l < n && h[l].less(h[small]) {
			small = l
		}
		if r < n && h[r].less(h[small]) {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	return top, h
}

const (
	cacheCapacity   = 1 << 16 // words
	cacheMaxWordLen = 256     // bytes; longer pre-tokens are rarely repeated
)

// wordCache remembers the ids of recent pre-tokens. When full it is cleared,
// which bounds its size without bookkeeping on every hit.
type wordCache struct {
	mu       sync.RWMutex
	m        map[string][]int
	capacity int
}

func (c *wordCache) get(s string) ([]int, bool) {
	c.mu.RLock()
	ids, ok := c.m[s]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(s string, ids []int) {
	c.mu.Lock()
	if len(c.m) >= c.capacity {
		clear(c.m)
	}
	c.m[s] = ids
	c.mu.Unlock()
}
