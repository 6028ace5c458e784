package safetensors

import (
	"bytes"
	"testing"
)

func FuzzParseHeader(f *testing.F) {
	f.Add(withHeader(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},`+
		`"b":{"dtype":"BF16","shape":[1,3],"data_offsets":[8,14]},"c":{"dtype":"BOOL","shape":[],"data_offsets":[14,15]}} `, 16))
	f.Add(withHeader(`{"e":{"dtype":"I64","shape":[0],"data_offsets":[0,0]}}`, 0))
	f.Add(withHeader(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12))
	f.Add(withHeader(`{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}`, 8))
	f.Add(withHeader(`{"a\ud800":{"dtype":"F16","shape":[-1],"data_offsets":[2,0]}}`, 2))
	f.Add(assemble(1<<30, "{}", 90))
	f.Add([]byte{1, 2, 3})

	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseBytes(b)
		if err != nil {
			return
		}
		dataLen := int64(len(b)) - h.DataStart
		if h.DataStart < 8 || dataLen < 0 {
			t.Fatalf("DataStart %d outside a %d-byte file", h.DataStart, len(b))
		}
		var end int64
		for i, ti := range h.Tensors {
			if ti.Name == "" {
				t.Fatalf("tensor %d has an empty name", i)
			}
			if ti.Begin < 0 || ti.Begin > ti.End || ti.End > dataLen {
				t.Fatalf("tensor %q: range [%d %d] outside %d bytes of data", ti.Name, ti.Begin, ti.End, dataLen)
			}
			if ti.Begin < end {
				t.Fatalf("tensor %q: range [%d %d] overlaps or is out of order (previous end %d)", ti.Name, ti.Begin, ti.End, end)
			}
			end = max(end, ti.End)
			n, err := byteSize(ti.DType, ti.Shape)
			if err != nil || n != ti.End-ti.Begin {
				t.Fatalf("tensor %q: %s %v spans %d bytes, byteSize = %d, %v", ti.Name, ti.DType, ti.Shape, ti.End-ti.Begin, n, err)
			}
		}
		// ParseHeader must not depend on how the reader is wrapped.
		if _, err := ParseHeader(bytes.NewReader(b), int64(len(b)), "again"); err != nil {
			t.Fatalf("second parse failed: %v", err)
		}
	})
}
