package tokenizer

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"prism/internal/fixtures"
)

// TestGolden checks every golden row, in both modes, against the ids that
// the Hugging Face tokenizers library produced.
func TestGolden(t *testing.T) {
	for _, f := range allFixtures {
		t.Run(f.name, func(t *testing.T) {
			tok := loadFixture(t, f.name)
			rows := loadGolden(t, f)
			for _, mode := range []struct {
				name       string
				addSpecial bool
			}{{"add_special", true}, {"no_special", false}} {
				matched := 0
				for _, row := range rows {
					want := row.IDsNoSpecial
					if mode.addSpecial {
						want = row.IDsAddSpecial
					}
					got, err := tok.Encode(row.Text, mode.addSpecial)
					if err != nil {
						t.Errorf("%s %s: Encode(%q): %v", mode.name, row.ID, row.Text, err)
						continue
					}
					if !slices.Equal(got, want) {
						t.Errorf("%s %s: Encode(%q)\n got %v\nwant %v", mode.name, row.ID, row.Text, got, want)
						continue
					}
					matched++
				}
				t.Logf("%s: %d/%d rows match", mode.name, matched, len(rows))
			}
		})
	}
}

// TestRoundTrip checks that byte-level tokenizers decode their own encoding
// back to the input.
func TestRoundTrip(t *testing.T) {
	strs := goldenStrings(t)
	for _, name := range []string{"gpt2", "llama3-shape", "llama3"} {
		t.Run(name, func(t *testing.T) {
			tok := loadFixture(t, name)
			for _, s := range strs {
				ids, err := tok.Encode(s, false)
				if err != nil {
					t.Fatalf("Encode(%q): %v", s, err)
				}
				got, err := tok.Decode(ids, false)
				if err != nil {
					t.Fatalf("Decode(Encode(%q)): %v", s, err)
				}
				if got != s {
					t.Errorf("Decode(Encode(%q)) = %q", s, got)
				}
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		fixture     string
		text        string
		skipSpecial bool
		want        string
	}{
		{"llama3-shape", "<|begin_of_text|>Hello world", false, "<|begin_of_text|>Hello world"},
		{"llama3-shape", "<|begin_of_text|>Hello world<|eot_id|>", true, "Hello world"},
		{"llama3", "<|begin_of_text|>Hello world", false, "<|begin_of_text|>Hello world"},
		{"llama3", "<|begin_of_text|>Hello world<|eot_id|>", true, "Hello world"},
		{"gpt2", "a<|endoftext|>b", true, "ab"},
		{"mistral", "<s>Hello world</s>", true, "Hello world"},
		{"mistral", "Hello world", false, "Hello world"},
		// Nothing is prepended to text that starts with a space, yet Strip
		// still drops one leading space: HF decodes it the same way.
		{"mistral", "  two leading spaces", false, " two leading spaces"},
		{"mistral", "emoji 😀 and 日本", false, "emoji 😀 and 日本"},
		{"mistral-legacy", "Hello world", false, "Hello world"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%q", tt.fixture, tt.text), func(t *testing.T) {
			tok := loadFixture(t, tt.fixture)
			ids, err := tok.Encode(tt.text, false)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tok.Decode(ids, tt.skipSpecial)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Decode = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeUnknownID(t *testing.T) {
	tok := loadFixture(t, "gpt2")
	for _, id := range []int{-1, tok.VocabSize(), 1 << 40} {
		if _, err := tok.Decode([]int{id}, false); err == nil {
			t.Errorf("Decode([%d]) succeeded, want an error", id)
		}
	}
}

func TestTokenIDAndVocabSize(t *testing.T) {
	tests := []struct {
		fixture string
		size    int
		tokens  map[string]int
	}{
		{"gpt2", 50257, map[string]int{"<|endoftext|>": 50256, "Hello": 15496}},
		// 814 BPE entries, then Llama-3's 256 special tokens in its order.
		{"llama3-shape", 1070, map[string]int{"<|begin_of_text|>": 814, "<|end_of_text|>": 815, "<|eot_id|>": 823}},
		{"llama3", 128256, map[string]int{"<|begin_of_text|>": 128000, "<|eot_id|>": 128009}},
		{"mistral", 32000, map[string]int{"<s>": 1, "</s>": 2, "<unk>": 0, "<0x0A>": 13}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			tok := loadFixture(t, tt.fixture)
			if got := tok.VocabSize(); got != tt.size {
				t.Errorf("VocabSize() = %d, want %d", got, tt.size)
			}
			for s, want := range tt.tokens {
				if got, ok := tok.TokenID(s); !ok || got != want {
					t.Errorf("TokenID(%q) = %d, %v, want %d", s, got, ok, want)
				}
			}
			if _, ok := tok.TokenID("no such token, surely"); ok {
				t.Error("TokenID of a missing token reported ok")
			}
		})
	}
}

func TestEncodeInvalidUTF8(t *testing.T) {
	tok := loadFixture(t, "gpt2")
	if _, err := tok.Encode("ok\xffbad", false); err == nil {
		t.Error("Encode of invalid UTF-8 succeeded, want an error")
	}
}

// TestEncodeLongInputs feeds inputs that would be slow with a quadratic merge
// loop or a quadratic scan: one 1 MB word and 1 MB of whitespace.
func TestEncodeLongInputs(t *testing.T) {
	inputs := map[string]string{
		"word":   strings.Repeat("abcdefghij", 100_000),
		"spaces": strings.Repeat(" ", 1_000_000),
		"angle":  strings.Repeat("<|eot_i", 150_000),
	}
	for _, name := range []string{"gpt2", "llama3-shape", "llama3", "mistral", "mistral-legacy"} {
		t.Run(name, func(t *testing.T) {
			tok := loadFixture(t, name)
			for kind, s := range inputs {
				ids, err := tok.Encode(s, false)
				if err != nil {
					t.Fatalf("%s %s: %v", name, kind, err)
				}
				if len(ids) == 0 {
					t.Errorf("%s %s: no ids", name, kind)
				}
			}
		})
	}
}

// TestConcurrentEncode checks that one Tokenizer can serve many goroutines
// (the word cache is shared).
func TestConcurrentEncode(t *testing.T) {
	tok := loadFixture(t, "llama3-shape")
	strs := goldenStrings(t)
	want := make([][]int, len(strs))
	for i, s := range strs {
		var err error
		if want[i], err = tok.Encode(s, true); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := range strs {
				i := (i + g*50) % len(strs)
				got, err := tok.Encode(strs[i], true)
				if err == nil && !slices.Equal(got, want[i]) {
					err = fmt.Errorf("Encode(%q) = %v, want %v", strs[i], got, want[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestIgnoreMergesMatters guards the llama3-shape fixture: it holds whole
// words its merges do not build, so turning ignore_merges off must change
// some golden rows. Otherwise its goldens could not catch a tokenizer
// that ignores the flag.
func TestIgnoreMergesMatters(t *testing.T) {
	f := fixture{name: "llama3-shape/no-ignore-merges", file: "llama3-shape/tokenizer.json",
		derive: func(m map[string]json.RawMessage) error {
			var model map[string]json.RawMessage
			if err := json.Unmarshal(m["model"], &model); err != nil {
				return err
			}
			model["ignore_merges"] = json.RawMessage("false")
			b, err := json.Marshal(model)
			m["model"] = b
			return err
		}}
	tok, err := f.load(fixtures.Dir(t))
	if err != nil {
		t.Fatal(err)
	}
	differ := 0
	for _, row := range loadGolden(t, fixture{golden: "llama3-shape.ids.json"}) {
		got, err := tok.Encode(row.Text, false)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, row.IDsNoSpecial) {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("no golden row changes without ignore_merges: the fixture does not test it")
	}
	t.Logf("%d rows differ without ignore_merges", differ)
}
