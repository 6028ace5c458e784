package models

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"prism/internal/torch"
	"slices"
	"sort"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/fsutil"
	"prism/internal/safetensors"
	"prism/internal/torchpickle"
)

// Stats are facts about a trained model saved next to its weights.
type Stats struct {
	// RewardMean and RewardStd are over the held-out rewards at the end of
	// training, for normalising rewards downstream.
	RewardMean float64 `json:"reward_mean"`
	RewardStd  float64 `json:"reward_std"`
	// Extra records provenance: prism version, steps, data.
	Extra map[string]any `json:"extra,omitempty"`
}

// LoadInfo says what Load found.
type LoadInfo struct {
	// NewHead is set when the checkpoint had no score head (a causal LM)
	// and a new one was initialised.
	NewHead bool
	Stats   *Stats
}

// Load reads a Hugging Face model folder: config.json and
// model.safetensors or a sharded model.safetensors.index.json, in fp32,
// bf16 or fp16 (converted to fp32). A checkpoint without "score.weight"
// gets a new head drawn from rng.
func Load(dir string, device gotch.Device, rng *rand.Rand) (*RewardModel, *LoadInfo, error) {
	return LoadWith(dir, device, rng, LoadOptions{})
}

// LoadOptions change what Load accepts.
type LoadOptions struct {
	// AllowPickle reads PyTorch pickle weights (pytorch_model.bin, sharded
	// or not, and model.pt) when the folder has no safetensors, with
	// prism's restricted reader: it accepts tensors only and never runs
	// code from the file (internal/torchpickle).
	AllowPickle bool
}

// LoadWith is Load with options.
func LoadWith(dir string, device gotch.Device, rng *rand.Rand, opt LoadOptions) (*RewardModel, *LoadInfo, error) {
	c, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, nil, err
	}
	files, err := weightFiles(dir)
	var pickles []string
	if errors.Is(err, errPickleOnly) && opt.AllowPickle {
		pickles, err = pickleFiles(dir)
	}
	if err != nil {
		return nil, nil, err
	}
	info := &LoadInfo{}
	weights := map[string]*ts.Tensor{}
	fail := func(err error) (*RewardModel, *LoadInfo, error) {
		for _, w := range weights {
			w.Drop()
		}
		return nil, nil, err
	}
	// add checks one tensor of path against the config and keeps it.
	add := func(path string, ti safetensors.TensorInfo, raw func() ([]byte, error)) error {
		if ti.Name == "lm_head.weight" || strings.HasSuffix(ti.Name, "rotary_emb.inv_freq") {
			return nil // the language-model head and cached buffers are not part of a reward model
		}
		shape, ok := c.ParamShape(ti.Name)
		if !ok {
			return fmt.Errorf("%s: tensor %q is not a weight of this %s model", path, ti.Name, c.ModelType)
		}
		if _, dup := weights[ti.Name]; dup {
			return fmt.Errorf("%s: tensor %q appears in two shards", path, ti.Name)
		}
		if !slices.Equal(ti.Shape, shape) {
			return fmt.Errorf("%s: tensor %q has shape %v, config.json implies %v", path, ti.Name, ti.Shape, shape)
		}
		b, err := raw()
		if err != nil {
			return err
		}
		t, err := tensorFromRaw(ti, b, device)
		if err != nil {
			return fmt.Errorf("%s: tensor %q: %w", path, ti.Name, err)
		}
		weights[ti.Name] = t
		if err := checkFinite(t); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", path, ti.Name, err)
		}
		return nil
	}
	for _, path := range files {
		f, err := safetensors.Open(path)
		if err != nil {
			return fail(err)
		}
		for _, ti := range f.Header().Tensors {
			if err := add(path, ti, func() ([]byte, error) { return f.ReadRaw(ti.Name) }); err != nil {
				f.Close()
				return fail(err)
			}
		}
		f.Close()
	}
	for _, path := range pickles {
		tensors, err := torchpickle.ReadFile(path)
		if err != nil {
			return fail(err)
		}
		for _, t := range tensors {
			ti := safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
			if err := add(path, ti, func() ([]byte, error) { return t.Data, nil }); err != nil {
				return fail(err)
			}
		}
	}
	if _, ok := weights["score.weight"]; ok && c.NumLabels > 1 {
		// transformers would build a head of num_labels outputs and
		// refuse this one-row score.weight.
		return fail(fmt.Errorf("%w: %s: num_labels = %d but score.weight has one row: a reward model has one output (num_labels 1)",
			ErrConfig, filepath.Join(dir, "config.json"), c.NumLabels))
	}
	if _, ok := weights["score.weight"]; !ok {
		shape, _ := c.ParamShape("score.weight")
		t, err := onDevice(Float32Bytes(initValues(c, "score.weight", shape, rng)), shape, gotch.Float, device)
		if err != nil {
			return fail(err)
		}
		weights["score.weight"] = t
		info.NewHead = true
	}
	for _, name := range c.ParamNames() {
		if _, ok := weights[name]; !ok {
			return fail(fmt.Errorf("%s: weight %q is missing", dir, name))
		}
	}
	m, err := newModel(c, weights, device)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	if b, err := fsutil.ReadFile(filepath.Join(dir, statsFile), fsutil.CapConfig); err == nil {
		var st Stats
		if err := json.Unmarshal(b, &st); err != nil {
			m.Drop()
			return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, statsFile), err)
		}
		info.Stats = &st
	}
	return m, info, nil
}

