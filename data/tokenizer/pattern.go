package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// patternJSON is the {"String": ...} or {"Regex": ...} object used by
// Split, Replace and the Replace decoder.
type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

// match is the byte range [start, end) of one pattern match.
type match struct{ start, end int }

// matcher finds the non-overlapping matches of a pattern, left to right.
type matcher interface {
	find(s string, dst []match) ([]match, error)
}

func compilePattern(p patternJSON) (matcher, error) {
	switch {
	case p.String != nil && p.Regex != nil:
		return nil, errors.New("pattern: both String and Regex set")
	case p.String != nil:
		return stringMatcher(*p.String), nil
	case p.Regex != nil:
		if m := fastMatcher(*p.Regex); m != nil {
			return m, nil
		}
		re, err := regexp2.Compile(*p.Regex, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("pattern: invalid regex %q: %w", *p.Regex, err)
		}
		re.MatchTimeout = matchTimeout
		return regexMatcher{re}, nil
	default:
		return nil, errors.New("pattern: need String or Regex")
	}
}

// stringMatcher matches a literal string. An empty one matches nothing, as in
// the Hugging Face library.
type stringMatcher string

func (m stringMatcher) find(s string, dst []match) ([]match, error) {
	if m == "" {
		return dst, nil
	}
	for off := 0; ; {
		i := strings.Index(s[off:], string(m))
		if i < 0 {
			return dst, nil
		}
		start := off + i
		off = start + len(m)
		dst = append(dst, match{start, off})
	}
}

// matchTimeout bounds one regexp2 match. A backtracking engine can take
// exponential time on a hostile pattern such as (a+)+$; the patterns of
// real tokenizers match in microseconds.
const matchTimeout = time.Second

// regexMatcher matches with regexp2, a backtracking engine that supports the
// lookahead that tokenizer patterns use (Go's regexp does not).
type regexMatcher struct{ re *regexp2.Regexp }

func (m regexMatcher) find(s string, dst []match) ([]match, error) {
	if s == "" {
		return dst, nil
	}
	runes := []rune(s)
	// regexp2 reports rune offsets; walk a cursor forward to convert them
	// to byte offsets, since matches come in increasing order.
	ri, bi := 0, 0
	toByte := func(r int) int {
		for ri < r && ri < len(runes) {
			bi += utf8.RuneLen(runes[ri])
			ri++
		}
		return bi
	}
	mt, err := m.re.FindRunesMatch(runes)
	for ; mt != nil && err == nil; mt, err = m.re.FindNextMatch(mt) {
		start := toByte(mt.Index)
		end := toByte(mt.Index + mt.Length)
		dst = append(dst, match{start, end})
	}
	if err != nil {
		// regexp2's error quotes the whole input; the length says enough.
		return nil, fmt.Errorf("regex %q: no match after %v on a %d-character text (the pattern backtracks without end): match timeout", m.re.String(), m.re.MatchTimeout, len(runes))
	}
	return dst, nil
}

// replaceAll replaces every match of m in s with repl.
func replaceAll(m matcher, s, repl string) (string, error) {
	ms, err := m.find(s, nil)
	if err != nil || len(ms) == 0 {
		return s, err
	}
	var b strings.Builder
	b.Grow(len(s) + len(ms)*len(repl))
	last := 0
	for _, mt := range ms {
		b.WriteString(s[last:mt.start])
		b.WriteString(repl)
		last = mt.end
	}
	b.WriteString(s[last:])
	return b.String(), nil
}
