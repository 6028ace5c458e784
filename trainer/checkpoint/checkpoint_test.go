package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		".plot-456.png":                                     false,
		".compare-result.json.tmp-3":                        false,
		"curves.png":                                        true,
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
	want := []string{".notes", "checkpoints", "checkpoints/step-00000008", "checkpoints/step-00000012", "config.yaml", "curves.png",
		"decomposition", "decomposition/.notes", "decomposition/final.png", "decomposition/step-00000030.csv", "metrics.jsonl", "model", "run.log"}
	if !slices.Equal(left, want) {
		t.Errorf("left after pruning:\n%q\nwant\n%q", left, want)
	}
}

// TestStateValidate: each field a state can get wrong on its own is
// refused by name; a good state, and a later phase with its selection,
// pass.
func TestStateValidate(t *testing.T) {
	five := 5
	good := State{Format: Format, Step: 4, Tokens: 100}
	good.EpochPos = 3
	tests := []struct {
		edit func(*State)
		want string
	}{
		{func(s *State) { s.EpochPos = -1 }, "epoch_pos = -1"},
		{func(s *State) { s.Step = -4 }, "step = -4"},
		{func(s *State) { s.ElapsedS = -0.5 }, "elapsed_s"},
		{func(s *State) { s.MetricsBytes = -10 }, "metrics_bytes"},
		{func(s *State) { s.BadSteps = 5 }, "more bad steps than steps"},
		{func(s *State) { s.BadSteps, s.BadRun = 1, 2 }, "more bad steps than steps"},
		{func(s *State) { s.OptimizerStep = &five }, "optimizer_step = 5 at step 4"},
		{func(s *State) { s.Phase = 2 }, "phase 2 has no selected pairs"},
		{func(s *State) { s.Selected, s.Priorities = []int{1}, []float64{0} }, "phase 0"},
		{func(s *State) { s.Phase, s.Selected = 1, []int{1, 2} }, "0 priorities for 2 selected pairs"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("good state: %v", err)
	}
	later := good
	later.Phase, later.Selected, later.Priorities = 1, []int{0, 2}, []float64{0.1, -0.2}
	if err := later.Validate(); err != nil {
		t.Fatalf("a later phase: %v", err)
	}
	for _, tt := range tests {
		s := good
		tt.edit(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want an error naming %q", s, err, tt.want)
		}
	}
}
