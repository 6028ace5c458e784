package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func writeData(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadTextPairsShapes(t *testing.T) {
	rows := `{"prompt": "2+2?", "chosen": "4", "rejected": "5", "margin": 1.5, "subset": "math-prm"}
{"chosen": [{"role":"user","content":"hi"},{"role":"assistant","content":"hello!"}], "rejected": [{"role":"user","content":"hi"},{"role":"assistant","content":"go away"}]}
{"prompt": [{"role":"system","content":"be brief"},{"role":"user","content":"name?"}], "chosen": [{"role":"assistant","content":"Ann"}], "rejected": "Bob"}
`
	for _, tt := range []struct{ name, content string }{
		{"pairs.jsonl", rows},
		{"pairs.json", "[" + strings.Join(strings.Split(strings.TrimSpace(rows), "\n"), ",\n") + "]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pairs, st, err := ReadTextPairs(writeData(t, tt.name, tt.content), ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(pairs) != 3 || st.Rows != 3 || st.Skipped != 0 {
				t.Fatalf("%d pairs, stats %+v", len(pairs), st)
			}
			p := pairs[0]
			if len(p.Prompt) != 1 || p.Prompt[0] != (Message{"user", "2+2?"}) || p.Chosen[0] != (Message{"assistant", "4"}) || p.Margin != 1.5 || p.Subset != "math-prm" {
				t.Errorf("string row: %+v", p)
			}
			p = pairs[1]
			if len(p.Prompt) != 1 || p.Prompt[0].Content != "hi" || len(p.Chosen) != 1 || p.Chosen[0].Content != "hello!" || p.Rejected[0].Content != "go away" {
				t.Errorf("implicit prompt row: %+v", p)
			}
			p = pairs[2]
			if len(p.Prompt) != 2 || p.Prompt[0].Role != "system" || p.Rejected[0] != (Message{"assistant", "Bob"}) {
				t.Errorf("explicit prompt row: %+v", p)
			}
		})
	}
}

func TestReadTextPairsKeys(t *testing.T) {
	p := writeData(t, "k.jsonl", `{"question": "q", "good": "a", "bad": "b"}`+"\n")
	pairs, _, err := ReadTextPairs(p, ReadOptions{Keys: Keys{Prompt: "question", Chosen: "good", Rejected: "bad", Margin: "margin"}})
	if err != nil || len(pairs) != 1 || pairs[0].Chosen[0].Content != "a" {
		t.Fatalf("%v %+v", err, pairs)
	}
}

func TestReadTextPairsErrors(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"invalid json", "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n{bad\n", "bad.jsonl:2"},
		{"missing field", `{"prompt":"a","chosen":"b"}`, `field "rejected" is missing`},
		{"wrong type", `{"prompt":"a","chosen":3,"rejected":"c"}`, `field "chosen": want a string or a list of messages, got 3`},
		{"empty response", `{"prompt":"a","chosen":"  ","rejected":"c"}`, `field "chosen": empty response`},
		{"identical", `{"prompt":"a","chosen":"same","rejected":"same"}`, "identical"},
		{"invalid utf8", "{\"prompt\":\"a\xff\",\"chosen\":\"b\",\"rejected\":\"c\"}", "UTF-8"},
		{"bad role", `{"chosen":[{"role":"bot","content":"x"}],"rejected":"c"}`, `role "bot"`},
		{"message extra field", `{"chosen":[{"role":"user","content":"x","name":"n"}],"rejected":"c"}`, `message 0`},
		{"message not an object", `{"chosen":["x"],"rejected":"c"}`, `field "chosen": message 0: want an object {"role", "content"}, got a string "x"`},
		{"no response after prompt", `{"chosen":[{"role":"user","content":"x"}],"rejected":[{"role":"user","content":"x"}]}`, "identical"},
		{"bad margin", `{"prompt":"a","chosen":"b","rejected":"c","margin":"big"}`, `field "margin"`},
		{"no user turn", `{"prompt":[{"role":"system","content":"s"}],"chosen":"b","rejected":"c"}`, "no user turn"},
		{"no prompt at all", `{"chosen":"b","rejected":"c"}`, "no user turn"},
		{"empty prompt", `{"prompt":"  ","chosen":"b","rejected":"c"}`, "empty prompt"},
		{"conversations sharing no user turn", `{"chosen":[{"role":"assistant","content":"a"}],"rejected":[{"role":"assistant","content":"b"}]}`, "no user turn"},
		{"empty file", "", "empty file"},
		{"blank lines", "\n \n\n", "empty file"},
		{"row not an object", "{\"prompt\":\"a\",\"chosen\":\"b\",\"rejected\":\"c\"}\n\"abc\"\n", `bad.jsonl:2: want a JSON object with fields "prompt", "chosen" and "rejected", got a string "abc"`},
		{"array of strings", `["a", "b"]`, `bad.jsonl:[0]: want a JSON object`},
		{"unterminated array", `[{"prompt":"a","chosen":"b","rejected":"c"}`, "bad.jsonl: the JSON array is not closed: unexpected end of file where ']' should end it"},
		{"cut inside an element", `[{"prompt":"a","chosen":"b","rejected":"c"}, {"prompt":`, "bad.jsonl:[1]: unexpected end of file"},
		{"data after the array", `[{"prompt":"a","chosen":"b","rejected":"c"}] {}`, "bad.jsonl: data after the closing ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadTextPairs(writeData(t, "bad.jsonl", tt.content), ReadOptions{})
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "bad.jsonl") {
				t.Fatalf("err = %v, want ErrInvalid naming bad.jsonl and %q", err, tt.want)
			}
		})
	}
	// A bad element of a JSON array is named by its index.
	_, _, err := ReadTextPairs(writeData(t, "bad.json", `[{"prompt":"a","chosen":"b","rejected":"c"}, {"prompt":"a"}]`), ReadOptions{})
	if err == nil || !strings.Contains(err.Error(), "bad.json:[1]") {
		t.Errorf("array error: %v", err)
	}
}

