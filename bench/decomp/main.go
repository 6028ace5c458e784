// Command decomp measures the prompt-free gap recompute, with the prompt
// cache off (every prompt+response scored whole) and on, side by side on
// the same draws (the estimates are checked equal first): pairs per second
// on the toy pairs at M = 4 and 8, on a long-prompt shape (512-token
// prompts, 128-token responses, M = 8, a 4-layer model), optionally how
// the cost grows with M and prompt length, and the share of the
// length-biased toy run's wall time that goes to it
// (experiments/toy/length-bias.yaml, prioritised, as shipped).
//
//	go run ./bench/decomp -long-pairs 100 -out bench/results/decomposition.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"prism/bench/machine"
	"prism/configs"
	"prism/data"
	"prism/decomposition"
	"prism/internal/analysis"
	"prism/internal/torch"
	"prism/models"
	"prism/trainer"
)

func main() {
	torch.Pin() // for the whole process: libtorch state is per OS thread
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/decomp:", err)
		os.Exit(1)
	}
}

// shareTarget is the most of the toy run's wall time the recompute may take.
const shareTarget = 0.25

func run() error {
	out := flag.String("out", "", "write the results as JSON here")
	pairs := flag.Int("pairs", 2000, "toy pairs scored per measurement")
	config := flag.String("config", "experiments/toy/length-bias.yaml", "the toy run whose wall-time share is measured")
	smoke := flag.Bool("smoke", false, "a quick check of the harness: few pairs, a short run")
	nthreads := flag.Int("threads", 0, "libtorch threads (0: every core)")
	batch := flag.Int("batch", 256, "sequences per scoring pass in the throughput measurement")
	devName := flag.String("device", "cpu", "where the throughput is measured: cpu, cuda or cuda:N")
	precision := flag.String("precision", "fp32", "scoring precision: fp32 or bf16")
	modelDir := flag.String("model", "", "score with this reward model folder instead of a random tiny-llama")
	toyAlt := flag.String("toy-alt", "decomposition.pool_size=300", "also run the toy with these settings (comma-separated key=value; they change what the run selects), to show what meets the share target (empty: skip)")
	toyRun := flag.Bool("toy-run", true, "also measure the toy run's wall-time share (on the CPU)")
	longPairs := flag.Int("long-pairs", 1000, "pairs of the long-prompt shape (0: skip it)")
	longPrompt := flag.Int("long-prompt", 512, "prompt tokens of the long-prompt shape")
	longResponse := flag.Int("long-response", 128, "response tokens of the long-prompt shape")
	share := flag.Int("share", 32, "also measure groups of this many pairs sharing their prompt draws (0: skip)")
	poolPairs := flag.Int("pool-pairs", 100, "candidate pairs of the long-prompt shape drawn against a larger prompt pool (-pool-prompts), where shared draws run fewer distinct prompts (0: skip)")
	poolPrompts := flag.Int("pool-prompts", 1000, "prompts in the pool of the -pool-pairs shape")
	policyPairs := flag.Int("policy-pairs", 20, "pairs of the long-prompt shape whose prompts are weighted by a random policy, its pass cached or whole (0: skip)")
	growth := flag.Int("growth-pairs", 0, "also measure how the cost grows with M (4, 8, 16 at 512-token prompts) and prompt length (128, 512, 2048 at M = 8), with this many pairs each (0: skip)")
	flag.Parse()
	if *smoke {
		*pairs, *longPairs, *longPrompt, *longResponse, *poolPairs, *poolPrompts, *policyPairs = 64, 16, 64, 16, 16, 100, 8
	}
	threads, err := torch.Setup(*nthreads)
	if err != nil {
		return err
	}
	info := machine.Describe()
	dev, err := torch.ResolveDevice(*devName)
	if err != nil {
		return err
	}
	prec, err := models.ResolvePrecision(*precision)
	if err != nil {
		return err
	}

	// Throughput: a reward model (tiny-llama unless -model) over toy
	// length-bias pairs.
	var m *models.RewardModel
	if *modelDir != "" {
		m, _, err = models.Load(*modelDir, dev, rand.New(rand.NewPCG(1, 2)))
	} else {
		var mcfg *models.Config
		if mcfg, err = models.Preset("tiny-llama"); err == nil {
			m, err = models.FromValues(mcfg, models.RandomInit(mcfg, rand.New(rand.NewPCG(1, 2))), dev)
		}
	}
	if err != nil {
		return err
	}
	defer m.Drop()
	att, err := models.ResolveAttention("auto")
	if err != nil {
		return err
	}
	if err := m.SetCompute(models.Compute{Attention: att, Precision: prec}); err != nil {
		return err
	}
	mcfg := m.Config
	ps, _, err := data.Toy("length_bias", *pairs, mcfg.VocabSize, 1)
	if err != nil {
		return err
	}
	throughput, err := measure(m, ps, decomposition.PromptPool(ps), []int{4, 8}, *batch, *share, nil)
	if err != nil {
		return err
	}
	var grow []map[string]any
	if *growth > 0 {
		for _, g := range []struct{ M, prompt int }{{4, 512}, {8, 512}, {16, 512}, {8, 128}, {8, 2048}} {
			r, err := measureShape(dev, prec, att, *growth, 0, g.prompt, *longResponse, g.M, *batch, 0, false)
			if err != nil {
				return fmt.Errorf("growth M=%d prompt %d: %w", g.M, g.prompt, err)
			}
			grow = append(grow, r)
		}
	}
	var long map[string]any
	if *longPairs > 0 {
		if long, err = measureShape(dev, prec, att, *longPairs, 0, *longPrompt, *longResponse, 8, *batch, *share, false); err != nil {
			return fmt.Errorf("long prompts: %w", err)
		}
	}
	var pooled map[string]any
	if *poolPairs > 0 && *share > 1 {
		if pooled, err = measureShape(dev, prec, att, *poolPairs, *poolPrompts, *longPrompt, *longResponse, 8, *batch, *share, false); err != nil {
			return fmt.Errorf("candidate pool: %w", err)
		}
	}
	var policy map[string]any
	if *policyPairs > 0 {
		if policy, err = measureShape(dev, prec, att, *policyPairs, 0, *longPrompt, *longResponse, 8, *batch, 0, true); err != nil {
			return fmt.Errorf("policy weights: %w", err)
		}
	}

	model := "tiny-llama (random)"
	if *modelDir != "" {
		model = *modelDir
	}
	results := map[string]any{
		"benchmark": "Δr2 recompute: pairs/s (toy length-bias pairs, uniform weights, own prompt included) and share of the toy run's wall time",
		"machine":   info, "threads": threads, "smoke": *smoke, "device": torch.DeviceName(dev), "precision": prec,
		"model": model, "params": mcfg.ParamCount(), "batch": *batch,
		"throughput":   throughput,
		"long_prompts": long,
		"growth":       grow,
		"policy":       policy,
		"pooled":       pooled,
	}
	if !*toyRun {
		return machine.WriteJSON(*out, results)
	}
	var alt []string
	if *toyAlt != "" {
		alt = strings.Split(*toyAlt, ",")
	}
	toy, err := toyShare(*config, threads, *smoke, *share, alt)
	if err != nil {
		return err
	}
	results["toy_run"] = toy
	return machine.WriteJSON(*out, results)
}

