package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// span is a pre-token. first reports whether it starts at offset 0 of the
// input, which Metaspace's prepend_scheme "first" depends on.
type span struct {
	text  string
	first bool
}

// preTokenizer splits text into pre-tokens, which the model encodes
// independently.
type preTokenizer interface {
	// preTokenize splits each span of in. It may reuse in's storage.
	preTokenize(in []span) ([]span, error)
}

// parsePreTokenizer returns nil for a null pre-tokenizer.
func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	return parseComponent(raw, "pretokenizers", func(ps []preTokenizer) preTokenizer { return sequencePre(ps) }, parsePreTokenizerType)
}

// parsePreTokenizerType parses a pre-tokenizer of a type other than
// Sequence.
func parsePreTokenizerType(typ string, raw json.RawMessage) (preTokenizer, error) {
	wrap := func(err error) error { return fmt.Errorf("%s: %w", typ, err) }
	switch typ {
	case "Split":
		var c struct {
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, wrap(err)
		}
		b, err := parseBehavior(c.Behavior)
		if err != nil {
			return nil, wrap(err)
		}
		m, err := compilePattern(c.Pattern)
		if err != nil {
			return nil, wrap(err)
		}
		return &splitPre{m: m, behavior: b, invert: c.Invert}, nil
	case "ByteLevel":
		c := struct {
			AddPrefixSpace bool `json:"add_prefix_space"`
			UseRegex       bool `json:"use_regex"`
		}{UseRegex: true}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, wrap(err)
		}
		p := &byteLevelPre{addPrefixSpace: c.AddPrefixSpace}
		if c.UseRegex {
			pat := gpt2Pattern
			var err error
			if p.re, err = compilePattern(patternJSON{Regex: &pat}); err != nil {
				return nil, wrap(err)
			}
		}
		return p, nil
	case "Metaspace":
		c, err := parseMetaspace(raw)
		if err != nil {
			return nil, wrap(err)
		}
		return c, nil
	case "Digits":
		var c struct {
			IndividualDigits bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, wrap(err)
		}
		p := &splitPre{m: digitMatcher{}, behavior: contiguous}
		if c.IndividualDigits {
			p.behavior = isolated
		}
		return p, nil
	default:
		return nil, fmt.Errorf("unsupported type %q", typ)
	}
}

type sequencePre []preTokenizer

func (seq sequencePre) preTokenize(in []span) ([]span, error) {
	return runSequence(seq, in, preTokenizer.preTokenize)
}

