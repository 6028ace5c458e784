package safetensors

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
)

// metadataKey is the reserved header key holding string-to-string metadata.
const metadataKey = "__metadata__"

// ParseHeader reads and validates the header of a safetensors file of the
// given size from r. name identifies the file in error messages.
//
// Every check happens before anything proportional to a size claimed by the
// file is allocated: the header length is bounded by MaxHeaderSize and by
// size, and tensor ranges must lie within the data buffer. Errors for
// malformed files wrap ErrInvalid; I/O errors are returned wrapped as they are.
func ParseHeader(r io.ReaderAt, size int64, name string) (*Header, error) {
	if size < 8 {
		return nil, invalidf(name, "file is %d bytes, too short for the 8-byte header length", size)
	}
	var prefix [8]byte
	if err := readFull(r, prefix[:], 0); err != nil {
		return nil, fmt.Errorf("%s: reading header length: %w", name, err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, invalidf(name, "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, invalidf(name, "header length %d exceeds the %d bytes that follow it", n, size-8)
	}
	buf := make([]byte, n)
	if err := readFull(r, buf, 8); err != nil {
		return nil, fmt.Errorf("%s: reading header: %w", name, err)
	}
	h, err := parseHeaderJSON(buf, size-8-int64(n))
	if err != nil {
		return nil, &invalidError{file: name, err: err}
	}
	h.DataStart = 8 + int64(n)
	return h, nil
}

// readFull fills p from r at off. ReaderAt may return io.EOF along with a
// full read at the end of the input; only a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// parseHeaderJSON decodes and validates the JSON header; dataLen is the size
// of the data buffer that follows it. Errors do not name the file.
func parseHeaderJSON(buf []byte, dataLen int64) (*Header, error) {
	dec, err := newStrictDecoder(buf)
	if err != nil {
		return nil, err
	}
	if err := openObject(dec, "header"); err != nil {
		return nil, err
	}
	h := &Header{}
	seen := make(map[string]bool)
	for dec.More() {
		key, err := readString(dec)
		if err != nil {
			return nil, err
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		if key == metadataKey {
			if h.Metadata, err = readMetadata(dec); err != nil {
				return nil, fmt.Errorf("%s: %w", metadataKey, err)
			}
			continue
		}
		if key == "" {
			return nil, errors.New("tensor name is empty")
		}
		info, err := readTensor(dec, dataLen)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		info.Name = key
		h.Tensors = append(h.Tensors, info)
	}
	if err := closeValue(dec); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the header object")
	}

	slices.SortFunc(h.Tensors, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Begin, b.Begin), cmp.Compare(a.End, b.End), cmp.Compare(a.Name, b.Name))
	})
	// Sorted by Begin, a range overlaps an earlier one exactly when it starts
	// before the furthest end seen so far. The format packs tensors with no
	// gaps and no trailing bytes, as the safetensors library checks: bytes
	// no tensor claims are refused too.
	var end int64
	var last string
	for _, t := range h.Tensors {
		if t.Begin < end {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d %d] overlap tensor %q", t.Name, t.Begin, t.End, last)
		}
		if t.Begin > end {
			return nil, fmt.Errorf("tensor %q: data_offsets [%d %d] leave %d bytes unclaimed before it (safetensors packs tensors without gaps)", t.Name, t.Begin, t.End, t.Begin-end)
		}
		if t.End > end {
			end, last = t.End, t.Name
		}
	}
	if end != dataLen {
		return nil, fmt.Errorf("the data buffer has %d bytes after the last tensor's (safetensors packs tensors without gaps)", dataLen-end)
	}
	return h, nil
}

