// Command train times prism's training step against PyTorch eager on the
// same machine, in one run: the same random Llama-style reward model (prism
// writes it as safetensors and bench/train/reference.py loads it), the same
// pairs, precision, AdamW, gradient clipping and thread count, on the CPU
// or a GPU (-device). Before the times are compared it checks that both
// sides computed the same losses, step by step, so the ratio compares equal
// work. The baseline is reference.py's model written out in torch, or
// transformers' (-impl transformers).
//
// It also measures the device's matmul peak in the run's precision and
// reports each side's model FLOPs utilisation against it.
//
//	go run ./bench/train -out bench/results/train.json
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sugarme/gotch"

	"prism/bench/machine"
	"prism/configs"
	"prism/internal/torch"
	"prism/models"
	"prism/trainer"
)

// shape is one benchmark configuration.
type shape struct {
	Name                                    string
	Vocab, Hidden, Inter, Layers, Heads, KV int
	Seq, Pairs                              int
	Warmup, Steps                           int
}

// Three sizes: tiny is bound by per-operation overhead,
// medium by matmuls. Vocabularies: tiny keeps its embedding small so the
// optimizer update does not dominate; small and medium use Llama 2's and
// Mistral's 32000.
var shapes = []shape{
	{Name: "tiny", Vocab: 1024, Hidden: 64, Inter: 176, Layers: 2, Heads: 4, KV: 2, Seq: 64, Pairs: 32, Warmup: 5, Steps: 40},
	{Name: "small", Vocab: 32000, Hidden: 256, Inter: 688, Layers: 4, Heads: 4, KV: 2, Seq: 256, Pairs: 8, Warmup: 3, Steps: 12},
	{Name: "medium", Vocab: 32000, Hidden: 512, Inter: 1376, Layers: 8, Heads: 8, KV: 4, Seq: 512, Pairs: 8, Warmup: 1, Steps: 4},
	// 1b is TinyLlama-1.1B's shape (22 layers, hidden 2048, 32 heads, 4
	// kv heads) with a 32000 vocabulary: about 1.0B parameters, for GPUs.
	// It is not in the default -only list.
	{Name: "1b", Vocab: 32000, Hidden: 2048, Inter: 5632, Layers: 22, Heads: 32, KV: 4, Seq: 1024, Pairs: 4, Warmup: 2, Steps: 6},
}

const (
	lr          = 1e-4
	weightDecay = 0.01
	maxGradNorm = 1.0
	// lossTol bounds the relative difference of the two sides' losses. The
	// first step sees identical weights; later steps add the optimizer's
	// rounding.
	lossTol = 1e-4
	// lossTolBF16 is lossTol in bf16 mixed precision (see lossScale): the
	// two sides round the same values to bfloat16, but their kernels (and
	// prism's softmax scale folded into the rotary tables) round
	// intermediate results differently, by up to bfloat16's 2^-8 per
	// operation.
	lossTolBF16 = 1e-2
)

// opts are the settings both sides run with.
type opts struct {
	threads   int
	peak      float64
	python    string
	precision string // fp32 or bf16
	attention models.Attention
	device    torch.Device
	impl      string // the baseline: reference (reference.py's model) or transformers
}

// lossScale is the smallest loss a difference is measured against. In
// fp32 the difference is relative to each step's loss. In bf16 it is
// relative to the first step's loss once the loss has fallen below it:
// these runs memorise their few pairs, the loss drops to 1e-4 within a
// few steps, and bfloat16's rounding, relative to the activations, is
// then a large share of so small a loss (the first step, on identical
// weights, matches exactly).
func (o opts) lossScale(first float64) float64 {
	if o.precision == "bf16" {
		return math.Abs(first)
	}
	return 1e-12
}

func (o opts) lossTol() float64 {
	if o.precision == "bf16" {
		return lossTolBF16
	}
	return lossTol
}