const statsFile = "prism_reward.json"

// errPickleOnly marks a folder whose weights are PyTorch pickles only.
var errPickleOnly = errors.New("only pickle weights")

// pickleNames are the PyTorch pickle weight files transformers writes.
var pickleNames = []string{"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt"}

// pickleFiles lists the pickle weight files of a model folder.
func pickleFiles(dir string) ([]string, error) {
	for _, name := range []string{"pytorch_model.bin", "model.pt"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return []string{p}, nil
		}
	}
	return shardFiles(dir, filepath.Join(dir, "pytorch_model.bin.index.json"))
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// weightFiles lists the safetensors files of a model folder.
func weightFiles(dir string) ([]string, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil
	}
	index := filepath.Join(dir, "model.safetensors.index.json")
	if _, err := os.Stat(index); err != nil {
		for _, pickle := range pickleNames {
			if _, err := os.Stat(filepath.Join(dir, pickle)); err == nil {
				return nil, fmt.Errorf("%s: %w (%s): unpickling a file can run arbitrary code, so prism reads safetensors by default; convert it with transformers (save_pretrained(safe_serialization=True)), or pass --allow-pickle (model.allow_pickle: true) to read it with prism's restricted reader, which accepts tensors only and never runs code from the file", dir, errPickleOnly, pickle)
			}
		}
		return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", dir)
	}
	return shardFiles(dir, index)
}

// shardFiles lists the distinct shard files a sharded checkpoint's index
// names (the index guarantees plain file names inside dir).
func shardFiles(dir, index string) ([]string, error) {
	wm, err := safetensors.ReadIndex(index)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, shard := range wm {
		set[shard] = true
	}
	var files []string
	for f := range set {
		files = append(files, filepath.Join(dir, f))
	}
	sort.Strings(files)
	return files, nil
}

