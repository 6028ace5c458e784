package configs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad: no experiment file panics the loader, and an accepted one
// validates.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("train:\n  steps: 3\n"))
	f.Add([]byte("run:\n  dir: x\ndecomposition:\n  enabled: true\n"))
	f.Add([]byte("train: [1, 2]\n"))
	f.Add([]byte("train:\n  learning_rate: .nan\n"))
	f.Add([]byte("- a\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "exp.yaml")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, nil, nil)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that does not validate: %v", err)
		}
	})
}
