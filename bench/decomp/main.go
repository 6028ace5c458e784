// Command decomp measures the prompt-free gap recompute: pairs per second
// at M = 4 and M = 8 prompts per pair, and the share of the length-biased
// toy run's wall time that goes to it (experiments/toy/length-bias.yaml,
// prioritised, as shipped).
//
//	go run ./bench/decomp -out bench/results/decomposition.json
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
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
	flag.Parse()
	if *smoke {
		*pairs = 64
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
	prompts := decomposition.PromptPool(ps)
	throughput := map[string]any{}
	for _, M := range []int{4, 8} {
		_, st, err := analysis.EstimatePairs(ps, prompts, decomposition.Options{Samples: M, IncludeOwn: true, Tol: 1e-6, Seed: 3}, analysis.ModelScorer(m, *batch), nil)
		if err != nil {
			return fmt.Errorf("M=%d: %w", M, err)
		}
		pps := float64(st.Pairs) / st.Seconds
		fmt.Printf("decomposition M=%d: %d pairs, %d sequences in %.2fs: %.0f pairs/s\n", M, st.Pairs, st.Sequences, st.Seconds, pps)
		throughput[fmt.Sprintf("M=%d", M)] = map[string]any{"pairs": st.Pairs, "sequences": st.Sequences, "seconds": st.Seconds, "pairs_per_s": pps}
	}

	model := "tiny-llama (random)"
	if *modelDir != "" {
		model = *modelDir
	}
	results := map[string]any{
		"benchmark": "Δr2 recompute: pairs/s (toy length-bias pairs, uniform weights, own prompt included) and share of the toy run's wall time",
		"machine":   info, "threads": threads, "smoke": *smoke, "device": torch.DeviceName(dev), "precision": prec,
		"model": model, "params": mcfg.ParamCount(), "batch": *batch,
		"throughput": throughput,
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
