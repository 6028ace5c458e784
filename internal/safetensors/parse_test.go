package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// assemble builds file bytes: the length prefix n (which may lie), the
// header text, then dataLen zero bytes of data.
func assemble(n uint64, header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, n)
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// withHeader is assemble with the true header length.
func withHeader(header string, dataLen int) []byte {
	return assemble(uint64(len(header)), header, dataLen)
}

func parseBytes(b []byte) (*Header, error) {
	return ParseHeader(bytes.NewReader(b), int64(len(b)), "bad.safetensors")
}

func TestParseHeaderValid(t *testing.T) {
	header := `{"b":{"dtype":"F32","shape":[2,3],"data_offsets":[2,26]},` +
		`"__metadata__":{"format":"pt","note":"é \u00e9 \ud83d\ude00"},` +
		`"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},` +
		`"z":{"dtype":"I64","shape":[0,5],"data_offsets":[26,26]}}    `
	b := withHeader(header, 26)
	h, err := parseBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []TensorInfo{
		{Name: "a", DType: BF16, Shape: []int64{}, Begin: 0, End: 2},
		{Name: "b", DType: F32, Shape: []int64{2, 3}, Begin: 2, End: 26},
		{Name: "z", DType: I64, Shape: []int64{0, 5}, Begin: 26, End: 26},
	}
	if !slices.EqualFunc(h.Tensors, want, func(a, b TensorInfo) bool {
		return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && a.Begin == b.Begin && a.End == b.End
	}) {
		t.Errorf("Tensors = %+v, want %+v", h.Tensors, want)
	}
	if h.DataStart != int64(8+len(header)) {
		t.Errorf("DataStart = %d, want %d", h.DataStart, 8+len(header))
	}
	if h.Metadata["format"] != "pt" || h.Metadata["note"] != "é é 😀" || len(h.Metadata) != 2 {
		t.Errorf("Metadata = %q", h.Metadata)
	}
}

