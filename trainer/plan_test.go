package trainer

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
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
