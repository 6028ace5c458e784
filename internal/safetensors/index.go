package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"prism/internal/fsutil"
	"strings"
)

// maxIndexSize bounds a sharded checkpoint's index file, which lists one
// line per tensor and is far smaller than this in practice.
const maxIndexSize = MaxHeaderSize

// ReadIndex reads a sharded checkpoint's index, such as
// model.safetensors.index.json, and returns its weight map: tensor name to
// the shard file holding it. Shard names must be plain file names, so the
// index cannot point outside its folder. The "metadata" object is accepted
// and ignored; any other key is an error. Errors for malformed indexes wrap
// ErrInvalid.
func ReadIndex(path string) (map[string]string, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxIndexSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(buf) > maxIndexSize {
		return nil, invalidf(path, "index is over the %d-byte limit", maxIndexSize)
	}
	m, err := parseIndex(buf)
	if err != nil {
		return nil, &invalidError{file: path, err: err}
	}
	return m, nil
}

func parseIndex(buf []byte) (map[string]string, error) {
	dec, err := newStrictDecoder(buf)
	if err != nil {
		return nil, err
	}
	if err := openObject(dec, "index"); err != nil {
		return nil, err
	}
	var weights map[string]string
	seenMetadata := false
	for dec.More() {
		key, err := readString(dec)
		if err != nil {
			return nil, err
		}
		switch key {
		case "metadata":
			if seenMetadata {
				return nil, errors.New(`duplicate key "metadata"`)
			}
			seenMetadata = true
			// Values here are free-form (total_size is a number), so only
			// the shape is checked.
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, fmt.Errorf("metadata: invalid JSON: %w", err)
			}
			if bytes.TrimSpace(raw)[0] != '{' {
				return nil, errors.New("metadata is not a JSON object")
			}
		case "weight_map":
			if weights != nil {
				return nil, errors.New(`duplicate key "weight_map"`)
			}
			if weights, err = readWeightMap(dec); err != nil {
				return nil, fmt.Errorf("weight_map: %w", err)
			}
		default:
			return nil, fmt.Errorf("unknown key %q", key)
		}
	}
	if err := closeValue(dec); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the index object")
	}
	if weights == nil {
		return nil, errors.New(`missing key "weight_map"`)
	}
	return weights, nil
}

func readWeightMap(dec *json.Decoder) (map[string]string, error) {
	if err := openObject(dec, "value"); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for dec.More() {
		name, err := readString(dec)
		if err != nil {
			return nil, err
		}
		if name == "" {
			return nil, errors.New("tensor name is empty")
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("duplicate tensor %q", name)
		}
		shard, err := readString(dec)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if !plainFileName(shard) {
			return nil, fmt.Errorf("tensor %q: shard %q is not a plain file name", name, shard)
		}
		m[name] = shard
	}
	return m, closeValue(dec)
}

// plainFileName reports whether s names a file in the current folder: no
// separators of any platform, no "..", no NUL.
func plainFileName(s string) bool {
	return s != "" && s != "." && !strings.Contains(s, "..") && !strings.ContainsAny(s, "/\\\x00")
}
