package tokenizer

import (
	"strings"
	"testing"
)

// benchText returns about 1 MB of text built from the golden strings.
func benchText(tb testing.TB) string {
	tb.Helper()
	strs := goldenStrings(tb)
	var b strings.Builder
	for b.Len() < 1<<20 {
		for _, s := range strs {
			b.WriteString(s)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func BenchmarkEncode(b *testing.B) {
	text := benchText(b)
	for _, f := range allFixtures {
		b.Run(f.name, func(b *testing.B) {
			tok := loadFixture(b, f.name)
			b.SetBytes(int64(len(text)))
			b.ResetTimer()
			for b.Loop() {
				if _, err := tok.Encode(text, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
