// Package experiments runs paired comparisons: the same experiment trained
// vanilla (Bradley-Terry on every pair) and prioritised (the paper's
// decomposition), over several seeds and, optionally, over sweeps of one
// setting at a time, summarised as tables with paired statistics and as
// plots. The folders beside this file hold the experiment YAML files and
// their committed results.
package experiments

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"prism/configs"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/trainer"
)

// Arm is one training setting of a comparison: vanilla Bradley-Terry,
// prioritised by the decomposition, or vanilla on data augmented with
// prompt-swapped ties (train.prompt_swap_ties).
type Arm struct {
	Name        string
	Prioritised bool
	SwapTies    float64
}

// apply sets c's keys that make it this arm.
func (a Arm) apply(c *configs.Config) {
	c.Decomposition.Enabled, c.Train.PromptSwapTies = a.Prioritised, a.SwapTies
}

// Arms are the two settings compared by default; the first is the
// control every other arm is paired with.
var Arms = []Arm{{Name: "vanilla"}, {Name: "prioritised", Prioritised: true}}

// SwapArm is the third arm: the common alternative fix for prompt-blind
// reward models, with this fraction of prompt-swapped ties.
func SwapArm(fraction float64) Arm { return Arm{Name: "swap", SwapTies: fraction} }

// RunResult is one arm of one seed under one setting.
type RunResult struct {
	Setting        string  `json:"setting"` // "" for the base configuration, else key=value
	Arm            string  `json:"arm"`
	Seed           int64   `json:"seed"`
	TestAccuracy   float64 `json:"test_accuracy"`
	SwapSurvival   float64 `json:"test_swap_survival"`
	EvalAccuracy   float64 `json:"eval_accuracy"`
	TagShareBefore float64 `json:"tag_share_positive_before"`
	TagShareAfter  float64 `json:"tag_share_positive_after"`
	DecompSeconds  float64 `json:"decomposition_seconds"`
	WallSeconds    float64 `json:"wall_seconds"`
	Dir            string  `json:"dir"`
}

