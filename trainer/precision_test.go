package trainer

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
)

// TestBF16TracksFP32: a bf16 mixed-precision run follows the float32 run
// of the same configuration: step by step the losses stay close, and the
// held-out accuracy ends within a few pairs (measured: losses within
// 0.0074 on libtorch 1.13 and 0.0173 on 2.6, accuracy equal; the bound
// 0.05 leaves room for other CPUs' bfloat16 kernels). The precision is part of the
// run: resuming under another one is refused.
func TestBF16TracksFP32(t *testing.T) {
	dir := t.TempDir()
	losses := map[string][]float64{}
	results := map[string]*Result{}
	for _, p := range []string{"fp32", "bf16"} {
		d := filepath.Join(dir, p)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg, err := configs.Load(smallConfig(t, d, ""), []string{"model.precision=" + p, "train.steps=60", "train.learning_rate=0.002"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), cfg, Options{OnStep: []StepHook{func(s StepInfo) error {
			losses[p] = append(losses[p], s.Loss)
			return nil
		}}})
		if err != nil {
			t.Fatal(err)
		}
		results[p] = res
	}
	a, b := losses["fp32"], losses["bf16"]
	worst, differ := 0.0, false
	for i := range a {
		worst = math.Max(worst, math.Abs(a[i]-b[i]))
		differ = differ || a[i] != b[i]
	}
	e32, e16 := results["fp32"].Eval, results["bf16"].Eval
	t.Logf("largest per-step loss difference %.4f (losses from %.3f to %.3f); held-out accuracy fp32 %.3f, bf16 %.3f", worst, a[0], a[len(a)-1], e32.Accuracy, e16.Accuracy)
	if !differ {
		t.Fatal("the bf16 run's losses equal the float32 run's bit for bit: bf16 was not applied")
	}
	if worst > 0.05 {
		t.Errorf("a bf16 step's loss differs from float32's by %.4f (more than 0.05)", worst)
	}
	if d := math.Abs(e32.Accuracy - e16.Accuracy); d > 0.05 {
		t.Errorf("held-out accuracy fp32 %.3f, bf16 %.3f", e32.Accuracy, e16.Accuracy)
	}
	// Resuming the fp32 run in bf16 is refused, naming the key.
	cfg, err := configs.Load(filepath.Join(dir, "fp32", "exp.yaml"), []string{"model.precision=bf16", "train.steps=60", "train.learning_rate=0.002"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Resume: "auto"}); err == nil || !strings.Contains(err.Error(), "model.precision: fp32 → bf16") {
		t.Errorf("resume in another precision: %v", err)
	}
}
