package encode

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"prism/data"
	"prism/internal/fixtures"
)

// fixtureDir is the committed tokenizer in Llama-3's layout (special
// tokens, chat template, BOS from the post-processor).
func fixtureDir(t *testing.T) string {
	t.Helper()
	return fixtures.Tokenizer(t, "llama3-shape")
}

// TestPairBoundary: prompt and response ids concatenate to the ids of the
// whole rendered conversation, BOS appears once, and the response starts
// after the assistant header.
func TestPairBoundary(t *testing.T) {
	e, err := Load(fixtureDir(t))
	if err != nil {
		t.Fatal(err)
	}
	tp := data.TextPair{
		Prompt:   []data.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Capital of France?"}},
		Chosen:   []data.Message{{Role: "assistant", Content: "Paris."}},
		Rejected: []data.Message{{Role: "assistant", Content: "Lyon, I think."}},
		Subset:   "chat",
	}
	p, err := e.Pair(tp)
	if err != nil {
		t.Fatal(err)
	}
	bos, _ := e.Tok.TokenID("<|begin_of_text|>")
	count := 0
	for _, id := range p.ChosenSeq() {
		if int(id) == bos {
			count++
		}
	}
	if p.Prompt[0] != int64(bos) || count != 1 {
		t.Errorf("BOS first and once: prompt starts %d, %d BOS in the sequence", p.Prompt[0], count)
	}
	for _, side := range []struct {
		resp []data.Message
		ids  []int64
	}{{tp.Chosen, p.ChosenSeq()}, {tp.Rejected, p.RejectedSeq()}} {
		full, err := e.Tok.Encode(mustRender(t, e, append(append([]data.Message{}, tp.Prompt...), side.resp...)), false)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]int, len(side.ids))
		for i, id := range side.ids {
			got[i] = int(id)
		}
		if !slices.Equal(got, full) {
			t.Errorf("prompt+response ids differ from the whole conversation's:\n%v\n%v", got, full)
		}
	}
	eot, _ := e.Tok.TokenID("<|eot_id|>")
	if p.Chosen[len(p.Chosen)-1] != int64(eot) {
		t.Errorf("the response does not end with <|eot_id|>: %v", p.Chosen)
	}
	if p.Tags["subset"] != "chat" {
		t.Errorf("subset lost: %v", p.Tags)
	}
}

func mustRender(t *testing.T, e *Encoder, msgs []data.Message) string {
	t.Helper()
	s, err := renderFull(e, msgs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIsTokenFile(t *testing.T) {
	tests := []struct {
		name, content string
		want          bool
	}{
		{"tokens", `{"chosen_ids": [1], "rejected_ids": [2]}` + "\n", true},
		{"tokens after blank lines", "\n\n" + `{"chosen_ids": [1], "rejected_ids": [2]}`, true},
		{"text", `{"prompt": "a", "chosen": "b", "rejected": "c"}` + "\n" + `{"chosen_ids": [1]}`, false},
		{"array of tokens", "[\n" + `{"chosen_ids": [1], "rejected_ids": [2]}` + "\n]", true},
		{"blank lines", "\n\n  \n", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "pairs.jsonl")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := IsTokenFile(p)
			if err != nil || got != tt.want {
				t.Errorf("IsTokenFile = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestIdenticalOnceRendered: texts that differ but render (or tokenise)
// to the same ids are refused. A template reading an attribute the
// messages lack renders every response alike.
func TestIdenticalOnceRendered(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "t.jinja")
	if err := os.WriteFile(tmpl, []byte(`{% for m in messages %}<{{ m.role }}>{{ m.nickname }}.{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := LoadWith(fixtureDir(t), LoadOptions{TemplateFile: tmpl})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Pair(data.TextPair{
		Prompt:   []data.Message{{Role: "user", Content: "Capital of France?"}},
		Chosen:   []data.Message{{Role: "assistant", Content: "Paris."}},
		Rejected: []data.Message{{Role: "assistant", Content: "Lyon."}},
	})
	if err == nil || !strings.Contains(err.Error(), "same tokens") {
		t.Fatalf("a pair rendered alike: %v", err)
	}
}