// toyShare runs the toy experiment config on the CPU and measures the
// decomposition's share of its wall time: as shipped, and with groups of
// share pairs sharing their prompt draws (which changes the draws, so the
// selection and the run differ). On the shipped run's final model it then
// measures what sharing does to the selection: how many of the pairs the
// first phase-style selection picks stay picked with shared draws, next to
// how many stay picked under a second seed of per-pair draws.
func toyShare(config string, threads int, smoke bool, share int, alt []string) (map[string]any, error) {
	dir, err := os.MkdirTemp("", "prism-bench-decomp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	one := func(name string, extra ...string) (*configs.Config, map[string]any, error) {
		sets := append([]string{"run.dir=" + filepath.Join(dir, name), fmt.Sprintf("run.threads=%d", threads)}, extra...)
		if smoke {
			sets = append(sets, "data.synthetic_pairs=200", "train.epochs=1", "decomposition.warmup_steps=2", "decomposition.every_steps=2")
		}
		cfg, err := configs.Load(config, sets, nil)
		if err != nil {
			return nil, nil, err
		}
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		res, err := trainer.Run(context.Background(), cfg, trainer.Options{Progress: io.Discard, Logger: quiet})
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", config, err)
		}
		share := res.DecompositionSeconds / res.WallSeconds
		testAcc := math.NaN()
		if res.Test != nil {
			testAcc = res.Test.Accuracy
		}
		fmt.Printf("toy run %s %v: %d steps in %.1fs, decomposition %.1fs = %.1f%% of wall time (target at most %.0f%%)\n",
			config, extra, res.Steps, res.WallSeconds, res.DecompositionSeconds, 100*share, 100*shareTarget)
		return cfg, map[string]any{"config": config, "sets": extra, "steps": res.Steps, "wall_s": res.WallSeconds,
			"decomposition_s": res.DecompositionSeconds, "share": share, "target_share_max": shareTarget, "target_met": share <= shareTarget,
			"test_accuracy": testAcc}, nil
	}
	cfg, out, err := one("shipped")
	if err != nil {
		return nil, err
	}
	if len(alt) > 0 {
		_, a, err := one("alternative", alt...)
		if err != nil {
			return nil, err
		}
		out["alternative"] = a
	}
	if share <= 1 {
		return out, nil
	}
	_, shared, err := one("shared", fmt.Sprintf("decomposition.share_prompts=%d", share))
	if err != nil {
		return nil, err
	}
	out["shared_prompts"] = shared
	ov, err := selectionOverlap(filepath.Join(dir, "shipped", "model"), cfg, share)
	if err != nil {
		return nil, err
	}
	out["selection_overlap"] = ov
	return out, nil
}

