package trainer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"prism/internal/fsutil"
	"syscall"

	"prism/configs"
	"prism/internal/torch"
	"prism/models"
)

// Plan is what a run would do, worked out without loading weights or
// training: `prism train --dry-run`.
type Plan struct {
	Model          *models.Config
	Params         int64
	Trained        int64
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
	// Memory is the training memory estimate; see MemoryPlan.
	Memory MemoryPlan
}

// MemoryPlan estimates the memory of one training process (every rank of
// a data-parallel run holds the same) in bytes: float32 weights, 4 bytes
// per parameter (in bf16 too: they are the master weights), gradients 4
// and AdamW's two moments 8 per trained parameter, and the activations
// autograd keeps for one micro-batch of max_length tokens.
type MemoryPlan struct {
	// Static is weights + gradients + optimizer state.
	Static int64
	// Activations without and with gradient checkpointing per block.
	Activations, ActivationsCheckpointed int64
	// Checkpointing says which of the two the configuration uses.
	Checkpointing bool
	// LoRA says the run trains LoRA adapters; LoRARank, LoRAParams and
	// LoRAStatic describe them (the configured rank, or rank 16 on every
	// projection for comparison when the run trains the full model).
	LoRA                   bool
	LoRARank               int
	LoRAParams, LoRAStatic int64
	// MicroBatch (pairs) and MaxLength (tokens) size the activations;
	// BF16 says they are bfloat16 (model.precision bf16).
	MicroBatch, MaxLength int
	BF16                  bool
	// Device is what the plan is checked against and DeviceBytes its
	// memory (0: unknown).
	Device      string
	DeviceBytes int64
}

// Total is what the configured run needs.
func (m MemoryPlan) Total() int64 {
	if m.Checkpointing {
		return m.Static + m.ActivationsCheckpointed
	}
	return m.Static + m.Activations
}

// activationBytes estimates what autograd keeps for one decoder layer per
// token, fp32, on prism's explicit attention path: the layer input and
// normed input, q, k and v, the attention output, the second norm's input
// and output (5h + 2kv), the MLP's gate, up, silu(gate) and product (4f),
// and the attention scores and probabilities of the token's row (2 heads
// x T). It is an estimate: libtorch may keep a little more or less.
func activationBytes(c *models.Config, T int64) (perLayerPerToken int64) {
	h := int64(c.NumAttentionHeads * c.HeadDim)
	kv := int64(c.NumKeyValueHeads * c.HeadDim)
	d, f := int64(c.HiddenSize), int64(c.IntermediateSize)
	return 4 * (3*d + 2*h + 2*kv + 4*f + 2*int64(c.NumAttentionHeads)*T)
}

// planMemory fills the memory estimate of a run of mc under cfg. In bf16
// the activations are half the size, and autograd also keeps the
// bfloat16 copies of the weights each forward pass rounds: all of them,
// or with checkpointing one block's.
func planMemory(mc *models.Config, cfg *configs.Config, params, trained int64, bf16 bool) MemoryPlan {
	tr := cfg.Train
	T := int64(cfg.Data.MaxLength)
	tokens := 2 * int64(tr.MicroBatch()) * T // chosen and rejected rows
	L, d := int64(mc.NumHiddenLayers), int64(mc.HiddenSize)
	layer := activationBytes(mc, T) * tokens
	hidden := 4 * d * tokens // one float32 hidden state per token
	var copies, blockCopy int64
	if bf16 {
		layer, hidden = layer/2, hidden/2
		copies = 2 * params
		blockCopy = 2 * (params - int64(mc.VocabSize)*d) / max(L, 1)
	}
	m := MemoryPlan{
		Static:        4*params + 12*trained,
		Activations:   L*layer + hidden + copies,
		Checkpointing: tr.GradientCheckpointing,
		MicroBatch:    tr.MicroBatch(),
		MaxLength:     int(T),
		BF16:          bf16,
	}
	// Checkpointing keeps each block's input and the gradient arriving at
	// it, and one block's activations while it is recomputed.
	m.ActivationsCheckpointed = 2*L*hidden + layer + blockCopy
	m.LoRA, m.LoRARank = tr.LoRARank > 0, tr.LoRARank
	targets := tr.LoRATargets
	if !m.LoRA {
		m.LoRARank, targets = 16, models.LoRATargets
	}
	m.LoRAParams = loraParams(mc, m.LoRARank, targets) + d // and the score head
	m.LoRAStatic = 4*params + 16*m.LoRAParams
	if m.LoRA {
		m.Static = m.LoRAStatic
	}
	return m
}

