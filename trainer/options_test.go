package trainer

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"prism/configs"
	"prism/internal/torch"
	"prism/models"
)

func trainValues(t *testing.T, sets ...string) map[string][]float32 {
	t.Helper()
	dir := t.TempDir()
	cfg, err := configs.Load("", append([]string{"run.dir=" + filepath.Join(dir, "run"), "data.synthetic_pairs=200",
		"train.steps=3", "train.batch_size=16", "eval.every=0", "checkpoint.every=0"}, sets...), nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := models.Load(res.ModelDir, torch.CPU(), rand.New(rand.NewPCG(0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	v, err := m.Values()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGradientAccumulation: four micro-batches of 4 give the weights of
// one batch of 16, to float32 tolerance.
func TestGradientAccumulation(t *testing.T) {
	whole := trainValues(t, "train.micro_batch_size=16")
	acc := trainValues(t, "train.micro_batch_size=4")
	var worst float64
	for name, a := range whole {
		b := acc[name]
		for i := range a {
			worst = math.Max(worst, math.Abs(float64(a[i]-b[i])))
		}
	}
	if worst > 2e-5 {
		t.Fatalf("accumulated gradients moved the weights %g away from whole-batch training", worst)
	}
}

// TestTrainHeadOnly: with train.trainable=head only score.weight changes.
func TestTrainHeadOnly(t *testing.T) {
	got := trainValues(t, "train.trainable=head", "train.learning_rate=0.01")
	c, _ := models.Preset("tiny-llama")
	init := models.RandomInit(c, rand.New(rand.NewPCG(1, 0x1417)))
	for name, v := range init {
		same := true
		for i := range v {
			if v[i] != got[name][i] {
				same = false
				break
			}
		}
		if name == "score.weight" && same {
			t.Error("the head did not train")
		}
		if name != "score.weight" && !same {
			t.Errorf("%s changed although frozen", name)
		}
	}
}

// TestMarginAndCentering: both loss options run and change training.
func TestMarginAndCentering(t *testing.T) {
	base := trainValues(t)
	centered := trainValues(t, "train.center_rewards_coef=0.5")
	if equalValues(base, centered) {
		t.Error("reward centering changed nothing")
	}
}

func equalValues(a, b map[string][]float32) bool {
	for n, v := range a {
		for i := range v {
			if v[i] != b[n][i] {
				return false
			}
		}
	}
	return true
}

func TestTopLayersNeedsEnoughLayers(t *testing.T) {
	dir := t.TempDir()
	cfg, err := configs.Load("", []string{"run.dir=" + dir, "train.trainable=top_layers", "train.trainable_top_layers=5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{}); err == nil {
		t.Fatal("5 top layers of a 2-layer model accepted")
	}
}

// TestPolicyWeightedDecomposition runs prioritised training with policy
// importance weights from a tiny causal LM (tied embeddings) and checks
// that the weights are not uniform (effective sample size below M+1).
func TestPolicyWeightedDecomposition(t *testing.T) {
	dir := t.TempDir()
	c, _ := models.Preset("tiny-llama")
	policyDir := filepath.Join(dir, "policy")
	if err := models.SaveValues(policyDir, c, models.RandomInit(c, rand.New(rand.NewPCG(9, 9))), nil); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(policyDir, "config.json")
	b, _ := os.ReadFile(cfgPath)
	os.WriteFile(cfgPath, []byte(strings.Replace(string(b), `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1)), 0o644)
	cfg, err := configs.Load("", []string{"run.dir=" + filepath.Join(dir, "run"), "data.train=toy:length_bias",
		"data.synthetic_pairs=120", "train.steps=6", "train.batch_size=8", "eval.every=0", "checkpoint.every=0",
		"decomposition.enabled=true", "decomposition.warmup_steps=2", "decomposition.every_steps=3",
		"decomposition.samples=3", "decomposition.weights=policy", "decomposition.policy_model=" + policyDir,
		"decomposition.policy_temperature=5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	mb, _ := os.ReadFile(filepath.Join(cfg.Run.Dir, "metrics.jsonl"))
	var ess []float64
	for _, l := range strings.Split(string(mb), "\n") {
		var m struct {
			Kind    string  `json:"kind"`
			MeanESS float64 `json:"mean_ess"`
			Share   float64 `json:"share_of_wall_time"`
			Tokens  int     `json:"tokens"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Kind == "decomposition" {
			ess = append(ess, m.MeanESS)
			// The first recompute runs two steps in: its share of the
			// wall time is large, but a share.
			if m.Share <= 0 || m.Share > 1 || m.Tokens <= 0 {
				t.Errorf("decomposition row: share of wall time %v, %d tokens", m.Share, m.Tokens)
			}
		}
	}
	if len(ess) != 2 {
		t.Fatalf("%d decomposition rows, want 2 (steps 2 and 5)", len(ess))
	}
	for _, e := range ess {
		if e >= 4-1e-9 || e < 1 {
			t.Errorf("mean ESS %v: want non-uniform weights over 4 prompts (1 <= ESS < 4)", e)
		}
	}
	// A policy with another vocabulary is refused.
	cfg.Decomposition.PolicyModel = filepath.Join(dir, "missing")
	cfg.Run.Dir = filepath.Join(dir, "run2")
	if _, err := Run(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), "policy_model") {
		t.Errorf("missing policy model: %v", err)
	}
}

// TestToyPolicyWeights: policy_model toy weights the prompts with the toy
// generator's own likelihoods (non-uniform weights), and is refused for
// data that is not a toy task.
func TestToyPolicyWeights(t *testing.T) {
	dir := t.TempDir()
	sets := []string{"run.dir=" + filepath.Join(dir, "run"), "data.train=toy:prompt_decides",
		"data.synthetic_pairs=120", "train.steps=6", "train.batch_size=8", "eval.every=0", "checkpoint.every=0",
		"decomposition.enabled=true", "decomposition.warmup_steps=2", "decomposition.every_steps=3",
		"decomposition.samples=3", "decomposition.weights=policy", "decomposition.policy_model=toy"}
	cfg, err := configs.Load("", sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.SwapSurvival < 0 || res.SwapSurvival > 1 || res.Test == nil {
		t.Errorf("prompt-swap probe %v, test %+v", res.SwapSurvival, res.Test)
	}
	mb, _ := os.ReadFile(filepath.Join(cfg.Run.Dir, "metrics.jsonl"))
	rows := 0
	for _, l := range strings.Split(string(mb), "\n") {
		var m struct {
			Kind    string  `json:"kind"`
			MeanESS float64 `json:"mean_ess"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Kind == "decomposition" {
			rows++
			if m.MeanESS >= 4-1e-9 || m.MeanESS < 1 {
				t.Errorf("mean ESS %v: want non-uniform weights over 4 prompts", m.MeanESS)
			}
		}
	}
	if rows != 2 {
		t.Errorf("%d decomposition rows, want 2", rows)
	}
	if _, err := configs.Load("", append(sets, "data.train=synthetic"), nil); err == nil || !strings.Contains(err.Error(), "toy tasks' built-in policy") {
		t.Errorf("toy policy on synthetic data: %v", err)
	}
}

// TestEveryNSteps: a hook scheduled every N steps runs after steps N, 2N,
// ..., and never for N <= 0.
func TestEveryNSteps(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want []int
	}{{3, []int{3, 6, 9}}, {1, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}, {0, nil}, {-2, nil}, {11, nil}} {
		var got []int
		h := EveryNSteps(tt.n, func(s StepInfo) error { got = append(got, s.Step); return nil })
		for step := 1; step <= 10; step++ {
			if err := h(StepInfo{Step: step}); err != nil {
				t.Fatal(err)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("every %d steps ran after %v, want %v", tt.n, got, tt.want)
		}
	}
}
