package models

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
)

// TestLoRA: fresh adapters leave the rewards unchanged (B is zero); with
// trained-looking adapters, the merged plain model and a base model with
// the adapter file read back both give the adapted model's rewards, bit
// for bit; only the adapters and the head train.
func TestLoRA(t *testing.T) {
	for _, preset := range []string{"tiny-llama", "tiny-mistral"} {
		t.Run(preset, func(t *testing.T) {
			m, vals := newRandom(t, preset, 9)
			rng := rand.New(rand.NewPCG(4, 4))
			b := pad(randomSeqs(rng, 6, 3, 20, m.Config.VocabSize), true, 0)
			before := rewards(t, m, b)
			if err := m.EnableLoRA(LoRAOptions{Rank: 4, Alpha: 8, Targets: LoRATargets}, rand.New(rand.NewPCG(1, 1))); err != nil {
				t.Fatal(err)
			}
			if got := rewards(t, m, b); !slices.Equal(got, before) {
				t.Fatalf("fresh adapters changed the rewards: %v vs %v", got, before)
			}
			// 7 targets x 2 factors per layer.
			if n := len(m.LoRA()); n != 14*m.Config.NumHiddenLayers {
				t.Fatalf("%d adapter factors", n)
			}
			for _, p := range m.Params {
				if want := p.Name == "score.weight"; p.T.MustRequiresGrad() != want {
					t.Errorf("%s requires grad = %v", p.Name, !want)
				}
			}
			// Give every B a value, as training would.
			for _, p := range m.LoRA() {
				if strings.HasSuffix(p.Name, "lora_B.weight") {
					v := make([]float32, p.Numel())
					for i := range v {
						v[i] = float32(rng.NormFloat64() * 0.2)
					}
					if err := setValues(p, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			adapted := rewards(t, m, b)
			if slices.Equal(adapted, before) {
				t.Fatal("adapters do not change the rewards")
			}
			merged, err := m.MergedValues()
			if err != nil {
				t.Fatal(err)
			}
			mm, err := FromValues(m.Config, merged, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer mm.Drop()
			if got := rewards(t, mm, b); !slices.Equal(got, adapted) {
				t.Errorf("merged model: %v, adapted %v", got, adapted)
			}

			dir := t.TempDir()
			if err := m.WriteAdapter(dir, "base"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "adapter_config.json")); err != nil {
				t.Fatal(err)
			}
			base, err := FromValues(m.Config, vals, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer base.Drop()
			if err := base.EnableLoRA(LoRAOptions{Rank: 4, Alpha: 8, Targets: LoRATargets}, rand.New(rand.NewPCG(7, 7))); err != nil {
				t.Fatal(err)
			}
			if err := base.ReadAdapter(dir); err != nil {
				t.Fatal(err)
			}
			if got := rewards(t, base, b); !slices.Equal(got, adapted) {
				t.Errorf("base + adapter file: %v, adapted %v", got, adapted)
			}
			// Another rank does not fit the file.
			other, err := FromValues(m.Config, vals, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Drop()
			if err := other.EnableLoRA(LoRAOptions{Rank: 2, Alpha: 8, Targets: LoRATargets}, rand.New(rand.NewPCG(7, 7))); err != nil {
				t.Fatal(err)
			}
			if err := other.ReadAdapter(dir); err == nil || !strings.Contains(err.Error(), "shape") {
				t.Errorf("rank-2 model read a rank-4 adapter: %v", err)
			}
		})
	}
}

func TestLoRAOptionsErrors(t *testing.T) {
	for _, o := range []LoRAOptions{{Rank: 0, Alpha: 1, Targets: LoRATargets}, {Rank: 2, Alpha: 0, Targets: LoRATargets}, {Rank: 2, Alpha: 1, Targets: []string{"lm_head"}}} {
		m, _ := newRandom(t, "tiny-llama", 1)
		if err := m.EnableLoRA(o, rand.New(rand.NewPCG(1, 1))); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
