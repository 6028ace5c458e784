package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written matchers for the split patterns that nearly every BPE
// tokenizer uses. They give the same matches as regexp2 on the same pattern
// (the tests and FuzzFastMatchers check this) at many times the speed.
// Every alternative is tried in the regex's order, with the regex's
// backtracking worked out by hand.
const (
	// gpt2Pattern is the regex of ByteLevel with use_regex (GPT-2, RoBERTa).
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// llama3Pattern is the Split regex of Llama 3.
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen2Pattern is Llama 3's with single digits (Qwen2, Qwen2.5).
	qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// fastMatcher returns a hand-written matcher for a well-known pattern, or nil.
func fastMatcher(pattern string) matcher {
	switch pattern {
	case gpt2Pattern:
		return gpt2Matcher{}
	case llama3Pattern:
		return llama3Matcher{maxDigits: 3}
	case qwen2Pattern:
		return llama3Matcher{maxDigits: 1}
	}
	return nil
}

// Character classes of the patterns: \p{L}, \p{N}, \s (which regexp2
// implements with unicode.IsSpace), and everything else.
const (
	classOther = iota
	classLetter
	classNumber
	classSpace
)

func class(r rune) int {
	switch {
	case r < utf8.RuneSelf:
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
			return classLetter
		case '0' <= r && r <= '9':
			return classNumber
		case r == ' ', '\t' <= r && r <= '\r':
			return classSpace
		}
		return classOther
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	case unicode.IsSpace(r):
		return classSpace
	}
	return classOther
}

// runAt returns the class of the rune at s[i:] and its size; size is 0 at
// the end of s.
func runAt(s string, i int) (cls, size int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return class(rune(c)), 1
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return class(r), n
}

// skipClass returns the end of the run of runes of class cls starting at i,
// taking at most limit runes (limit < 0: no limit).
func skipClass(s string, i, cls, limit int) int {
	for ; limit != 0; limit-- {
		c, n := runAt(s, i)
		if n == 0 || c != cls {
			break
		}
		i += n
	}
	return i
}

// contraction returns the end of 's, 't, 're, 've, 'm, 'll or 'd at s[i:],
// or i when there is none. fold makes the letters match in either case.
func contraction(s string, i int, fold bool) int {
	if i+1 >= len(s) || s[i] != '\'' {
		return i
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	var want byte // second letter of a two-letter suffix
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return i + 2
	case 'r', 'v':
		want = 'e'
	case 'l':
		want = 'l'
	default:
		return i
	}
	if i+2 < len(s) && lower(s[i+2]) == want {
		return i + 3
	}
	return i
}

// whitespace matches the alternatives \s+(?!\S)|\s+ at s[i:], where s[i:] starts
// with whitespace.
func whitespace(s string, i int) int {
	j := i
	last := 0 // size of the last rune of the run
	for {
		c, n := runAt(s, j)
		if n == 0 || c != classSpace {
			break
		}
		j += n
		last = n
	}
	// \s+(?!\S) backtracks one rune before a non-space, if that leaves
	// any; else \s+ takes the whole run.
	if j < len(s) && j-last > i {
		return j - last
	}
	return j
}

type gpt2Matcher struct{}

func (gpt2Matcher) find(s string, dst []match) ([]match, error) {
	for i := 0; i < len(s); {
		end := gpt2Next(s, i)
		dst = append(dst, match{i, end})
		i = end
	}
	return dst, nil
}

// gpt2Next returns the end of the match that starts at i. Every position
// starts a match of gpt2Pattern, so the matches tile s.
func gpt2Next(s string, i int) int {
	if j := contraction(s, i, false); j > i {
		return j
	}
	c, n := runAt(s, i)
	if s[i] == ' ' {
		// ' ?X+' for letters, numbers and others.
		if c2, n2 := runAt(s, i+1); n2 > 0 && c2 != classSpace {
			return skipClass(s, i+1, c2, -1)
		}
	}
	if c != classSpace {
		return skipClass(s, i+n, c, -1)
	}
	return whitespace(s, i)
}

// llama3Matcher matches llama3Pattern, or qwen2Pattern when maxDigits is 1.
type llama3Matcher struct{ maxDigits int }

func (m llama3Matcher) find(s string, dst []match) ([]match, error) {
	for i := 0; i < len(s); {
		end := m.next(s, i)
		dst = append(dst, match{i, end})
		i = end
	}
	return dst, nil
}

// next returns the end of the match that starts at i. Every position starts
// a match of the pattern, so the matches tile s.
func (m llama3Matcher) next(s string, i int) int {
	if j := contraction(s, i, true); j > i {
		return j
	}
	c, n := runAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if c == classLetter {
		return skipClass(s, i+n, classLetter, -1)
	}
	if c != classNumber && s[i] != '\r' && s[i] != '\n' {
		if c2, n2 := runAt(s, i+n); c2 == classLetter {
			return skipClass(s, i+n+n2, classLetter, -1)
		}
	}
	// \p{N}{1,3}
	if c == classNumber {
		return skipClass(s, i+n, classNumber, m.maxDigits-1)
	}
	// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
	start := i
	if s[i] == ' ' {
		if c2, _ := runAt(s, i+1); c2 == classOther {
			start = i + 1
		}
	}
	if c2, _ := runAt(s, start); c2 == classOther {
		j := skipClass(s, start, classOther, -1)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// Only whitespace is left. \s*[\r\n]+ ends after the last line break
	// of the run, if there is one.
	j, lastBreak := i, -1
	for {
		c, n := runAt(s, j)
		if n == 0 || c != classSpace {
			break
		}
		if s[j] == '\r' || s[j] == '\n' {
			lastBreak = j + 1
		}
		j += n
	}
	if lastBreak > 0 {
		return lastBreak
	}
	return whitespace(s, i)
}