// Sweep varies one key over values, every other key as configured.
type Sweep struct {
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// ParseSweep reads "key=v1,v2,...".
func ParseSweep(s string) (Sweep, error) {
	key, vals, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok || key == "" || strings.TrimSpace(vals) == "" {
		return Sweep{}, fmt.Errorf("sweep %q: want key=value1,value2,...", s)
	}
	sw := Sweep{Key: key}
	seen := map[string]bool{}
	for _, v := range strings.Split(vals, ",") {
		v = strings.TrimSpace(v)
		if v == "" || seen[v] {
			return Sweep{}, fmt.Errorf("sweep %q: empty or repeated value %q", s, v)
		}
		seen[v] = true
		sw.Values = append(sw.Values, v)
	}
	return sw, nil
}

// Setting is one row of a sweep table: each arm's mean test accuracy and
// the paired statistics of each arm − the control (the first arm), seed
// by seed.
type Setting struct {
	Name  string             `json:"setting"`
	Means map[string]float64 `json:"mean_test_accuracy"`
	Diffs map[string]Paired  `json:"minus_control"`
}

// SweepResult is a sweep's table.
type SweepResult struct {
	Sweep
	Settings []Setting `json:"settings"`
}

// Summary is a whole comparison.
type Summary struct {
	Config string        `json:"config"`
	Seeds  int           `json:"seeds"`
	Arms   []string      `json:"arms"`
	Base   Setting       `json:"base"`
	Sweeps []SweepResult `json:"sweeps,omitempty"`
	Runs   []RunResult   `json:"runs"`
	Date   string        `json:"date"`
}

// Options describe a comparison.
type Options struct {
	// ConfigPath names the experiment in the summary; Load builds its
	// configuration with extra key=value overrides (a sweep's value),
	// validated as `prism train` validates.
	ConfigPath string
	Load       func(sets []string) (*configs.Config, error)
	Seeds      int
	Sweeps     []Sweep
	// Arms are trained per seed and setting (default Arms); the first is
	// the control.
	Arms []Arm
	// Out holds the runs: out/seed-N/ARM for the base setting,
	// out/KEY=VALUE/seed-N/ARM for a sweep's, and the summary and plots.
	Out      string
	Logger   *slog.Logger
	Progress io.Writer
}

// resultFile marks a finished run: a rerun of the comparison reads it
// instead of training again.
const resultFile = "compare-result.json"

// Compare trains every arm for seeds 1..Seeds under the base
// configuration and each sweep value (a run whose configuration equals an
// earlier one's, such as vanilla under a sweep of a decomposition key, is
// run once), resuming unfinished runs and reusing finished ones, and
// writes summary.json, summary.md and the plots to Out.
func Compare(ctx context.Context, o Options) (*Summary, error) {
	if o.Seeds < 1 {
		return nil, fmt.Errorf("seeds %d: want at least 1", o.Seeds)
	}
	if len(o.Arms) == 0 {
		o.Arms = Arms
	}
	if len(o.Arms) < 2 {
		return nil, fmt.Errorf("%d arms: a comparison needs a control and at least one more", len(o.Arms))
	}
	sum := &Summary{Config: o.ConfigPath, Seeds: o.Seeds, Date: time.Now().UTC().Format(time.RFC3339)}
	for _, a := range o.Arms {
		sum.Arms = append(sum.Arms, a.Name)
	}
	done := map[string]RunResult{} // by configuration hash
	type setting struct {
		name, dir string
		sets      []string
	}
	settings := []setting{{"", o.Out, nil}}
	for _, sw := range o.Sweeps {
		for _, v := range sw.Values {
			kv := sw.Key + "=" + v
			settings = append(settings, setting{kv, filepath.Join(o.Out, kv), []string{kv}})
		}
	}
	// Validate every setting before the first run.
	cfgs := make([]*configs.Config, len(settings))
	for i, s := range settings {
		c, err := o.Load(s.sets)
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", s.name, err)
		}
		for _, arm := range o.Arms {
			a := *c
			arm.apply(&a)
			if err := a.Validate(); err != nil {
				return nil, fmt.Errorf("%s, arm %s: %w", settingName(s.name), arm.Name, err)
			}
		}
		cfgs[i] = c
	}
	analyses := map[string][]report.Point{}
	for i, s := range settings {
		for seed := int64(1); seed <= int64(o.Seeds); seed++ {
			for _, arm := range o.Arms {
				c := *cfgs[i]
				c.Run.Seed = seed
				c.Run.Dir = filepath.Join(s.dir, fmt.Sprintf("seed-%d", seed), arm.Name)
				arm.apply(&c)
				key, err := identity(&c)
				if err != nil {
					return nil, err
				}
				r, ok := done[key]
				if !ok {
					var points []report.Point
					if r, points, err = runOne(ctx, o, &c, arm, seed); err != nil {
						return nil, fmt.Errorf("%s seed %d, %s: %w", settingName(s.name), seed, arm.Name, err)
					}
					done[key] = r
					if points != nil {
						analyses[r.Dir] = points
					}
				}
				r.Setting = s.name
				sum.Runs = append(sum.Runs, r)
			}
		}
	}
	sum.Base = summarise("base", sum.Runs, "", sum.Arms)
	for _, sw := range o.Sweeps {
		sr := SweepResult{Sweep: sw}
		for _, v := range sw.Values {
			sr.Settings = append(sr.Settings, summarise(v, sum.Runs, sw.Key+"="+v, sum.Arms))
		}
		sum.Sweeps = append(sum.Sweeps, sr)
	}
	if err := sum.plots(o.Out, analyses); err != nil {
		return nil, err
	}
	j, _ := json.MarshalIndent(sum, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(o.Out, "summary.json"), append(j, '\n')); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(o.Out, "summary.md"), []byte(sum.Markdown())); err != nil {
		return nil, err
	}
	return sum, nil
}

func settingName(s string) string {
	if s == "" {
		return "base"
	}
	return s
}

// identity is a run's configuration without its folder, and without the
// decomposition settings when the decomposition is off (they do not
// change the training; the final analysis of such a run shared across a
// sweep uses the first setting's): runs with equal identities train the
// same model.
func identity(c *configs.Config) (string, error) {
	cc := *c
	cc.Run.Dir = ""
	if !cc.Decomposition.Enabled {
		cc.Decomposition = configs.Decomposition{}
	}
	y, err := cc.YAML()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(y)
	return hex.EncodeToString(h[:]), nil
}

// runOne trains (or resumes) one run, or reads its result if it finished
// in an earlier call.
func runOne(ctx context.Context, o Options, c *configs.Config, arm Arm, seed int64) (RunResult, []report.Point, error) {
	path := filepath.Join(c.Run.Dir, resultFile)
	var r RunResult
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &r); err != nil {
			return r, nil, fmt.Errorf("%s: %w (delete it to rerun the run)", path, err)
		}
		var points []report.Point
		if b, err := os.ReadFile(filepath.Join(c.Run.Dir, "compare-analysis.json")); err == nil {
			json.Unmarshal(b, &points)
		}
		return r, points, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return r, nil, err
	}
	o.Logger.Info("compare", "seed", seed, "arm", arm.Name, "dir", c.Run.Dir)
	res, err := trainer.Run(ctx, c, trainer.Options{Resume: "auto", Logger: o.Logger, Progress: o.Progress})
	if err != nil {
		return r, nil, err
	}
	if res.Interrupted {
		return r, nil, errors.New("interrupted: run the same command again to continue")
	}
	if res.Test == nil {
		return r, nil, fmt.Errorf("%s has no shortcut-breaking test split (use a toy: task)", o.ConfigPath)
	}
	r = RunResult{Arm: arm.Name, Seed: seed, TestAccuracy: res.Test.Accuracy, SwapSurvival: res.SwapSurvival, TagShareBefore: res.TagShareBefore,
		TagShareAfter: res.TagShareAfter, DecompSeconds: res.DecompositionSeconds, WallSeconds: res.WallSeconds, Dir: c.Run.Dir}
	if res.Eval != nil {
		r.EvalAccuracy = res.Eval.Accuracy
	}
	pts, _ := json.Marshal(res.Analysis)
	if err := fsutil.WriteFileAtomic(filepath.Join(c.Run.Dir, "compare-analysis.json"), pts); err != nil {
		return r, nil, err
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	if err := fsutil.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return r, nil, err
	}
	return r, res.Analysis, nil
}

