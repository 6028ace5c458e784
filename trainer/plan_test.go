package trainer

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
	"prism/models"
)

// TestPaperConfigsDryRun: the paper-scale experiment files load, validate
// and plan without weights. The shape is Meta-Llama-3-8B-Instruct's
// config.json (testdata, as published with the model); its causal LM has
// 8,030,261,248 parameters, so the reward model has that minus the
// 128256x4096 LM head plus the 4096-weight score head.
func TestPaperConfigsDryRun(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "experiments", "paper", "*.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("paper configs: %v %v", files, err)
	}
	for _, f := range files {
		cfg, err := configs.Load(f, []string{"model.path=testdata/llama-3-8b"}, nil)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		p, err := MakePlan(cfg)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if want := int64(8030261248 - 128256*4096 + 4096); p.Params != want {
			t.Errorf("%s: %d parameters, want %d", f, p.Params, want)
		}
		var b bytes.Buffer
		p.Write(&b)
		out := b.String()
		for _, w := range []string{"parameters   7504928768", "training file not found", "111.8 GiB"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s: plan lacks %q:\n%s", f, w, out)
			}
		}
		if strings.Contains(f, "prioritised") != (p.Recomputes > 0 || cfg.Decomposition.Enabled) {
			t.Errorf("%s: decomposition enabled = %v", f, cfg.Decomposition.Enabled)
		}
	}
	// A missing config.json is an error that names it.
	cfg, _ := configs.Load(files[0], nil, nil)
	if _, err := MakePlan(cfg); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("placeholder path: %v", err)
	}
}

