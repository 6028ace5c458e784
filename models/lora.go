package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"prism/internal/torch"
	"slices"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/fsutil"
	"prism/internal/safetensors"
)

// LoRATargets are the projections LoRA adapters can attach to, by their
// transformers module names.
var LoRATargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// LoRAOptions configure low-rank adapters (Hu et al., 2021): each target
// weight W [out,in] becomes W + (Alpha/Rank)·B·A with A [Rank,in] and B
// [out,Rank] trained and W frozen.
type LoRAOptions struct {
	Rank    int
	Alpha   float64
	Targets []string
}

// adapter is one projection's pair of low-rank factors.
type adapter struct{ a, b *Param }

// LoRA lists the adapter factors, in a fixed order ("...q_proj.lora_A.weight"
// before "...lora_B.weight", layer by layer); nil without adapters.
func (m *RewardModel) LoRA() []*Param { return m.lora }

// LoRAOptions returns the adapters' configuration (Rank 0: none).
func (m *RewardModel) LoRAOptions() LoRAOptions { return m.loraOpt }

func projModule(name string) string {
	if strings.HasSuffix(name, "_proj") && (name == "gate_proj" || name == "up_proj" || name == "down_proj") {
		return "mlp." + name
	}
	return "self_attn." + name
}

// EnableLoRA attaches adapters to the target projections of every block
// and freezes every base weight except the score head, which LoRA reward
// models always train (a head left at its initialisation gives random
// rewards). A is drawn from rng as PEFT does (uniform in ±1/sqrt(in)), B
// is zero, so the model's rewards do not change until B trains.
func (m *RewardModel) EnableLoRA(o LoRAOptions, rng *rand.Rand) error {
	if m.loraOpt.Rank > 0 {
		return errors.New("LoRA adapters are already attached")
	}
	if o.Rank < 1 || o.Alpha <= 0 || len(o.Targets) == 0 {
		return fmt.Errorf("LoRA needs a rank of at least 1, a positive alpha and targets (got rank %d, alpha %g, targets %v)", o.Rank, o.Alpha, o.Targets)
	}
	for _, t := range o.Targets {
		if !slices.Contains(LoRATargets, t) {
			return fmt.Errorf("LoRA target %q: want some of %v", t, LoRATargets)
		}
	}
	for _, p := range m.Params {
		if p.Name == "score.weight" {
			continue
		}
		if err := p.SetTrainable(false); err != nil {
			return err
		}
	}
	r := int64(o.Rank)
	for i := range m.blocks {
		m.blocks[i].lora = map[string]*adapter{}
		for _, t := range LoRATargets {
			if !slices.Contains(o.Targets, t) {
				continue
			}
			base := fmt.Sprintf("model.layers.%d.%s", i, projModule(t))
			shape, _ := m.Config.ParamShape(base + ".weight")
			out, in := shape[0], shape[1]
			bound := 1 / math.Sqrt(float64(in))
			av := make([]float32, r*in)
			for k := range av {
				av[k] = float32((2*rng.Float64() - 1) * bound)
			}
			a, err := newLeaf(base+".lora_A.weight", []int64{r, in}, av, m)
			if err != nil {
				return err
			}
			b, err := newLeaf(base+".lora_B.weight", []int64{out, r}, make([]float32, out*r), m)
			if err != nil {
				return err
			}
			m.lora = append(m.lora, a, b)
			m.blocks[i].lora[t] = &adapter{a: a, b: b}
		}
	}
	m.loraOpt = o
	m.loraScale = o.Alpha / float64(o.Rank)
	return nil
}

// newLeaf makes a trainable weight from values on m's device.
func newLeaf(name string, shape []int64, v []float32, m *RewardModel) (*Param, error) {
	t, err := onDevice(Float32Bytes(v), shape, gotch.Float, m.device)
	if err != nil {
		return nil, err
	}
	if err := requireGrad(t, true); err != nil {
		t.Drop()
		return nil, err
	}
	return &Param{Name: name, Shape: shape, T: t, Decay: true}, nil
}

// proj returns the effective weight of a block's projection: w, or w plus
// its adapter's scaled low-rank product.
func (m *RewardModel) proj(s *torch.Scope, bl block, name string, w *ts.Tensor) *ts.Tensor {
	if ad := bl.lora[name]; ad != nil {
		w = m.merge(s, w, ad)
	}
	return m.c(s, w)
}

