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

// writeJSONL writes rows as JSON Lines to dir/name.
func writeJSONL(t *testing.T, dir, name string, rows []map[string]any) string {
	t.Helper()
	var b strings.Builder
	for _, r := range rows {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type rbResults struct {
	Subsets map[string]struct {
		Correct, Total int
		Accuracy       float64
	}
	Sections       map[string]float64
	PriorSets      *float64 `json:"prior_sets"`
	Overall        float64
	OverallPresent float64  `json:"overall_sections_present"`
	Missing        []string `json:"missing_sections"`
	Other          []string `json:"other_subsets"`
	Upstream       string
	Input          struct {
		Data      []string
		Pairs     int
		MaxLength int            `json:"max_length"`
		Truncated int            `json:"truncated_pairs"`
		Skipped   int            `json:"skipped_rows"`
		Reasons   map[string]int `json:"skip_reasons"`
	}
}

func readRB(t *testing.T, out string) (rbResults, []exampleRow) {
	t.Helper()
	var res rbResults
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil || json.Unmarshal(b, &res) != nil {
		t.Fatalf("results.json: %v %s", err, b)
	}
	var rows []exampleRow
	lines, err := os.ReadFile(filepath.Join(out, "scores.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		var r exampleRow
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("scores.jsonl line %q: %v", l, err)
		}
		rows = append(rows, r)
	}
	return res, rows
}

// TestEvalRewardBench scores a small RewardBench-shaped file with the
// official formulas, then the prior sets from a second file, and checks
// the per-example output against the summary.
func TestEvalRewardBench(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	var rows []map[string]any
	id := 100
	for i, sub := range []string{"alpacaeval-easy", "mt-bench-hard", "donotanswer", "hep-go", "math-prm", "xstest-should-respond", "my-own-subset"} {
		for k := 0; k < 3; k++ {
			rows = append(rows, map[string]any{"id": id, "prompt": "Question " + sub, "chosen": "A good answer " + strings.Repeat("x", i+k), "rejected": "A bad answer", "subset": sub})
			id++
		}
	}
	core := writeJSONL(t, dir, "rb.jsonl", rows)
	out := filepath.Join(dir, "out")
	stdout, stderr, err := run(t, "eval", "rewardbench", "--model", model, "--data", core, "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"| Chat |", "| Chat Hard |", "| Safety |", "| Reasoning |", "**overall**", "| hep-go | ", "05a9005", "my-own-subset"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	if !strings.Contains(stderr, "my-own-subset") {
		t.Errorf("no warning about the extra subset: %s", stderr)
	}
	res, ex := readRB(t, out)
	if len(res.Sections) != 4 || res.PriorSets != nil || len(res.Missing) != 0 || res.Upstream == "" {
		t.Fatalf("results.json: %+v", res)
	}
	if len(res.Other) != 1 || res.Other[0] != "my-own-subset" || res.Subsets["my-own-subset"].Total != 3 {
		t.Errorf("the extra subset: other %v, %+v", res.Other, res.Subsets["my-own-subset"])
	}
	// Without prior sets the overall score is the mean of the sections.
	var sum float64
	for _, v := range res.Sections {
		sum += v
	}
	if d := res.Overall - sum/4; d > 1e-12 || d < -1e-12 {
		t.Errorf("overall %v, mean of sections %v", res.Overall, sum/4)
	}
	// scores.jsonl: one line per row, its own id, results as the scores say,
	// and the subset accuracies follow from it.
	if len(ex) != len(rows) {
		t.Fatalf("%d per-example lines for %d rows", len(ex), len(rows))
	}
	correct := map[string]int{}
	for i, r := range ex {
		if r.ID != fmt.Sprint(100+i) || r.Subset != rows[i]["subset"] {
			t.Errorf("line %d: id %q subset %q", i, r.ID, r.Subset)
		}
		if want := r.Chosen > r.Rejected; (r.Result == 1) != want || (r.Result != 0 && r.Result != 1) {
			t.Errorf("line %d: results %d for %v vs %v", i, r.Result, r.Chosen, r.Rejected)
		}
		correct[r.Subset] += r.Result
	}
	for sub, ss := range res.Subsets {
		if ss.Correct != correct[sub] {
			t.Errorf("%s: %d correct in results.json, %d in scores.jsonl", sub, ss.Correct, correct[sub])
		}
	}

	// The prior sets from a second file: their mean enters the leaderboard
	// score with weight 1 against 2 for each section.
	var prior []map[string]any
	for _, sub := range []string{"anthropic_helpful", "shp", "anthropic_harmless"} {
		for k := 0; k < 2; k++ {
			prior = append(prior, map[string]any{"prompt": "Q " + sub, "chosen": "Fine " + strings.Repeat("y", k), "rejected": "No", "subset": sub})
		}
	}
	pf := writeJSONL(t, dir, "prior.jsonl", prior)
	out2 := filepath.Join(dir, "out2")
	if _, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", core, "--data", pf, "--out", out2); err != nil {
		t.Fatal(err)
	}
	res2, ex2 := readRB(t, out2)
	if res2.PriorSets == nil || len(ex2) != len(rows)+len(prior) || len(res2.Input.Data) != 2 {
		t.Fatalf("prior sets: %+v, %d lines", res2, len(ex2))
	}
	wantPrior := (res2.Subsets["anthropic_helpful"].Accuracy + res2.Subsets["shp"].Accuracy) / 2
	if *res2.PriorSets != wantPrior {
		t.Errorf("prior sets %v, want %v", *res2.PriorSets, wantPrior)
	}
	if want := (2*sum + wantPrior) / 9; res2.Overall-want > 1e-12 || want-res2.Overall > 1e-12 {
		t.Errorf("overall with prior sets %v, want %v", res2.Overall, want)
	}

	// A subset-less row is an error naming it.
	bad := writeJSONL(t, dir, "bad.jsonl", []map[string]any{{"id": "q-9", "prompt": "q", "chosen": "a", "rejected": "b"}})
	if _, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", bad); err == nil || !strings.Contains(err.Error(), "q-9") {
		t.Errorf("row without a subset: %v", err)
	}
}