// behavior says what a split does with the matched delimiters.
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func parseBehavior(s string) (behavior, error) {
	switch s {
	case "Removed":
		return removed, nil
	case "Isolated":
		return isolated, nil
	case "MergedWithPrevious":
		return mergedWithPrevious, nil
	case "MergedWithNext":
		return mergedWithNext, nil
	case "Contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("unsupported behavior %q", s)
}

// splitPre is the Split pre-tokenizer, also used for Digits.
type splitPre struct {
	m        matcher
	behavior behavior
	invert   bool
}

func (p *splitPre) preTokenize(in []span) ([]span, error) {
	out := make([]span, 0, len(in)*2)
	var ms []match
	for _, s := range in {
		var err error
		if ms, err = p.m.find(s.text, ms[:0]); err != nil {
			return nil, err
		}
		out = splitSpan(out, s, ms, p.behavior, p.invert)
	}
	return out, nil
}

// region is a piece of a string that is or is not a match.
type region struct {
	start, end int
	isMatch    bool
}

// splitSpan cuts s at the matches ms following the Hugging Face library's
// NormalizedString::split, and appends the non-empty pieces to dst.
func splitSpan(dst []span, s span, ms []match, b behavior, invert bool) []span {
	if len(ms) == 0 && !invert {
		if s.text != "" {
			dst = append(dst, s)
		}
		return dst
	}
	if b == isolated {
		// The common case needs no region list.
		prev := 0
		for _, m := range ms {
			if prev < m.start {
				dst = appendRegion(dst, s, region{prev, m.start, invert})
			}
			dst = appendRegion(dst, s, region{m.start, m.end, !invert})
			prev = m.end
		}
		return appendRegion(dst, s, region{prev, len(s.text), invert})
	}
	regions := make([]region, 0, 2*len(ms)+1)
	prev := 0
	for _, m := range ms {
		if prev != m.start {
			regions = append(regions, region{prev, m.start, invert})
		}
		regions = append(regions, region{m.start, m.end, !invert})
		prev = m.end
	}
	if prev != len(s.text) {
		regions = append(regions, region{prev, len(s.text), invert})
	}

	var out []region
	switch b {
	case isolated:
		out = regions
	case removed:
		out = regions[:0]
		for _, r := range regions {
			if !r.isMatch {
				out = append(out, r)
			}
		}
	case contiguous:
		prevMatch := false
		for _, r := range regions {
			if r.isMatch == prevMatch && len(out) > 0 {
				out[len(out)-1].end = r.end
			} else {
				out = append(out, r)
			}
			prevMatch = r.isMatch
		}
	case mergedWithPrevious:
		prevMatch := false
		for _, r := range regions {
			if r.isMatch && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = r.end
			} else {
				out = append(out, r)
			}
			prevMatch = r.isMatch
		}
	case mergedWithNext:
		// Walk backwards so that a delimiter joins the piece after it.
		prevMatch := false
		for i := len(regions) - 1; i >= 0; i-- {
			r := regions[i]
			if r.isMatch && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = r.start
			} else {
				out = append(out, r)
			}
			prevMatch = r.isMatch
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, r := range out {
		dst = appendRegion(dst, s, r)
	}
	return dst
}

// appendRegion appends r's piece of s to dst unless it is empty.
func appendRegion(dst []span, s span, r region) []span {
	if r.start >= r.end {
		return dst
	}
	return append(dst, span{text: s.text[r.start:r.end], first: s.first && r.start == 0})
}

// digitMatcher matches each numeric character on its own.
type digitMatcher struct{}

func (digitMatcher) find(s string, dst []match) ([]match, error) {
	for i, r := range s {
		if unicode.IsNumber(r) {
			dst = append(dst, match{i, i + utf8.RuneLen(r)})
		}
	}
	return dst, nil
}

// byteLevelPre is the ByteLevel pre-tokenizer: optionally split with the
// GPT-2 regex, then map every byte to a printable character.
type byteLevelPre struct {
	addPrefixSpace bool
	re             matcher // nil when use_regex is false
}

func (p *byteLevelPre) preTokenize(in []span) ([]span, error) {
	out := in
	if p.addPrefixSpace || p.re != nil {
		out = make([]span, 0, len(in)*2)
		var ms []match
		for _, s := range in {
			if p.addPrefixSpace && !strings.HasPrefix(s.text, " ") {
				s.text = " " + s.text
			}
			if p.re == nil {
				out = append(out, s)
				continue
			}
			var err error
			if ms, err = p.re.find(s.text, ms[:0]); err != nil {
				return nil, err
			}
			out = splitSpan(out, s, ms, isolated, false)
		}
	}
	for i := range out {
		out[i].text = byteLevelEncode(out[i].text)
	}
	return out, nil
}

// byteRunes maps each byte to the printable character that stands for it in
// byte-level vocabularies (GPT-2's bytes_to_unicode), and runeBytes is the
// inverse.
var byteRunes, runeBytes = byteLevelTables()

func byteLevelTables() ([256]rune, map[rune]byte) {
	var fwd [256]rune
	inv := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF) {
			fwd[b] = rune(b)
		} else {
			fwd[b] = rune(256 + n)
			n++
		}
		inv[fwd[b]] = byte(b)
	}
	return fwd, inv
}

func byteLevelEncode(s string) string {
	i := 0
	for i < len(s) && '!' <= s[i] && s[i] <= '~' {
		i++
	}
	if i == len(s) {
		return s // these bytes stand for themselves
	}
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteRune(byteRunes[s[i]])
	}
	return b.String()
}

// prependScheme says when Metaspace adds the replacement in front.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

// metaspace is the Metaspace pre-tokenizer: spaces become the replacement
// character (usually "▁"), which may also be prepended.
type metaspace struct {
	repl   string
	scheme prependScheme
	split  bool
}

func parseMetaspace(raw json.RawMessage) (*metaspace, error) {
	var c struct {
		Replacement    string `json:"replacement"`
		PrependScheme  string `json:"prepend_scheme"`
		AddPrefixSpace *bool  `json:"add_prefix_space"`
		Split          *bool  `json:"split"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(c.Replacement) != 1 {
		return nil, fmt.Errorf("replacement %q is not one character", c.Replacement)
	}
	m := &metaspace{repl: c.Replacement, split: c.Split == nil || *c.Split}
	switch c.PrependScheme {
	case "always":
		m.scheme = prependAlways
	case "first":
		m.scheme = prependFirst
	case "never":
		m.scheme = prependNever
	case "":
		// Older files have add_prefix_space instead.
		if c.AddPrefixSpace != nil && !*c.AddPrefixSpace {
			m.scheme = prependNever
		}
	default:
		return nil, fmt.Errorf("unsupported prepend_scheme %q", c.PrependScheme)
	}
	return m, nil
}

func (m *metaspace) preTokenize(in []span) ([]span, error) {
	out := in
	if m.split {
		out = make([]span, 0, len(in)*2)
	}
	var ms []match
	for i, s := range in {
		s.text = strings.ReplaceAll(s.text, " ", m.repl)
		prepend := m.scheme == prependAlways || (m.scheme == prependFirst && s.first)
		if prepend && !strings.HasPrefix(s.text, m.repl) {
			s.text = m.repl + s.text
		}
		if !m.split {
			out[i] = s
			continue
		}
		ms, _ = stringMatcher(m.repl).find(s.text, ms[:0])
		out = splitSpan(out, s, ms, mergedWithNext, false)
	}
	return out, nil
}
