// Package fsutil writes files and folders so that a crash never leaves a
// half-written one where a complete one is expected: write to a temporary
// name, fsync, rename, fsync the parent folder.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotReplaceable marks an output path that prism will not replace: a
// folder where a file goes, a file where a folder goes, a device, a FIFO,
// a socket, or a symbolic link that leads to none of what is expected.
var ErrNotReplaceable = errors.New("prism replaces only regular files and its own folders")

// fileTarget is where an atomic write of path lands: path itself when it
// is missing or a regular file, or, for a symbolic link, the file it leads
// to (followed on purpose: the link stays and its target is replaced, so a
// link into a results folder keeps working). Anything else is refused
// before a byte is written: renaming over it would replace a device (as
// root, /dev/null or /dev/full) or a folder with a regular file.
func fileTarget(path string) (string, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			return "", fmt.Errorf("%s is a symbolic link that leads nowhere usable (%v): %w", path, err, ErrNotReplaceable)
		}
		if fi, err = os.Stat(resolved); err != nil {
			return "", err
		}
		path = resolved
	}
	switch {
	case fi.IsDir():
		return "", fmt.Errorf("%s is a folder, not a file: %w", path, ErrNotReplaceable)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s is not a regular file (%s): %w", path, kind(fi.Mode()), ErrNotReplaceable)
	}
	return path, nil
}

// kind names a file mode for people.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}

// CheckFileTarget says whether WriteFileAtomic may write path, before any
// work is done.
func CheckFileTarget(path string) error {
	_, err := fileTarget(path)
	return err
}

// CheckDirTarget checks, before any work, that an output folder can be
// written: it is missing (it will be made) or a folder (a link to one is
// followed); anything else is an error naming it.
func CheckDirTarget(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if _, lerr := os.Lstat(path); lerr == nil {
			return fmt.Errorf("%s is a symbolic link that leads nowhere: %w", path, ErrNotReplaceable)
		}
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		what := "a file"
		if !fi.Mode().IsRegular() {
			what = kind(fi.Mode())
		}
		return fmt.Errorf("%s is %s, not a folder to write into: %w", path, what, ErrNotReplaceable)
	}
	return nil
}

// WriteFileSync writes data to path and fsyncs it. It is for files inside a
// folder that WriteDirAtomic publishes; use WriteFileAtomic for a file that
// stands alone.
func WriteFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}

// WriteFileAtomic replaces path with data: readers see the old file or the
// new one, never a part. Only regular files are replaced; a symbolic link's
// target is (see fileTarget).
func WriteFileAtomic(path string, data []byte) error {
	path, err := fileTarget(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(filepath.Dir(path))
}

// WriteDirAtomic builds a folder with fill, in a temporary folder next to
// dir, then puts it in place of dir. If fill or any step fails, the
// temporary folder is removed and dir is left as it was. dir must be
// missing or a real folder: a file or a symbolic link there is refused
// before fill runs, since replacing it would delete what it is or leads
// to from the user's point of view.
func WriteDirAtomic(dir string, fill func(tmp string) error) error {
	if fi, err := os.Lstat(dir); err == nil && (fi.Mode()&fs.ModeSymlink != 0 || !fi.IsDir()) {
		what := "a file"
		if fi.Mode()&fs.ModeSymlink != 0 {
			what = "a symbolic link"
		}
		return fmt.Errorf("%s is %s, not a folder prism can replace: %w", dir, what, ErrNotReplaceable)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if err := SyncDir(tmp); err != nil {
		return err
	}
	var old string
	if _, err := os.Stat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			_ = os.Rename(old, dir)
		}
		return err
	}
	ok = true
	if old != "" {
		if err := os.RemoveAll(old); err != nil {
			return err
		}
	}
	return SyncDir(parent)
}

// SyncDir fsyncs a folder, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