// selectionOverlap decomposes the toy pairs under a trained model three
// ways (per-pair draws with two seeds, and shared draws in groups of
// share) and compares the lowest-Δr2 selections the config's rho picks.
func selectionOverlap(modelDir string, cfg *configs.Config, share int) (map[string]any, error) {
	m, _, err := models.Load(modelDir, torch.CPU(), rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		return nil, err
	}
	defer m.Drop()
	ps, _, err := data.Toy("length_bias", cfg.Data.SyntheticPairs, m.Config.VocabSize, 1)
	if err != nil {
		return nil, err
	}
	d := cfg.Decomposition
	pool := decomposition.PromptPool(ps)
	free := func(seed uint64, share int) ([]float64, error) {
		ests, _, err := analysis.EstimatePairs(ps, pool, decomposition.Options{Samples: d.Samples, IncludeOwn: d.IncludeOwnPrompt, Tol: d.Tol, Seed: seed, Share: share},
			analysis.ModelPrefixScorer(m, d.BatchSize, true), nil)
		if err != nil {
			return nil, err
		}
		out := make([]float64, len(ests))
		for i, e := range ests {
			out[i] = e.PromptFree
		}
		return out, nil
	}
	a, err := free(3, 0)
	if err != nil {
		return nil, err
	}
	b, err := free(4, 0)
	if err != nil {
		return nil, err
	}
	c, err := free(3, share)
	if err != nil {
		return nil, err
	}
	k := int(d.Rho * float64(len(a)))
	res := map[string]any{"pairs": len(a), "M": d.Samples, "rho": d.Rho, "share_prompts": share,
		"kept_other_seed": overlap(a, b, k), "kept_shared": overlap(a, c, k),
		"corr_other_seed": corr(a, b), "corr_shared": corr(a, c)}
	fmt.Printf("selection of the lowest %d Δr2 on the trained toy model: %.1f%% kept under another seed of per-pair draws, %.1f%% with groups of %d sharing draws (Δr2 correlation %.3f, %.3f)\n",
		k, 100*res["kept_other_seed"].(float64), 100*res["kept_shared"].(float64), share, res["corr_other_seed"], res["corr_shared"])
	return res, nil
}

