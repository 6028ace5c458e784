package trainer

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMissingAncestor(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ path, want string }{
		{dir, ""},
		{filepath.Join(dir, "run"), filepath.Join(dir, "run")},
		{filepath.Join(dir, "a", "b", "run"), filepath.Join(dir, "a")},
	}
	for _, tt := range tests {
		if got := missingAncestor(tt.path); got != tt.want {
			t.Errorf("missingAncestor(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestRemoveUnstarted: a folder that holds a checkpoint or a model is a run
// to keep; one that holds neither is removed.
func TestRemoveUnstarted(t *testing.T) {
	for _, kept := range []string{checkpointDir, modelSubdir} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.MkdirAll(filepath.Join(dir, kept), 0o755); err != nil {
			t.Fatal(err)
		}
		removeUnstarted(dir, dir)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("a run folder with %s was removed: %v", kept, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removeUnstarted(dir, dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("an unstarted run folder was kept: %v", err)
	}
}