// merge computes w + scale·B·A. Merged weights are computed by these
// same operations, so a merged model gives the adapted model's rewards.
func (m *RewardModel) merge(s *torch.Scope, w *ts.Tensor, ad *adapter) *ts.Tensor {
	delta := s.T(ad.b.T.Matmul(ad.a.T, false))
	return s.T(w.Add(s.T(delta.MulScalar(f(m.loraScale), false)), false))
}

// MergedValues returns the model's weights with every adapter merged in:
// a plain model that gives the adapted model's rewards.
func (m *RewardModel) MergedValues() (out map[string][]float32, err error) {
	out, err = m.Values()
	if err != nil || m.loraOpt.Rank == 0 {
		return out, err
	}
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "merging LoRA adapters")
	withoutGrad(func() {
		for i, bl := range m.blocks {
			for _, t := range LoRATargets {
				ad := bl.lora[t]
				if ad == nil {
					continue
				}
				name := fmt.Sprintf("model.layers.%d.%s.weight", i, projModule(t))
				v, err := tensorFloat32(m.merge(s, m.byName[name].T, ad))
				torch.Check(err)
				out[name] = v
			}
		}
	})
	return out, nil
}

// LoRAValues returns the adapter factors' values by name.
func (m *RewardModel) LoRAValues() (map[string][]float32, error) {
	out := map[string][]float32{}
	for _, p := range m.lora {
		v, err := tensorFloat32(p.T)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		out[p.Name] = v
	}
	return out, nil
}

// adapterPrefix is how PEFT names a sequence-classification model's
// weights in adapter files.
const adapterPrefix = "base_model.model."

// AdapterFile is the adapter weights' file name, as PEFT writes it.
const AdapterFile = "adapter_model.safetensors"

// WriteAdapter writes the adapters and the score head in PEFT's layout
// (adapter_model.safetensors, adapter_config.json) into an existing
// folder, fsyncing each file. base names the base model for the config.
func (m *RewardModel) WriteAdapter(dir, base string) error {
	if m.loraOpt.Rank == 0 {
		return errors.New("the model has no LoRA adapters")
	}
	var tensors []safetensors.Tensor
	add := func(p *Param) error {
		v, err := tensorFloat32(p.T)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: adapterPrefix + p.Name, DType: safetensors.F32, Shape: p.Shape, Data: Float32Bytes(v)})
		return nil
	}
	for _, p := range m.lora {
		if err := add(p); err != nil {
			return err
		}
	}
	if err := add(m.byName["score.weight"]); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(dir, AdapterFile), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(map[string]any{
		"peft_type": "LORA", "task_type": "SEQ_CLS", "r": m.loraOpt.Rank, "lora_alpha": m.loraOpt.Alpha,
		"lora_dropout": 0.0, "target_modules": m.loraOpt.Targets, "modules_to_save": []string{"score"},
		"bias": "none", "base_model_name_or_path": base,
	}, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileSync(filepath.Join(dir, "adapter_config.json"), append(cfg, '\n'))
}

// ReadAdapter loads the adapters and the score head that WriteAdapter
// wrote into a model with adapters of the same configuration.
func (m *RewardModel) ReadAdapter(dir string) error {
	path := filepath.Join(dir, AdapterFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	want := append(append([]*Param{}, m.lora...), m.byName["score.weight"])
	if n := len(f.Header().Tensors); n != len(want) {
		return fmt.Errorf("%s: %d tensors, this model's adapters and head have %d (another rank or targets?)", path, n, len(want))
	}
	for _, p := range want {
		ti, ok := f.Lookup(adapterPrefix + p.Name)
		if !ok {
			return fmt.Errorf("%s: no tensor %q", path, adapterPrefix+p.Name)
		}
		if !slices.Equal(ti.Shape, p.Shape) {
			return fmt.Errorf("%s: %s has shape %v, want %v", path, ti.Name, ti.Shape, p.Shape)
		}
		raw, err := f.ReadRaw(ti.Name)
		if err != nil {
			return err
		}
		v, err := safetensors.ToFloat32(ti, raw)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", path, ti.Name, err)
		}
		if err := setValues(p, v); err != nil {
			return fmt.Errorf("%s: %w", ti.Name, err)
		}
	}
	return nil
}

// setValues overwrites a parameter's values in place.
func setValues(p *Param, v []float32) (err error) {
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, p.Name)
	src := s.T(onDevice(Float32Bytes(v), p.Shape, gotch.Float, p.T.MustDevice()))
	withoutGrad(func() { p.T.Copy_(src) }) // shapes and dtype checked above
	return nil
}