// summarise pairs each arm with the control (arms[0]) seed by seed.
func summarise(name string, runs []RunResult, setting string, arms []string) Setting {
	by := map[string]map[int64]float64{}
	for _, r := range runs {
		if r.Setting != setting {
			continue
		}
		if by[r.Arm] == nil {
			by[r.Arm] = map[int64]float64{}
		}
		by[r.Arm][r.Seed] = r.TestAccuracy
	}
	st := Setting{Name: name, Means: map[string]float64{}, Diffs: map[string]Paired{}}
	control := by[arms[0]]
	seeds := make([]int64, 0, len(control))
	for s := range control {
		seeds = append(seeds, s)
	}
	sort.Slice(seeds, func(i, j int) bool { return seeds[i] < seeds[j] })
	for k, arm := range arms {
		var acc, d []float64
		for _, s := range seeds {
			a, ok := by[arm][s]
			if !ok {
				continue
			}
			acc = append(acc, a)
			d = append(d, a-control[s])
		}
		st.Means[arm] = mean(acc)
		if k > 0 {
			st.Diffs[arm] = PairedDiff(d)
		}
	}
	return st
}

func mean(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// plots writes the quadrant plots (every seed up to 5, else the seeds
// where prioritised training did best and worst against vanilla) of the
// base setting, and one figure of the paired differences with their
// intervals per sweep.
func (s *Summary) plots(out string, analyses map[string][]report.Point) error {
	// The quadrant plots show the control and the second arm.
	type pair struct {
		seed int64
		runs [2]*RunResult
	}
	var pairs []pair
	for seed := int64(1); seed <= int64(s.Seeds); seed++ {
		p := pair{seed: seed}
		for i := range s.Runs {
			r := &s.Runs[i]
			if r.Setting != "" || r.Seed != seed {
				continue
			}
			switch r.Arm {
			case s.Arms[0]:
				p.runs[0] = r
			case s.Arms[1]:
				p.runs[1] = r
			}
		}
		if p.runs[0] != nil && p.runs[1] != nil {
			pairs = append(pairs, p)
		}
	}
	draw := func(name string, p pair) error {
		var panels []report.Panel
		for _, r := range p.runs {
			panels = append(panels, report.Panel{Title: fmt.Sprintf("%s (seed %d), test accuracy %.3f", r.Arm, p.seed, r.TestAccuracy), Points: analyses[r.Dir]})
		}
		return report.Quadrants(filepath.Join(out, name), panels)
	}
	if s.Seeds <= 5 {
		for _, p := range pairs {
			if err := draw(fmt.Sprintf("quadrants-seed-%d.png", p.seed), p); err != nil {
				return err
			}
		}
	} else if len(pairs) > 0 {
		sort.SliceStable(pairs, func(i, j int) bool {
			return pairs[i].runs[1].TestAccuracy-pairs[i].runs[0].TestAccuracy > pairs[j].runs[1].TestAccuracy-pairs[j].runs[0].TestAccuracy
		})
		if err := draw(fmt.Sprintf("quadrants-best-seed-%d.png", pairs[0].seed), pairs[0]); err != nil {
			return err
		}
		if err := draw(fmt.Sprintf("quadrants-worst-seed-%d.png", pairs[len(pairs)-1].seed), pairs[len(pairs)-1]); err != nil {
			return err
		}
	}
	// The paired differences with their intervals: the base setting's for
	// every arm, and each sweep's values for the second arm.
	var bars []report.Interval
	for _, arm := range s.Arms[1:] {
		d := s.Base.Diffs[arm]
		bars = append(bars, report.Interval{Label: arm, Mean: d.Mean, Low: d.TLow, High: d.THigh})
	}
	title := fmt.Sprintf("test accuracy − %s's, mean and 95%% t interval over %d seeds", s.Arms[0], s.Seeds)
	if err := report.Intervals(filepath.Join(out, "diff-arms.png"), title, bars); err != nil {
		return err
	}
	for _, sw := range s.Sweeps {
		bars = bars[:0]
		for _, st := range append([]Setting{s.Base}, sw.Settings...) {
			label := st.Name
			if label != "base" {
				label = sw.Key + "=" + label
			}
			d := st.Diffs[s.Arms[1]]
			bars = append(bars, report.Interval{Label: label, Mean: d.Mean, Low: d.TLow, High: d.THigh})
		}
		title := fmt.Sprintf("%s − %s test accuracy, mean and 95%% t interval over %d seeds", s.Arms[1], s.Arms[0], s.Seeds)
		if err := report.Intervals(filepath.Join(out, "diff-"+sanitize(sw.Key)+".png"), title, bars); err != nil {
			return err
		}
	}
	return nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == ' ' {
			return '_'
		}
		return r
	}, s)
}

