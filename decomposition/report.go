package decomposition

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"prism/data"
	"prism/internal/fsutil"
	"prism/internal/report"
)

// Views are what the estimator needs of training pairs.
func Views(pairs []data.Pair) []Pair {
	out := make([]Pair, len(pairs))
	for i, p := range pairs {
		out[i] = Pair{Prompt: p.Prompt, Y1: p.Chosen, Y2: p.Rejected}
	}
	return out
}

// PromptPool lists the distinct prompts of pairs, in first-seen order: the
// prompts a pair's responses are scored under.
func PromptPool(pairs []data.Pair) [][]int64 {
	seen := map[string]bool{}
	var out [][]int64
	for _, p := range pairs {
		k := fmt.Sprint(p.Prompt)
		if !seen[k] {
			seen[k] = true
			out = append(out, p.Prompt)
		}
	}
	return out
}

// MeanESS is the mean effective sample size of the estimates' weights.
func MeanESS(ests []PairEstimate) float64 {
	var s float64
	for _, e := range ests {
		s += e.ESS
	}
	return s / float64(max(1, len(ests)))
}

// PlotTag picks the tag that colours plots: want, or else the first tag
// (in name order) of the first tagged pair.
func PlotTag(want string, pairs []data.Pair) string {
	if want != "" {
		return want
	}
	for _, p := range pairs {
		if keys := sortedKeys(p.Tags); len(keys) > 0 {
			return keys[0]
		}
	}
	return ""
}

// TagShare is the share of pairs with a positive prompt-free gap whose
// tag is "true" (the paper's red pairs in the right half of its figure);
// all[idx[i]] is the pair of ests[i].
func TagShare(all []data.Pair, idx []int, ests []PairEstimate, tag string) float64 {
	pos, tagged := 0, 0
	for i, j := range idx {
		if ests[i].PromptFree > 0 {
			pos++
			if all[j].Tags[tag] == "true" {
				tagged++
			}
		}
	}
	if pos == 0 {
		return 0
	}
	return float64(tagged) / float64(pos)
}

// Points places each estimate on the quadrant plot, grouped by its pair's
// tag.
func Points(all []data.Pair, idx []int, ests []PairEstimate, tag string) []report.Point {
	pts := make([]report.Point, len(idx))
	for i, j := range idx {
		g := all[j].Tags[tag]
		if g == "" {
			g = "untagged"
		}
		pts[i] = report.Point{PromptFree: ests[i].PromptFree, PromptRelated: ests[i].PromptRelated, Group: g}
	}
	return pts
}

// WriteTable writes one CSV row per estimate: its pair's id, the gap under
// its own prompt, Δr2, Δr1, the mean and std of its gaps under the sampled
// prompts, the weights' effective sample size, whether it was selected
// (by position in idx), and its tags. all[idx[i]] is the pair of ests[i].
func WriteTable(path string, all []data.Pair, idx []int, ests []PairEstimate, selected map[int]bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	_ = w.Write([]string{"pair_id", "gap", "prompt_free", "prompt_related", "mean_gap_other_prompts", "std_gap_other_prompts", "ess", "selected", "tags"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }
	for i, j := range idx {
		p := all[j]
		var tags []string
		for _, k := range sortedKeys(p.Tags) {
			tags = append(tags, k+"="+p.Tags[k])
		}
		e := ests[i]
		_ = w.Write([]string{strconv.Itoa(p.ID), f(e.Gap), f(e.PromptFree), f(e.PromptRelated), f(e.Mean), f(e.Std), f(e.ESS),
			strconv.FormatBool(selected[i]), strings.Join(tags, ";")})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, []byte(sb.String()))
}

// WriteFiles writes the recompute's table (name.csv) and quadrant plot
// (name.png) to dir; train are the run's training pairs, tag the plot's.
func (rc *Recomputed) WriteFiles(dir, name, title string, train []data.Pair, tag string) error {
	if err := WriteTable(filepath.Join(dir, name+".csv"), train, rc.Pool, rc.Estimates, rc.InPool); err != nil {
		return err
	}
	return report.Quadrants(filepath.Join(dir, name+".png"), []report.Panel{{
		Title: title, Points: Points(train, rc.Pool, rc.Estimates, tag)}})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
