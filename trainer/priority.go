package trainer

import (
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"prism/data"
	"prism/decomposition"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/models"
)

// phaseSeed derives the seed of a phase's draws (pool, prompts, softmax
// sampling and batch order) from the run's seed, so a phase is reproduced
// exactly on resume without saving generator states.
func phaseSeed(seed uint64, phase int) uint64 {
	return seed + uint64(phase)*0x9e3779b97f4a7c15
}

// dueRecompute says whether the prompt-free gaps are recomputed before
// the step after `step`.
func (r *run) dueRecompute(step int) bool {
	d := r.cfg.Decomposition
	return d.Enabled && step >= d.WarmupSteps && (step-d.WarmupSteps)%d.EverySteps == 0 && step < r.sched.Total
}

// recompute estimates Δr2 over the candidate pool, selects the pairs of
// the next phase and points the sampler at them.
func (r *run) recompute() error {
	d := r.cfg.Decomposition
	phase := r.state.Phase + 1
	seed := phaseSeed(r.state.DataSeed, phase)
	pool := make([]int, len(r.train))
	for i := range pool {
		pool[i] = i
	}
	if d.PoolSize > 0 && d.PoolSize < len(pool) {
		perm := rand.New(rand.NewPCG(seed, 0x9001)).Perm(len(pool))[:d.PoolSize]
		sort.Ints(perm)
		pool = perm
	}
	ests, stats, err := r.decompose(pairsAt(r.train, pool), seed)
	if err != nil {
		return fmt.Errorf("decomposition at step %d: %w", r.state.Step, err)
	}
	pf := make([]float64, len(ests))
	for i, e := range ests {
		pf[i] = e.PromptFree
	}
	var chosen []int
	switch d.Strategy {
	case "threshold":
		chosen = decomposition.Threshold(pf, d.Threshold)
	case "softmax":
		k := int(math.Ceil(d.Rho * float64(len(pf))))
		chosen, err = decomposition.SoftmaxSample(pf, d.Temperature, k, rand.New(rand.NewPCG(seed, 0x50f7)))
	default:
		chosen, err = decomposition.LowestFraction(pf, d.Rho)
	}
	if err != nil {
		return err
	}
	if len(chosen) == 0 {
		r.log.Warn("no pair passes the priority threshold; this phase trains on the whole pool", "step", r.state.Step, "threshold", d.Threshold)
		chosen = make([]int, len(pf))
		for i := range chosen {
			chosen[i] = i
		}
	}
	selected := make([]int, len(chosen))
	prio := make([]float64, len(chosen))
	isSel := map[int]bool{}
	for i, c := range chosen {
		selected[i] = pool[c]
		prio[i] = pf[c]
		isSel[c] = true
	}
	r.state.Phase, r.state.Selected, r.state.Priorities = phase, selected, prio
	if phase == 1 {
		r.state.FirstTagShare = tagShare(r.train, pool, ests, plotTag(d.PlotTag, r.train))
	}
	r.sampler = data.NewSampler(len(selected), seed)
	r.state.DecompSeconds += stats.Seconds
	if r.opt.AfterRecompute != nil {
		r.opt.AfterRecompute(phase, append([]int(nil), selected...))
	}
	if !r.lead() {
		return nil
	}

	name := fmt.Sprintf("step-%08d", r.state.Step)
	dir := filepath.Join(r.cfg.Run.Dir, "decomposition")
	if err := WriteDecompositionTable(filepath.Join(dir, name+".csv"), r.train, pool, ests, isSel); err != nil {
		return err
	}
	tag := plotTag(r.cfg.Decomposition.PlotTag, r.train)
	if err := report.Quadrants(filepath.Join(dir, name+".png"), []report.Panel{{
		Title:  fmt.Sprintf("step %d: %d pairs, tag %s", r.state.Step, len(pool), tag),
		Points: points(r.train, pool, ests, tag),
	}}); err != nil {
		return err
	}
	share := 0.0
	if r.state.ElapsedS > 0 {
		share = r.state.DecompSeconds / r.state.ElapsedS
	}
	r.writeMetric(map[string]any{"kind": "decomposition", "step": r.state.Step, "phase": phase, "pool": len(pool),
		"selected": len(selected), "sequences": stats.Sequences, "seconds": stats.Seconds,
		"pairs_per_s": float64(stats.Pairs) / stats.Seconds, "decomposition_seconds_total": r.state.DecompSeconds,
		"share_of_wall_time": share, "mean_ess": meanESS(ests)})
	r.log.Info("decomposition", "step", r.state.Step, "pool", len(pool), "selected", len(selected),
		"seconds", round(stats.Seconds), "pairs_per_s", round(float64(stats.Pairs)/stats.Seconds))
	return nil
}

// analysisPairs bounds the final analysis.
const analysisPairs = 512

