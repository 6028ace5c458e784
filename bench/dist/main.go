// Command dist measures data-parallel scaling: the same training run with
// one process and with two (`prism launch --nproc 2`), side by side in one
// command, after checking that both compute the same losses. It reports
// the median step time of each, their ratio and the time the two-process
// run spends summing gradients (allreduce) per step.
//
//	go run ./bench/dist -prism bin/prism -out bench/results/dist.json
//
// Each side gets every core: one process with all the threads, or each of
// the two with half of them.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"

	"prism/bench/machine"
	"prism/models"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dist:", err)
		os.Exit(1)
	}
}

// shape is one model and batch to time.
type shape struct {
	Name                 string  `json:"name"`
	Vocab, Hidden, Inter int     `json:"-"`
	Layers, Heads, KV    int     `json:"-"`
	MaxLen, Batch, Steps int     `json:"-"`
	Params               int64   `json:"params"`
	BatchPairs           int     `json:"batch_pairs"`
	MaxLength            int     `json:"max_length"`
	GradientMiB          float64 `json:"gradient_mib"`
}

var shapes = []shape{
	{Name: "tiny", Vocab: 1024, Hidden: 64, Inter: 176, Layers: 2, Heads: 4, KV: 2, MaxLen: 64, Batch: 32, Steps: 40},
	{Name: "small", Vocab: 32000, Hidden: 256, Inter: 688, Layers: 4, Heads: 4, KV: 2, MaxLen: 256, Batch: 8, Steps: 12},
}

// side is one configuration's measurement.
type side struct {
	Processes        int       `json:"processes"`
	ThreadsPerRank   int       `json:"threads_per_rank"`
	MedianStepS      float64   `json:"median_step_seconds"`
	MedianAllReduceS float64   `json:"median_allreduce_seconds,omitempty"`
	AllReduceShare   float64   `json:"allreduce_share_of_step,omitempty"`
	Loss             []float64 `json:"loss"`
}

type result struct {
	Shape shape `json:"shape"`
	One   side  `json:"one_process"`
	Two   side  `json:"two_processes"`
	// Speedup is the one-process step time over the two-process one.
	Speedup        float64 `json:"speedup"`
	MaxLossRelDiff float64 `json:"max_loss_rel_diff"`
}