func TestParseHeaderEmpty(t *testing.T) {
	h, err := parseBytes(withHeader("{}", 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 0 || h.Metadata != nil || h.DataStart != 10 {
		t.Errorf("got %+v, want no tensors, nil metadata, DataStart 10", h)
	}
}

func TestParseHeaderMalformed(t *testing.T) {
	// entry formats one tensor entry with the given fields.
	entry := func(dtype, shape, offsets string) string {
		return `{"dtype":` + dtype + `,"shape":` + shape + `,"data_offsets":` + offsets + `}`
	}
	f32x2 := entry(`"F32"`, `[2]`, `[0,8]`)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"shorter than 8 bytes", []byte{1, 0, 0}, "3 bytes, too short"},
		{"empty file", nil, "0 bytes, too short"},
		{"header length past end", assemble(50, "{}", 0), "header length 50 exceeds the 2 bytes"},
		{"1 GiB header in 100 bytes", assemble(1<<30, "{}", 90), "header length 1073741824 exceeds the 104857600-byte limit"},
		{"50 MiB header in 100 bytes", assemble(50<<20, "{}", 90), "header length 52428800 exceeds the 92 bytes"},
		{"max uint64 header length", assemble(1<<64-1, "{}", 0), "exceeds the 104857600-byte limit"},
		{"zero header length", withHeader("", 0), "invalid JSON"},
		{"invalid JSON", withHeader(`{"a":`, 0), "invalid JSON"},
		{"unterminated object", withHeader(`{"a":`+f32x2, 8), "invalid JSON"},
		{"array instead of object", withHeader(`[]`, 0), "header is an array, not a JSON object"},
		{"string instead of object", withHeader(`"x"`, 0), `header is string "x", not a JSON object`},
		{"trailing data", withHeader(`{}{}`, 0), "trailing data"},
		{"non-UTF-8 name", withHeader("{\"a\xff\":"+f32x2+"}", 8), "not valid UTF-8"},
		{"lone surrogate escape", withHeader(`{"a\udc00":`+f32x2+`}`, 8), "unpaired UTF-16 surrogate"},
		{"high surrogate without low", withHeader(`{"a\ud800x":`+f32x2+`}`, 8), "unpaired UTF-16 surrogate"},
		{"empty name", withHeader(`{"":`+f32x2+`}`, 8), "tensor name is empty"},
		{"duplicate name", withHeader(`{"a":`+f32x2+`,"a":`+entry(`"F32"`, `[2]`, `[8,16]`)+`}`, 16), `duplicate key "a"`},
		{"duplicate metadata", withHeader(`{"__metadata__":{},"__metadata__":{}}`, 0), `duplicate key "__metadata__"`},
		{"entry not an object", withHeader(`{"a":[1]}`, 0), `tensor "a": entry is an array, not a JSON object`},
		{"unknown dtype", withHeader(`{"a":`+entry(`"F8"`, `[2]`, `[0,2]`)+`}`, 2), `tensor "a": unknown dtype "F8"`},
		{"lowercase dtype", withHeader(`{"a":`+entry(`"f32"`, `[2]`, `[0,8]`)+`}`, 8), `unknown dtype "f32"`},
		{"dtype not a string", withHeader(`{"a":`+entry(`4`, `[2]`, `[0,8]`)+`}`, 8), `tensor "a": dtype: got number 4, want a string`},
		{"negative dim", withHeader(`{"a":`+entry(`"F32"`, `[2,-1]`, `[0,8]`)+`}`, 8), "negative dimension -1"},
		{"fractional dim", withHeader(`{"a":`+entry(`"F32"`, `[2.5]`, `[0,8]`)+`}`, 8), "2.5 is not an integer"},
		{"dim beyond int64", withHeader(`{"a":`+entry(`"F32"`, `[9223372036854775808]`, `[0,8]`)+`}`, 8), "not an integer in the int64 range"},
		{"shape not an array", withHeader(`{"a":`+entry(`"F32"`, `2`, `[0,8]`)+`}`, 8), "want an array of integers"},
		{"element count overflow", withHeader(`{"a":`+entry(`"F32"`, `[4294967296,4294967296,16]`, `[0,8]`)+`}`, 8), "overflows int64"},
		{"byte count overflow", withHeader(`{"a":`+entry(`"F64"`, `[1152921504606846976,2]`, `[0,8]`)+`}`, 8), "overflows int64"},
		{"byte length disagrees with shape", withHeader(`{"a.weight":`+entry(`"F32"`, `[2,3]`, `[0,20]`)+`}`, 24),
			`bad.safetensors: tensor "a.weight": shape [2 3] of F32 needs 24 bytes but data_offsets span 20`},
		{"offsets beyond data", withHeader(`{"a":`+entry(`"F32"`, `[2]`, `[4,12]`)+`}`, 8), "run past the 8-byte data buffer"},
		{"begin after end", withHeader(`{"a":`+entry(`"F32"`, `[0]`, `[8,0]`)+`}`, 8), "begin after they end"},
		{"negative begin", withHeader(`{"a":`+entry(`"F32"`, `[2]`, `[-8,0]`)+`}`, 8), "begin before the data buffer"},
		{"three offsets", withHeader(`{"a":`+entry(`"F32"`, `[2]`, `[0,8,8]`)+`}`, 8), "data_offsets has 3 values, want 2"},
		{"overlapping ranges", withHeader(`{"a":`+f32x2+`,"b":`+entry(`"F32"`, `[2]`, `[4,12]`)+`}`, 12),
			`tensor "b": data_offsets [4 12] overlap tensor "a"`},
		{"empty tensor inside another", withHeader(`{"a":`+f32x2+`,"b":`+entry(`"F32"`, `[0]`, `[4,4]`)+`}`, 8), "overlap"},
		{"identical ranges", withHeader(`{"a":`+f32x2+`,"b":`+f32x2+`}`, 8), "overlap"},
		// Packed with no gaps and nothing after the last tensor, as the
		// safetensors library requires.
		{"gap between tensors", withHeader(`{"a":`+f32x2+`,"b":`+entry(`"F32"`, `[2]`, `[12,20]`)+`}`, 20),
			`tensor "b": data_offsets [12 20] leave 4 bytes unclaimed before it`},
		{"gap before the first tensor", withHeader(`{"a":`+entry(`"F32"`, `[2]`, `[4,12]`)+`}`, 12), "leave 4 bytes unclaimed"},
		{"bytes after the last tensor", withHeader(`{"a":`+f32x2+`}`, 16), "8 bytes after the last tensor"},
		{"data and no tensors", withHeader(`{}`, 4), "4 bytes after the last tensor"},
		{"unknown field", withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}`, 8), `unknown field "extra"`},
		{"duplicate field", withHeader(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 8), `duplicate field "dtype"`},
		{"missing data_offsets", withHeader(`{"a":{"dtype":"F32","shape":[2]}}`, 8), `missing field "data_offsets"`},
		{"metadata value not a string", withHeader(`{"__metadata__":{"epoch":3}}`, 0), `__metadata__: value of "epoch" is number 3, not a string`},
		{"metadata value null", withHeader(`{"__metadata__":{"k":null}}`, 0), "is null, not a string"},
		{"metadata not an object", withHeader(`{"__metadata__":["x"]}`, 0), "__metadata__: value is an array, not a JSON object"},
		{"metadata null", withHeader(`{"__metadata__":null}`, 0), "value is null, not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := parseBytes(tt.file)
			if err == nil {
				t.Fatalf("ParseHeader succeeded with %+v, want error containing %q", h, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if !strings.HasPrefix(err.Error(), "bad.safetensors: ") {
				t.Errorf("error %q does not start with the file name", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// recordingReader records the largest read asked of it.
type recordingReader struct {
	r       io.ReaderAt
	maxRead int
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	r.maxRead = max(r.maxRead, len(p))
	return r.r.ReadAt(p, off)
}

// TestParseHeaderHugeLengthAllocatesNothing checks that a lying length
// prefix is rejected before a buffer of the claimed size exists.
func TestParseHeaderHugeLengthAllocatesNothing(t *testing.T) {
	for _, n := range []uint64{1 << 30, 50 << 20} {
		b := assemble(n, "{}", 90)
		rr := &recordingReader{r: bytes.NewReader(b)}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := ParseHeader(rr, int64(len(b)), "huge")
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrInvalid) {
			t.Fatalf("length %d: err = %v, want ErrInvalid", n, err)
		}
		if rr.maxRead > 8 {
			t.Errorf("length %d: read %d bytes at once, want only the 8-byte prefix", n, rr.maxRead)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
			t.Errorf("length %d: allocated %d bytes", n, got)
		}
		allocs := testing.AllocsPerRun(10, func() { ParseHeader(rr, int64(len(b)), "huge") })
		if allocs > 8 {
			t.Errorf("length %d: %v allocations per call, want a handful", n, allocs)
		}
	}
}

type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestParseHeaderIOErrorIsNotInvalid(t *testing.T) {
	_, err := ParseHeader(failingReader{}, 100, "x.safetensors")
	if err == nil || errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("err = %v, want the read error, not ErrInvalid", err)
	}
	// A size larger than the input is a short read, not a malformed file.
	b := assemble(20, "{}", 0)
	_, err = ParseHeader(bytes.NewReader(b), 1000, "x.safetensors")
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestUnpairedSurrogate(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`{"a":"b"}`, -1},
		{`{"\ud83d\ude00":1}`, -1},
		{`{"\\ud800":1}`, -1}, // an escaped backslash, then plain text
		{`{"\"\ud800":1}`, 4},
		{`{"\udc00":1}`, 2},
		{`{"\ud800\u0041":1}`, 2},
		{`{"\ud800`, 2},
		{`{"\u12`, -1}, // malformed: the decoder reports it
		{`\udc00`, -1}, // outside a string
	}
	for _, tt := range tests {
		if got := unpairedSurrogate([]byte(tt.in)); got != tt.want {
			t.Errorf("unpairedSurrogate(%s) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestDTypeSize(t *testing.T) {
	sizes := map[DType]int{F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, "F8_E4M3": 0, "": 0, "f32": 0}
	for d, want := range sizes {
		if got := d.Size(); got != want {
			t.Errorf("%q.Size() = %d, want %d", d, got, want)
		}
	}
}
