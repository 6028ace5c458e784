package tokenizer

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"prism/internal/fixtures"
)

// TestEncodeLibraryTruncates: GPT-2's tokenizer.json sets truncation to 50
// tokens from the right; the library's encode applies it, Encode does not.
func TestEncodeLibraryTruncates(t *testing.T) {
	tok, err := Load(filepath.Join(fixtures.Tokenizer(t, "gpt2"), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.trunc == nil || tok.trunc.MaxLength != 50 || tok.trunc.Direction != "Right" {
		t.Fatalf("truncation %+v, want 50 from the right", tok.trunc)
	}
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)
	full, err := tok.Encode(text, true)
	if err != nil {
		t.Fatal(err)
	}
	cut, err := tok.EncodeLibrary(text, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(full) <= 50 || len(cut) != 50 || !slices.Equal(cut, full[:50]) {
		t.Fatalf("Encode gave %d ids, EncodeLibrary %d; want the first 50", len(full), len(cut))
	}
	short, _ := tok.EncodeLibrary("Hello world", true)
	if len(short) != 2 {
		t.Errorf("a short text was changed: %v", short)
	}
	// Left truncation keeps the end, and reserves room for special tokens.
	tok.trunc.Direction = "Left"
	left, _ := tok.EncodeLibrary(text, true)
	if !slices.Equal(left, full[len(full)-50:]) {
		t.Error("left truncation does not keep the last 50 ids")
	}
	if _, err := parse([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[]},"truncation":{"direction":"Up","max_length":5,"strategy":"LongestFirst","stride":0}}`)); err == nil || !strings.Contains(err.Error(), "truncation") {
		t.Errorf("bad truncation direction: %v", err)
	}
}