// loraParams counts the adapter factors: rank·(in + out) per target
// projection per layer.
func loraParams(mc *models.Config, rank int, targets []string) int64 {
	d := int64(mc.HiddenSize)
	h := int64(mc.NumAttentionHeads * mc.HeadDim)
	kv := int64(mc.NumKeyValueHeads * mc.HeadDim)
	f := int64(mc.IntermediateSize)
	size := map[string]int64{"q_proj": d + h, "k_proj": d + kv, "v_proj": d + kv, "o_proj": h + d,
		"gate_proj": d + f, "up_proj": d + f, "down_proj": f + d}
	var per int64
	for _, t := range targets {
		per += size[t]
	}
	return int64(mc.NumHiddenLayers) * int64(rank) * per
}

// MakePlan resolves cfg into a plan. The model's config.json must be
// readable (for model.path) but its weights need not exist.
func MakePlan(cfg *configs.Config) (*Plan, error) {
	sp, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	mc := sp.model
	p := &Plan{Model: mc, Params: mc.ParamCount(), TrainPairs: -1}
	switch sp.source.Kind {
	case configs.SourceSynthetic, configs.SourceToy:
		p.TrainPairs = cfg.Data.SyntheticPairs
	default:
		if n, err := countLines(sp.source.Path); err == nil {
			p.TrainPairs = n
		}
	}
	if p.TrainPairs >= 0 && cfg.Data.Eval == "" {
		p.TrainPairs -= int(float64(p.TrainPairs) * cfg.Data.EvalFraction)
	}
	if p.TrainPairs > 0 || cfg.Train.Steps > 0 {
		p.Steps = cfg.Train.TotalSteps(max(p.TrainPairs, 0))
	}
	trained := sp.trainedParams()
	p.Trained = trained
	// fp32 weights; fp32 gradients and two fp32 AdamW moments for what trains.
	p.BytesWeights = 4 * p.Params
	p.BytesGrads = 4 * trained
	p.BytesOptimizer = 8 * trained
	p.Memory = planMemory(mc, cfg, p.Params, trained, sp.compute.Precision == models.PrecisionBF16)
	if p.Memory.LoRA {
		p.Trained = p.Memory.LoRAParams
		p.BytesGrads, p.BytesOptimizer = 4*p.Trained, 8*p.Trained
	}
	// On the CPU the device is this machine's memory. A card's memory is
	// not known here (libtorch's binding has no query for it): the plan
	// says so, and --memory-gib gives it.
	if sp.device.IsCuda() {
		p.Memory.Device = torch.DeviceName(sp.device) + " (its memory: give --memory-gib)"
	} else {
		var si syscall.Sysinfo_t
		if err := syscall.Sysinfo(&si); err == nil {
			p.Memory.Device, p.Memory.DeviceBytes = "this machine's memory (the run is on the CPU)", int64(si.Totalram)*int64(si.Unit)
		}
	}
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
	f, err := fsutil.OpenRegular(path)
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
	gib := func(b int64) string {
		if b < 1<<30 {
			return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
		}
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	}
	fmt.Fprintf(w, "model        %s\n", p.Model.Describe())
	fmt.Fprintf(w, "parameters   %d (%.2fB)\n", p.Params, float64(p.Params)/1e9)
	fmt.Fprintf(w, "memory       weights %s + gradients %s + AdamW moments %s = %s before activations (float32 master weights)\n",
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
	p.writeMemory(w, gib)
	if p.Recomputes > 0 {
		share := p.ScoreFLOPs / (p.ScoreFLOPs + p.TrainFLOPs)
		fmt.Fprintf(w, "decomposition %d recomputes x %d sequences scored (%.3g FLOPs, about %.0f%% of the run's compute)\n",
			p.Recomputes, p.SequencesPerRecompute, p.ScoreFLOPs, 100*share)
	}
}

// writeMemory prints the memory plan against the device.
func (p *Plan) writeMemory(w io.Writer, gib func(int64) string) {
	m := p.Memory
	dt := "float32"
	if m.BF16 {
		dt = "bfloat16, with the rounded weights"
	}
	fmt.Fprintf(w, "activations  %s per micro-batch (%d pairs x %d tokens, explicit attention, %s), %s with gradient checkpointing; estimates\n",
		gib(m.Activations), m.MicroBatch, m.MaxLength, dt, gib(m.ActivationsCheckpointed))
	dev := m.Device + ", memory unknown"
	if m.DeviceBytes > 0 {
		dev = fmt.Sprintf("%s, %s", m.Device, gib(m.DeviceBytes))
	}
	fmt.Fprintf(w, "fits?        against %s:\n", dev)
	// Weights, gradients and AdamW moments of what trains without LoRA.
	full, fullName := 16*p.Params, "full fine-tuning"
	if !m.LoRA && p.Trained != p.Params {
		full, fullName = 4*p.Params+12*p.Trained, fmt.Sprintf("fine-tuning %.1fM of the parameters (train.trainable)", float64(p.Trained)/1e6)
	}
	mark := func(on bool) string {
		if on {
			return "  <- this run"
		}
		return ""
	}
	rows := []struct {
		name string
		need int64
		this bool
	}{
		{fullName, full + m.Activations, !m.LoRA && !m.Checkpointing},
		{fullName + ", gradient checkpointing", full + m.ActivationsCheckpointed, !m.LoRA && m.Checkpointing},
		{fmt.Sprintf("LoRA r=%d (%.1fM trained with the head)", m.LoRARank, float64(m.LoRAParams)/1e6), m.LoRAStatic + m.Activations, m.LoRA && !m.Checkpointing},
		{fmt.Sprintf("LoRA r=%d, gradient checkpointing", m.LoRARank), m.LoRAStatic + m.ActivationsCheckpointed, m.LoRA && m.Checkpointing},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "  %-86s %10s  %s%s\n", r.name, gib(r.need), fits(r.need, m.DeviceBytes), mark(r.this))
	}
}

