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
	toyRun := flag.Bool("toy-run", true, "also measure the toy run's wall-time share (on the CPU)")
	longPairs := flag.Int("long-pairs", 1000, "pairs of the long-prompt shape (0: skip it)")
	longPrompt := flag.Int("long-prompt", 512, "prompt tokens of the long-prompt shape")
	longResponse := flag.Int("long-response", 128, "response tokens of the long-prompt shape")
	growth := flag.Int("growth-pairs", 0, "also measure how the cost grows with M (4, 8, 16 at 512-token prompts) and prompt length (128, 512, 2048 at M = 8), with this many pairs each (0: skip)")
	flag.Parse()
	if *smoke {
		*pairs, *longPairs, *longPrompt, *longResponse = 64, 16, 64, 16
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
	throughput, err := measure(m, ps, []int{4, 8}, *batch)
	if err != nil {
		return err
	}
	var grow []map[string]any
	if *growth > 0 {
		for _, g := range []struct{ M, prompt int }{{4, 512}, {8, 512}, {16, 512}, {8, 128}, {8, 2048}} {
			r, err := measureShape(dev, prec, att, *growth, g.prompt, *longResponse, g.M, *batch)
			if err != nil {
				return fmt.Errorf("growth M=%d prompt %d: %w", g.M, g.prompt, err)
			}
			grow = append(grow, r)
		}
	}
	var long map[string]any
	if *longPairs > 0 {
		if long, err = measureLong(dev, prec, att, *longPairs, *longPrompt, *longResponse, *batch); err != nil {
			return fmt.Errorf("long prompts: %w", err)
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
	}
	if !*toyRun {
		return machine.WriteJSON(*out, results)
	}
	toy, err := toyShare(*config, threads, *smoke)
	if err != nil {
		return err
	}
	results["toy_run"] = toy
	return machine.WriteJSON(*out, results)
}

// toyShare runs the toy experiment config on the CPU and measures the
// decomposition's share of its wall time.
func toyShare(config string, threads int, smoke bool) (map[string]any, error) {
	// Share of the toy run.
	dir, err := os.MkdirTemp("", "prism-bench-decomp-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sets := []string{"run.dir=" + filepath.Join(dir, "run"), fmt.Sprintf("run.threads=%d", threads)}
	if smoke {
		sets = append(sets, "data.synthetic_pairs=200", "train.epochs=1", "decomposition.warmup_steps=2", "decomposition.every_steps=2")
	}
	cfg, err := configs.Load(config, sets, nil)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := trainer.Run(context.Background(), cfg, trainer.Options{Progress: io.Discard, Logger: quiet})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", config, err)
	}
	share := res.DecompositionSeconds / res.WallSeconds
	fmt.Printf("toy run %s: %d steps in %.1fs, decomposition %.1fs = %.1f%% of wall time (target at most %.0f%%)\n",
		config, res.Steps, res.WallSeconds, res.DecompositionSeconds, 100*share, 100*shareTarget)
	return map[string]any{"config": config, "steps": res.Steps, "wall_s": res.WallSeconds,
		"decomposition_s": res.DecompositionSeconds, "share": share, "target_share_max": shareTarget, "target_met": share <= shareTarget}, nil
}

// measure estimates every pair at each M, with the prompt cache off and
// on: the same draws, so the estimates must agree before the times are
// compared.
func measure(m *models.RewardModel, ps []data.Pair, Ms []int, batch int) (map[string]any, error) {
	prompts := decomposition.PromptPool(ps)
	out := map[string]any{}
	for _, M := range Ms {
		var gaps [2][]float64
		row := map[string]any{}
		for c, cache := range []bool{false, true} {
			ests, st, err := analysis.EstimatePairs(ps, prompts, decomposition.Options{Samples: M, IncludeOwn: true, Tol: 1e-6, Seed: 3}, analysis.ModelPrefixScorer(m, batch, cache), nil)
			if err != nil {
				return nil, fmt.Errorf("M=%d: %w", M, err)
			}
			for _, e := range ests {
				gaps[c] = append(gaps[c], e.PromptFree)
			}
			pps := float64(st.Pairs) / st.Seconds
			name := map[bool]string{false: "whole", true: "prompt_cache"}[cache]
			fmt.Printf("decomposition M=%d %s: %d pairs, %d sequences (%d tokens) in %.2fs: %.1f pairs/s\n", M, name, st.Pairs, st.Sequences, st.Tokens, st.Seconds, pps)
			row[name] = map[string]any{"pairs": st.Pairs, "sequences": st.Sequences, "tokens": st.Tokens, "seconds": st.Seconds, "pairs_per_s": pps}
		}
		diff := 0.0
		for i := range gaps[0] {
			diff = max(diff, math.Abs(gaps[0][i]-gaps[1][i]))
		}
		if diff > 1e-5 {
			return nil, fmt.Errorf("M=%d: the prompt cache changes Δr2 by up to %.2g", M, diff)
		}
		row["max_free_gap_difference"] = diff
		row["speedup"] = row["prompt_cache"].(map[string]any)["pairs_per_s"].(float64) / row["whole"].(map[string]any)["pairs_per_s"].(float64)
		fmt.Printf("decomposition M=%d: prompt cache %.2fx, Δr2 equal to %.1g\n", M, row["speedup"], diff)
		out[fmt.Sprintf("M=%d", M)] = row
	}
	return out, nil
}

// measureLong is the long-prompt shape: a small random model (4 layers,
// hidden 256, 32,000 tokens), n pairs of random prompts of promptLen
// tokens and responses of respLen, M = 8.
func measureLong(dev torch.Device, prec models.Precision, att models.Attention, n, promptLen, respLen, batch int) (map[string]any, error) {
	return measureShape(dev, prec, att, n, promptLen, respLen, 8, batch)
}

// measureShape measures the long-prompt model and pairs at one M.
func measureShape(dev torch.Device, prec models.Precision, att models.Attention, n, promptLen, respLen, M, batch int) (map[string]any, error) {
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
	res, err := measure(m, ps, []int{M}, max(1, batch/8))
	if err != nil {
		return nil, err
	}
	res["shape"] = map[string]any{"pairs": n, "prompt_tokens": promptLen, "response_tokens": respLen, "M": M, "layers": 4, "hidden": 256, "params": c.ParamCount()}
	return res, nil
}