// overlap is the share of the k smallest of a that are among the k
// smallest of b.
func overlap(a, b []float64, k int) float64 {
	low := func(x []float64) map[int]bool {
		idx := make([]int, len(x))
		for i := range idx {
			idx[i] = i
		}
		sort.SliceStable(idx, func(i, j int) bool { return x[idx[i]] < x[idx[j]] })
		out := map[int]bool{}
		for _, i := range idx[:k] {
			out[i] = true
		}
		return out
	}
	la, lb := low(a), low(b)
	n := 0
	for i := range la {
		if lb[i] {
			n++
		}
	}
	return float64(n) / float64(max(k, 1))
}

// corr is Pearson's correlation of a and b.
func corr(a, b []float64) float64 {
	var ma, mb float64
	for i := range a {
		ma, mb = ma+a[i], mb+b[i]
	}
	ma, mb = ma/float64(len(a)), mb/float64(len(b))
	var sab, saa, sbb float64
	for i := range a {
		sab += (a[i] - ma) * (b[i] - mb)
		saa += (a[i] - ma) * (a[i] - ma)
		sbb += (b[i] - mb) * (b[i] - mb)
	}
	return sab / math.Sqrt(saa*sbb)
}

// side is one way of running the recompute: each sequence whole, with
// the prompt cache, or with the cache and groups of pairs sharing their
// prompt draws.
type side struct {
	name  string
	cache bool
	share int
}

// sides are the ways measured: whole and cached always (the same draws,
// so their estimates must agree), shared when share > 1 (other draws).
func sides(share int) []side {
	out := []side{{"whole", false, 0}, {"prompt_cache", true, 0}}
	if share > 1 {
		out = append(out, side{"shared_prompts", true, share})
	}
	return out
}

// counting wraps a scorer to count the tokens it runs through the model:
// every prompt and response when whole, each distinct prompt once per call
// and every response with the cache.
func counting(f decomposition.PrefixScoreFunc, cache bool, n *int) decomposition.PrefixScoreFunc {
	return func(ps, rs [][]int64) ([]float64, error) {
		seen := map[string]bool{}
		for i := range ps {
			*n += len(rs[i])
			k := fmt.Sprint(ps[i])
			if !cache || !seen[k] {
				*n += len(ps[i])
				seen[k] = true
			}
		}
		return f(ps, rs)
	}
}

