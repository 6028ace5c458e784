package fsutil

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Size caps of the files prism reads whole. Each is far above what real
// files of the kind hold (Llama 3's tokenizer.json is 9 MB) and far below
// what would exhaust memory: a path that points at /dev/zero or a huge file
// by mistake fails with the cap named instead.
const (
	// CapConfig bounds small JSON and YAML files: experiment files,
	// config.json, chat templates, manifests.
	CapConfig = 16 << 20
	// CapTokenizer bounds tokenizer.json and tokenizer_config.json.
	CapTokenizer = 512 << 20
	// CapState bounds a checkpoint's state.json (it lists the selected
	// pairs of a phase) and the metrics file a resumed run trims.
	CapState = 1 << 30
)

// ErrNotRegularInput marks an input that is not a regular file.
var ErrNotRegularInput = errors.New("not a regular file")

// checkRegular fails unless path (after symbolic links) is a regular file:
// a FIFO would block the open until a writer comes, a device would never
// end, a folder is a mistake.
func checkRegular(path string) (fs.FileInfo, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	switch {
	case fi.IsDir():
		return nil, fmt.Errorf("%s is a folder, not a file: %w", path, ErrNotRegularInput)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is %s, not a file prism can read: %w", path, kind(fi.Mode()), ErrNotRegularInput)
	}
	return fi, nil
}

// OpenRegular opens path for reading after checking it is a regular file.
func OpenRegular(path string) (*os.File, error) {
	if _, err := checkRegular(path); err != nil {
		return nil, err
	}
	return os.Open(path)
}

// ReadFile reads the regular file at path whole, refusing it when it is
// larger than limit bytes (the error names the file, its size and the
// cap).
func ReadFile(path string, limit int64) ([]byte, error) {
	fi, err := checkRegular(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d MiB prism reads for a file of this kind", path, fi.Size(), limit>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The size can grow after the check: read one byte past the cap to see.
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is more than the %d MiB prism reads for a file of this kind", path, limit>>20)
	}
	return b, nil
}
