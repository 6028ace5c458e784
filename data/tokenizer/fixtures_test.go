package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// fixturesDir returns the folder that holds tokenizers/ (the shared fixture
// folder): $PRISM_FIXTURES, or else the first folder named "shared" found
// beside the package directory or one of its parents.
func fixturesDir() (string, error) {
	if dir := os.Getenv("PRISM_FIXTURES"); dir != "" {
		return dir, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		cand := filepath.Join(dir, "shared")
		if fi, err := os.Stat(filepath.Join(cand, "tokenizers")); err == nil && fi.IsDir() {
			return cand, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no shared/tokenizers folder found above the package; set PRISM_FIXTURES")
		}
		dir = parent
	}
}

// fixture describes a tokenizer under test and its golden ids.
type fixture struct {
	name   string
	file   string                                 // relative to tokenizers/
	golden string                                 // relative to tokenizers/golden/
	derive func(map[string]json.RawMessage) error // edits the JSON, or nil
}

var fixtures = []fixture{
	{name: "gpt2", file: "gpt2/tokenizer.json", golden: "gpt2.ids.json"},
	{name: "llama3", file: "llama3-8b-instruct/tokenizer.json", golden: "llama3-8b-instruct.ids.json"},
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

func loadFixture(tb testing.TB, name string) *Tokenizer {
	tb.Helper()
	for _, f := range fixtures {
		if f.name != name {
			continue
		}
		once, _ := loaded.LoadOrStore(name, sync.OnceValues(f.load))
		tok, err := once.(func() (*Tokenizer, error))()
		if err != nil {
			tb.Fatalf("load %s: %v", name, err)
		}
		return tok
	}
	tb.Fatalf("no fixture %q", name)
	return nil
}

func (f fixture) load() (*Tokenizer, error) {
	dir, err := fixturesDir()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "tokenizers", f.file)
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

func loadGolden(tb testing.TB, file string) []goldenRow {
	tb.Helper()
	dir, err := fixturesDir()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "tokenizers", "golden", file))
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
	dir, err := fixturesDir()
	if err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "tokenizers", "golden", "strings.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var s []string
	if err := json.Unmarshal(data, &s); err != nil {
		tb.Fatal(err)
	}
	return s
}
