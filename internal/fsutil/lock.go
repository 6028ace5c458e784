package fsutil

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// ErrLocked reports a lock that another process (or another open of the
// same file) holds.
var ErrLocked = errors.New("in use")

// Lock takes an exclusive advisory lock (flock) on path, creating the
// file, and writes owner into it so that a process refused later can say
// who holds it. It never waits: a held lock is an error wrapping
// ErrLocked that quotes the holder's owner line. release unlocks and
// removes the file. The lock goes with the process, so one that dies
// leaves a file any later Lock takes over.
func Lock(path, owner string) (release func(), err error) {
	// The file can be removed by a releasing holder between our open and
	// our flock; a lock on a removed file guards nothing, so check that
	// the path still names what was locked, and start again if not.
	for range 8 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			holder, _ := os.ReadFile(path)
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				h := strings.TrimSpace(string(holder))
				if h == "" {
					h = "another process"
				}
				return nil, fmt.Errorf("%w by %s", ErrLocked, h)
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !samePath(f, path) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteString(owner + "\n")
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() {
			os.Remove(path) // while still locked: no one can be holding the name
			f.Close()
		}, nil
	}
	return nil, fmt.Errorf("lock %s: the file kept being replaced", path)
}

// samePath says whether path still names the open file f.
func samePath(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}
