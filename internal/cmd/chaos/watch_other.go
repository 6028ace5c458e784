//go:build !linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"time"
)

// writeWatch follows the trainer's atomic writes by polling the run and
// checkpoints folders (inotify, on Linux, sees them as they happen). It
// fires as soon as a temporary folder appears; events is ignored.
type writeWatch struct {
	runDir string
	known  map[string]bool
	done   chan struct{}
}

func watchWrites(runDir string) (*writeWatch, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	w := &writeWatch{runDir: runDir, known: map[string]bool{}, done: make(chan struct{})}
	for _, rel := range w.scan() {
		w.known[rel] = true
	}
	return w, nil
}

func (w *writeWatch) Close() error {
	close(w.done)
	return nil
}

func (w *writeWatch) scan() []string {
	var out []string
	for _, dir := range []string{".", checkpointsDir} {
		entries, _ := os.ReadDir(filepath.Join(w.runDir, dir))
		for _, e := range entries {
			rel := filepath.Join(dir, e.Name())
			if isWriteTemp(rel) && !w.known[rel] {
				out = append(out, rel)
			}
		}
	}
	return out
}

func (w *writeWatch) wait(want func(rel string) bool, nth, events int) (tmp, moment string, err error) {
	started := 0
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return "", "", errors.New("watch closed")
		case <-tick.C:
		}
		for _, rel := range w.scan() {
			w.known[rel] = true
			if !want(rel) {
				continue
			}
			if started++; started >= nth {
				return filepath.Join(w.runDir, rel), "its temporary folder appeared", nil
			}
		}
	}
}
