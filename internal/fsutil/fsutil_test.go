package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestWritesNeverReplaceWhatIsNotTheirs: an atomic write replaces a
// regular file, or the regular file a symbolic link leads to (the link
// stays), and refuses folders, FIFOs, devices, dangling links and links to
// folders without touching them; a folder write refuses a file or a link
// in its place.
func TestWritesNeverReplaceWhatIsNotTheirs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target := mk("target.txt", "old")
	link := filepath.Join(dir, "link.txt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, []byte("new")); err != nil {
		t.Fatalf("write through a link to a regular file: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Errorf("the link's target holds %q, want new", b)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nothing", "here"), dangling); err != nil {
		t.Fatal(err)
	}
	dirLink := filepath.Join(dir, "dirlink")
	if err := os.Symlink(sub, dirLink); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, says string
	}{
		{fifo, "a FIFO"},
		{sub, "is a folder"},
		{dangling, "leads nowhere"},
		{dirLink, "is a folder"},
		{"/dev/null", "a character device"},
	} {
		before, _ := os.Lstat(tt.path)
		err := WriteFileAtomic(tt.path, []byte("x"))
		if !errors.Is(err, ErrNotReplaceable) || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("%s: %v, want ErrNotReplaceable saying %q", tt.path, err, tt.says)
		}
		if after, _ := os.Lstat(tt.path); before == nil || after == nil || before.Mode() != after.Mode() {
			t.Errorf("%s changed: %v -> %v", tt.path, before, after)
		}
	}

	file := mk("afile", "keep")
	for _, p := range []string{file, link} {
		err := WriteDirAtomic(p, func(string) error { t.Error("fill ran"); return nil })
		if !errors.Is(err, ErrNotReplaceable) {
			t.Errorf("folder write over %s: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Errorf("the file under a refused folder write holds %q", b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
