package torchpickle

import (
	"archive/zip"
	"errors"
	"io"
	"testing"
)

// FuzzRun: no pickle program makes the interpreter panic or run away.
func FuzzRun(f *testing.F) {
	zr, err := zip.OpenReader("testdata/state.pt")
	if err != nil {
		f.Fatal(err)
	}
	for _, zf := range zr.File {
		if len(zf.Name) > 8 && zf.Name[len(zf.Name)-8:] == "data.pkl" {
			r, _ := zf.Open()
			b, _ := io.ReadAll(r)
			r.Close()
			f.Add(b)
		}
	}
	zr.Close()
	f.Add([]byte("\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u."))
	f.Fuzz(func(t *testing.T, p []byte) {
		// Every failure is a malformed file, reported as such.
		if _, err := run(p); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("run: %v does not wrap ErrInvalid", err)
		}
	})
}
