package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"prism/internal/fixtures"
	"prism/models"
)

// llama3Model writes a tiny random Llama with the vocabulary of the
// committed llama3-shape tokenizer (Llama-3's special tokens and chat
// template) and its tokenizer files into a temporary folder.
func llama3Model(t *testing.T) string {
	t.Helper()
	src := fixtures.Tokenizer(t, "llama3-shape")
	pad := llama3ShapeEOT - 8 // <|end_of_text|>
	c := &models.Config{ModelType: "llama", VocabSize: llama3ShapeVocab, HiddenSize: 32, IntermediateSize: 64,
		NumHiddenLayers: 1, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 16, RMSNormEps: 1e-5,
		RopeTheta: 500000, MaxPositionEmbeddings: 1024, HiddenAct: "silu", InitializerRange: 0.02, PadTokenID: &pad}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "llama3-tiny")
	if err := models.SaveValues(dir, c, models.RandomInit(c, rand.New(rand.NewPCG(1, 2))), nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Ids of the llama3-shape tokenizer: its size, <|begin_of_text|> and
// <|eot_id|> (Llama-3's order after the 814 BPE entries).
const (
	llama3ShapeVocab = 1070
	llama3ShapeBOS   = 814
	llama3ShapeEOT   = 823
)

type pqMsg struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type pqRow struct {
	Chosen   []pqMsg `parquet:"chosen"`
	Rejected []pqMsg `parquet:"rejected"`
}

// TestTrainFromTextData trains from a conversational JSON Lines file and
// from a Parquet file through Llama-3's tokenizer and chat template, then
// scores with eval pairs and checks the saved model ships the tokenizer.
func TestTrainFromTextData(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	var jl strings.Builder
	var rows []pqRow
	topics := []string{"cats", "rain", "bread", "music", "rivers", "chess"}
	for i := 0; i < 24; i++ {
		q := "Tell me about " + topics[i%len(topics)] + "."
		good := "Here is a short, friendly note about " + topics[i%len(topics)] + "."
		bad := "No."
		conv := map[string]any{
			"chosen":   []map[string]string{{"role": "user", "content": q}, {"role": "assistant", "content": good}},
			"rejected": []map[string]string{{"role": "user", "content": q}, {"role": "assistant", "content": bad}},
		}
		b, _ := json.Marshal(conv)
		jl.Write(append(b, '\n'))
		rows = append(rows, pqRow{Chosen: []pqMsg{{"user", q}, {"assistant", good}}, Rejected: []pqMsg{{"user", q}, {"assistant", bad}}})
	}
	jsonl := filepath.Join(dir, "conv.jsonl")
	os.WriteFile(jsonl, []byte(jl.String()), 0o644)
	pq := filepath.Join(dir, "conv.parquet")
	if err := parquet.WriteFile(pq, rows); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{jsonl, pq} {
		t.Run(filepath.Ext(file), func(t *testing.T) {
			runDir := filepath.Join(dir, "run"+filepath.Ext(file))
			out, _, err := run(t, "train", "--set", "run.dir="+runDir, "--set", "model.preset=", "--set", "model.path="+model,
				"--set", "data.train="+file, "--set", "train.steps=4", "--set", "train.batch_size=4", "--set", "data.eval_fraction=0.25",
				"--set", "eval.every=0", "--set", "checkpoint.every=0", "--set", "train.learning_rate=0.01")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "model saved to") {
				t.Fatalf("train output: %s", out)
			}
			saved := filepath.Join(runDir, "model")
			if _, err := os.Stat(filepath.Join(saved, "tokenizer.json")); err != nil {
				t.Errorf("the saved model lacks the tokenizer: %v", err)
			}
			stdout, _, err := run(t, "eval", "pairs", "--model", saved, "--data", file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stdout, "| 24 |") {
				t.Errorf("eval pairs output:\n%s", stdout)
			}
		})
	}
}

