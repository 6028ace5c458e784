//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// writeWatch follows the trainer's atomic writes with inotify. A
// checkpoint is built in a temporary folder checkpoints/.step-N.tmp-X and
// the final model in .model.tmp-X, each renamed into place when complete;
// the watch sees the folder appear and the files created and written in it
// (and in its model/ folder) as it happens, so the kill can land right
// then, not a polling interval later.
type writeWatch struct {
	// The inotify instance: non-blocking, so that Close ends a Read. (Its
	// Fd method would make it blocking; fd is kept for the watch calls.)
	f      *os.File
	fd     int
	runDir string
	known  map[string]bool // temporary folders seen, relative to runDir

	runWD, ckWD int
	// inside maps the watches on the chosen temporary folder and its
	// model/ folder to their path within it ("" or "model/").
	inside map[int]string
}

// watchWrites starts watching runDir, which is created if needed; call it
// before the trainer starts so that no write is missed.
func watchWrites(runDir string) (*writeWatch, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &writeWatch{f: os.NewFile(uintptr(fd), "inotify"), fd: fd, runDir: runDir, known: map[string]bool{}, ckWD: -1, inside: map[int]string{}}
	if w.runWD, err = w.add(runDir, syscall.IN_CREATE|syscall.IN_MOVED_TO); err != nil {
		w.Close()
		return nil, err
	}
	if err := w.watchCheckpointsDir(); err != nil {
		w.Close()
		return nil, err
	}
	for _, rel := range w.scan() {
		w.known[rel] = true // leftovers of earlier kills
	}
	return w, nil
}

// Close ends the watch; a wait in progress returns an error.
func (w *writeWatch) Close() error { return w.f.Close() }

func (w *writeWatch) add(path string, mask uint32) (int, error) {
	wd, err := syscall.InotifyAddWatch(w.fd, path, mask)
	if err != nil {
		return -1, fmt.Errorf("inotify watch %s: %w", path, err)
	}
	return wd, nil
}

// watchCheckpointsDir watches the checkpoints folder if it exists.
func (w *writeWatch) watchCheckpointsDir() error {
	if w.ckWD >= 0 {
		return nil
	}
	wd, err := w.add(filepath.Join(w.runDir, checkpointsDir), syscall.IN_CREATE|syscall.IN_MOVED_TO)
	if errors.Is(err, syscall.ENOENT) {
		return nil // not yet: the run-folder watch reports its creation
	}
	if err != nil {
		return err
	}
	w.ckWD = wd
	return nil
}

// scan returns the temporary folders of the run and its checkpoints
// folder that the watch has not seen yet.
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

// wait blocks until the nth write from now into a temporary folder that
// want accepts (by its path relative to the run folder) has started and,
// in that folder, events more files have been created, written or renamed
// into place. It returns the folder and what happened last. When the nth
// write finishes before that many events, the next one is used.
func (w *writeWatch) wait(want func(rel string) bool, nth, events int) (tmp, moment string, err error) {
	seen, started := 0, 0
	// begin handles a new temporary folder; it reports whether to kill now.
	begin := func(rel string) (bool, error) {
		w.known[rel] = true
		if !want(rel) {
			return false, nil
		}
		if started++; started < nth {
			return false, nil
		}
		tmp = filepath.Join(w.runDir, rel)
		if events == 0 {
			return true, nil
		}
		wd, err := w.add(tmp, syscall.IN_CREATE|syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO|syscall.IN_MOVE_SELF|syscall.IN_DELETE_SELF)
		if errors.Is(err, syscall.ENOENT) {
			nth = started + 1 // finished before the watch: take the next
			return false, nil
		}
		if err != nil {
			return false, err
		}
		w.inside[wd] = ""
		return false, nil
	}
	buf := make([]byte, 64*(syscall.SizeofInotifyEvent+syscall.NAME_MAX+1))
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return "", "", err
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			name := strings.TrimRight(string(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+nameLen]), "\x00")
			off += syscall.SizeofInotifyEvent + nameLen

			var news []string
			switch {
			case wd == w.runWD && name == checkpointsDir:
				if err := w.watchCheckpointsDir(); err != nil {
					return "", "", err
				}
				news = w.scan() // created before the watch took hold
			case wd == w.runWD && isWriteTemp(name) && !w.known[name]:
				news = []string{name}
			case wd == w.ckWD:
				if rel := filepath.Join(checkpointsDir, name); isWriteTemp(rel) && !w.known[rel] {
					news = []string{rel}
				}
			}
			prefix, in := w.inside[wd]
			switch {
			case in && mask&(syscall.IN_MOVE_SELF|syscall.IN_DELETE_SELF|syscall.IN_IGNORED) != 0:
				// Renamed into place (or removed) before the chosen
				// event: aim at the next write.
				for wd := range w.inside {
					syscall.InotifyRmWatch(w.fd, uint32(wd))
				}
				clear(w.inside)
				nth, seen = started+1, 0
			case in:
				seen++
				moment = describeEvent(prefix+name, mask)
				if mask&syscall.IN_ISDIR != 0 && mask&syscall.IN_CREATE != 0 && prefix == "" {
					// Events in model/ before this watch holds are missed;
					// the count of events is random anyway.
					if mwd, err := w.add(filepath.Join(tmp, name), syscall.IN_CREATE|syscall.IN_CLOSE_WRITE|syscall.IN_MOVED_TO); err == nil {
						w.inside[mwd] = name + "/"
					}
				}
				if seen >= events {
					return tmp, moment, nil
				}
			}
			for _, rel := range news {
				kill, err := begin(rel)
				if err != nil {
					return "", "", err
				}
				if kill {
					return tmp, "its temporary folder appeared", nil
				}
			}
		}
	}
}

func describeEvent(name string, mask uint32) string {
	switch {
	case mask&syscall.IN_CLOSE_WRITE != 0:
		return name + " written"
	case mask&syscall.IN_MOVED_TO != 0:
		return name + " renamed into place"
	case mask&syscall.IN_ISDIR != 0:
		return name + "/ created"
	default:
		return name + " created"
	}
}
