package tokenizer

import (
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// fastPatterns are the patterns with hand-written matchers.
var fastPatterns = []string{gpt2Pattern, llama3Pattern, qwen2Pattern}

// extraPatternInputs exercise corners of the patterns that the golden
// strings may miss.
var extraPatternInputs = []string{
	"", " ", "  ", "a", "'", "''", "'s", "'S", "'Re", "'LL", "'ll've", "'ſ", "'x",
	" 'x", "  a", " \ta", "\u3000a", "a \r\n b", " \r\n\r\n \t", "\r", "\n\n x",
	"x  ", "x \u00a0 ", "123456789", " 12", "1a2b", " !!", " !\n\n", "!\r\rx",
	"\t\t!", " \u0301", "é", "e\u0301", "Ⅻ④", "日本 語", "\u200b\u200d", "😀😃 😄",
}

// TestFastMatchers checks that the hand-written matchers agree with regexp2.
func TestFastMatchers(t *testing.T) {
	inputs := append(goldenStrings(t), extraPatternInputs...)
	for _, p := range fastPatterns {
		fast := fastMatcher(p)
		re := regexMatcher{regexp2.MustCompile(p, regexp2.None)}
		for _, s := range inputs {
			checkSameMatches(t, p, fast, re, s)
		}
	}
}

func checkSameMatches(t *testing.T, pattern string, fast, re matcher, s string) {
	t.Helper()
	got, err := fast.find(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := re.find(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("pattern %s on %q:\n got %v\nwant %v", pattern, s, got, want)
	}
}

func FuzzFastMatchers(f *testing.F) {
	for _, s := range extraPatternInputs {
		f.Add(s)
	}
	var res []matcher
	for _, p := range fastPatterns {
		res = append(res, regexMatcher{regexp2.MustCompile(p, regexp2.None)})
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Encode rejects invalid UTF-8 before any matcher runs.
		if !utf8.ValidString(s) {
			return
		}
		for i, p := range fastPatterns {
			checkSameMatches(t, p, fastMatcher(p), res[i], s)
		}
	})
}

// TestCatastrophicRegexTimesOut: a pattern that backtracks exponentially is
// an error after matchTimeout, not a hang.
func TestCatastrophicRegexTimesOut(t *testing.T) {
	pat := "(a+)+$"
	m, err := compilePattern(patternJSON{Regex: &pat})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = m.find(strings.Repeat("a", 40)+"!", nil)
	if err == nil || !strings.Contains(err.Error(), "match timeout") || !strings.Contains(err.Error(), pat) {
		t.Fatalf("err = %v, want a match timeout naming the pattern", err)
	}
	if d := time.Since(start); d > 10*matchTimeout {
		t.Errorf("gave up after %v", d)
	}
}
