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

// TestCheckDirTarget: an output folder may be missing, a folder or a link
// to one; a file, a device or a dangling link is refused by name.
func TestCheckDirTarget(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	toDir := filepath.Join(dir, "to-dir")
	if err := os.Symlink(dir, toDir); err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{dir, toDir, filepath.Join(dir, "new")} {
		if err := CheckDirTarget(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for path, want := range map[string]string{file: "is a file", "/dev/null": "character device", dangling: "leads nowhere"} {
		if err := CheckDirTarget(path); !errors.Is(err, ErrNotReplaceable) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
}