func TestTokenizeAndChatTemplateCommands(t *testing.T) {
	tokDir := fixtures.Tokenizer(t, "llama3-shape")
	var out strings.Builder
	root := NewRoot(&out, &out)
	root.SetIn(strings.NewReader("{\"text\":\"Hello world\"}\n{\"text\":\"\"}\n"))
	root.SetArgs([]string{"tokenize", "--tokenizer", tokDir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], fmt.Sprintf(`{"ids":[%d,`, llama3ShapeBOS)) {
		t.Fatalf("tokenize output %q", out.String())
	}
	out.Reset()
	root = NewRoot(&out, &out)
	root.SetIn(strings.NewReader(`{"messages":[{"role":"user","content":"Hi"}]}` + "\n"))
	root.SetArgs([]string{"chat-template", "--tokenizer", tokDir, "--add-generation-prompt"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var r struct{ Text string }
	if err := json.Unmarshal([]byte(strings.TrimSpace(out.String())), &r); err != nil || !strings.HasPrefix(r.Text, "<|begin_of_text|><|start_header_id|>user") || !strings.HasSuffix(r.Text, "<|start_header_id|>assistant<|end_header_id|>\n\n") {
		t.Fatalf("chat-template output %q (%v)", out.String(), err)
	}
}

// TestEvalRewardBench scores a small RewardBench-shaped fixture: every
// section present, sections and overall in the output and results files.
func TestEvalRewardBench(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	var b strings.Builder
	for i, sub := range []string{"alpacaeval-easy", "mt-bench-hard", "donotanswer", "hep-go", "math-prm", "xstest-should-respond"} {
		for k := 0; k < 3; k++ {
			row := map[string]string{"prompt": "Question " + sub, "chosen": "A good answer " + strings.Repeat("x", i+k), "rejected": "A bad answer", "subset": sub}
			j, _ := json.Marshal(row)
			b.Write(append(j, '\n'))
		}
	}
	f := filepath.Join(dir, "rb.jsonl")
	os.WriteFile(f, []byte(b.String()), 0o644)
	out := filepath.Join(dir, "out")
	stdout, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", f, "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| Chat |", "| Chat Hard |", "| Safety |", "| Reasoning |", "**overall**", "| hep-go | "} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	var res struct {
		Overall  float64
		Sections map[string]float64
	}
	rb, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil || json.Unmarshal(rb, &res) != nil || len(res.Sections) != 4 {
		t.Fatalf("results.json: %v %s", err, rb)
	}
	// The overall score is the mean of the sections.
	var sum float64
	for _, v := range res.Sections {
		sum += v
	}
	if d := res.Overall - sum/4; d > 1e-12 || d < -1e-12 {
		t.Errorf("overall %v, mean of sections %v", res.Overall, sum/4)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"prompt":"q","chosen":"a","rejected":"b","subset":"not-a-subset"}`+"\n"), 0o644)
	if _, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", bad); err == nil || !strings.Contains(err.Error(), "not-a-subset") {
		t.Errorf("unknown subset: %v", err)
	}
}

// TestScoreTextRows: prompt/response and conversational rows are rendered
// with the chat template; the same conversation in either shape gets the
// same reward, and errors name the line.
func TestScoreTextRows(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	rows := `{"prompt": "Hi there", "response": "Hello!"}

{"messages": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]}
{"input_ids": [814, 300]}
{"prompt": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}], "response": "Hey."}
`
	os.WriteFile(in, []byte(rows), 0o644)
	stdout, _, err := run(t, "score", "--model", model, "--input", in)
	if err != nil {
		t.Fatal(err)
	}
	r := parseRewards(t, stdout)
	if len(r) != 4 {
		t.Fatalf("%d rewards for 4 rows", len(r))
	}
	if d := r[0] - r[1]; d > 1e-6 || d < -1e-6 {
		t.Errorf("the same conversation scored %v as prompt/response and %v as messages", r[0], r[1])
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"prompt\": \"a\", \"response\": \"b\"}\n\n{\"prompt\": \"a\", \"answer\": \"b\"}\n"), 0o644)
	if _, _, err := run(t, "score", "--model", model, "--input", bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:3") || !strings.Contains(err.Error(), `"answer"`) {
		t.Errorf("unexpected field: %v", err)
	}
}