func (s shape) config() *models.Config {
	pad := 0
	return &models.Config{ModelType: "llama", VocabSize: s.Vocab, HiddenSize: s.Hidden, IntermediateSize: s.Inter,
		NumHiddenLayers: s.Layers, NumAttentionHeads: s.Heads, NumKeyValueHeads: s.KV, RMSNormEps: 1e-5,
		RopeTheta: 10000, MaxPositionEmbeddings: max(2048, s.Seq), PadTokenID: &pad, BOSTokenID: 1, EOSTokenID: 2,
		InitializerRange: 0.02, HeadDim: s.Hidden / s.Heads, HiddenAct: "silu"}
}

// flops counts one training step: forward matmuls (projections, MLP, the
// full T×T attention products that the explicit path computes) times 3 for
// forward plus backward. The score head and elementwise work are left out,
// as usual for model FLOPs.
func (s shape) flops() float64 {
	hd := s.Hidden / s.Heads
	q, kv := s.Heads*hd, s.KV*hd
	tokens := float64(2 * s.Pairs * s.Seq)
	linear := float64(s.Hidden*(q+2*kv) + q*s.Hidden + 3*s.Hidden*s.Inter)
	perLayer := 2*tokens*linear + 4*tokens*float64(s.Seq*q)
	return 3 * float64(s.Layers) * perLayer
}

type side struct {
	Loss          []float64 `json:"loss"`
	Seconds       []float64 `json:"seconds"`
	MedianSeconds float64   `json:"median_step_seconds"`
	TokensPerS    float64   `json:"tokens_per_s"`
	MFU           float64   `json:"mfu"`
	Version       string    `json:"version,omitempty"`
}

type result struct {
	Shape         shape   `json:"shape"`
	Params        int64   `json:"params"`
	StepGFLOP     float64 `json:"step_gflop"`
	Prism         side    `json:"prism"`
	PyTorch       side    `json:"pytorch_eager"`
	Speedup       float64 `json:"speedup_prism_over_pytorch"`
	MaxLossRelErr float64 `json:"max_loss_rel_diff"`
	Target        float64 `json:"target_speedup"`
	Met           bool    `json:"target_met"`
}

