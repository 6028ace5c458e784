package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"prism/data"
	"prism/data/encode"
	"prism/models"
)

func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := NewRoot(&out, &errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var r versionReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Prism != Version || r.Torch.LibtorchVersion == "" || r.Torch.Threads < 1 || r.Torch.Generated == 0 {
		t.Fatalf("report %+v", r)
	}
	out, _, err = run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"libtorch", "blas", "threads", "generated functions disabled"} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
}

func TestTrainBadConfigs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"train", "--config", filepath.Join(dir, "missing.yaml")}, []string{"missing.yaml", "no such file"}},
		{[]string{"train", "--config", write("typo.yaml", "train:\n  epochz: 3\n")}, []string{"typo.yaml:2", "unknown key train.epochz", "did you mean train.epochs"}},
		{[]string{"train", "--config", write("type.yaml", "train:\n  epochs: many\n")}, []string{"type.yaml:2", "train.epochs"}},
		{[]string{"train", "--config", write("data.yaml", "run:\n  dir: "+filepath.Join(dir, "r")+"\ndata:\n  train: "+filepath.Join(dir, "nope.jsonl")+"\n")}, []string{"nope.jsonl"}},
		{[]string{"train", "--config", write("model.yaml", "run:\n  dir: "+filepath.Join(dir, "r2")+"\nmodel:\n  preset: \"\"\n  path: "+filepath.Join(dir, "nomodel")+"\n")}, []string{"nomodel", "config.json"}},
		{[]string{"train", "--config", write("preset.yaml", "run:\n  dir: "+filepath.Join(dir, "r3")+"\nmodel:\n  preset: huge\n")}, []string{"unknown model preset \"huge\""}},
		{[]string{"train", "--config", write("ok.yaml", ""), "--set", "train.lr=1"}, []string{"--set train.lr", "unknown key"}},
	}
	for _, tt := range tests {
		_, _, err := run(t, tt.args...)
		if err == nil {
			t.Errorf("%v: no error", tt.args)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q lacks %q", tt.args, err, w)
			}
		}
	}
}

// TestTrainThenScore trains a tiny model, then checks the score contract:
// one {"reward": x} per input row, in input order, equal whether rows are
// scored alone or in a batch.
func TestTrainThenScore(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	out, _, err := run(t, "train", "--set", "run.dir="+runDir, "--set", "train.steps=5", "--set", "data.synthetic_pairs=100")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "model saved to") {
		t.Errorf("train output: %s", out)
	}
	in := filepath.Join(dir, "in.jsonl")
	rows := "{\"input_ids\":[1,5,6,7,2]}\n{\"input_ids\":[1,40,41,42,43,44,45,2]}\n\n{\"input_ids\":[1,3]}\n"
	if err := os.WriteFile(in, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(runDir, "model")
	stdout, _, err := run(t, "score", "--model", model, "--input", in)
	if err != nil {
		t.Fatal(err)
	}
	batched := parseRewards(t, stdout)
	if len(batched) != 3 {
		t.Fatalf("%d rewards for 3 rows: %s", len(batched), stdout)
	}
	outFile := filepath.Join(dir, "out.jsonl")
	if _, _, err := run(t, "score", "--model", model, "--input", in, "--output", outFile, "--batch-size", "1"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(outFile)
	alone := parseRewards(t, string(b))
	for i := range batched {
		if d := batched[i] - alone[i]; d > 1e-5 || d < -1e-5 {
			t.Errorf("row %d: %v in a batch, %v alone", i, batched[i], alone[i])
		}
	}
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"input_ids\":[1,2]}\n{\"input_ids\":[1,999]}\n"), 0o644)
	if _, _, err := run(t, "score", "--model", model, "--input", bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("out-of-vocabulary id: %v", err)
	}
	os.WriteFile(bad, []byte("{\"ids\":[1,2]}\n"), 0o644)
	if _, _, err := run(t, "score", "--model", model, "--input", bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:1") {
		t.Errorf("unknown field: %v", err)
	}
}

func parseRewards(t *testing.T, s string) []float64 {
	t.Helper()
	var out []float64
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var r struct{ Reward *float64 }
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Reward == nil {
			t.Fatalf("bad output line %q: %v", l, err)
		}
		out = append(out, *r.Reward)
	}
	return out
}