// readTensor decodes one tensor entry and checks it against the data buffer.
func readTensor(dec *json.Decoder, dataLen int64) (TensorInfo, error) {
	var info TensorInfo
	if err := openObject(dec, "entry"); err != nil {
		return info, err
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		field, err := readString(dec)
		if err != nil {
			return info, err
		}
		switch field {
		case "dtype":
			if haveDType {
				return info, errors.New(`duplicate field "dtype"`)
			}
			haveDType = true
			s, err := readString(dec)
			if err != nil {
				return info, fmt.Errorf("dtype: %w", err)
			}
			info.DType = DType(s)
			if info.DType.Size() == 0 {
				return info, fmt.Errorf("unknown dtype %q", s)
			}
		case "shape":
			if haveShape {
				return info, errors.New(`duplicate field "shape"`)
			}
			haveShape = true
			if info.Shape, err = readInts(dec); err != nil {
				return info, fmt.Errorf("shape: %w", err)
			}
		case "data_offsets":
			if haveOffsets {
				return info, errors.New(`duplicate field "data_offsets"`)
			}
			haveOffsets = true
			offs, err := readInts(dec)
			if err != nil {
				return info, fmt.Errorf("data_offsets: %w", err)
			}
			if len(offs) != 2 {
				return info, fmt.Errorf("data_offsets has %d values, want 2", len(offs))
			}
			info.Begin, info.End = offs[0], offs[1]
		default:
			return info, fmt.Errorf("unknown field %q", field)
		}
	}
	if err := closeValue(dec); err != nil {
		return info, err
	}
	switch {
	case !haveDType:
		return info, errors.New(`missing field "dtype"`)
	case !haveShape:
		return info, errors.New(`missing field "shape"`)
	case !haveOffsets:
		return info, errors.New(`missing field "data_offsets"`)
	}

	want, err := byteSize(info.DType, info.Shape)
	if err != nil {
		return info, err
	}
	switch {
	case info.Begin < 0:
		return info, fmt.Errorf("data_offsets [%d %d] begin before the data buffer", info.Begin, info.End)
	case info.Begin > info.End:
		return info, fmt.Errorf("data_offsets [%d %d] begin after they end", info.Begin, info.End)
	case info.End > dataLen:
		return info, fmt.Errorf("data_offsets [%d %d] run past the %d-byte data buffer", info.Begin, info.End, dataLen)
	case info.End-info.Begin != want:
		return info, fmt.Errorf("shape %v of %s needs %d bytes but data_offsets span %d",
			info.Shape, info.DType, want, info.End-info.Begin)
	}
	return info, nil
}

// readMetadata decodes the "__metadata__" object, whose values must all be
// strings.
func readMetadata(dec *json.Decoder) (map[string]string, error) {
	if err := openObject(dec, "value"); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for dec.More() {
		key, err := readString(dec)
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		tok, err := next(dec)
		if err != nil {
			return nil, err
		}
		s, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("value of %q is %s, not a string", key, describe(tok))
		}
		m[key] = s
	}
	return m, closeValue(dec)
}

// newStrictDecoder checks what encoding/json would silently repair and
// returns a token decoder over buf. encoding/json turns invalid UTF-8 and
// unpaired surrogate escapes into U+FFFD, which would let distinct names
// collide or a name change on a round trip.
func newStrictDecoder(buf []byte) (*json.Decoder, error) {
	if !utf8.Valid(buf) {
		return nil, errors.New("JSON is not valid UTF-8")
	}
	if i := unpairedSurrogate(buf); i >= 0 {
		return nil, fmt.Errorf("JSON has an unpaired UTF-16 surrogate escape at byte %d", i)
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	return dec, nil
}

// unpairedSurrogate returns the offset of the first \u escape inside a JSON
// string that is a lone UTF-16 surrogate, or -1 if there is none. Malformed
// escapes are left for the decoder to report.
func unpairedSurrogate(b []byte) int {
	inString := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inString:
			inString = b[i] == '"'
		case b[i] == '"':
			inString = false
		case b[i] == '\\':
			if i+1 < len(b) && b[i+1] != 'u' {
				i++ // a one-character escape such as \" or \\
				continue
			}
			r, ok := hex4(b, i+2)
			if !ok {
				return -1
			}
			switch {
			case 0xD800 <= r && r < 0xDC00:
				if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
					if r2, ok := hex4(b, i+8); ok && 0xDC00 <= r2 && r2 < 0xE000 {
						i += 11
						continue
					}
				}
				return i
			case 0xDC00 <= r && r < 0xE000:
				return i
			}
			i += 5
		}
	}
	return -1
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	return rune(v), err == nil
}

// next returns the next JSON token, turning a premature end into an error.
func next(dec *json.Decoder) (json.Token, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return tok, nil
}

// openObject consumes the '{' that must start an object; what names the
// value in the error.
func openObject(dec *json.Decoder, what string) error {
	tok, err := next(dec)
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s is %s, not a JSON object", what, describe(tok))
	}
	return nil
}

// closeValue consumes the '}' or ']' ending the current object or array;
// callers reach it only once dec.More reports false.
func closeValue(dec *json.Decoder) error {
	_, err := next(dec)
	return err
}

func readString(dec *json.Decoder) (string, error) {
	tok, err := next(dec)
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("got %s, want a string", describe(tok))
	}
	return s, nil
}

// readInts decodes an array of integers that fit in int64.
func readInts(dec *json.Decoder) ([]int64, error) {
	tok, err := next(dec)
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("got %s, want an array of integers", describe(tok))
	}
	vals := []int64{}
	for dec.More() {
		tok, err := next(dec)
		if err != nil {
			return nil, err
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, fmt.Errorf("got %s, want an integer", describe(tok))
		}
		v, err := strconv.ParseInt(string(num), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s is not an integer in the int64 range", num)
		}
		vals = append(vals, v)
	}
	return vals, closeValue(dec)
}

// describe names a JSON token for error messages.
func describe(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return fmt.Sprintf("string %q", t)
	case json.Number:
		return "number " + string(t)
	case bool:
		return fmt.Sprintf("boolean %t", t)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", tok)
}
