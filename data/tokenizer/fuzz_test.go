package tokenizer

import (
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks that encoding never panics, that invalid UTF-8 is
// rejected, and that the byte-level tokenizers round-trip.
func FuzzEncode(f *testing.F) {
	for _, s := range goldenStrings(f) {
		f.Add(s)
	}
	f.Add("ok\xffbad")
	gpt2 := loadFixture(f, "gpt2")
	llama3 := loadFixture(f, "llama3-shape")
	mistral := loadFixture(f, "mistral")
	f.Fuzz(func(t *testing.T, s string) {
		valid := utf8.ValidString(s)
		for _, tok := range []*Tokenizer{gpt2, llama3, mistral} {
			ids, err := tok.Encode(s, true)
			if !valid {
				if err == nil {
					t.Fatalf("Encode(%q) accepted invalid UTF-8", s)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Encode(%q): %v", s, err)
			}
			if _, err := tok.Decode(ids, true); err != nil {
				t.Fatalf("Decode(Encode(%q)): %v", s, err)
			}
		}
		if !valid {
			return
		}
		for _, tok := range []*Tokenizer{gpt2, llama3} {
			ids, err := tok.Encode(s, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tok.Decode(ids, false)
			if err != nil {
				t.Fatal(err)
			}
			if got != s {
				t.Fatalf("Decode(Encode(%q)) = %q (ids %v)", s, got, ids)
			}
		}
	})
}