func fits(need, have int64) string {
	switch {
	case have <= 0:
		return "unknown"
	case need <= have:
		return "fits"
	default:
		return fmt.Sprintf("does not fit (%.2fx)", float64(need)/float64(have))
	}
}

// CheckMemory refuses a run whose weights, gradients and optimizer state
// alone exceed the device's memory: it cannot start, and saying so now
// beats an out-of-memory error after the model has loaded. Activations
// are an estimate, so exceeding with them is left to the caller to warn.
func (p *Plan) CheckMemory() error {
	m := p.Memory
	if m.DeviceBytes <= 0 || m.Static <= m.DeviceBytes {
		return nil
	}
	g := func(b int64) float64 { return float64(b) / (1 << 30) }
	return fmt.Errorf("this run needs %.1f GiB for weights, gradients and AdamW state (fp32, %d parameters, %d trained) before any activations, and %s has %.1f GiB: train fewer parameters (train.trainable: top_layers or head), a smaller model, or more memory (prism train --dry-run shows the plan)",
		g(m.Static), p.Params, p.Trained, m.Device, g(m.DeviceBytes))
}

// SetDevice checks the plan against a device of the given memory instead
// (planning a run for another machine).
func (p *Plan) SetDevice(name string, bytes int64) {
	p.Memory.Device, p.Memory.DeviceBytes = name, bytes
}
