package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// Tensor is one tensor to write: Data holds its bytes, row-major and
// little-endian.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// headerEntry is a tensor's entry in the JSON header, fields in the order
// Hugging Face writes them.
type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Write writes tensors and metadata to path as a safetensors file. Tensor
// data is laid out in the order given; header keys are sorted, and the
// header is padded with spaces so the data starts 8-byte aligned.
//
// The write is atomic: the file is written to a temporary file in the same
// folder, synced, and renamed over path, and the folder is then synced. On
// failure the temporary file is removed and path is left as it was.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	header, err := encodeHeader(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if err := writeAndClose(tmp, header, tensors); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	// Without syncing the folder, a crash can lose the rename even though
	// the data itself reached the disk.
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// encodeHeader validates tensors and metadata and returns the length prefix
// and padded JSON header.
func encodeHeader(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	entries := make(map[string]any, len(tensors)+1)
	var offset int64
	for _, t := range tensors {
		switch {
		case t.Name == "":
			return nil, errors.New("tensor name is empty")
		case t.Name == metadataKey:
			return nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		case !utf8.ValidString(t.Name):
			return nil, fmt.Errorf("tensor name %q is not valid UTF-8", t.Name)
		}
		if _, dup := entries[t.Name]; dup {
			return nil, fmt.Errorf("tensor %q appears twice", t.Name)
		}
		want, err := byteSize(t.DType, t.Shape)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if int64(len(t.Data)) != want {
			return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, got %d",
				t.Name, t.Shape, t.DType, want, len(t.Data))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{} // a scalar: encode [] rather than null
		}
		entries[t.Name] = headerEntry{t.DType, shape, [2]int64{offset, offset + want}}
		offset += want
	}
	if len(metadata) > 0 {
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, fmt.Errorf("metadata %q: not valid UTF-8", k)
			}
		}
		entries[metadataKey] = metadata
	}

	var buf bytes.Buffer
	buf.Write(make([]byte, 8)) // room for the length prefix
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(entries); err != nil { // maps encode with sorted keys
		return nil, fmt.Errorf("encoding header: %w", err)
	}
	buf.Truncate(buf.Len() - 1) // Encode's trailing newline
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	b := buf.Bytes()
	n := len(b) - 8
	if n > MaxHeaderSize {
		return nil, fmt.Errorf("header is %d bytes, over the %d-byte limit", n, MaxHeaderSize)
	}
	binary.LittleEndian.PutUint64(b, uint64(n))
	return b, nil
}

// writeAndClose writes the file body to f, syncs and closes it.
func writeAndClose(f *os.File, header []byte, tensors []Tensor) error {
	w := bufio.NewWriterSize(f, 1<<20)
	w.Write(header)
	for _, t := range tensors {
		w.Write(t.Data)
	}
	err := w.Flush() // bufio.Writer keeps the first write error
	if err == nil {
		// CreateTemp makes files 0600; a checkpoint should be as readable
		// as one written by os.WriteFile.
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