// Markdown renders the tables: the base setting's arms and paired
// difference, one table per sweep, then every run.
func (s *Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: %s (%d seeds)\n\n", s.Config, strings.Join(s.Arms, " against "), s.Seeds)
	b.WriteString("| arm | test accuracy (shortcut-breaking split) | test preferences kept under a swapped prompt | held-out accuracy | tagged share of Δr2 > 0, first recompute | same, final model | decomposition share of wall time |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, arm := range s.Arms {
		var test, swap, eval, before, after, share []float64
		for _, r := range s.Runs {
			if r.Arm != arm || r.Setting != "" {
				continue
			}
			test = append(test, r.TestAccuracy)
			swap = append(swap, r.SwapSurvival)
			eval = append(eval, r.EvalAccuracy)
			if r.TagShareBefore >= 0 {
				before = append(before, r.TagShareBefore)
			}
			after = append(after, r.TagShareAfter)
			if r.WallSeconds > 0 {
				share = append(share, r.DecompSeconds/r.WallSeconds)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", arm, pm(test), pm(swap), pm(eval), pm(before), pm(after), pm(share))
	}
	fmt.Fprintf(&b, "\nPaired difference of test accuracy against %s, seed by seed (95%% intervals: Student's t over the seeds, and a percentile bootstrap of 10,000 resamples; a tie is |difference| < 0.001):\n\n", s.Arms[0])
	b.WriteString(diffHeader)
	for _, arm := range s.Arms[1:] {
		b.WriteString(diffRow("base", arm, s.Arms[0], s.Base))
	}
	for _, sw := range s.Sweeps {
		fmt.Fprintf(&b, "\nSweep of `%s` (every other key as in the base setting):\n\n", sw.Key)
		b.WriteString(diffHeader)
		for _, st := range sw.Settings {
			for _, arm := range s.Arms[1:] {
				b.WriteString(diffRow(st.Name, arm, s.Arms[0], st))
			}
		}
	}
	b.WriteString("\nPer run:\n\n| setting | seed | arm | test accuracy | kept under a swapped prompt | held-out accuracy | tagged share before | after | decomposition s | wall s |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range s.Runs {
		before := "n/a"
		if r.TagShareBefore >= 0 {
			before = fmt.Sprintf("%.3f", r.TagShareBefore)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %.3f | %.3f | %.3f | %s | %.3f | %.1f | %.1f |\n", settingName(r.Setting), r.Seed, r.Arm, r.TestAccuracy, r.SwapSurvival, r.EvalAccuracy, before, r.TagShareAfter, r.DecompSeconds, r.WallSeconds)
	}
	return b.String()
}

const diffHeader = "| setting | arm | control | arm's accuracy | difference | 95% t interval | 95% bootstrap | sd | wins / ties / losses |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"

func diffRow(name, arm, control string, st Setting) string {
	d := st.Diffs[arm]
	iv := func(lo, hi float64) string {
		if math.IsNaN(lo) {
			return "n/a"
		}
		return fmt.Sprintf("[%+.3f, %+.3f]", lo, hi)
	}
	return fmt.Sprintf("| %s | %s | %.3f | %.3f | %+.3f | %s | %s | %.3f | %d / %d / %d |\n", name, arm, st.Means[control], st.Means[arm], d.Mean,
		iv(d.TLow, d.THigh), iv(d.BootLow, d.BootHigh), d.SD, d.Wins, d.Ties, d.Losses)
}

// pm formats mean ± sample standard deviation.
func pm(x []float64) string {
	if len(x) == 0 {
		return "n/a"
	}
	m := mean(x)
	if len(x) == 1 {
		return fmt.Sprintf("%.3f", m)
	}
	var ss float64
	for _, v := range x {
		ss += (v - m) * (v - m)
	}
	return fmt.Sprintf("%.3f ± %.3f", m, math.Sqrt(ss/float64(len(x)-1)))
}
