package torchpickle

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"prism/internal/safetensors"
)

// TestReadsStateDict: every tensor of a state dict that torch.save wrote
// (testdata/gen.py) comes back with its dtype, shape and values, views into
// shared storages included.
func TestReadsStateDict(t *testing.T) {
	got, err := ReadFile("testdata/state.pt")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/values.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]struct {
		Shape  []int64   `json:"shape"`
		Values []float32 `json:"values"`
	}
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	dtypes := map[string]safetensors.DType{"a.weight": safetensors.F32, "b.half": safetensors.F16, "c.bf16": safetensors.BF16,
		"d.view": safetensors.F32, "e.whole": safetensors.F32, "f.scalar": safetensors.F32, "g.empty": safetensors.F32}
	var names []string
	for _, tn := range got {
		names = append(names, tn.Name)
		w, ok := want[tn.Name]
		if !ok {
			t.Errorf("unexpected tensor %q", tn.Name)
			continue
		}
		if tn.DType != dtypes[tn.Name] || !slices.Equal(tn.Shape, w.Shape) {
			t.Errorf("%s: %s %v, want %s %v", tn.Name, tn.DType, tn.Shape, dtypes[tn.Name], w.Shape)
			continue
		}
		v, err := safetensors.ToFloat32(safetensors.TensorInfo{Name: tn.Name, DType: tn.DType, Shape: tn.Shape}, tn.Data)
		if err != nil {
			t.Errorf("%s: %v", tn.Name, err)
			continue
		}
		if !slices.Equal(v, w.Values) && !(len(v) == 0 && len(w.Values) == 0) {
			t.Errorf("%s = %v, want %v", tn.Name, v, w.Values)
		}
	}
	if want := []string{"a.weight", "b.half", "c.bf16", "d.view", "e.whole", "f.scalar", "g.empty"}; !slices.Equal(names, want) {
		t.Errorf("tensors %v, want %v in file order", names, want)
	}
}

// TestRefusesCode: a pickle that names any callable beyond the state-dict
// ones is refused before anything is called.
func TestRefusesCode(t *testing.T) {
	os.Remove("/tmp/torchpickle-pwned")
	_, err := ReadFile("testdata/evil.pt")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "system") || !strings.Contains(err.Error(), "never runs code") {
		t.Fatalf("err = %v; want a refusal naming the global", err)
	}
	if _, err := os.Stat("/tmp/torchpickle-pwned"); err == nil {
		t.Fatal("the pickle's code ran")
	}
}

func TestRefusesNonContiguous(t *testing.T) {
	_, err := ReadFile("testdata/strided.pt")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "not contiguous") {
		t.Fatalf("err = %v; want a non-contiguous refusal", err)
	}
}

// rezip rewrites state.pt with one entry replaced (nil removes it).
func rezip(t *testing.T, replace map[string][]byte) string {
	t.Helper()
	zr, err := zip.OpenReader("testdata/state.pt")
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range zr.File {
		data, ok := replace[filepath.Base(f.Name)]
		if !ok {
			r, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			b.ReadFrom(r)
			r.Close()
			data = b.Bytes()
		} else if data == nil {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	p := filepath.Join(t.TempDir(), "x.pt")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadFiles(t *testing.T) {
	notZip := filepath.Join(t.TempDir(), "legacy.bin")
	os.WriteFile(notZip, []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."), 0o644)
	tests := []struct {
		name, path, want string
	}{
		{"legacy format", notZip, "not a zip archive"},
		{"missing storage", rezip(t, map[string][]byte{"0": nil}), "storage 0 is missing"},
		{"short storage", rezip(t, map[string][]byte{"0": {1, 2, 3}}), "storage 0 has 3 bytes"},
		{"truncated pickle", rezip(t, map[string][]byte{"data.pkl": {0x80, 0x02, '}', 'q'}}), "ends inside an instruction"},
		{"no STOP", rezip(t, map[string][]byte{"data.pkl": {0x80, 0x02, '}'}}), "no STOP"},
		{"not a dict", rezip(t, map[string][]byte{"data.pkl": {0x80, 0x02, 'K', 7, '.'}}), "holds a int"},
		{"unknown opcode", rezip(t, map[string][]byte{"data.pkl": {0x80, 0x02, 'i', '.'}}), "opcode 0x69"},
		{"stack underflow", rezip(t, map[string][]byte{"data.pkl": {0x80, 0x02, 't', '.'}}), "no mark"},
		{"exec global", rezip(t, map[string][]byte{"data.pkl": []byte("\x80\x02cbuiltins\nexec\nq\x00.")}), "builtins.exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("err = %v; want it to name %s and say %q", err, tt.path, tt.want)
			}
		})
	}
}
