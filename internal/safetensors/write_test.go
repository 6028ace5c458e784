package safetensors

import (
	"bytes"
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.safetensors")
	vals := map[DType][]float32{
		F32:  {1, -2.5, 3.25, 1e-3, 7, 8},
		BF16: {1, -2.5, 0.5, 256, -0.125, 3},
		F16:  {1, -2.5, 65504, 0x1p-24, 0.125, -0.75},
	}
	var tensors []Tensor
	// Writing out of name order checks data follows the given order.
	for _, tc := range []struct {
		name  string
		dtype DType
		shape []int64
	}{
		{"z.f32", F32, []int64{2, 3}},
		{"a.bf16", BF16, []int64{6}},
		{"m.f16", F16, []int64{3, 1, 2}},
	} {
		raw, err := EncodeFloat32(tc.dtype, vals[tc.dtype])
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, Tensor{Name: tc.name, DType: tc.dtype, Shape: tc.shape, Data: raw})
	}
	tensors = append(tensors,
		Tensor{Name: "ids", DType: I32, Shape: []int64{3}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0}},
		Tensor{Name: "scalar", DType: U8, Data: []byte{42}},
		Tensor{Name: "empty", DType: F32, Shape: []int64{0, 4}},
	)
	meta := map[string]string{"format": "pt", "note": `quotes " and <html> & é`}
	if err := Write(path, tensors, meta); err != nil {
		t.Fatal(err)
	}

	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := f.Header()
	if h.DataStart%8 != 0 {
		t.Errorf("DataStart = %d, want a multiple of 8", h.DataStart)
	}
	if !maps.Equal(h.Metadata, meta) {
		t.Errorf("Metadata = %q, want %q", h.Metadata, meta)
	}
	var order []string
	for _, ti := range h.Tensors {
		order = append(order, ti.Name)
	}
	if want := []string{"z.f32", "a.bf16", "m.f16", "ids", "scalar", "empty"}; !slices.Equal(order, want) {
		t.Errorf("tensors by offset = %q, want %q", order, want)
	}
	for _, want := range tensors {
		info, ok := f.Lookup(want.Name)
		if !ok {
			t.Fatalf("Lookup(%q) failed", want.Name)
		}
		if info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) && len(want.Shape) > 0 {
			t.Errorf("%s: got %s %v, want %s %v", want.Name, info.DType, info.Shape, want.DType, want.Shape)
		}
		raw, err := f.ReadRaw(want.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want.Data) {
			t.Errorf("%s: ReadRaw = %v, want %v", want.Name, raw, want.Data)
		}
		if v, ok := vals[want.DType]; ok && want.Name != "empty" {
			got, err := ToFloat32(info, raw)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, v) {
				t.Errorf("%s: values %v, want %v", want.Name, got, v)
			}
		}
	}
	if _, ok := f.Lookup("missing"); ok {
		t.Error(`Lookup("missing") succeeded`)
	}
	if _, err := f.ReadRaw("missing"); err == nil || !strings.Contains(err.Error(), `no tensor "missing"`) {
		t.Errorf(`ReadRaw("missing") err = %v`, err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("folder holds %d entries, want just the file", len(entries))
	}
}

// TestWriteLayout pins the exact bytes: sorted keys, HF field order, space
// padding to an 8-byte data start.
func TestWriteLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	tensors := []Tensor{
		{Name: "b", DType: U8, Shape: []int64{2}, Data: []byte{1, 2}},
		{Name: "a", DType: I16, Shape: []int64{1}, Data: []byte{3, 4}},
	}
	if err := Write(path, tensors, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"k":"v"},"a":{"dtype":"I16","shape":[1],"data_offsets":[2,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	want := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	want = append(append(want, header...), 1, 2, 3, 4)
	if !bytes.Equal(got, want) {
		t.Errorf("file =\n%q\nwant\n%q", got, want)
	}
}

func TestWriteOverwrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []Tensor{{Name: "a", DType: U8, Shape: []int64{1}, Data: []byte{9}}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if raw, err := f.ReadRaw("a"); err != nil || !bytes.Equal(raw, []byte{9}) {
		t.Errorf("ReadRaw = %v, %v; want [9]", raw, err)
	}
	if f.Header().Metadata != nil {
		t.Errorf("Metadata = %q, want nil", f.Header().Metadata)
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	ok := Tensor{Name: "ok", DType: F32, Shape: []int64{1}, Data: make([]byte, 4)}
	tests := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
		want    string
	}{
		{"data length mismatch", []Tensor{ok, {Name: "w", DType: F32, Shape: []int64{2, 2}, Data: make([]byte, 12)}}, nil,
			`tensor "w": shape [2 2] of F32 needs 16 bytes, got 12`},
		{"duplicate name", []Tensor{ok, ok}, nil, `tensor "ok" appears twice`},
		{"empty name", []Tensor{{DType: U8, Shape: []int64{1}, Data: []byte{1}}}, nil, "tensor name is empty"},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int64{1}, Data: []byte{1}}}, nil, "reserved"},
		{"non-UTF-8 name", []Tensor{{Name: "a\xff", DType: U8, Shape: []int64{1}, Data: []byte{1}}}, nil, "not valid UTF-8"},
		{"unknown dtype", []Tensor{{Name: "u", DType: "F8", Shape: []int64{1}, Data: []byte{1}}}, nil, `tensor "u": unknown dtype "F8"`},
		{"negative dim", []Tensor{{Name: "n", DType: U8, Shape: []int64{-1}}}, nil, `tensor "n": shape [-1] has negative dimension`},
		{"overflow", []Tensor{{Name: "o", DType: F32, Shape: []int64{1 << 40, 1 << 40}}}, nil, `tensor "o": shape`},
		{"non-UTF-8 metadata", []Tensor{ok}, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.safetensors")
			err := Write(path, tt.tensors, tt.meta)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Errorf("err = %v, want %q prefixed with the path", err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("folder holds %v after a failed write", entries)
			}
		})
	}

	// A failure after the temporary file exists: renaming over a folder.
	dir := t.TempDir()
	path := filepath.Join(dir, "out.safetensors")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []Tensor{ok}, nil); err == nil {
		t.Error("Write over a folder succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 || entries[0].Name() != "out.safetensors" {
		t.Errorf("folder holds %v after a failed rename, want only out.safetensors", entries)
	}

	if err := Write(filepath.Join(dir, "missing", "x.safetensors"), []Tensor{ok}, nil); err == nil {
		t.Error("Write into a missing folder succeeded")
	}
}