// measure estimates every pair at each M on each side (with policy, the
// policy's likelihoods weight the prompts, cached like the rewards); the
// whole and cached sides use the same draws, so their estimates must
// agree before the times are compared.
func measure(m *models.RewardModel, ps []data.Pair, prompts [][]int64, Ms []int, batch, share int, policy *models.CausalLM) (map[string]any, error) {
	out := map[string]any{}
	for _, M := range Ms {
		var gaps [2][]float64
		var ess [2][]float64
		row := map[string]any{}
		for c, sd := range sides(share) {
			computed := 0
			score := counting(analysis.ModelPrefixScorer(m, batch, sd.cache), sd.cache, &computed)
			opt := decomposition.Options{Samples: M, IncludeOwn: true, Tol: 1e-6, Seed: 3, PolicyTau: 1, Share: sd.share}
			ests, st, err := analysis.EstimatePairs(ps, prompts, opt, score, analysis.PolicyLogLik(policy, batch, sd.cache))
			if err != nil {
				return nil, fmt.Errorf("M=%d %s: %w", M, sd.name, err)
			}
			if c < 2 {
				for _, e := range ests {
					gaps[c] = append(gaps[c], e.PromptFree)
					ess[c] = append(ess[c], e.ESS)
				}
			}
			pps := float64(st.Pairs) / st.Seconds
			fmt.Printf("decomposition M=%d %s: %d pairs, %d sequences (%d tokens, %d through the model) in %.2fs: %.2f pairs/s\n", M, sd.name, st.Pairs, st.Sequences, st.Tokens, computed, st.Seconds, pps)
			row[sd.name] = map[string]any{"pairs": st.Pairs, "sequences": st.Sequences, "tokens": st.Tokens, "tokens_computed": computed,
				"tokens_computed_per_pair": float64(computed) / float64(st.Pairs), "seconds": st.Seconds, "pairs_per_s": pps, "share_prompts": sd.share}
		}
		diff := 0.0
		for i := range gaps[0] {
			diff = max(diff, math.Abs(gaps[0][i]-gaps[1][i]), math.Abs(ess[0][i]-ess[1][i]))
		}
		if diff > 1e-5 {
			return nil, fmt.Errorf("M=%d: the prompt cache changes Δr2 or the ESS by up to %.2g", M, diff)
		}
		pps := func(name string) float64 { return row[name].(map[string]any)["pairs_per_s"].(float64) }
		row["max_free_gap_difference"] = diff
		row["speedup"] = pps("prompt_cache") / pps("whole")
		fmt.Printf("decomposition M=%d: prompt cache %.2fx, Δr2 equal to %.1g\n", M, row["speedup"], diff)
		if share > 1 {
			row["shared_speedup"] = pps("shared_prompts") / pps("whole")
			fmt.Printf("decomposition M=%d: shared prompts (groups of %d) %.2fx\n", M, share, row["shared_speedup"])
		}
		out[fmt.Sprintf("M=%d", M)] = row
	}
	return out, nil
}

// measureShape measures the long-prompt shape: a small random model (4
// layers, hidden 256, 32,000 tokens), n pairs of random prompts of
// promptLen tokens and responses of respLen, at one M, drawing from their
// own prompts and extra more (as a candidate pool drawn from a larger
// training set does); with policy, a second random model of that shape is
// the policy of the importance weights.
func measureShape(dev torch.Device, prec models.Precision, att models.Attention, n, extra, promptLen, respLen, M, batch, share int, policy bool) (map[string]any, error) {
	pad := 0
	c := &models.Config{ModelType: "llama", VocabSize: 32000, HiddenSize: 256, IntermediateSize: 688, NumHiddenLayers: 4,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: max(2048, promptLen+respLen), PadTokenID: &pad, HiddenAct: "silu", InitializerRange: 0.02}
	m, err := models.FromValues(c, models.RandomInit(c, rand.New(rand.NewPCG(4, 5))), dev)
	if err != nil {
		return nil, err
	}
	defer m.Drop()
	if err := m.SetCompute(models.Compute{Attention: att, Precision: prec}); err != nil {
		return nil, err
	}
	var lm *models.CausalLM
	if policy {
		pm, err := models.FromValues(c, models.RandomInit(c, rand.New(rand.NewPCG(8, 9))), dev)
		if err != nil {
			return nil, err
		}
		lm = models.TiedCausalLM(pm)
		defer lm.Drop()
		if err := pm.SetCompute(models.Compute{Attention: att, Precision: prec}); err != nil {
			return nil, err
		}
	}
	rng := rand.New(rand.NewPCG(6, 7))
	ids := func(k int) []int64 {
		v := make([]int64, k)
		for i := range v {
			v[i] = 1 + rng.Int64N(31999)
		}
		return v
	}
	ps := make([]data.Pair, n)
	for i := range ps {
		ps[i] = data.Pair{ID: i, Prompt: ids(promptLen), Chosen: ids(respLen), Rejected: ids(respLen)}
	}
	pool := decomposition.PromptPool(ps)
	for range extra {
		pool = append(pool, ids(promptLen))
	}
	res, err := measure(m, ps, pool, []int{M}, max(1, batch/8), share, lm)
	if err != nil {
		return nil, err
	}
	res["shape"] = map[string]any{"pairs": n, "pool_prompts": len(pool), "prompt_tokens": promptLen, "response_tokens": respLen, "M": M, "policy": policy, "layers": 4, "hidden": 256, "params": c.ParamCount()}
	return res, nil
}
