// Package experiments runs paired comparisons: the same experiment trained
// vanilla (Bradley-Terry on every pair) and prioritised (the paper's
// decomposition), over several seeds, summarised as a table and plots. The
// folders beside this file hold the experiment YAML files and their
// committed results.
package experiments

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"time"

	"prism/configs"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/trainer"
)

// Arm is one training setting of a comparison.
type Arm struct {
	Name        string
	Prioritised bool
}

// Arms are the two settings compared.
var Arms = []Arm{{"vanilla", false}, {"prioritised", true}}

// RunResult is one arm of one seed.
type RunResult struct {
	Arm            string  `json:"arm"`
	Seed           int64   `json:"seed"`
	TestAccuracy   float64 `json:"test_accuracy"`
	EvalAccuracy   float64 `json:"eval_accuracy"`
	TagShareBefore float64 `json:"tag_share_positive_before"`
	TagShareAfter  float64 `json:"tag_share_positive_after"`
	DecompSeconds  float64 `json:"decomposition_seconds"`
	WallSeconds    float64 `json:"wall_seconds"`
}

// Summary is a whole comparison.
type Summary struct {
	Config string      `json:"config"`
	Seeds  int         `json:"seeds"`
	Runs   []RunResult `json:"runs"`
	Date   string      `json:"date"`
}

// Compare trains cfg vanilla and prioritised for seeds 1..seeds, each run in
// out/seed-N/ARM (resuming any that an earlier call left unfinished), and
// writes summary.json, summary.md and one quadrant plot per seed to out.
func Compare(ctx context.Context, cfgPath string, cfg *configs.Config, seeds int, out string, logger *slog.Logger, progress io.Writer) (*Summary, error) {
	sum := &Summary{Config: cfgPath, Seeds: seeds, Date: time.Now().UTC().Format(time.RFC3339)}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		var panels []report.Panel
		for _, arm := range Arms {
			c := *cfg
			c.Run.Seed = seed
			c.Run.Dir = filepath.Join(out, fmt.Sprintf("seed-%d", seed), arm.Name)
			c.Decomposition.Enabled = arm.Prioritised
			logger.Info("compare", "seed", seed, "arm", arm.Name, "dir", c.Run.Dir)
			res, err := trainer.Run(ctx, &c, trainer.Options{Resume: "auto", Logger: logger, Progress: progress})
			if err != nil {
				return nil, fmt.Errorf("seed %d, %s: %w", seed, arm.Name, err)
			}
			if res.Interrupted {
				return nil, fmt.Errorf("interrupted during seed %d, %s: run the same command again to continue", seed, arm.Name)
			}
			if res.Test == nil {
				return nil, fmt.Errorf("%s has no shortcut-breaking test split (use a toy: task)", cfgPath)
			}
			r := RunResult{Arm: arm.Name, Seed: seed, TestAccuracy: res.Test.Accuracy, TagShareBefore: res.TagShareBefore,
				TagShareAfter: res.TagShareAfter, DecompSeconds: res.DecompositionSeconds, WallSeconds: res.WallSeconds}
			if res.Eval != nil {
				r.EvalAccuracy = res.Eval.Accuracy
			}
			sum.Runs = append(sum.Runs, r)
			panels = append(panels, report.Panel{Title: fmt.Sprintf("%s (seed %d), test accuracy %.3f", arm.Name, seed, r.TestAccuracy), Points: res.Analysis})
		}
		if err := report.Quadrants(filepath.Join(out, fmt.Sprintf("quadrants-seed-%d.png", seed)), panels); err != nil {
			return nil, err
		}
	}
	j, _ := json.MarshalIndent(sum, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(out, "summary.json"), append(j, '\n')); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(out, "summary.md"), []byte(sum.Markdown())); err != nil {
		return nil, err
	}
	return sum, nil
}

// Markdown renders the summary table: per arm, the mean ± std over seeds.
func (s *Summary) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: vanilla against prioritised (%d seeds)\n\n", s.Config, s.Seeds)
	b.WriteString("| arm | test accuracy (shortcut-breaking split) | held-out accuracy | tagged share of Δr2 > 0, first recompute | same, final model | decomposition share of wall time |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, arm := range Arms {
		var test, eval, before, after, share []float64
		for _, r := range s.Runs {
			if r.Arm != arm.Name {
				continue
			}
			test = append(test, r.TestAccuracy)
			eval = append(eval, r.EvalAccuracy)
			if r.TagShareBefore >= 0 {
				before = append(before, r.TagShareBefore)
			}
			after = append(after, r.TagShareAfter)
			if r.WallSeconds > 0 {
				share = append(share, r.DecompSeconds/r.WallSeconds)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", arm.Name, pm(test), pm(eval), pm(before), pm(after), pm(share))
	}
	b.WriteString("\nPer run:\n\n| seed | arm | test accuracy | held-out accuracy | tagged share before | after | decomposition s | wall s |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range s.Runs {
		before := "n/a"
		if r.TagShareBefore >= 0 {
			before = fmt.Sprintf("%.3f", r.TagShareBefore)
		}
		fmt.Fprintf(&b, "| %d | %s | %.3f | %.3f | %s | %.3f | %.1f | %.1f |\n", r.Seed, r.Arm, r.TestAccuracy, r.EvalAccuracy, before, r.TagShareAfter, r.DecompSeconds, r.WallSeconds)
	}
	return b.String()
}

// pm formats mean ± sample standard deviation.
func pm(x []float64) string {
	if len(x) == 0 {
		return "n/a"
	}
	var s float64
	for _, v := range x {
		s += v
	}
	mean := s / float64(len(x))
	if len(x) == 1 {
		return fmt.Sprintf("%.3f", mean)
	}
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return fmt.Sprintf("%.3f ± %.3f", mean, math.Sqrt(ss/float64(len(x)-1)))
}