// tensorFromRaw makes a float32 tensor from safetensors bytes.
func tensorFromRaw(ti safetensors.TensorInfo, raw []byte, device gotch.Device) (*ts.Tensor, error) {
	var dt gotch.DType
	switch ti.DType {
	case safetensors.F32:
		dt = gotch.Float
	case safetensors.BF16:
		dt = gotch.BFloat16
	case safetensors.F16:
		dt = gotch.Half
	case safetensors.F64:
		dt = gotch.Double
	default:
		return nil, fmt.Errorf("dtype %s is not a floating-point weight", ti.DType)
	}
	t, err := onDevice(raw, ti.Shape, dt, device)
	if err != nil || dt == gotch.Float {
		return t, err
	}
	out, err := t.Totype(gotch.Float, true)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Save writes the model as a Hugging Face sequence-classification model
// (LlamaForSequenceClassification or MistralForSequenceClassification with
// num_labels 1) that transformers loads unchanged, plus prism's stats. The
// folder is written next to dir and renamed into place, so dir never holds
// a half-written model.
func (m *RewardModel) Save(dir string, stats *Stats) error {
	return m.SaveWith(dir, stats, nil)
}

// SaveWith is Save with extra files (the tokenizer's, so the folder is a
// complete model for the RLHF tools that load it), written in the same
// atomic step.
func (m *RewardModel) SaveWith(dir string, stats *Stats, extra map[string][]byte) error {
	// A LoRA model is saved merged: a plain model with its rewards.
	values, err := m.MergedValues()
	if err != nil {
		return err
	}
	return fsutil.WriteDirAtomic(dir, func(tmp string) error {
		if err := WriteFolder(tmp, m.Config, values, stats); err != nil {
			return err
		}
		for name, b := range extra {
			if err := fsutil.WriteFileSync(filepath.Join(tmp, filepath.Base(name)), b); err != nil {
				return err
			}
		}
		return nil
	})
}

// SaveValues writes float32 weight values in the layout of Save,
// atomically.
func SaveValues(dir string, c *Config, values map[string][]float32, stats *Stats) error {
	return fsutil.WriteDirAtomic(dir, func(tmp string) error {
		return WriteFolder(tmp, c, values, stats)
	})
}

// WriteFolder writes config.json, model.safetensors and the stats into an
// existing folder, fsyncing each file. Callers publish the folder
// atomically (SaveValues, checkpoints).
func WriteFolder(dir string, c *Config, values map[string][]float32, stats *Stats) error {
	cfg, err := hfConfig(c)
	if err != nil {
		return err
	}
	var tensors []safetensors.Tensor
	for _, name := range c.ParamNames() {
		v, ok := values[name]
		if !ok {
			return fmt.Errorf("save %s: weight %s is missing", dir, name)
		}
		shape, _ := c.ParamShape(name)
		tensors = append(tensors, safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: Float32Bytes(v)})
	}
	if err := fsutil.WriteFileSync(filepath.Join(dir, "config.json"), cfg); err != nil {
		return err
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if stats != nil {
		b, err := json.MarshalIndent(stats, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileSync(filepath.Join(dir, statsFile), append(b, '\n')); err != nil {
			return err
		}
	}
	return nil
}

// hfConfig renders config.json for a sequence-classification model.
func hfConfig(c *Config) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["architectures"] = []string{c.Architecture()}
	m["num_labels"] = 1
	m["id2label"] = map[string]string{"0": "LABEL_0"}
	m["label2id"] = map[string]int{"LABEL_0": 0}
	m["torch_dtype"] = "float32"
	m["tie_word_embeddings"] = false
	if c.ModelType == "mistral" && c.SlidingWindow == 0 {
		// Absent means 4096 to MistralConfig: no window is null.
		m["sliding_window"] = nil
	}
	if c.PadTokenID == nil {
		// transformers' sequence-classification models need a pad id to
		// batch; without one they refuse batches of more than one row.
		return nil, errors.New("save: the model config has no pad_token_id; set one (the tokenizer's pad or eos id)")
	}
	if c.RopeScaling == nil {
		delete(m, "rope_scaling")
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// checkFinite fails when t holds a NaN or an infinity: such a weight makes
// every reward that reads it NaN, silently, so a model holding one is
// refused at load with the tensor named.
func checkFinite(t *ts.Tensor) (err error) {
	defer torch.Pin()()
	s := &torch.Scope{}
	defer s.Release()
	defer torch.Catch(&err, "checking the values")
	ok := s.T(s.T(t.Isfinite(false)).All(false))
	v, err := Float64s(ok)
	torch.Check(err)
	if v[0] == 0 {
		bad := s.T(s.T(s.T(t.Isfinite(false)).LogicalNot(false)).Sum(gotch.Float, false))
		n, err := Float64s(bad)
		torch.Check(err)
		return fmt.Errorf("%.0f of its values are NaN or infinite: the model cannot give finite rewards", n[0])
	}
	return nil
}