func run() error {
	prism := flag.String("prism", "bin/prism", "the prism binary")
	out := flag.String("out", "", "write the results as JSON here")
	smoke := flag.Bool("smoke", false, "a quick check of the harness: tiny shape, few steps, nothing written")
	flag.Parse()
	cores := runtime.NumCPU()
	todo := shapes
	if *smoke {
		todo = []shape{shapes[0]}
		todo[0].Steps = 6
	}
	tmp, err := os.MkdirTemp("", "prism-bench-dist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var results []result
	for _, s := range todo {
		r, err := measure(*prism, filepath.Join(tmp, s.Name), s, cores)
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		fmt.Printf("%-6s %6.1fM params, batch %d: 1 process %.3fs/step, 2 processes %.3fs/step (allreduce %.3fs, %.0f%%): speedup %.2fx; losses agree to %.1e\n",
			s.Name, float64(r.Shape.Params)/1e6, s.Batch, r.One.MedianStepS, r.Two.MedianStepS, r.Two.MedianAllReduceS, 100*r.Two.AllReduceShare, r.Speedup, r.MaxLossRelDiff)
		results = append(results, *r)
	}
	if *out == "" || *smoke {
		return nil
	}
	return machine.WriteJSON(*out, map[string]any{"machine": machine.Describe(), "results": results,
		"note": "2 processes on one machine share its cores: each rank gets half the threads; the ratio is for the record, not a target"})
}

func measure(prism, dir string, s shape, cores int) (*result, error) {
	mcfg := &models.Config{ModelType: "llama", VocabSize: s.Vocab, HiddenSize: s.Hidden, IntermediateSize: s.Inter,
		NumHiddenLayers: s.Layers, NumAttentionHeads: s.Heads, NumKeyValueHeads: s.KV, RMSNormEps: 1e-5,
		RopeTheta: 10000, MaxPositionEmbeddings: 4096, BOSTokenID: 1, EOSTokenID: 2,
		InitializerRange: 0.02, HeadDim: s.Hidden / s.Heads, HiddenAct: "silu"}
	pad := 0
	mcfg.PadTokenID = &pad
	if err := mcfg.Validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(7, 8))
	modelDir := filepath.Join(dir, "model")
	if err := models.SaveValues(modelDir, mcfg, models.RandomInit(mcfg, rng), nil); err != nil {
		return nil, err
	}
	s.Params, s.BatchPairs, s.MaxLength = mcfg.ParamCount(), s.Batch, s.MaxLen
	s.GradientMiB = float64(s.Params) * 4 / (1 << 20)
	sets := []string{
		"model.preset=", "model.path=" + modelDir, "data.train=synthetic", fmt.Sprintf("data.synthetic_pairs=%d", s.Batch*s.Steps),
		fmt.Sprintf("data.synthetic_min_length=%d", s.MaxLen/4), fmt.Sprintf("data.synthetic_max_length=%d", s.MaxLen/2-4),
		fmt.Sprintf("data.max_length=%d", s.MaxLen), "data.eval_fraction=0",
		fmt.Sprintf("train.steps=%d", s.Steps), fmt.Sprintf("train.batch_size=%d", s.Batch), "train.schedule=constant",
		"eval.every=0", "checkpoint.every=0", "run.log_every=1000000",
	}
	args := func(runDir string) []string {
		a := []string{"train", "--set", "run.dir=" + runDir}
		for _, x := range sets {
			a = append(a, "--set", x)
		}
		return a
	}
	res := &result{Shape: s}
	var err error
	oneDir, twoDir := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	if err := execPrism(prism, append([]string{"--threads", fmt.Sprint(cores)}, args(oneDir)...), nil); err != nil {
		return nil, err
	}
	half := max(1, cores/2)
	if err := execPrism(prism, append([]string{"launch", "--nproc", "2", "--"}, args(twoDir)...), []string{fmt.Sprintf("PRISM_THREADS=%d", half)}); err != nil {
		return nil, err
	}
	if res.One, err = readSide(oneDir, 1, cores); err != nil {
		return nil, err
	}
	if res.Two, err = readSide(twoDir, 2, half); err != nil {
		return nil, err
	}
	if len(res.One.Loss) != len(res.Two.Loss) {
		return nil, fmt.Errorf("1 process ran %d steps, 2 processes %d", len(res.One.Loss), len(res.Two.Loss))
	}
	for i := range res.One.Loss {
		d := math.Abs(res.One.Loss[i]-res.Two.Loss[i]) / math.Max(math.Abs(res.One.Loss[i]), 1e-12)
		res.MaxLossRelDiff = math.Max(res.MaxLossRelDiff, d)
	}
	if res.MaxLossRelDiff > 1e-4 {
		return nil, fmt.Errorf("losses differ by %.2g (relative) between 1 and 2 processes: not the same computation, no ratio reported", res.MaxLossRelDiff)
	}
	res.Speedup = res.One.MedianStepS / res.Two.MedianStepS
	return res, nil
}

func execPrism(prism string, args, env []string) error {
	cmd := exec.Command(prism, args...)
	cmd.Env = append(os.Environ(), env...)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w\n%s", prism, args, err, outb.String())
	}
	return nil
}

// readSide takes the step times from metrics.jsonl: the differences of
// wall_s between steps, skipping the first 3 (warm-up).
func readSide(runDir string, procs, threads int) (side, error) {
	f, err := os.Open(filepath.Join(runDir, "metrics.jsonl"))
	if err != nil {
		return side{}, err
	}
	defer f.Close()
	sd := side{Processes: procs, ThreadsPerRank: threads}
	var walls, ars []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct {
			Kind       string   `json:"kind"`
			Loss       float64  `json:"loss"`
			Wall       float64  `json:"wall_s"`
			AllReduceS *float64 `json:"allreduce_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.Kind != "train" {
			continue
		}
		sd.Loss = append(sd.Loss, m.Loss)
		walls = append(walls, m.Wall)
		if m.AllReduceS != nil {
			ars = append(ars, *m.AllReduceS)
		}
	}
	if len(walls) < 5 {
		return sd, fmt.Errorf("%s: only %d steps logged", runDir, len(walls))
	}
	var steps []float64
	for i := 4; i < len(walls); i++ {
		steps = append(steps, walls[i]-walls[i-1])
	}
	sd.MedianStepS = median(steps)
	if procs > 1 {
		if len(ars) < 4 {
			return sd, fmt.Errorf("%s: no allreduce times logged", runDir)
		}
		sd.MedianAllReduceS = median(ars[3:])
		sd.AllReduceShare = sd.MedianAllReduceS / sd.MedianStepS
	}
	return sd, sc.Err()
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