func main() {
	torch.Pin() // for the whole process: libtorch state is per OS thread
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/train:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "", "write the results as JSON here")
	only := flag.String("only", "tiny,small,medium", "comma-separated shapes to run")
	python := flag.String("python", "/usr/bin/python3", "Python with torch (the baseline)")
	smoke := flag.Bool("smoke", false, "a quick check of the harness: 2 steps per shape")
	nthreads := flag.Int("threads", 0, "libtorch threads on both sides (0: every core)")
	precision := flag.String("precision", "fp32", "fp32, or bf16 mixed precision on both sides")
	devName := flag.String("device", "cpu", "where both sides run: cpu, cuda or cuda:N")
	attention := flag.String("attention", "auto", "attention on both sides: auto, sdpa or eager")
	impl := flag.String("impl", "reference", "the baseline model: reference (bench/train/reference.py's, written out in torch) or transformers (AutoModelForSequenceClassification under torch.autocast for bf16, as TRL's --bf16)")
	flag.Parse()
	if *precision != "fp32" && *precision != "bf16" {
		return fmt.Errorf("-precision %q: want fp32 or bf16", *precision)
	}
	if *impl != "reference" && *impl != "transformers" {
		return fmt.Errorf("-impl %q: want reference or transformers", *impl)
	}
	att, err := models.ResolveAttention(*attention)
	if err != nil {
		return err
	}
	dev, err := torch.ResolveDevice(*devName)
	if err != nil {
		return err
	}

	threads, err := torch.Setup(*nthreads)
	if err != nil {
		return err
	}
	if err := checkPython(*python, *impl); err != nil {
		return err
	}
	info := machine.Describe()
	// MFU is against the peak of the precision's matmuls on the device.
	peakDType, n := gotch.Float, int64(2048)
	if *precision == "bf16" {
		peakDType = gotch.BFloat16
	}
	if dev.IsCuda() {
		n = 8192
	}
	peak, err := machine.MatmulPeak(dev, peakDType, n, 5)
	if err != nil {
		return fmt.Errorf("matmul peak: %w", err)
	}
	fmt.Printf("machine: %s, %d cores, %s, libtorch %s, %d threads, device %s; %s matmul peak %.1f GFLOP/s\n",
		info.CPU, info.Cores, info.Torch.BLAS, info.Torch.LibtorchVersion, threads, torch.DeviceName(dev), *precision, peak)

	dir, err := os.MkdirTemp("", "prism-bench-train-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var results []result
	for _, s := range shapes {
		if !slices.Contains(strings.Split(*only, ","), s.Name) {
			continue
		}
		if *smoke {
			s.Warmup, s.Steps = 1, 1
		}
		r, err := bench(s, filepath.Join(dir, s.Name), opts{threads: threads, peak: peak, python: *python, precision: *precision, attention: att, device: dev, impl: *impl})
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		fmt.Printf("%-6s %s %s prism %.4fs  pytorch %.4fs  speedup %.2fx (target %.1fx)  MFU prism %.1f%% pytorch %.1f%%  loss rel diff %.1e\n",
			s.Name, *precision, torch.DeviceName(dev), r.Prism.MedianSeconds, r.PyTorch.MedianSeconds, r.Speedup, r.Target, 100*r.Prism.MFU, 100*r.PyTorch.MFU, r.MaxLossRelErr)
		results = append(results, *r)
	}
	return machine.WriteJSON(*out, map[string]any{
		"benchmark": "training step (forward, Bradley-Terry loss, backward, clipping, AdamW), prism against PyTorch eager on the same libtorch",
		"machine":   info, "threads": threads, "matmul_peak_gflops": peak, "matmul_peak_dtype": *precision, "smoke": *smoke,
		"precision": *precision, "attention": att, "device": torch.DeviceName(dev), "baseline": *impl,
		"loss_tolerance": opts{precision: *precision}.lossTol(), "results": results,
	})
}

// checkPython fails early, with the fix, when the baseline cannot run.
func checkPython(python, impl string) error {
	imports := "import torch"
	if impl == "transformers" {
		imports += ", transformers"
	}
	out, err := exec.Command(python, "-c", imports+"; print(torch.__version__)").CombinedOutput()
	if err != nil {
		return fmt.Errorf("the PyTorch baseline needs %s that can %q (on Debian 12: apt-get install python3-torch): %v: %s",
			python, imports, err, bytes.TrimSpace(out))
	}
	return nil
}

