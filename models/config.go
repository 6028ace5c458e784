package models

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"prism/internal/fsutil"
	"reflect"
	"sort"
	"strings"
)

// Config is the part of a Hugging Face config.json that defines a
// Llama-family decoder. Field names follow transformers.
type Config struct {
	ModelType             string       `json:"model_type"`
	Architectures         []string     `json:"architectures,omitempty"`
	VocabSize             int          `json:"vocab_size"`
	HiddenSize            int          `json:"hidden_size"`
	IntermediateSize      int          `json:"intermediate_size"`
	NumHiddenLayers       int          `json:"num_hidden_layers"`
	NumAttentionHeads     int          `json:"num_attention_heads"`
	NumKeyValueHeads      int          `json:"num_key_value_heads"`
	HeadDim               int          `json:"head_dim,omitempty"`
	RMSNormEps            float64      `json:"rms_norm_eps"`
	RopeTheta             float64      `json:"rope_theta"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	MaxPositionEmbeddings int          `json:"max_position_embeddings"`
	SlidingWindow         int          `json:"sliding_window,omitempty"`
	TieWordEmbeddings     bool         `json:"tie_word_embeddings"`
	HiddenAct             string       `json:"hidden_act"`
	PadTokenID            *int         `json:"pad_token_id,omitempty"`
	BOSTokenID            any          `json:"bos_token_id,omitempty"`
	EOSTokenID            any          `json:"eos_token_id,omitempty"`
	InitializerRange      float64      `json:"initializer_range,omitempty"`
	TorchDType            string       `json:"torch_dtype,omitempty"`
	NumLabels             int          `json:"num_labels,omitempty"`
}

// RopeScaling is the rope_scaling block. Only Llama 3.1's "llama3" type is
// supported; others change the rotary frequencies in ways prism does not
// implement and are refused.
type RopeScaling struct {
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// ErrConfig marks an invalid or unsupported model config.
var ErrConfig = errors.New("unsupported model config")

// handled lists the config keys prism reads; ignored lists keys that do
// not change the computation of a reward model. Any other key is refused:
// a silently ignored field is a model that computes something else.
var (
	handled = []string{"model_type", "architectures", "vocab_size", "hidden_size", "intermediate_size",
		"num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
		"rope_theta", "rope_scaling", "rope_parameters", "max_position_embeddings", "sliding_window", "tie_word_embeddings",
		"hidden_act", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range", "torch_dtype",
		"num_labels", "attention_bias", "mlp_bias", "attention_dropout", "pretraining_tp", "dtype"}
	ignored = []string{"_name_or_path", "transformers_version", "use_cache", "id2label", "label2id",
		"problem_type", "return_dict", "output_attentions", "output_hidden_states", "tokenizer_class",
		"finetuning_task", "prism"}
)

// ParseConfig decodes and checks a config.json. name is used in errors.
func ParseConfig(b []byte, name string) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	known := map[string]bool{}
	for _, k := range append(append([]string{}, handled...), ignored...) {
		known[k] = true
	}
	var unknown []string
	for k := range raw {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%w: %s: unsupported field %q (prism supports Llama and Mistral configs)", ErrConfig, name, unknown[0])
	}
	if err := ropeParameters(raw, name); err != nil {
		return nil, err
	}
	// rope_scaling names its type "rope_type" (current) or "type" (older).
	if rs, ok := raw["rope_scaling"]; ok && string(rs) != "null" {
		var m map[string]any
		if err := json.Unmarshal(rs, &m); err != nil {
			return nil, fmt.Errorf("%w: %s: rope_scaling: %v", ErrConfig, name, err)
		}
		if t, ok := m["type"]; ok {
			if _, both := m["rope_type"]; !both {
				m["rope_type"] = t
			}
			delete(m, "type")
		}
		for k := range m {
			switch k {
			case "rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings":
			default:
				return nil, fmt.Errorf("%w: %s: rope_scaling.%s is not supported", ErrConfig, name, k)
			}
		}
		nb, _ := json.Marshal(m)
		raw["rope_scaling"] = nb
	}
	// Flags that must keep their plain-Llama values.
	type flag struct {
		key  string
		want string
	}
	for _, f := range []flag{{"attention_bias", "false"}, {"mlp_bias", "false"}, {"pretraining_tp", "1"}} {
		if v, ok := raw[f.key]; ok && string(v) != f.want && string(v) != "null" {
			return nil, fmt.Errorf("%w: %s: %s = %s is not supported (want %s)", ErrConfig, name, f.key, v, f.want)
		}
	}
	if v, ok := raw["attention_dropout"]; ok {
		var d float64
		if err := json.Unmarshal(v, &d); err != nil || d != 0 {
			return nil, fmt.Errorf("%w: %s: attention_dropout = %s is not supported (want 0)", ErrConfig, name, v)
		}
	}
	nb, _ := json.Marshal(raw)
	var c Config
	dec := json.NewDecoder(bytes.NewReader(nb))
	if err := dec.Decode(&c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, fmt.Errorf("%w: %s: %s: want %s, got %s", ErrConfig, name, te.Field, jsonKind(te.Type.Kind()), te.Value)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	// An explicit 0 is a value to check, not a missing key to default.
	_, epsSet := raw["rms_norm_eps"]
	_, thetaSet := raw["rope_theta"]
	epsZero, thetaZero := epsSet && c.RMSNormEps == 0, thetaSet && c.RopeTheta == 0
	c.applyDefaults()
	if epsZero {
		c.RMSNormEps = 0
	}
	if thetaZero {
		c.RopeTheta = 0
	}
	// What transformers' config classes do with these keys: LlamaConfig
	// has no sliding window (LlamaModel attends to every earlier token
	// whatever config.json says); MistralConfig defaults it to 4096 when
	// the key is absent (null turns it off); max_position_embeddings
	// defaults to 2048 (Llama) and 4096·32 (Mistral).
	switch c.ModelType {
	case "llama":
		c.SlidingWindow = 0
		if _, ok := raw["max_position_embeddings"]; !ok {
			c.MaxPositionEmbeddings = 2048
		}
	case "mistral":
		if _, ok := raw["sliding_window"]; !ok {
			c.SlidingWindow = 4096
		}
		if _, ok := raw["max_position_embeddings"]; !ok {
			c.MaxPositionEmbeddings = 4096 * 32
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &c, nil
}

// ropeParameters rewrites transformers 5's rope_parameters (rope_theta
// and the scaling in one object, replacing rope_scaling and the top-level
// rope_theta) into the older keys, which are then checked as usual.
func ropeParameters(raw map[string]json.RawMessage, name string) error {
	rp, ok := raw["rope_parameters"]
	delete(raw, "rope_parameters")
	if !ok || string(rp) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(rp, &m); err != nil {
		return fmt.Errorf("%w: %s: rope_parameters: want an object, got %s", ErrConfig, name, rp)
	}
	if rs, ok := raw["rope_scaling"]; ok && string(rs) != "null" {
		return fmt.Errorf("%w: %s: both rope_parameters and rope_scaling are set (transformers 5 writes rope_parameters alone): keep one", ErrConfig, name)
	}
	if th, ok := m["rope_theta"]; ok {
		if top, ok := raw["rope_theta"]; ok && string(top) != "null" && !sameNumber(top, th) {
			return fmt.Errorf("%w: %s: rope_parameters.rope_theta = %s but rope_theta = %s", ErrConfig, name, th, top)
		}
		raw["rope_theta"] = th
		delete(m, "rope_theta")
	}
	var typ string
	if t, ok := m["rope_type"]; ok {
		if err := json.Unmarshal(t, &typ); err != nil {
			return fmt.Errorf("%w: %s: rope_parameters.rope_type: want a string, got %s", ErrConfig, name, t)
		}
	}
	switch typ {
	case "default":
		// Plain rotary embeddings; other values are ignored, as
		// transformers does.
	case "":
		return fmt.Errorf("%w: %s: rope_parameters.rope_type is missing", ErrConfig, name)
	case "llama3":
		for k := range m {
			switch k {
			case "rope_type", "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings":
			default:
				return fmt.Errorf("%w: %s: rope_parameters.%s is not supported", ErrConfig, name, k)
			}
		}
		b, _ := json.Marshal(m)
		raw["rope_scaling"] = b
	default:
		return fmt.Errorf("%w: %s: rope_parameters.rope_type %q is not supported (default or llama3)", ErrConfig, name, typ)
	}
	return nil
}

// sameNumber says whether two JSON values are the same number.
func sameNumber(a, b json.RawMessage) bool {
	var x, y float64
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && x == y
}

// ShapeDiff names the first key on which c and o define different
// networks ("" when they define the same one): the keys that decide what
// a reward model computes, not labels, dtype or token ids.
func (c *Config) ShapeDiff(o *Config) string {
	rope := func(r *RopeScaling) string {
		if r == nil {
			return "none"
		}
		return fmt.Sprintf("%+v", *r)
	}
	for _, f := range []struct {
		key  string
		a, b any
	}{
		{"model_type", c.ModelType, o.ModelType}, {"vocab_size", c.VocabSize, o.VocabSize},
		{"hidden_size", c.HiddenSize, o.HiddenSize}, {"intermediate_size", c.IntermediateSize, o.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers, o.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads, o.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads, o.NumKeyValueHeads}, {"head_dim", c.HeadDim, o.HeadDim},
		{"rms_norm_eps", c.RMSNormEps, o.RMSNormEps}, {"rope_theta", c.RopeTheta, o.RopeTheta},
		{"rope_scaling", rope(c.RopeScaling), rope(o.RopeScaling)},
		{"max_position_embeddings", c.MaxPositionEmbeddings, o.MaxPositionEmbeddings},
		{"sliding_window", c.SlidingWindow, o.SlidingWindow}, {"hidden_act", c.HiddenAct, o.HiddenAct},
	} {
		if fmt.Sprint(f.a) != fmt.Sprint(f.b) {
			return fmt.Sprintf("%s %v, not %v", f.key, f.a, f.b)
		}
	}
	return ""
}

// jsonKind names what JSON value a Go kind takes.
func jsonKind(k reflect.Kind) string {
	switch {
	case k >= reflect.Int && k <= reflect.Uint64:
		return "an integer"
	case k == reflect.Float32 || k == reflect.Float64:
		return "a number"
	case k == reflect.String:
		return "a string"
	case k == reflect.Bool:
		return "a boolean"
	case k == reflect.Slice:
		return "a list"
	}
	return "an object"
}

// LoadConfig reads a config.json file.
func LoadConfig(path string) (*Config, error) {
	b, err := fsutil.ReadFile(path, fsutil.CapConfig)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b, path)
}

func (c *Config) applyDefaults() {
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.HeadDim == 0 && c.NumAttentionHeads > 0 {
		c.HeadDim = c.HiddenSize / c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.HiddenAct == "" {
		c.HiddenAct = "silu"
	}
	if c.InitializerRange == 0 {
		c.InitializerRange = 0.02
	}
}

// Bounds on the sizes a config may claim, far above any released model
// (Llama 3.1 405B: vocabulary 128,256, hidden 16,384, MLP 53,248, 126
// layers, 128 heads). A config.json is checked before anything is
// allocated from it; without bounds a corrupt or hostile one would make
// prism allocate terabytes (a new reward head of hidden_size floats) or
// list billions of weight names (num_hidden_layers), and products of
// sizes could overflow.
const (
	maxVocab  = 1 << 24
	maxWidth  = 1 << 20
	maxLayers = 1 << 12
	maxHeads  = 1 << 12
	// maxParams bounds the parameter count (about 4.4 trillion).
	maxParams = 1 << 42
)

// Validate checks that the config describes a model prism can run.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	switch c.ModelType {
	case "llama", "mistral":
	default:
		return bad("model_type", "%q is not supported (want llama or mistral)", c.ModelType)
	}
	for _, f := range []struct {
		name   string
		v, max int
	}{{"vocab_size", c.VocabSize, maxVocab}, {"hidden_size", c.HiddenSize, maxWidth}, {"intermediate_size", c.IntermediateSize, maxWidth},
		{"num_hidden_layers", c.NumHiddenLayers, maxLayers}, {"num_attention_heads", c.NumAttentionHeads, maxHeads},
		{"num_key_value_heads", c.NumKeyValueHeads, maxHeads}, {"head_dim", c.HeadDim, maxHeads}} {
		if f.v < 1 {
			return bad(f.name, "must be positive, got %d", f.v)
		}
		if f.v > f.max {
			return bad(f.name, "%d is beyond any model prism can run (at most %d)", f.v, f.max)
		}
	}
	if n := c.paramCountFloat(); n > maxParams {
		return bad("sizes", "the config describes %.3g parameters, beyond any model prism can run (at most %d)", n, int64(maxParams))
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return bad("num_key_value_heads", "%d does not divide num_attention_heads %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.HeadDim%2 != 0 {
		return bad("head_dim", "must be even for rotary embeddings, got %d", c.HeadDim)
	}
	if c.HiddenAct != "silu" {
		return bad("hidden_act", "%q is not supported (want silu)", c.HiddenAct)
	}
	if !(c.RMSNormEps > 0) || math.IsInf(c.RMSNormEps, 0) {
		return bad("rms_norm_eps", "must be positive, got %v", c.RMSNormEps)
	}
	if !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return bad("rope_theta", "must be positive, got %v", c.RopeTheta)
	}
	if c.SlidingWindow < 0 {
		return bad("sliding_window", "must not be negative, got %d", c.SlidingWindow)
	}
	if c.MaxPositionEmbeddings < 1 {
		return bad("max_position_embeddings", "must be positive, got %d", c.MaxPositionEmbeddings)
	}
	if c.NumLabels < 0 {
		return bad("num_labels", "must not be negative, got %d", c.NumLabels)
	}
	if c.PadTokenID != nil && (*c.PadTokenID < 0 || *c.PadTokenID >= c.VocabSize) {
		return bad("pad_token_id", "%d is outside the vocabulary (%d)", *c.PadTokenID, c.VocabSize)
	}
	if rs := c.RopeScaling; rs != nil {
		switch rs.Type {
		case "llama3":
			if !(rs.Factor >= 1) || !(rs.LowFreqFactor > 0) || !(rs.HighFreqFactor > rs.LowFreqFactor) || rs.OriginalMaxPositionEmbeddings < 1 {
				return bad("rope_scaling", "llama3 needs factor >= 1, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0")
			}
		case "default":
			// Plain rotary embeddings: transformers ignores any other
			// value given with it.
			c.RopeScaling = nil
		case "":
			return bad("rope_scaling.rope_type", "missing: a scaling needs its type (transformers refuses it too)")
		default:
			return bad("rope_scaling.rope_type", "%q is not supported (want llama3)", rs.Type)
		}
	}
	switch c.TorchDType {
	case "", "float32", "bfloat16", "float16":
	default:
		return bad("torch_dtype", "%q is not supported", c.TorchDType)
	}
	return nil
}

// Architecture is the transformers class of the saved reward model.
func (c *Config) Architecture() string {
	if c.ModelType == "mistral" {
		return "MistralForSequenceClassification"
	}
	return "LlamaForSequenceClassification"
}

// InvFreq returns the rotary inverse frequencies, with Llama 3.1's
// frequency-dependent scaling when configured (transformers' formula,
// evaluated in float64 and rounded; transformers evaluates the power in
// float32, which can differ in the last bit).
func (c *Config) InvFreq() []float32 {
	half := c.HeadDim / 2
	out := make([]float32, half)
	for i := 0; i < half; i++ {
		f := 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim))
		if rs := c.RopeScaling; rs != nil && rs.Type == "llama3" {
			old := float64(rs.OriginalMaxPositionEmbeddings)
			lowWavelen := old / rs.LowFreqFactor
			highWavelen := old / rs.HighFreqFactor
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen:
				// High frequencies are kept.
			case wavelen > lowWavelen:
				f /= rs.Factor
			default:
				smooth := (old/wavelen - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
				f = (1-smooth)*f/rs.Factor + smooth*f
			}
		}
		out[i] = float32(f)
	}
	return out
}

// ParamCount returns the number of parameters of the reward model.
func (c *Config) ParamCount() int64 {
	d, v, f := int64(c.HiddenSize), int64(c.VocabSize), int64(c.IntermediateSize)
	q := int64(c.NumAttentionHeads * c.HeadDim)
	kv := int64(c.NumKeyValueHeads * c.HeadDim)
	perLayer := d*q + 2*d*kv + q*d + 3*d*f + 2*d
	return v*d + int64(c.NumHiddenLayers)*perLayer + d + d
}

// paramCountFloat is ParamCount in float64, which cannot overflow.
func (c *Config) paramCountFloat() float64 {
	d, v, f := float64(c.HiddenSize), float64(c.VocabSize), float64(c.IntermediateSize)
	q := float64(c.NumAttentionHeads) * float64(c.HeadDim)
	kv := float64(c.NumKeyValueHeads) * float64(c.HeadDim)
	perLayer := d*q + 2*d*kv + q*d + 3*d*f + 2*d
	return v*d + float64(c.NumHiddenLayers)*perLayer + d + d
}

// Describe is a one-line shape summary.
func (c *Config) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d layers, hidden %d, %d heads (%d kv, head_dim %d), mlp %d, vocab %d",
		c.ModelType, c.NumHiddenLayers, c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize, c.VocabSize)
	if c.SlidingWindow > 0 {
		fmt.Fprintf(&b, ", sliding window %d", c.SlidingWindow)
	}
	return b.String()
}
