package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalModel is a valid BPE model over the vocabulary {a, b, ab}.
const minimalModel = `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}`

// tokenizerJSON builds a tokenizer.json from the minimal model, with the
// given top-level fields replaced.
func tokenizerJSON(fields map[string]string) string {
	parts := map[string]string{
		"added_tokens":   `[]`,
		"normalizer":     `null`,
		"pre_tokenizer":  `null`,
		"model":          minimalModel,
		"post_processor": `null`,
		"decoder":        `null`,
	}
	for k, v := range fields {
		parts[k] = v
	}
	var b strings.Builder
	b.WriteString("{")
	first := true
	for _, k := range []string{"added_tokens", "normalizer", "pre_tokenizer", "model", "post_processor", "decoder"} {
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString(`"` + k + `":` + parts[k])
	}
	b.WriteString("}")
	return b.String()
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // substrings of the error, besides the file name
	}{
		{"invalid JSON", `{"model": {`, []string{"invalid JSON"}},
		{"missing model", `{"normalizer": null}`, []string{"model"}},
		{"unknown model type", tokenizerJSON(map[string]string{"model": `{"type":"WordPiece","vocab":{}}`}),
			[]string{"model", `"WordPiece"`}},
		{"unknown normalizer", tokenizerJSON(map[string]string{"normalizer": `{"type":"Lowercase"}`}),
			[]string{"normalizer", `"Lowercase"`}},
		{"unknown normalizer in sequence", tokenizerJSON(map[string]string{
			"normalizer": `{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"StripAccents"}]}`}),
			[]string{"normalizer", "Sequence[1]", `"StripAccents"`}},
		{"unknown pre-tokenizer", tokenizerJSON(map[string]string{"pre_tokenizer": `{"type":"Whitespace"}`}),
			[]string{"pre_tokenizer", `"Whitespace"`}},
		{"unknown post-processor", tokenizerJSON(map[string]string{"post_processor": `{"type":"BertProcessing"}`}),
			[]string{"post_processor", `"BertProcessing"`}},
		{"unknown decoder", tokenizerJSON(map[string]string{"decoder": `{"type":"WordPiece"}`}),
			[]string{"decoder", `"WordPiece"`}},
		{"component without type", tokenizerJSON(map[string]string{"normalizer": `{"prepend":"x"}`}),
			[]string{"normalizer", "missing type"}},
		{"merge with unknown token", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b","a c"]}`}),
			[]string{"model", "merges[1]", `"c"`}},
		{"merge into unknown token", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","b"]]}`}),
			[]string{"model", "merges[0]", `"ab"`}},
		{"malformed merge", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["ab"]}`}),
			[]string{"model", "merges[0]"}},
		{"dropout", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","dropout":0.1,"vocab":{"a":0},"merges":[]}`}),
			[]string{"model", "dropout"}},
		{"continuing subword prefix", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","continuing_subword_prefix":"##","vocab":{"a":0},"merges":[]}`}),
			[]string{"model", "continuing_subword_prefix"}},
		{"end of word suffix", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","end_of_word_suffix":"</w>","vocab":{"a":0},"merges":[]}`}),
			[]string{"model", "end_of_word_suffix"}},
		{"unknown unk token", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","unk_token":"<unk>","vocab":{"a":0},"merges":[]}`}),
			[]string{"model", "unk_token", `"<unk>"`}},
		{"duplicate id", tokenizerJSON(map[string]string{
			"model": `{"type":"BPE","vocab":{"a":0,"b":0},"merges":[]}`}),
			[]string{"model", "id 0"}},
		{"malformed regex", tokenizerJSON(map[string]string{
			"pre_tokenizer": `{"type":"Split","pattern":{"Regex":"(unclosed"},"behavior":"Isolated","invert":false}`}),
			[]string{"pre_tokenizer", "Split", "regex", "(unclosed"}},
		{"malformed regex in normalizer", tokenizerJSON(map[string]string{
			"normalizer": `{"type":"Replace","pattern":{"Regex":"[z-a]"},"content":""}`}),
			[]string{"normalizer", "Replace", "regex"}},
		{"unknown split behavior", tokenizerJSON(map[string]string{
			"pre_tokenizer": `{"type":"Split","pattern":{"String":" "},"behavior":"Sideways","invert":false}`}),
			[]string{"pre_tokenizer", "Split", `"Sideways"`}},
		{"pattern without kind", tokenizerJSON(map[string]string{
			"pre_tokenizer": `{"type":"Split","pattern":{},"behavior":"Isolated","invert":false}`}),
			[]string{"pre_tokenizer", "Split", "pattern"}},
		{"template with unknown special token", tokenizerJSON(map[string]string{
			"post_processor": `{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],"pair":[],"special_tokens":{}}`}),
			[]string{"post_processor", "TemplateProcessing", `"<s>"`}},
		{"added token without id", tokenizerJSON(map[string]string{
			"added_tokens": `[{"content":"<s>","special":true}]`}),
			[]string{"added_tokens", `"<s>"`, "id"}},
		{"metaspace with long replacement", tokenizerJSON(map[string]string{
			"pre_tokenizer": `{"type":"Metaspace","replacement":"__","prepend_scheme":"always","split":true}`}),
			[]string{"pre_tokenizer", "Metaspace", "replacement"}},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".json")
			if err := os.WriteFile(path, []byte(tt.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tt.want)
			}
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadDirectoryAndMissingFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("Load of an empty folder: err = %v, want one naming tokenizer.json", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(tokenizerJSON(nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.VocabSize(); got != 3 {
		t.Errorf("VocabSize() = %d, want 3", got)
	}
}
