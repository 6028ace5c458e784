package safetensors

import (
	"fmt"
	"math"
	"os"
	"prism/internal/fsutil"
)

// File is an open safetensors file whose header has been validated. Its
// methods may be called concurrently.
type File struct {
	f      *os.File
	path   string
	header *Header
	byName map[string]int // index into header.Tensors
}

// Open opens the file at path and validates its header. The tensor data is
// read only on demand, by ReadRaw.
func Open(path string) (*File, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := ParseHeader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	byName := make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		byName[t.Name] = i
	}
	return &File{f: f, path: path, header: h, byName: byName}, nil
}

// Close closes the underlying file.
func (f *File) Close() error { return f.f.Close() }

// Header returns the parsed header. Callers must not modify it.
func (f *File) Header() *Header { return f.header }

// Lookup returns the tensor called name.
func (f *File) Lookup(name string) (TensorInfo, bool) {
	i, ok := f.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.header.Tensors[i], true
}

// ReadRaw returns the bytes of the tensor called name, exactly End-Begin of
// them, as stored: row-major and little-endian.
func (f *File) ReadRaw(name string) ([]byte, error) {
	info, ok := f.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %q", f.path, name)
	}
	n := info.End - info.Begin
	// The header was checked against the file size, so n is at most that;
	// it can still exceed int on 32-bit platforms.
	if n > math.MaxInt {
		return nil, fmt.Errorf("%s: tensor %q: %d bytes do not fit in memory", f.path, name, n)
	}
	buf := make([]byte, n)
	if err := readFull(f.f, buf, f.header.DataStart+info.Begin); err != nil {
		return nil, fmt.Errorf("%s: reading tensor %q: %w", f.path, name, err)
	}
	return buf, nil
}
