package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// addedTokenJSON is one entry of the file's added_tokens list.
type addedTokenJSON struct {
	ID         *int   `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// addedToken is a token matched in the text before the model runs.
type addedToken struct {
	id         int
	content    string
	special    bool
	singleWord bool
	lstrip     bool
	rstrip     bool
}

// addedVocab finds added tokens in text. As in the Hugging Face library,
// tokens with normalized=false are matched in the raw input, and tokens with
// normalized=true are matched, after normalizing their own content, in the
// normalized text of the segments between the former.
type addedVocab struct {
	tokens    []addedToken
	byContent map[string]int
	raw       *trie // tokens with normalized=false
	norm      *trie // tokens with normalized=true
}

func newAddedVocab(list []addedTokenJSON, n normalizer) (*addedVocab, error) {
	v := &addedVocab{byContent: make(map[string]int), raw: newTrie(), norm: newTrie()}
	for i, a := range list {
		if a.ID == nil {
			return nil, fmt.Errorf("token %d (%q): missing id", i, a.Content)
		}
		id := *a.ID
		if id < 0 || id >= maxTokenID {
			return nil, fmt.Errorf("token %q: id %d out of range", a.Content, id)
		}
		if a.Content == "" {
			return nil, fmt.Errorf("token %d: empty content", i)
		}
		v.tokens = append(v.tokens, addedToken{
			id:         id,
			content:    a.Content,
			special:    a.Special,
			singleWord: a.SingleWord,
			lstrip:     a.LStrip,
			rstrip:     a.RStrip,
		})
		v.byContent[a.Content] = id
		idx := len(v.tokens) - 1
		if !a.Normalized {
			v.raw.insert(a.Content, idx)
			continue
		}
		pattern := a.Content
		if n != nil {
			var err error
			if pattern, err = n.normalize(pattern); err != nil {
				return nil, fmt.Errorf("token %q: normalizing: %w", a.Content, err)
			}
		}
		if pattern == "" {
			return nil, fmt.Errorf("token %q: normalizes to the empty string", a.Content)
		}
		v.norm.insert(pattern, idx)
	}
	return v, nil
}

// segment is a piece of text, either an added token (id >= 0) or text for
// the model (id < 0). start is its byte offset in the string that was split.
type segment struct {
	text  string
	start int
	id    int
}

// split cuts s at the added tokens that t finds, scanning once from left to
// right and taking the longest token at the leftmost position. The segments
// are appended to dst, leaving out empty text.
func (v *addedVocab) split(s string, t *trie, dst []segment) []segment {
	if t.empty() {
		return appendText(dst, s, 0)
	}
	last := 0 // end of the previous token
	for pos := 0; pos < len(s); {
		if !t.first[s[pos]] {
			pos++
			continue
		}
		idx, end := t.longest(s, pos)
		if idx < 0 {
			pos++
			continue
		}
		tok := &v.tokens[idx]
		start, stop := pos, end
		// A discarded match still consumes its text, as the Aho-Corasick
		// iterator in the Hugging Face library does.
		pos = end
		if start < last {
			// Only reachable when an rstrip token swallowed the start of
			// this match.
			continue
		}
		if tok.singleWord && (endsWithWord(s[:start]) || startsWithWord(s[stop:])) {
			continue
		}
		if tok.lstrip {
			start = max(spaceStartAtEnd(s[:start]), last)
		}
		if tok.rstrip {
			stop += spaceLenAtStart(s[stop:])
		}
		dst = appendText(dst, s[last:start], last)
		dst = append(dst, segment{text: s[start:stop], start: start, id: tok.id})
		last = stop
		pos = max(pos, stop)
	}
	return appendText(dst, s[last:], last)
}

// appendText appends the text s, found at offset start, to dst unless it is
// empty.
func appendText(dst []segment, s string, start int) []segment {
	if s == "" {
		return dst
	}
	return append(dst, segment{text: s, start: start, id: -1})
}

// isWordChar reports whether r matches \w of Rust's regex crate (Unicode
// word characters), which the Hugging Face library uses for single_word.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) ||
		unicode.In(r, unicode.Nd, unicode.Nl, unicode.Pc) ||
		r == '\u200c' || r == '\u200d' // Join_Control
}

func endsWithWord(s string) bool {
	r, n := utf8.DecodeLastRuneInString(s)
	return n > 0 && isWordChar(r)
}

func startsWithWord(s string) bool {
	r, n := utf8.DecodeRuneInString(s)
	return n > 0 && isWordChar(r)
}

// spaceStartAtEnd returns the offset where the trailing whitespace of s
// starts.
func spaceStartAtEnd(s string) int {
	i := len(s)
	for i > 0 {
		r, n := utf8.DecodeLastRuneInString(s[:i])
		if !unicode.IsSpace(r) {
			break
		}
		i -= n
	}
	return i
}

// spaceLenAtStart returns the length of the leading whitespace of s.
func spaceLenAtStart(s string) int {
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += n
	}
	return i
}

// trie is a byte trie over token contents.
type trie struct {
	nodes []trieNode
	first [256]bool // bytes that can start a token, to skip quickly
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into addedVocab.tokens, or -1
}

func newTrie() *trie {
	return &trie{nodes: []trieNode{{tok: -1}}}
}

func (t *trie) empty() bool { return len(t.nodes) == 1 }

func (t *trie) insert(s string, tok int) {
	t.first[s[0]] = true
	n := int32(0)
	for i := 0; i < len(s); i++ {
		next, ok := t.nodes[n].next[s[i]]
		if !ok {
			next = int32(len(t.nodes))
			t.nodes = append(t.nodes, trieNode{tok: -1})
			if t.nodes[n].next == nil {
				t.nodes[n].next = make(map[byte]int32)
			}
			t.nodes[n].next[s[i]] = next
		}
		n = next
	}
	// A later duplicate replaces an earlier one.
	t.nodes[n].tok = int32(tok)
}

// longest returns the longest token starting at s[pos:] and the offset where
// it ends, or -1.
func (t *trie) longest(s string, pos int) (tok, end int) {
	tok, end = -1, -1
	n := int32(0)
	for i := pos; i < len(s); i++ {
		next, ok := t.nodes[n].next[s[i]]
		if !ok {
			break
		}
		n = next
		if t.nodes[n].tok >= 0 {
			tok, end = int(t.nodes[n].tok), i+1
		}
	}
	return tok, end
}