// finalAnalysis decomposes (up to analysisPairs) training pairs under the
// final model, for the comparison of vanilla and prioritised training: the
// table and plot go to the run folder, the tag share and points to res.
func (r *run) finalAnalysis(res *Result) error {
	res.TagShareBefore = r.state.FirstTagShare
	tag := plotTag(r.cfg.Decomposition.PlotTag, r.train)
	if tag == "" {
		return nil
	}
	n := min(analysisPairs, len(r.train))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	ests, _, err := r.decompose(pairsAt(r.train, idx), phaseSeed(r.state.DataSeed, 1<<20))
	if err != nil {
		return fmt.Errorf("final decomposition: %w", err)
	}
	res.Analysis = points(r.train, idx, ests, tag)
	res.TagShareAfter = tagShare(r.train, idx, ests, tag)
	if !r.lead() {
		return nil
	}
	dir := filepath.Join(r.cfg.Run.Dir, "decomposition")
	if err := WriteDecompositionTable(filepath.Join(dir, "final.csv"), r.train, idx, ests, map[int]bool{}); err != nil {
		return err
	}
	return report.Quadrants(filepath.Join(dir, "final.png"), []report.Panel{{
		Title: fmt.Sprintf("final model, %d training pairs, tag %s", n, tag), Points: res.Analysis}})
}

// tagShare is the share of pairs with a positive prompt-free gap whose tag
// is "true" (the paper's red pairs in the right half of its figure).
func tagShare(all []data.Pair, idx []int, ests []decomposition.PairEstimate, tag string) float64 {
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

// decompose is Decompose under the model being trained, with the
// scoring (and the policy's likelihoods) split across the ranks.
func (r *run) decompose(pairs []data.Pair, seed uint64) ([]decomposition.PairEstimate, decomposition.Stats, error) {
	d := r.cfg.Decomposition
	views := make([]decomposition.Pair, len(pairs))
	for i, p := range pairs {
		views[i] = decomposition.Pair{Prompt: p.Prompt, Y1: p.Chosen, Y2: p.Rejected}
	}
	var ll decomposition.LogLikFunc
	if r.policy != nil {
		ll = func(ps, rs [][]int64) ([]float64, error) {
			return r.sharded(len(ps), func(lo, hi int) ([]float64, error) {
				return r.policy.ResponseLogLik(ps[lo:hi], rs[lo:hi], d.BatchSize)
			})
		}
	}
	return decomposition.EstimateAll(views, r.prompts, decomposition.Options{
		Samples: d.Samples, IncludeOwn: d.IncludeOwnPrompt, Tol: d.Tol, Seed: seed, PolicyTau: d.PolicyTau,
	}, func(seqs [][]int64) ([]float64, error) { return r.score(seqs, d.BatchSize) }, ll)
}

// Decompose estimates the prompt-free and prompt-related parts of each
// pair's reward gap under m, drawing comparison prompts from prompts. With
// a policy the prompts are importance-weighted by its likelihoods of the
// two responses; without one, uniformly.
func Decompose(m *models.RewardModel, policy *models.CausalLM, pairs []data.Pair, prompts [][]int64, opt decomposition.Options, batchSize int) ([]decomposition.PairEstimate, decomposition.Stats, error) {
	views := make([]decomposition.Pair, len(pairs))
	for i, p := range pairs {
		views[i] = decomposition.Pair{Prompt: p.Prompt, Y1: p.Chosen, Y2: p.Rejected}
	}
	var ll decomposition.LogLikFunc
	if policy != nil {
		ll = func(ps, rs [][]int64) ([]float64, error) { return policy.ResponseLogLik(ps, rs, batchSize) }
	}
	return decomposition.EstimateAll(views, prompts, opt, func(seqs [][]int64) ([]float64, error) {
		return m.Score(seqs, batchSize)
	}, ll)
}

func meanESS(ests []decomposition.PairEstimate) float64 {
	var s float64
	for _, e := range ests {
		s += e.ESS
	}
	return s / float64(max(1, len(ests)))
}

// PromptPool lists the distinct prompts of pairs, in first-seen order.
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

func pairsAt(all []data.Pair, idx []int) []data.Pair {
	out := make([]data.Pair, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

// plotTag picks the tag that colours plots.
func plotTag(want string, pairs []data.Pair) string {
	if want != "" {
		return want
	}
	for _, p := range pairs {
		keys := make([]string, 0, len(p.Tags))
		for k := range p.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if len(keys) > 0 {
			return keys[0]
		}
	}
	return ""
}

func points(all []data.Pair, idx []int, ests []decomposition.PairEstimate, tag string) []report.Point {
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

// WriteDecompositionTable writes one CSV row per pair: its id, the gap
// under its own prompt, Δr2, Δr1, the mean and std of its gaps under the
// sampled prompts, the weights' effective sample size, whether it was
// selected, and its tags.
func WriteDecompositionTable(path string, all []data.Pair, idx []int, ests []decomposition.PairEstimate, selected map[int]bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var sb strings.Builder
	w := csv.NewWriter(&sb)
	_ = w.Write([]string{"pair_id", "gap", "prompt_free", "prompt_related", "mean_gap_other_prompts", "std_gap_other_prompts", "ess", "selected", "tags"})
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 8, 64) }
	for i, j := range idx {
		p := all[j]
		keys := make([]string, 0, len(p.Tags))
		for k := range p.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var tags []string
		for _, k := range keys {
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
