package cli

import (
	"os"
	"path/filepath"
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
