package trainer

import (
	"fmt"
	"path/filepath"

	"prism/data"
	"prism/decomposition"
	"prism/internal/analysis"
	"prism/internal/report"
)

// recompute has the priority sampler estimate Δr2 over its candidate
// pool under the model as it is now and select the pairs of the next
// phase; the lead rank writes the phase's table, plot and metrics row.
func (r *run) recompute() error {
	rc, err := r.sampler.Recompute(func(pool []int, seed uint64) ([]decomposition.PairEstimate, decomposition.Stats, error) {
		return r.estimate(pairsAt(r.train, pool), seed)
	})
	if err != nil {
		return fmt.Errorf("decomposition at step %d: %w", r.state.Step, err)
	}
	if rc.FellBack {
		r.log.Warn("no pair passes the priority threshold; this phase trains on the whole pool", "step", r.state.Step, "threshold", r.cfg.Decomposition.Threshold)
	}
	tag := decomposition.PlotTag(r.cfg.Decomposition.PlotTag, r.train)
	if rc.Phase == 1 {
		r.state.FirstTagShare = decomposition.TagShare(r.train, rc.Pool, rc.Estimates, tag)
	}
	r.state.SamplerState = r.sampler.State()
	r.state.DecompSeconds += rc.Stats.Seconds
	for _, h := range r.opt.OnRecompute {
		if err := h(RecomputeInfo{Step: r.state.Step, Phase: rc.Phase, Selected: append([]int(nil), rc.Selected...)}); err != nil {
			return err
		}
	}
	if !r.lead() {
		return nil
	}
	name := fmt.Sprintf("step-%08d", r.state.Step)
	title := fmt.Sprintf("step %d: %d pairs, tag %s", r.state.Step, len(rc.Pool), tag)
	if err := rc.WriteFiles(filepath.Join(r.cfg.Run.Dir, "decomposition"), name, title, r.train, tag); err != nil {
		return err
	}
	st := rc.Stats
	// The wall time so far is the steps' (ElapsedS, up to the last step)
	// plus this recompute, which ran after them: every recompute's seconds
	// are inside it, so the share is at most 1.
	share := 0.0
	if wall := r.state.ElapsedS + st.Seconds; wall > 0 {
		share = min(1, r.state.DecompSeconds/wall)
	}
	r.writeMetric(map[string]any{"kind": "decomposition", "step": r.state.Step, "phase": rc.Phase, "pool": len(rc.Pool),
		"selected": len(rc.Selected), "sequences": st.Sequences, "tokens": st.Tokens, "seconds": st.Seconds,
		"pairs_per_s": float64(st.Pairs) / st.Seconds, "decomposition_seconds_total": r.state.DecompSeconds,
		"share_of_wall_time": share, "mean_ess": decomposition.MeanESS(rc.Estimates)})
	r.log.Info("decomposition", "step", r.state.Step, "pool", len(rc.Pool), "selected", len(rc.Selected),
		"seconds", round(st.Seconds), "pairs_per_s", round(float64(st.Pairs)/st.Seconds))
	return nil
}

// analysisPairs bounds the final analysis.
const analysisPairs = 512

// finalAnalysis decomposes (up to analysisPairs) training pairs under the
// final model, for the comparison of vanilla and prioritised training: the
// table and plot go to the run folder, the tag share and points to res.
func (r *run) finalAnalysis(res *Result) error {
	res.TagShareBefore = r.state.FirstTagShare
	tag := decomposition.PlotTag(r.cfg.Decomposition.PlotTag, r.train)
	if tag == "" {
		return nil
	}
	n := min(analysisPairs, len(r.train))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	ests, _, err := r.estimate(pairsAt(r.train, idx), decomposition.PhaseSeed(r.state.DataSeed, 1<<20))
	if err != nil {
		return fmt.Errorf("final decomposition: %w", err)
	}
	res.Analysis = decomposition.Points(r.train, idx, ests, tag)
	res.TagShareAfter = decomposition.TagShare(r.train, idx, ests, tag)
	if !r.lead() {
		return nil
	}
	dir := filepath.Join(r.cfg.Run.Dir, "decomposition")
	if err := decomposition.WriteTable(filepath.Join(dir, "final.csv"), r.train, idx, ests, map[int]bool{}); err != nil {
		return err
	}
	return report.Quadrants(filepath.Join(dir, "final.png"), []report.Panel{{
		Title: fmt.Sprintf("final model, %d training pairs, tag %s", n, tag), Points: res.Analysis}})
}

// estimate decomposes pairs' reward gaps under the model being trained,
// with the scoring (and the policy's likelihoods) split across the ranks.
func (r *run) estimate(pairs []data.Pair, seed uint64) ([]decomposition.PairEstimate, decomposition.Stats, error) {
	d := r.cfg.Decomposition
	ll := r.toyPolicy
	if r.policy != nil {
		policy := analysis.PolicyLogLik(r.policy, d.BatchSize, d.CachePrompts)
		ll = func(ps, rs [][]int64) ([]float64, error) {
			return r.sharded(len(ps), func(lo, hi int) ([]float64, error) { return policy(ps[lo:hi], rs[lo:hi]) })
		}
	}
	// Each rank scores a contiguous share of the (prompt, response) list,
	// grouping its share by prompt when the prefix cache is on.
	score := analysis.ModelPrefixScorer(r.model, d.BatchSize, d.CachePrompts)
	sharded := func(ps, rs [][]int64) ([]float64, error) {
		return r.sharded(len(ps), func(lo, hi int) ([]float64, error) { return score(ps[lo:hi], rs[lo:hi]) })
	}
	return analysis.EstimatePairs(pairs, r.prompts, decomposition.Options{
		Samples: d.Samples, IncludeOwn: d.IncludeOwnPrompt, Tol: d.Tol, Seed: seed, PolicyTau: d.PolicyTau, Share: d.SharePrompts,
	}, sharded, ll)
}

func pairsAt(all []data.Pair, idx []int) []data.Pair {
	out := make([]data.Pair, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}
