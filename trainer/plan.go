package trainer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"prism/configs"
	"prism/data"
	"prism/models"
)

// Plan is what a run would do, worked out without loading weights or
// training: `prism train --dry-run`.
type Plan struct {
	Model          *models.Config
	Params         int64
	TrainPairs     int // -1 when the data file is not there to count
	Steps          int
	BytesWeights   int64
	BytesGrads     int64
	BytesOptimizer int64
	// Recomputes and SequencesPerRecompute size the decomposition's extra
	// scoring; ScoreFLOPs is its forward-pass cost over the whole run.
	Recomputes, SequencesPerRecompute int
	ScoreFLOPs                        float64
	TrainFLOPs                        float64
}

// MakePlan resolves cfg into a plan. The model's config.json must be
// readable (for model.path) but its weights need not exist.
func MakePlan(cfg *configs.Config) (*Plan, error) {
	var mc *models.Config
	var err error
	if cfg.Model.Path != "" {
		mc, err = models.LoadConfig(filepath.Join(cfg.Model.Path, "config.json"))
	} else {
		mc, err = models.Preset(cfg.Model.Preset)
	}
	if err != nil {
		return nil, err
	}
	p := &Plan{Model: mc, Params: mc.ParamCount(), TrainPairs: -1}
	switch d := cfg.Data; {
	case d.Train == "synthetic" || strings.HasPrefix(d.Train, "toy:"):
		p.TrainPairs = d.SyntheticPairs
	default:
		if n, err := countLines(d.Train); err == nil {
			p.TrainPairs = n
		}
	}
	if p.TrainPairs >= 0 && cfg.Data.Eval == "" {
		p.TrainPairs -= int(float64(p.TrainPairs) * cfg.Data.EvalFraction)
	}
	p.Steps = cfg.Train.Steps
	if p.Steps == 0 && p.TrainPairs > 0 {
		p.Steps = cfg.Train.Epochs * data.StepsPerEpoch(p.TrainPairs, cfg.Train.BatchSize)
	}
	trained := p.Params
	if cfg.Train.Trainable == "head" {
		trained = int64(mc.HiddenSize)
	}
	// fp32 weights; fp32 gradients and two fp32 AdamW moments for what trains.
	p.BytesWeights = 4 * p.Params
	p.BytesGrads = 4 * trained
	p.BytesOptimizer = 8 * trained
	tokensPerStep := float64(2*cfg.Train.BatchSize) * float64(cfg.Data.MaxLength)
	// 6 FLOPs per parameter per token for forward and backward (an upper
	// bound with padding to max_length; attention's quadratic part is left
	// out of this estimate).
	p.TrainFLOPs = 6 * float64(p.Params) * tokensPerStep * float64(p.Steps)
	if d := cfg.Decomposition; d.Enabled && p.Steps > d.WarmupSteps {
		p.Recomputes = (p.Steps-d.WarmupSteps-1)/d.EverySteps + 1
		pool := p.TrainPairs
		if d.PoolSize > 0 && (pool < 0 || d.PoolSize < pool) {
			pool = d.PoolSize
		}
		if pool > 0 {
			p.SequencesPerRecompute = pool * 2 * (d.Samples + 1)
			p.ScoreFLOPs = 2 * float64(p.Params) * float64(cfg.Data.MaxLength) * float64(p.SequencesPerRecompute) * float64(p.Recomputes)
		}
	}
	return p, nil
}

func countLines(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := r.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// Write prints the plan for people.
func (p *Plan) Write(w io.Writer) {
	gib := func(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }
	fmt.Fprintf(w, "model        %s\n", p.Model.Describe())
	fmt.Fprintf(w, "parameters   %d (%.2fB)\n", p.Params, float64(p.Params)/1e9)
	fmt.Fprintf(w, "memory       weights %s + gradients %s + AdamW moments %s = %s before activations (fp32)\n",
		gib(p.BytesWeights), gib(p.BytesGrads), gib(p.BytesOptimizer), gib(p.BytesWeights+p.BytesGrads+p.BytesOptimizer))
	if p.TrainPairs >= 0 {
		fmt.Fprintf(w, "data         %d training pairs\n", p.TrainPairs)
	} else {
		fmt.Fprintf(w, "data         training file not found: steps unknown until it is there\n")
	}
	if p.Steps > 0 {
		fmt.Fprintf(w, "steps        %d (about %.3g training FLOPs at max_length)\n", p.Steps, p.TrainFLOPs)
	} else {
		fmt.Fprintf(w, "steps        unknown\n")
	}
	if p.Recomputes > 0 {
		share := p.ScoreFLOPs / (p.ScoreFLOPs + p.TrainFLOPs)
		fmt.Fprintf(w, "decomposition %d recomputes x %d sequences scored (%.3g FLOPs, about %.0f%% of the run's compute)\n",
			p.Recomputes, p.SequencesPerRecompute, p.ScoreFLOPs, 100*share)
	}
}