func TestReadTextPairsSkipInvalid(t *testing.T) {
	content := `{"prompt":"a","chosen":"b","rejected":"c"}
{"prompt":"a","chosen":"b"}
{"prompt":"a","chosen":"same","rejected":"same"}
{"prompt":"d","chosen":"e","rejected":"f"}
`
	pairs, st, err := ReadTextPairs(writeData(t, "mixed.jsonl", content), ReadOptions{SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 2 || st.Skipped != 2 || st.Rows != 4 || st.FirstSkipped == nil || !strings.Contains(st.FirstSkipped.Error(), "mixed.jsonl:2") {
		t.Fatalf("%d pairs, stats %+v", len(pairs), st)
	}
	if pairs[1].ID != 1 || pairs[1].Prompt[0].Content != "d" {
		t.Errorf("ids not renumbered: %+v", pairs[1])
	}
}

type pqMessage struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type pqConv struct {
	Chosen   []pqMessage `parquet:"chosen"`
	Rejected []pqMessage `parquet:"rejected"`
}

type pqFlat struct {
	Prompt   string `parquet:"prompt"`
	Chosen   string `parquet:"chosen"`
	Rejected string `parquet:"rejected"`
	Subset   string `parquet:"subset"`
}

func TestReadParquet(t *testing.T) {
	dir := t.TempDir()
	conv := filepath.Join(dir, "conv.parquet")
	if err := parquet.WriteFile(conv, []pqConv{
		{Chosen: []pqMessage{{"user", "hi"}, {"assistant", "hello"}}, Rejected: []pqMessage{{"user", "hi"}, {"assistant", "no"}}},
		{Chosen: []pqMessage{{"user", "2+2"}, {"assistant", "4"}}, Rejected: []pqMessage{{"user", "2+2"}, {"assistant", "5"}}},
	}); err != nil {
		t.Fatal(err)
	}
	pairs, _, err := ReadTextPairs(conv, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 2 || pairs[1].Prompt[0].Content != "2+2" || pairs[1].Chosen[0].Content != "4" || pairs[1].Rejected[0].Content != "5" {
		t.Fatalf("conversational parquet: %+v", pairs)
	}
	flat := filepath.Join(dir, "flat.parquet")
	if err := parquet.WriteFile(flat, []pqFlat{{"q", "a", "b", "hep-go"}}); err != nil {
		t.Fatal(err)
	}
	pairs, _, err = ReadTextPairs(flat, ReadOptions{})
	if err != nil || pairs[0].Subset != "hep-go" || pairs[0].Prompt[0].Content != "q" {
		t.Fatalf("flat parquet: %v %+v", err, pairs)
	}
	// Wrong columns: the error names the row and the missing field.
	_, _, err = ReadTextPairs(flat, ReadOptions{Keys: Keys{Prompt: "prompt", Chosen: "good", Rejected: "bad", Margin: "margin"}})
	if err == nil || !strings.Contains(err.Error(), "flat.parquet:row 0") || !strings.Contains(err.Error(), `field "good" is missing`) {
		t.Errorf("wrong columns: %v", err)
	}
	// A truncated footer.
	b, _ := os.ReadFile(flat)
	cut := filepath.Join(dir, "cut.parquet")
	os.WriteFile(cut, b[:len(b)-10], 0o644)
	if _, _, err := ReadTextPairs(cut, ReadOptions{}); err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "cut.parquet") {
		t.Errorf("truncated parquet: %v", err)
	}
}
