package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLock: a second Lock of a held file is refused at once, naming the
// holder; after release the file is gone and the lock can be taken again;
// a stale file (its holder died: no flock on it) is taken over.
func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	release, err := Lock(path, "pid 1 first")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(path, "pid 2 second")
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid 1 first") {
		t.Fatalf("second Lock = %v, want ErrLocked naming the holder", err)
	}
	release()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("released lock file still there: %v", err)
	}
	if err := os.WriteFile(path, []byte("pid 3 died\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	release, err = Lock(path, "pid 4")
	if err != nil {
		t.Fatalf("stale lock file not taken over: %v", err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != "pid 4\n" {
		t.Errorf("lock file holds %q, want the new owner", b)
	}
	release()
	if _, err := Lock(filepath.Join(t.TempDir(), "no", "such", "dir"), "x"); err == nil || errors.Is(err, ErrLocked) {
		t.Errorf("lock in a missing folder: %v", err)
	}
}
