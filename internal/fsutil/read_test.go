package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadsAreBoundedAndRegular: ReadFile and OpenRegular refuse FIFOs
// (without blocking on them), devices and folders, and ReadFile refuses a
// file over its cap, naming the file and the cap.
func TestReadsAreBoundedAndRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, tt := range []struct{ path, says string }{
			{fifo, "a FIFO"}, {"/dev/zero", "a character device"}, {dir, "is a folder"},
		} {
			if _, err := ReadFile(tt.path, 1<<20); !errors.Is(err, ErrNotRegularInput) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("ReadFile(%s): %v, want a refusal saying %q", tt.path, err, tt.says)
			}
			if f, err := OpenRegular(tt.path); err == nil {
				f.Close()
				t.Errorf("OpenRegular(%s) opened it", tt.path)
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reading a FIFO blocked")
	}
	if _, err := ReadFile(big, 2<<20); err == nil || !strings.Contains(err.Error(), "more than the 2 MiB") || !strings.Contains(err.Error(), big) {
		t.Errorf("a 3 MiB file under a 2 MiB cap: %v", err)
	}
	if b, err := ReadFile(small, 2<<20); err != nil || string(b) != "ok" {
		t.Errorf("a small file: %q, %v", b, err)
	}
}
