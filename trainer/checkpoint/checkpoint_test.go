package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestPruneRemovesLeftoversOfInterruptedWrites: a kill in the middle of an
// atomic write leaves its temporary file or folder; the next checkpoint's
// prune removes them (the half-written final model included, which nothing
// else would ever remove) and keeps everything else.
func TestPruneRemovesLeftoversOfInterruptedWrites(t *testing.T) {
	run := t.TempDir()
	files := map[string]bool{ // path: kept
		"checkpoints/step-00000004/state.json":              false,
		"checkpoints/step-00000008/state.json":              true,
		"checkpoints/step-00000012/state.json":              true,
		"checkpoints/.step-00000016.tmp-123/state.json":     false,
		"checkpoints/.step-00000012.tmp-9.old/state.json":   false,
		".model.tmp-55/.model.safetensors.tmp4242":          false,
		".model.tmp-56.old/model.safetensors":               false,
		".metrics.jsonl.tmp-77":                             false,
		".config.yaml.tmp-1":                                false,
		".write-test":                                       false,
		"decomposition/.step-00000030.csv.tmp-5":            false,
		"decomposition/.plot-123.png":                       false,
		"decomposition/step-00000030.csv":                   true,
		"decomposition/final.png":                           true,
		"model/model.safetensors":                           true,
		"metrics.jsonl":                                     true,
		"config.yaml":                                       true,
		"run.log":                                           true,
		".notes":                                            true, // not prism's
		"decomposition/.notes":                              true,
		"checkpoints/step-00000008/model/model.safetensors": true,
	}
	for f := range files {
		p := filepath.Join(run, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Prune(run, 2); err != nil {
		t.Fatal(err)
	}
	for f, keep := range files {
		_, err := os.Stat(filepath.Join(run, f))
		if keep && err != nil {
			t.Errorf("%s was removed: %v", f, err)
		}
		if !keep && err == nil {
			t.Errorf("%s is still there", f)
		}
	}
	var left []string
	for _, dir := range []string{".", "checkpoints", "decomposition"} {
		entries, err := os.ReadDir(filepath.Join(run, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			left = append(left, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(left)
	want := []string{".notes", "checkpoints", "checkpoints/step-00000008", "checkpoints/step-00000012", "config.yaml",
		"decomposition", "decomposition/.notes", "decomposition/final.png", "decomposition/step-00000030.csv", "metrics.jsonl", "model", "run.log"}
	if !slices.Equal(left, want) {
		t.Errorf("left after pruning:\n%q\nwant\n%q", left, want)
	}
}
