package report

import (
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Interval is one setting's estimate with its interval.
type Interval struct {
	Label           string
	Mean, Low, High float64 // Low and High NaN: no interval
}

// Intervals draws one point per setting with its interval as an error
// bar, and the zero line, as a PNG written atomically.
func Intervals(path, title string, bars []Interval) error {
	if len(bars) == 0 {
		return fmt.Errorf("interval plot %s: no settings", path)
	}
	pl := plot.New()
	pl.Title.Text = title
	pl.Y.Label.Text = "difference"
	var pts plotter.XYs
	var errs plotter.YErrors
	var names []string
	for i, b := range bars {
		pts = append(pts, plotter.XY{X: float64(i), Y: b.Mean})
		lo, hi := 0.0, 0.0
		if !math.IsNaN(b.Low) {
			lo, hi = b.Mean-b.Low, b.High-b.Mean
		}
		errs = append(errs, struct{ Low, High float64 }{lo, hi})
		names = append(names, b.Label)
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Shape, sc.GlyphStyle.Radius, sc.GlyphStyle.Color = draw.CircleGlyph{}, vg.Points(3), runColours[0]
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{pts, errs})
	if err != nil {
		return err
	}
	eb.Color, eb.Width, eb.CapWidth = runColours[0], vg.Points(1.5), vg.Points(8)
	zero := plotter.NewFunction(func(float64) float64 { return 0 })
	zero.Color = color.Gray{Y: 120}
	zero.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	pl.Add(plotter.NewGrid(), zero, eb, sc)
	pl.NominalX(names...)
	pl.X.Min, pl.X.Max = -0.5, float64(len(bars))-0.5
	w := max(5*vg.Inch, vg.Length(len(bars))*1.3*vg.Inch)
	img := vgimg.New(w, 3.5*vg.Inch)
	pl.Draw(draw.New(img))
	return writePNG(path, img)
}
