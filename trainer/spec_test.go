package trainer

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
)

// TestRunFolderMustNotHoldItsInputs: an input inside what the run writes
// (its model, adapter, checkpoints or decomposition folders, its metrics,
// config or log) is refused before anything loads, also through a
// symbolic link; an input merely beside the run folder is fine.
func TestRunFolderMustNotHoldItsInputs(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	good := filepath.Join("..", "testdata", "bad", "good", "model")
	for _, d := range []string{filepath.Join(run, "model"), filepath.Join(dir, "base")} {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-r", good, d).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(run, link); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base")
	for _, tt := range []struct {
		name string
		sets []string
		want string // "" for no error
	}{
		{"base model beside the run", []string{"model.path=" + base}, ""},
		{"base model is the run's model", []string{"model.path=" + filepath.Join(run, "model")}, "model.path"},
		{"through a link", []string{"model.path=" + filepath.Join(link, "model")}, "model.path"},
		{"data is the run's metrics", []string{"model.path=" + base, "data.train=" + filepath.Join(run, "metrics.jsonl")}, "data.train"},
		{"tokenizer in a checkpoint", []string{"model.path=" + base, "data.tokenizer=" + filepath.Join(run, "checkpoints", "step-00000004", "model")}, "data.tokenizer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sets := append([]string{"run.dir=" + run, "model.preset="}, tt.sets...)
			cfg, err := configs.Load("", sets, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = resolve(cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "which the run writes")):
				t.Fatalf("err = %v, want a refusal naming %s", err, tt.want)
			}
		})
	}
}
