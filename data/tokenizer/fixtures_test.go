package tokenizer

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"prism/internal/fixtures"
)

// fixture describes a tokenizer under test and its golden ids.
type fixture struct {
	name   string
	file   string                                 // relative to tokenizers/
	golden string                                 // relative to tokenizers/golden/
	derive func(map[string]json.RawMessage) error // edits the JSON, or nil
	// shared fixtures live outside the repository (the real Llama-3
	// files); tests that need them skip when they are absent.
	shared bool
}

var allFixtures = []fixture{
	{name: "gpt2", file: "gpt2/tokenizer.json", golden: "gpt2.ids.json"},
	{name: "llama3-shape", file: "llama3-shape/tokenizer.json", golden: "llama3-shape.ids.json"},
	{name: "llama3", file: "llama3-8b-instruct/tokenizer.json", golden: "llama3-8b-instruct.ids.json", shared: true},
	{name: "mistral", file: "mistral-7b-v0.1/tokenizer.json", golden: "mistral-7b-v0.1.ids.json"},
	{
		name: "mistral-legacy", file: "mistral-7b-v0.1/tokenizer.json", golden: "mistral-legacy.ids.json",
		// The legacy Llama-2/Mistral serialization, as golden/README.md
		// describes it.
		derive: func(m map[string]json.RawMessage) error {
			m["normalizer"] = json.RawMessage(`{"type":"Sequence","normalizers":[` +
				`{"type":"Prepend","prepend":"▁"},` +
				`{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}`)
			m["pre_tokenizer"] = json.RawMessage(`null`)
			return nil
		},
	},
}

// loaded caches the tokenizers: the Llama-3 file takes a while to parse.
var loaded sync.Map // name -> func() (*Tokenizer, error)

// base returns the folder holding f's tokenizers/ files: the repository's
// testdata, or the shared fixtures (skipping the test without them).
func (f fixture) base(tb testing.TB) string {
	tb.Helper()
	if f.shared {
		return filepath.Dir(fixtures.SharedPath(tb, filepath.Dir(f.file)))
	}
	return fixtures.Dir(tb)
}

func loadFixture(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	for _, f := range allFixtures {
		if f.name != name {
			continue
		}
		base := f.base(tb)
		once, _ := loaded.LoadOrStore(name, sync.OnceValues(func() (*Tokenizer, error) { return f.load(base) }))
		tok, err := once.(func() (*Tokenizer, error))()
		if err != nil {
			tb.Fatalf("load %s: %v", name, err)
		}
		return tok
	}
	tb.Fatalf("no fixture %q", name)
	return nil
}

func (f fixture) load(base string) (*Tokenizer, error) {
	path := filepath.Join(base, f.file)
	if f.derive == nil {
		return Load(path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	if err := f.derive(m); err != nil {
		return nil, err
	}
	if data, err = json.Marshal(m); err != nil {
		return nil, err
	}
	tok, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s (derived): %w", path, err)
	}
	return tok, nil
}

// goldenRow is one row of a <name>.ids.json file.
type goldenRow struct {
	ID            string `json:"id"`
	Text          string `json:"text"`
	IDsAddSpecial []int  `json:"ids_add_special"`
	IDsNoSpecial  []int  `json:"ids_no_special"`
}

func loadGolden(tb testing.TB, f fixture) []goldenRow {
	tb.Helper()
	file := f.golden
	data, err := os.ReadFile(filepath.Join(f.base(tb), "golden", file))
	if err != nil {
		tb.Fatal(err)
	}
	var g struct {
		Rows []goldenRow `json:"rows"`
	}
	if err := json.Unmarshal(data, &g); err != nil {
		tb.Fatalf("%s: %v", file, err)
	}
	if len(g.Rows) == 0 {
		tb.Fatalf("%s: no rows", file)
	}
	return g.Rows
}

// goldenStrings returns the 196 test strings of golden/strings.json.
func goldenStrings(tb testing.TB) []string {
	tb.Helper()
	data, err := os.ReadFile(fixtures.Golden(tb, "strings.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var s []string
	if err := json.Unmarshal(data, &s); err != nil {
		tb.Fatal(err)
	}
	return s
}