func TestPlanCountsToy(t *testing.T) {
	cfg, err := configs.Load(filepath.Join("..", "experiments", "toy", "length-bias.yaml"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 2000 pairs, 10% held out: 1800 training pairs, 57 steps an epoch, 4 epochs.
	if p.TrainPairs != 1800 || p.Steps != 228 {
		t.Fatalf("plan %+v", p)
	}
	// Recomputes at steps 40, 100, 160, 220 over 1800 pairs x 2 x (4+1).
	if p.Recomputes != 4 || p.SequencesPerRecompute != 18000 {
		t.Fatalf("recomputes %d x %d", p.Recomputes, p.SequencesPerRecompute)
	}
}

// TestMemoryPlan: full fine-tuning of Llama-3-8B with fp32 AdamW needs
// 16 bytes per parameter, which no 80 GiB device holds, so the run is
// refused before it starts; the same run as LoRA would fit its weights
// and optimizer state; checkpointing cuts the activations.
func TestMemoryPlan(t *testing.T) {
	cfg, err := configs.Load(filepath.Join("..", "experiments", "paper", "llama3-8b-instruct-vanilla.yaml"),
		[]string{"model.path=testdata/llama-3-8b", "data.max_length=2048"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.SetDevice("an 80 GiB GPU", 80<<30)
	m := p.Memory
	if m.Static != 16*p.Params {
		t.Errorf("static %d bytes, want 16 per parameter (%d)", m.Static, 16*p.Params)
	}
	err = p.CheckMemory()
	if err == nil || !strings.Contains(err.Error(), "111.8 GiB") || !strings.Contains(err.Error(), "80.0 GiB") {
		t.Fatalf("CheckMemory = %v, want a refusal naming 111.8 GiB and 80.0 GiB", err)
	}
	if m.LoRAStatic >= 80<<30 || m.LoRAParams < 40e6 || m.LoRAParams > 45e6 {
		t.Errorf("LoRA: %d params, %d bytes", m.LoRAParams, m.LoRAStatic)
	}
	if !(m.ActivationsCheckpointed*4 < m.Activations) {
		t.Errorf("checkpointing keeps %d of %d activation bytes", m.ActivationsCheckpointed, m.Activations)
	}
	var b bytes.Buffer
	p.Write(&b)
	for _, w := range []string{"an 80 GiB GPU, 80.0 GiB", "does not fit", "<- this run", "LoRA r=16"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("plan lacks %q:\n%s", w, b.String())
		}
	}

	// The toy run fits this machine.
	toy, err := configs.Load(filepath.Join("..", "experiments", "toy", "length-bias.yaml"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := MakePlan(toy)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.CheckMemory(); err != nil || tp.Memory.DeviceBytes <= 0 {
		t.Errorf("toy run: %v (device %d bytes)", err, tp.Memory.DeviceBytes)
	}
}

// TestActivationEstimate checks the per-token, per-layer estimate by hand
// for a small shape: fp32, 3d + 2h + 2kv + 4f + 2·heads·T elements.
func TestActivationEstimate(t *testing.T) {
	c := &models.Config{HiddenSize: 128, IntermediateSize: 344, NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 32}
	if got, want := activationBytes(c, 512), int64(4*(3*128+2*128+2*64+4*344+2*4*512)); got != want {
		t.Fatalf("got %d, want %d", got, want)
	}
}

// TestMemoryPlanLoRA: the same 8B run with rank-16 LoRA on every
// projection trains 42M parameters; its static memory fits 80 GiB, so it
// is not refused, and the plan marks the LoRA row as this run.
func TestMemoryPlanLoRA(t *testing.T) {
	cfg, err := configs.Load(filepath.Join("..", "experiments", "paper", "llama3-8b-instruct-vanilla.yaml"),
		[]string{"model.path=testdata/llama-3-8b", "data.max_length=2048", "train.lora_rank=16", "train.gradient_checkpointing=true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.SetDevice("an 80 GiB GPU", 80<<30)
	if p.Trained < 40e6 || p.Trained > 45e6 || p.Memory.Static != 4*p.Params+16*p.Trained {
		t.Fatalf("trained %d, static %d", p.Trained, p.Memory.Static)
	}
	if err := p.CheckMemory(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	p.Write(&b)
	if !strings.Contains(b.String(), "LoRA r=16, gradient checkpointing") || !strings.Contains(b.String(), "fits  <- this run") {
		t.Errorf("plan:\n%s", b.String())
	}
}

// TestMemoryPlanBF16: in bf16 the static memory is the same (float32
// master weights and moments), the activations are bfloat16 plus the
// rounded weight copies autograd keeps (all of them; one block's with
// checkpointing), and the plan says so.
func TestMemoryPlanBF16(t *testing.T) {
	plan := func(prec string) *Plan {
		t.Helper()
		cfg, err := configs.Load(filepath.Join("..", "experiments", "paper", "llama3-8b-instruct-vanilla.yaml"),
			[]string{"model.path=testdata/llama-3-8b", "data.max_length=2048", "model.precision=" + prec, "run.device=cpu"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := MakePlan(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	f32, b16 := plan("fp32").Memory, plan("bf16").Memory
	if f32.Static != b16.Static {
		t.Errorf("static: fp32 %d, bf16 %d bytes; want equal (float32 masters)", f32.Static, b16.Static)
	}
	p := plan("bf16")
	copies := 2 * p.Params
	if got, want := b16.Activations-copies, (f32.Activations)/2; got < want*99/100 || got > want*101/100 {
		t.Errorf("bf16 activations less the weight copies %d, want about half of fp32's %d", got, f32.Activations)
	}
	if b16.ActivationsCheckpointed >= f32.ActivationsCheckpointed || b16.ActivationsCheckpointed <= f32.ActivationsCheckpointed/2 {
		t.Errorf("checkpointed: bf16 %d, fp32 %d; want between half and all of it (one block's weight copies added)", b16.ActivationsCheckpointed, f32.ActivationsCheckpointed)
	}
	var b bytes.Buffer
	p.Write(&b)
	if !strings.Contains(b.String(), "bfloat16, with the rounded weights") || !strings.Contains(b.String(), "the run is on the CPU") {
		t.Errorf("plan:\n%s", b.String())
	}
}
