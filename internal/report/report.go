// Package report draws prism's figures: scatter plots of the prompt-related
// against the prompt-free part of reward gaps, coloured by a pair tag, in
// the style of the paper's quadrant figures, and training curves of one
// run or several overlaid.
package report

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"prism/internal/fsutil"
)

// Point is one pair in a quadrant plot.
type Point struct {
	PromptFree, PromptRelated float64
	Group                     string
}

// Panel is one scatter plot.
type Panel struct {
	Title  string
	Points []Point
}

// palette colours groups in a fixed order: the paper draws its tagged
// pairs red and the rest blue.
var palette = []color.Color{
	color.NRGBA{R: 214, G: 39, B: 40, A: 200},
	color.NRGBA{R: 31, G: 119, B: 180, A: 200},
	color.NRGBA{R: 44, G: 160, B: 44, A: 200},
	color.NRGBA{R: 148, G: 103, B: 189, A: 200},
}

func panelPlot(p Panel) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = p.Title
	pl.X.Label.Text = "prompt-free gap Δr2"
	pl.Y.Label.Text = "prompt-related gap Δr1"
	groups := map[string]plotter.XYs{}
	for _, pt := range p.Points {
		groups[pt.Group] = append(groups[pt.Group], plotter.XY{X: pt.PromptFree, Y: pt.PromptRelated})
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	// "true" (the tagged pairs) first, so it gets red.
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "true") != (names[j] == "true") {
			return names[i] == "true"
		}
		return names[i] < names[j]
	})
	for i, g := range names {
		s, err := plotter.NewScatter(groups[g])
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color = palette[i%len(palette)]
		s.GlyphStyle.Radius = vg.Points(1.6)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		pl.Add(s)
		pl.Legend.Add(g, s)
	}
	pl.Legend.Top = true
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = color.Gray{Y: 160}
	pl.Add(zero, plotter.NewGrid())
	return pl, nil
}

// Quadrants writes panels stacked top to bottom as one PNG, atomically.
func Quadrants(path string, panels []Panel) error {
	if len(panels) == 0 {
		return fmt.Errorf("quadrant plot %s: no panels", path)
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		pl, err := panelPlot(p)
		if err != nil {
			return err
		}
		rows[i] = []*plot.Plot{pl}
	}
	w, h := 6*vg.Inch, vg.Length(len(panels))*4*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Millimeter * 4, PadX: vg.Millimeter * 2, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	return writePNG(path, img)
}

// writePNG writes img to path atomically (a temporary file renamed into
// place, the folder synced).
func writePNG(path string, img *vgimg.Canvas) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".plot-*.png")
	if err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	png := vgimg.PngCanvas{Canvas: img}
	if _, err := png.WriteTo(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
