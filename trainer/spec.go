package trainer

import (
	"fmt"
	"path/filepath"
	"strings"

	"prism/configs"
	"prism/internal/torch"
	"prism/models"
)

// spec is a configuration resolved against what it names: the model's
// shape, the data source, the device. `prism train --dry-run` (MakePlan)
// and the run itself both start from it, so they cannot disagree.
type spec struct {
	cfg    *configs.Config
	model  *models.Config
	source configs.Source
	// device and dtype are where and in what the run's tensors live:
	// decided here, once, and passed down.
	device  torch.Device
	dtype   torch.DType
	compute models.Compute
}

// resolve reads the model's config (a preset, or model.path's
// config.json; no weights) and checks what depends on it.
func resolve(cfg *configs.Config) (*spec, error) {
	sp := &spec{cfg: cfg, source: cfg.Data.Source()}
	var err error
	if cfg.Model.Path != "" {
		sp.model, err = models.LoadConfig(filepath.Join(cfg.Model.Path, "config.json"))
	} else {
		sp.model, err = models.Preset(cfg.Model.Preset)
	}
	if err != nil {
		return nil, err
	}
	if id := cfg.Model.PadTokenID; id >= 0 {
		if id >= sp.model.VocabSize {
			return nil, fmt.Errorf("model.pad_token_id = %d is outside the model's vocabulary (%d)", id, sp.model.VocabSize)
		}
		sp.model.PadTokenID = &id
	}
	if sp.model.PadTokenID == nil {
		// The saved model needs one (transformers cannot batch without
		// it): say so now, not at the first checkpoint.
		return nil, fmt.Errorf("%s has no pad_token_id: set model.pad_token_id (a token id your sequences never end with; for Llama 3 chat data, 128001 <|end_of_text|>)", filepath.Join(cfg.Model.Path, "config.json"))
	}
	if t := cfg.Train; t.Trainable == configs.TrainableTopLayers && t.TrainableTopLayers > sp.model.NumHiddenLayers {
		return nil, fmt.Errorf("train.trainable_top_layers = %d but the model has %d layers", t.TrainableTopLayers, sp.model.NumHiddenLayers)
	}
	if sp.device, err = torch.ResolveDevice(cfg.Run.Device); err != nil {
		return nil, fmt.Errorf("run.device: %w", err)
	}
	if sp.dtype, err = torch.ResolveDType(cfg.Model.DType); err != nil {
		return nil, fmt.Errorf("model.dtype: %w", err)
	}
	if sp.compute.Attention, err = models.ResolveAttention(cfg.Model.Attention); err != nil {
		return nil, fmt.Errorf("model.attention: %w", err)
	}
	if sp.compute.Precision, err = models.ResolvePrecision(cfg.Model.Precision); err != nil {
		return nil, fmt.Errorf("model.precision: %w", err)
	}
	if err := sp.checkOverlap(); err != nil {
		return nil, err
	}
	return sp, nil
}

// trains says whether the parameter called name trains under
// train.trainable (without LoRA): everything, the score head alone, or
// the top layers with the final norm and the head.
func (sp *spec) trains(name string) bool {
	t := sp.cfg.Train
	switch t.Trainable {
	case configs.TrainableHead:
		return name == "score.weight"
	case configs.TrainableTopLayers:
		if name == "score.weight" || name == "model.norm.weight" {
			return true
		}
		var l int
		_, err := fmt.Sscanf(name, "model.layers.%d.", &l)
		return err == nil && l >= sp.model.NumHiddenLayers-t.TrainableTopLayers
	}
	return true
}

// trainedParams counts the parameters trains selects (without LoRA).
func (sp *spec) trainedParams() int64 {
	var n int64
	for _, name := range sp.model.ParamNames() {
		if !sp.trains(name) {
			continue
		}
		shape, _ := sp.model.ParamShape(name)
		k := int64(1)
		for _, d := range shape {
			k *= d
		}
		n += k
	}
	return n
}

// baseModelName names the base model in adapter configs.
func (sp *spec) baseModelName() string {
	if sp.cfg.Model.Path != "" {
		return sp.cfg.Model.Path
	}
	return "prism preset " + sp.cfg.Model.Preset
}

// tokenizerDir is the folder of the tokenizer for text data.
func (sp *spec) tokenizerDir() string {
	if sp.cfg.Data.Tokenizer != "" {
		return sp.cfg.Data.Tokenizer
	}
	return sp.cfg.Model.Path
}

// runOutputs are what a run writes below its folder: replaced, pruned or
// appended to as the run goes.
var runOutputs = []string{"model", "adapter", "checkpoints", "decomposition", "metrics.jsonl", "config.yaml", "run.log", "curves.png", "tensorboard"}

// checkOverlap refuses a run whose outputs would overwrite or prune one of
// its inputs (a base model at run.dir/model is replaced by the trained one
// at the end; one under run.dir/checkpoints is pruned mid-run), before any
// work starts.
func (sp *spec) checkOverlap() error {
	c := sp.cfg
	inputs := []struct{ key, path string }{
		{"model.path", c.Model.Path}, {"data.tokenizer", c.Data.Tokenizer},
		{"decomposition.policy_model", c.Decomposition.PolicyModel}, {"data.eval", c.Data.Eval},
	}
	if sp.source.Kind == configs.SourceFile {
		inputs = append(inputs, struct{ key, path string }{"data.train", sp.source.Path})
	}
	run := realPath(c.Run.Dir)
	for _, in := range inputs {
		if in.path == "" {
			continue
		}
		p := realPath(in.path)
		for _, out := range runOutputs {
			o := filepath.Join(run, out)
			if p == o || strings.HasPrefix(p, o+string(filepath.Separator)) {
				return fmt.Errorf("%s %s is inside the run folder's %s, which the run writes: choose another run.dir or move the input", in.key, in.path, filepath.Join(c.Run.Dir, out))
			}
		}
	}
	return nil
}

// realPath is path made absolute with its symbolic links resolved, as far
// as it exists.
func realPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return filepath.Clean(path)
	}
	// Resolve the longest existing prefix; what does not exist yet stays.
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		if filepath.Dir(p) == p {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}
