package report

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series are (step, value) points.
type Series struct{ Step, Value []float64 }

func (s *Series) add(step, v float64) {
	if !math.IsNaN(v) && !math.IsInf(v, 0) {
		s.Step, s.Value = append(s.Step, step), append(s.Value, v)
	}
}

// FreeGaps is the distribution of Δr2 over the candidate pool at one
// recompute: its 10th, 50th and 90th percentiles.
type FreeGaps struct {
	Step          float64
	P10, P50, P90 float64
}

// Curves are one run's training curves, read from its folder.
type Curves struct {
	Name                               string
	Loss, Accuracy, LR, GradNorm       Series
	EvalLoss, EvalAccuracy, EvalMargin Series
	Free                               []FreeGaps
}

// ReadCurves reads a run folder's metrics.jsonl and the Δr2 tables of its
// recomputes (decomposition/step-*.csv). A last line cut short by a
// crash is left out; any other malformed line is an error naming it.
func ReadCurves(dir string) (*Curves, error) {
	path := filepath.Join(dir, "metrics.jsonl")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not a run folder (no metrics.jsonl): %w", dir, err)
	}
	defer f.Close()
	c := &Curves{Name: filepath.Base(filepath.Clean(dir))}
	r := bufio.NewReader(f)
	for line := 1; ; line++ {
		raw, err := r.ReadBytes('\n')
		if len(raw) > 0 && raw[len(raw)-1] != '\n' && errors.Is(err, io.EOF) {
			break // a row being written, or cut by a crash
		}
		if len(strings.TrimSpace(string(raw))) > 0 {
			var row map[string]any
			if jerr := json.Unmarshal(raw, &row); jerr != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, jerr)
			}
			c.addRow(row)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "decomposition", "step-*.csv"))
	sort.Strings(tables)
	for _, t := range tables {
		g, err := readFreeGaps(t)
		if err != nil {
			return nil, err
		}
		c.Free = append(c.Free, g)
	}
	return c, nil
}

func num(row map[string]any, key string) float64 {
	if v, ok := row[key].(float64); ok {
		return v
	}
	return math.NaN()
}

func (c *Curves) addRow(row map[string]any) {
	step := num(row, "step")
	if math.IsNaN(step) {
		return
	}
	switch row["kind"] {
	case "train":
		if skipped, _ := row["skipped"].(bool); skipped {
			return
		}
		c.Loss.add(step, num(row, "loss"))
		c.Accuracy.add(step, num(row, "accuracy"))
		c.LR.add(step, num(row, "lr"))
		c.GradNorm.add(step, num(row, "grad_norm"))
	case "eval":
		c.EvalLoss.add(step, num(row, "eval_loss"))
		c.EvalAccuracy.add(step, num(row, "eval_accuracy"))
		c.EvalMargin.add(step, num(row, "eval_margin"))
	}
}