func TestDecomposeCommand(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	if _, _, err := run(t, "train", "--set", "run.dir="+runDir, "--set", "train.steps=3", "--set", "data.synthetic_pairs=60"); err != nil {
		t.Fatal(err)
	}
	pairs := filepath.Join(dir, "pairs.jsonl")
	rows := `{"prompt_ids":[1,50],"chosen_ids":[5,6,2],"rejected_ids":[60,61,2],"tags":{"k":"true"}}
{"prompt_ids":[1,51],"chosen_ids":[7,2],"rejected_ids":[62,63,64,2]}
{"prompt_ids":[1,52],"chosen_ids":[8,9,10,2],"rejected_ids":[65,2]}
`
	os.WriteFile(pairs, []byte(rows), 0o644)
	out := filepath.Join(dir, "dec")
	stdout, _, err := run(t, "decompose", "--model", filepath.Join(runDir, "model"), "--data", pairs, "--samples", "2", "--out", out, "--tag", "k")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"mean |Δr2|", "prompt-free share"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "decomposition.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 4 {
		t.Errorf("table has %d lines, want a header and 3 rows:\n%s", n, b)
	}
	var s map[string]any
	sb, _ := os.ReadFile(filepath.Join(out, "summary.json"))
	if err := json.Unmarshal(sb, &s); err != nil || s["pairs"].(float64) != 3 {
		t.Errorf("summary %v %v", s, err)
	}
	if _, err := os.Stat(filepath.Join(out, "quadrants.png")); err != nil {
		t.Error(err)
	}
	// Every response is scored under every prompt: the longest prompt (2)
	// with the longest response (4) must fit, or the run is refused.
	_, _, err = run(t, "decompose", "--model", filepath.Join(runDir, "model"), "--data", pairs, "--samples", "2", "--out", out, "--max-length", "5")
	if err == nil || !strings.Contains(err.Error(), "longest prompt (2 tokens) with the longest response (4)") {
		t.Errorf("a pool longer than --max-length: %v", err)
	}
}

// TestDecomposeReadsText: prism decompose reads text pairs through the
// same loader as eval and score, and estimates exactly what it estimates
// for the same pairs given as token ids.
func TestDecomposeReadsText(t *testing.T) {
	good := filepath.Join("..", "..", "testdata", "bad", "good")
	model, tok, text := filepath.Join(good, "model"), filepath.Join(good, "tok"), filepath.Join(good, "text.jsonl")
	cfg, err := models.LoadConfig(filepath.Join(model, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	pairs, _, err := encode.ReadFile(text, tok, cfg.VocabSize, data.ReadOptions{}, encode.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ids := filepath.Join(dir, "ids.jsonl")
	var sb strings.Builder
	for _, p := range pairs {
		b, _ := json.Marshal(map[string][]int64{"prompt_ids": p.Prompt, "chosen_ids": p.Chosen, "rejected_ids": p.Rejected})
		sb.Write(append(b, '\n'))
	}
	if err := os.WriteFile(ids, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tables := map[string]string{}
	for name, args := range map[string][]string{"text": {"--data", text, "--tokenizer", tok}, "ids": {"--data", ids}} {
		out := filepath.Join(dir, name)
		if _, _, err := run(t, append([]string{"decompose", "--model", model, "--samples", "2", "--out", out}, args...)...); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := os.ReadFile(filepath.Join(out, "decomposition.csv"))
		if err != nil {
			t.Fatal(err)
		}
		tables[name] = string(b)
	}
	if n := strings.Count(tables["text"], "\n"); n != len(pairs)+1 {
		t.Errorf("text table has %d lines for %d pairs", n, len(pairs))
	}
	if tables["text"] != tables["ids"] {
		t.Errorf("text and token ids of the same pairs decompose differently:\n%s\nvs\n%s", tables["text"], tables["ids"])
	}
}

// TestSubcommand: launch finds the command its ranks run past global
// flags and their values.
func TestSubcommand(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"train", "--config", "x.yaml"}, "train"},
		{[]string{"--threads", "2", "score"}, "score"},
		{[]string{"--log-level=debug", "--allow-pickle", "train"}, "train"},
		{[]string{"--threads"}, ""},
	} {
		if got := subcommand(tt.args); got != tt.want {
			t.Errorf("subcommand(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
