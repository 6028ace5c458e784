package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDirAtomic(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "model")
	write := func(content string, fail bool) error {
		return WriteDirAtomic(dir, func(tmp string) error {
			if err := WriteFileSync(filepath.Join(tmp, "f"), []byte(content)); err != nil {
				return err
			}
			if fail {
				return errors.New("boom")
			}
			return nil
		})
	}
	if err := write("one", false); err != nil {
		t.Fatal(err)
	}
	if err := write("two", true); err == nil {
		t.Fatal("failure not reported")
	}
	b, err := os.ReadFile(filepath.Join(dir, "f"))
	if err != nil || string(b) != "one" {
		t.Fatalf("after a failed replace: %q, %v", b, err)
	}
	if err := write("three", false); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "f"))
	if string(b) != "three" {
		t.Fatalf("replace gave %q", b)
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 1 {
		t.Fatalf("leftovers next to the folder: %v", entries)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.json")
	for _, s := range []string{"a", "bb"} {
		if err := WriteFileAtomic(p, []byte(s)); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		if string(b) != s {
			t.Fatalf("got %q want %q", b, s)
		}
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "y"), []byte("z")); err == nil {
		t.Fatal("write into a missing folder succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}