func bench(s shape, dir string, o opts) (*result, error) {
	threads, peak, python := o.threads, o.peak, o.python
	mcfg := s.config()
	if err := mcfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, uint64(s.Seq)))
	modelDir := filepath.Join(dir, "model")
	if err := models.SaveValues(modelDir, mcfg, models.RandomInit(mcfg, rng), nil); err != nil {
		return nil, err
	}
	pairsPath := filepath.Join(dir, "pairs.jsonl")
	if err := writePairs(pairsPath, s, rng); err != nil {
		return nil, err
	}
	total := s.Warmup + s.Steps
	res := &result{Shape: s, Params: mcfg.ParamCount(), StepGFLOP: s.flops() / 1e9, Target: 1.0}
	if s.Name == "tiny" {
		res.Target = 1.2
	}

	// prism: the real trainer, one epoch of the pairs per step.
	cfg, err := configs.Load("", []string{
		"run.dir=" + filepath.Join(dir, "run"), "run.log_every=1000000", fmt.Sprintf("run.threads=%d", threads),
		"model.preset=", "model.path=" + modelDir,
		"data.train=" + pairsPath, "data.eval_fraction=0", fmt.Sprintf("data.max_length=%d", s.Seq),
		fmt.Sprintf("train.steps=%d", total), fmt.Sprintf("train.batch_size=%d", s.Pairs),
		fmt.Sprintf("train.learning_rate=%g", lr), "train.schedule=constant",
		fmt.Sprintf("train.weight_decay=%g", weightDecay), fmt.Sprintf("train.max_grad_norm=%g", maxGradNorm),
		"eval.every=0", "checkpoint.every=0", "model.precision=" + o.precision, "model.attention=" + string(o.attention),
		"run.device=" + torch.DeviceName(o.device),
	}, nil)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, err = trainer.Run(context.Background(), cfg, trainer.Options{Progress: io.Discard, Logger: quiet,
		OnStep: []trainer.StepHook{func(si trainer.StepInfo) error {
			res.Prism.Loss = append(res.Prism.Loss, si.Loss)
			res.Prism.Seconds = append(res.Prism.Seconds, si.Seconds)
			return nil
		}}})
	if err != nil {
		return nil, err
	}

	// PyTorch eager on the same files.
	cmd := exec.Command(python, "bench/train/reference.py", "--model", modelDir, "--pairs", pairsPath,
		"--steps", fmt.Sprint(total), "--threads", fmt.Sprint(threads), "--lr", fmt.Sprint(lr),
		"--weight-decay", fmt.Sprint(weightDecay), "--max-grad-norm", fmt.Sprint(maxGradNorm),
		"--precision", o.precision, "--attention", string(o.attention),
		"--device", torch.DeviceName(o.device), "--impl", o.impl)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("reference.py: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var py struct {
		Torch   string    `json:"torch"`
		Loss    []float64 `json:"loss"`
		Seconds []float64 `json:"seconds"`
	}
	if err := json.Unmarshal(outb, &py); err != nil {
		return nil, fmt.Errorf("reference.py output: %w", err)
	}
	res.PyTorch = side{Loss: py.Loss, Seconds: py.Seconds, Version: "torch " + py.Torch + " (" + o.impl + ")"}
	res.Prism.Version = "prism"

	if len(res.Prism.Loss) != total || len(py.Loss) != total {
		return nil, fmt.Errorf("steps: prism ran %d, PyTorch %d, want %d", len(res.Prism.Loss), len(py.Loss), total)
	}
	for i := range total {
		a, b := res.Prism.Loss[i], py.Loss[i]
		d := math.Abs(a-b) / max(math.Abs(b), o.lossScale(py.Loss[0]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		res.MaxLossRelErr = max(res.MaxLossRelErr, d)
	}
	if res.MaxLossRelErr > o.lossTol() {
		return nil, fmt.Errorf("the two sides disagree: losses prism %v, PyTorch %v (max relative difference %.2e > %.0e): the timing would not compare equal work",
			res.Prism.Loss, py.Loss, res.MaxLossRelErr, o.lossTol())
	}
	tokens := float64(2 * s.Pairs * s.Seq)
	for _, sd := range []*side{&res.Prism, &res.PyTorch} {
		sd.MedianSeconds = median(sd.Seconds[s.Warmup:])
		sd.TokensPerS = tokens / sd.MedianSeconds
		sd.MFU = s.flops() / sd.MedianSeconds / (peak * 1e9)
	}
	res.Speedup = res.PyTorch.MedianSeconds / res.Prism.MedianSeconds
	res.Met = res.Speedup >= res.Target
	return res, nil
}

// writePairs writes s.Pairs pairs of random ids: a prompt of half the
// sequence and two responses filling the rest, so every row is s.Seq
// tokens and neither side pads.
func writePairs(path string, s shape, rng *rand.Rand) error {
	var buf bytes.Buffer
	ids := func(n int) []int64 {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(3 + rng.IntN(s.Vocab-3))
		}
		return v
	}
	p := s.Seq / 2
	for range s.Pairs {
		row := map[string][]int64{"prompt_ids": ids(p), "chosen_ids": ids(s.Seq - p), "rejected_ids": ids(s.Seq - p)}
		b, err := json.Marshal(row)
		if err != nil {
			return err
		}
		buf.Write(append(b, '\n'))
	}
	if buf.Len() == 0 {
		return errors.New("no pairs")
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
