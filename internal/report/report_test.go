package report

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

func TestQuadrantsWritesPNG(t *testing.T) {
	p := filepath.Join(t.TempDir(), "q.png")
	pts := []Point{{1, 2, "true"}, {-1, 0.5, "false"}, {0.3, -2, "true"}}
	if err := Quadrants(p, []Panel{{"a", pts}, {"b", pts}}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() < 100 || b.Dy() <= b.Dx() {
		t.Errorf("two stacked panels give a %dx%d image", b.Dx(), b.Dy())
	}
	// The tagged group is drawn red: some pixel must be clearly red.
	red := false
	for y := b.Min.Y; y < b.Max.Y && !red; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 > 180 && g>>8 < 90 && bl>>8 < 90 {
				red = true
				break
			}
		}
	}
	if !red {
		t.Error("no red point in the plot")
	}
	if err := Quadrants(p, nil); err == nil {
		t.Error("no panels accepted")
	}
}