// readFreeGaps summarises one recompute's table (its prompt_free column);
// the step is in the file name.
func readFreeGaps(path string) (FreeGaps, error) {
	name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "step-"), ".csv")
	step, err := strconv.Atoi(name)
	if err != nil {
		return FreeGaps{}, fmt.Errorf("%s: the name does not hold a step", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return FreeGaps{}, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return FreeGaps{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(rows) < 2 {
		return FreeGaps{}, fmt.Errorf("%s: no pairs", path)
	}
	col := -1
	for i, h := range rows[0] {
		if h == "prompt_free" {
			col = i
		}
	}
	if col < 0 {
		return FreeGaps{}, fmt.Errorf("%s: no prompt_free column", path)
	}
	var v []float64
	for i, r := range rows[1:] {
		x, err := strconv.ParseFloat(r[col], 64)
		if err != nil {
			return FreeGaps{}, fmt.Errorf("%s:%d: prompt_free: %w", path, i+2, err)
		}
		v = append(v, x)
	}
	sort.Float64s(v)
	q := func(p float64) float64 { return v[int(math.Round(p*float64(len(v)-1)))] }
	return FreeGaps{Step: float64(step), P10: q(0.1), P50: q(0.5), P90: q(0.9)}, nil
}

// smooth is the running mean of v over a window of about 1/50 of it.
func smooth(s Series) Series {
	w := max(1, len(s.Value)/50)
	out := Series{Step: s.Step, Value: make([]float64, len(s.Value))}
	sum := 0.0
	for i, x := range s.Value {
		sum += x
		if i >= w {
			sum -= s.Value[i-w]
		}
		out.Value[i] = sum / float64(min(i+1, w))
	}
	return out
}

var runColours = []color.Color{
	color.NRGBA{R: 31, G: 119, B: 180, A: 255},
	color.NRGBA{R: 214, G: 39, B: 40, A: 255},
	color.NRGBA{R: 44, G: 160, B: 44, A: 255},
	color.NRGBA{R: 255, G: 127, B: 14, A: 255},
	color.NRGBA{R: 148, G: 103, B: 189, A: 255},
	color.NRGBA{R: 140, G: 86, B: 75, A: 255},
}

// WriteCurves draws runs overlaid, one colour each, as one PNG written
// atomically: training loss and accuracy (running means, with the
// held-out values as dashed lines and points), learning rate, gradient
// norm, the held-out margin, and for prioritised runs the 10th, 50th and
// 90th percentiles of Δr2 over the pool at each recompute.
func WriteCurves(path string, runs []*Curves) error {
	if len(runs) == 0 {
		return fmt.Errorf("curves %s: no runs", path)
	}
	type panel struct {
		title, y string
		lines    func(c *Curves) []line
	}
	panels := []panel{
		{"loss", "Bradley-Terry loss", func(c *Curves) []line {
			return []line{{s: smooth(c.Loss), label: "train"}, {s: c.EvalLoss, label: "held-out", dashed: true, points: true}}
		}},
		{"accuracy", "pairwise accuracy", func(c *Curves) []line {
			return []line{{s: smooth(c.Accuracy), label: "train"}, {s: c.EvalAccuracy, label: "held-out", dashed: true, points: true}}
		}},
		{"learning rate", "lr", func(c *Curves) []line { return []line{{s: c.LR}} }},
		{"gradient norm", "‖g‖ before clipping", func(c *Curves) []line { return []line{{s: smooth(c.GradNorm)}} }},
		{"held-out margin", "mean r(chosen) − r(rejected)", func(c *Curves) []line {
			return []line{{s: c.EvalMargin, points: true}}
		}},
		{"Δr2 over the pool at each recompute", "Δr2: 10th, 50th, 90th percentile", func(c *Curves) []line {
			var p10, p50, p90 Series
			for _, g := range c.Free {
				p10.add(g.Step, g.P10)
				p50.add(g.Step, g.P50)
				p90.add(g.Step, g.P90)
			}
			return []line{{s: p50, points: true, label: "median"}, {s: p10, dashed: true, label: "10th and 90th percentiles"}, {s: p90, dashed: true}}
		}},
	}
	const cols = 3
	rows := make([][]*plot.Plot, (len(panels)+cols-1)/cols)
	for i, p := range panels {
		pl := plot.New()
		pl.Title.Text = p.title
		pl.X.Label.Text = "step"
		pl.Y.Label.Text = p.y
		pl.Add(plotter.NewGrid())
		for k, c := range runs {
			col := runColours[k%len(runColours)]
			for j, l := range p.lines(c) {
				if len(l.s.Step) == 0 {
					continue
				}
				// One run: the lines' own labels; several: each run's
				// first line by the run's name, the others by both.
				label := l.label
				if len(runs) > 1 {
					switch {
					case j == 0:
						label = c.Name
					case l.label != "":
						label = c.Name + " " + l.label
					}
				}
				if err := l.draw(pl, col, label); err != nil {
					return err
				}
			}
		}
		pl.Legend.Top = true
		rows[i/cols] = append(rows[i/cols], pl)
	}
	w, h := vg.Length(cols)*4.5*vg.Inch, vg.Length(len(rows))*3.5*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: cols, PadY: vg.Millimeter * 4, PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		for j := range rows[i] {
			rows[i][j].Draw(canvases[i][j])
		}
	}
	return writePNG(path, img)
}

// line is one series of a panel.
type line struct {
	s              Series
	label          string
	dashed, points bool
}

func (l line) draw(pl *plot.Plot, col color.Color, label string) error {
	xy := make(plotter.XYs, len(l.s.Step))
	for i := range xy {
		xy[i] = plotter.XY{X: l.s.Step[i], Y: l.s.Value[i]}
	}
	ln, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	ln.Color, ln.Width = col, vg.Points(1.2)
	if l.dashed {
		ln.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	pl.Add(ln)
	if label != "" {
		pl.Legend.Add(label, ln)
	}
	if l.points {
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = col, vg.Points(2), draw.CircleGlyph{}
		pl.Add(sc)
	}
	return nil
}
