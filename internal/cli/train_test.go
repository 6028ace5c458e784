package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedRunLeavesNothing: a run that fails before its first checkpoint
// removes the folders it created; one that existed before is kept, and so
// is one holding a checkpoint.
func TestFailedRunLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{oops}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(dir, "new", "run")
	if _, _, err := run(t, "train", "--set", "run.dir="+runDir, "--set", "data.train="+bad); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind (%v)", filepath.Join(dir, "new"), err)
	}

	kept := filepath.Join(dir, "kept")
	if err := os.Mkdir(kept, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "train", "--set", "run.dir="+kept, "--set", "data.train="+bad); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a folder that existed before the run was removed: %v", err)
	}

}

// TestTrainRefusesWhatCannotFit: full fine-tuning of an 8B model on an 80
// GiB device is refused before anything loads (the model folder holds
// only config.json), with the numbers; --ignore-memory-plan goes on (and
// then fails on the missing weights).
func TestTrainRefusesWhatCannotFit(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join("..", "..", "experiments", "paper", "llama3-8b-instruct-vanilla.yaml")
	model := filepath.Join("..", "..", "trainer", "testdata", "llama-3-8b")
	args := []string{"train", "--config", cfg, "--set", "model.path=" + model, "--set", "run.dir=" + filepath.Join(dir, "run"), "--memory-gib", "80"}
	_, _, err := run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "111.8 GiB") || !strings.Contains(err.Error(), "--ignore-memory-plan") {
		t.Fatalf("err = %v, want the memory refusal", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("the refused run created its folder (%v)", err)
	}
	_, _, err = run(t, append(args, "--ignore-memory-plan")...)
	if err == nil || strings.Contains(err.Error(), "111.8 GiB") {
		t.Fatalf("with --ignore-memory-plan: err = %v, want a later failure", err)
	}
}
