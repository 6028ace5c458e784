package safetensors

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeIndex(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.safetensors.index.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadIndex(t *testing.T) {
	path := writeIndex(t, `{
  "metadata": {"total_size": 123456, "nested": {"a": [1, 2]}},
  "weight_map": {
    "lm_head.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
  }
}
`)
	got, err := ReadIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"lm_head.weight":            "model-00002-of-00002.safetensors",
		"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
	}
	if !maps.Equal(got, want) {
		t.Errorf("ReadIndex = %q, want %q", got, want)
	}

	got, err = ReadIndex(writeIndex(t, `{"weight_map":{}}`))
	if err != nil || len(got) != 0 {
		t.Errorf("empty weight map: got %q, %v", got, err)
	}
}

func TestReadIndexMalformed(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"missing weight_map", `{"metadata":{}}`, `missing key "weight_map"`},
		{"not an object", `[]`, "index is an array, not a JSON object"},
		{"invalid JSON", `{"weight_map":{"a":`, "invalid JSON"},
		{"trailing data", `{"weight_map":{}} x`, "trailing data"},
		{"unknown key", `{"weight_map":{},"extra":1}`, `unknown key "extra"`},
		{"duplicate weight_map", `{"weight_map":{},"weight_map":{}}`, `duplicate key "weight_map"`},
		{"metadata not an object", `{"metadata":3,"weight_map":{}}`, "metadata is not a JSON object"},
		{"weight_map null", `{"weight_map":null}`, "weight_map: value is null, not a JSON object"},
		{"shard not a string", `{"weight_map":{"a":1}}`, `tensor "a": got number 1, want a string`},
		{"duplicate tensor", `{"weight_map":{"a":"x","a":"y"}}`, `duplicate tensor "a"`},
		{"empty tensor name", `{"weight_map":{"":"x"}}`, "tensor name is empty"},
		{"slash", `{"weight_map":{"a":"sub/x.safetensors"}}`, `shard "sub/x.safetensors" is not a plain file name`},
		{"absolute path", `{"weight_map":{"a":"/etc/passwd"}}`, "not a plain file name"},
		{"parent folder", `{"weight_map":{"a":".."}}`, "not a plain file name"},
		{"dot dot inside", `{"weight_map":{"a":"..\\x"}}`, "not a plain file name"},
		{"backslash", `{"weight_map":{"a":"c:\\x"}}`, "not a plain file name"},
		{"empty shard", `{"weight_map":{"a":""}}`, "not a plain file name"},
		{"dot", `{"weight_map":{"a":"."}}`, "not a plain file name"},
		{"NUL", `{"weight_map":{"a":"x\u0000y"}}`, "not a plain file name"},
		{"non-UTF-8", "{\"weight_map\":{\"a\xff\":\"x\"}}", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeIndex(t, tt.content)
			_, err := ReadIndex(path)
			if err == nil {
				t.Fatalf("ReadIndex succeeded, want error containing %q", tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), path+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want the path and %q", err, tt.want)
			}
		})
	}

	if _, err := ReadIndex(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v, want os.ErrNotExist", err)
	}
}