// TestEvalPartialRewardBench: sections without data count 0 in the
// headline, as the official code has it; the figure over the sections
// present is reported apart.
func TestEvalPartialRewardBench(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	f := writeJSONL(t, dir, "part.jsonl", []map[string]any{
		{"prompt": "q", "chosen": "good", "rejected": "bad", "subset": "hep-go"},
		{"prompt": "q", "chosen": "bad", "rejected": "good", "subset": "hep-go"},
	})
	out := filepath.Join(dir, "out")
	stdout, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", f, "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := readRB(t, out)
	r := res.Sections["Reasoning"]
	if len(res.Missing) != 3 || res.Overall != r/4 || res.OverallPresent != r {
		t.Errorf("missing %v overall %v present %v, want 3 missing, %v and %v", res.Missing, res.Overall, res.OverallPresent, r/4, r)
	}
	if !strings.Contains(stdout, "counts them as 0") {
		t.Errorf("output does not explain the missing sections:\n%s", stdout)
	}
}

// TestEvalLengthAndSkips: --max-length truncates (or refuses) long pairs
// and says so; --skip-invalid reports what it skipped and why.
func TestEvalLengthAndSkips(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	long := strings.Repeat("many words here ", 40)
	f := writeJSONL(t, dir, "mixed.jsonl", []map[string]any{
		{"prompt": "q", "chosen": "good", "rejected": "bad", "subset": "hep-go"},
		{"prompt": "q", "chosen": long, "rejected": "bad", "subset": "hep-go"},
		{"prompt": "q", "chosen": "only chosen", "subset": "hep-go"},
		{"prompt": "q", "chosen": "same", "rejected": "same", "subset": "hep-go"},
	})
	if _, _, err := run(t, "eval", "rewardbench", "--model", model, "--data", f); err == nil {
		t.Fatal("bad rows accepted without --skip-invalid")
	}
	out := filepath.Join(dir, "out")
	_, stderr, err := run(t, "eval", "rewardbench", "--model", model, "--data", f, "--skip-invalid", "--max-length", "40", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"skipped 2 of 4 rows", `field \"rejected\" is missing`, "truncated pairs"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	res, ex := readRB(t, out)
	if res.Input.Skipped != 2 || len(res.Input.Reasons) != 2 || res.Input.Truncated != 1 || res.Input.MaxLength != 40 || len(ex) != 2 {
		t.Errorf("input report %+v, %d lines", res.Input, len(ex))
	}
	_, _, err = run(t, "eval", "rewardbench", "--model", model, "--data", f, "--skip-invalid", "--max-length", "40", "--over-length", "refuse")
	if err == nil || !strings.Contains(err.Error(), "over the limit of 40") || !strings.Contains(err.Error(), "row 1") {
		t.Errorf("refuse: %v", err)
	}
	// Past max_position_embeddings (1024 here) nothing is scored: the limit
	// is capped, with a warning.
	_, stderr, err = run(t, "eval", "rewardbench", "--model", model, "--data", f, "--skip-invalid", "--max-length", "5000", "--out", out)
	if err != nil || !strings.Contains(stderr, "max_position_embeddings") {
		t.Errorf("max-length over the model's positions: %v\n%s", err, stderr)
	}
	if res, _ = readRB(t, out); res.Input.MaxLength != 1024 {
		t.Errorf("limit %d, want the model's 1024", res.Input.MaxLength)
	}
}

// gpt2EOS is GPT-2's <|endoftext|>, its pad token by convention.
var gpt2EOS = 50256

// TestTemplateFallback: a tokenizer without a chat template (GPT-2's) is
// refused with the way out, and works with a built-in template.
func TestTemplateFallback(t *testing.T) {
	dir := t.TempDir()
	c := &models.Config{ModelType: "llama", VocabSize: 50257, HiddenSize: 16, IntermediateSize: 32,
		NumHiddenLayers: 1, NumAttentionHeads: 2, NumKeyValueHeads: 1, HeadDim: 8, RMSNormEps: 1e-5,
		RopeTheta: 10000, MaxPositionEmbeddings: 512, HiddenAct: "silu", InitializerRange: 0.02, PadTokenID: &gpt2EOS}
	model := filepath.Join(dir, "gpt2-tok")
	if err := models.SaveValues(model, c, models.RandomInit(c, rand.New(rand.NewPCG(3, 4))), nil); err != nil {
		t.Fatal(err)
	}
	src := fixtures.Tokenizer(t, "gpt2")
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(model, f), b, 0o644)
	}
	f := writeJSONL(t, dir, "p.jsonl", []map[string]any{{"prompt": "q", "chosen": "good", "rejected": "bad"}})
	_, _, err := run(t, "eval", "pairs", "--model", model, "--data", f)
	if err == nil || !strings.Contains(err.Error(), "--template-file") || !strings.Contains(err.Error(), "chatml") {
		t.Fatalf("no template: %v", err)
	}
	stdout, _, err := run(t, "eval", "pairs", "--model", model, "--data", f, "--template", "chatml")
	if err != nil || !strings.Contains(stdout, "| 1 |") {
		t.Fatalf("with --template chatml: %v\n%s", err, stdout)
	}
	in := writeJSONL(t, dir, "s.jsonl", []map[string]any{{"prompt": "q", "response": "a"}})
	if _, _, err := run(t, "score", "--model", model, "--input", in, "--template", "raw"); err != nil {
		t.Errorf("score with --template raw: %v", err)
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

// TestScoreLength: prism score truncates rows over --max-length to their
// first tokens (the same reward as scoring those tokens), with a warning,
// or refuses them with the line.
func TestScoreLength(t *testing.T) {
	model := llama3Model(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	os.WriteFile(in, []byte("{\"input_ids\": [814, 300, 301, 302]}\n{\"input_ids\": [814, 300]}\n"), 0o644)
	stdout, stderr, err := run(t, "score", "--model", model, "--input", in, "--max-length", "2")
	if err != nil {
		t.Fatal(err)
	}
	r := parseRewards(t, stdout)
	if len(r) != 2 || r[0] != r[1] || !strings.Contains(stderr, "truncated rows") {
		t.Errorf("rewards %v (want the first row cut to the second), stderr %s", r, stderr)
	}
	if _, _, err := run(t, "score", "--model", model, "--input", in, "--max-length", "2", "--over-length", "refuse"); err == nil || !strings.Contains(err.Error(), "in.jsonl:1: 4 tokens") {
		t.Errorf("refuse: %v", err)
	}
}
