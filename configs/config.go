package configs

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"prism/internal/fsutil"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	yaml "go.yaml.in/yaml/v3"
)

// DefaultYAML is the annotated default configuration.
//
//go:embed default.yaml
var DefaultYAML []byte

// Config is a whole experiment.
type Config struct {
	Run        Run        `mapstructure:"run" yaml:"run"`
	Model      Model      `mapstructure:"model" yaml:"model"`
	Data       Data       `mapstructure:"data" yaml:"data"`
	Train      Train      `mapstructure:"train" yaml:"train"`
	Eval       Eval       `mapstructure:"eval" yaml:"eval"`
	Checkpoint Checkpoint `mapstructure:"checkpoint" yaml:"checkpoint"`
	// Decomposition configures the paper's prioritised training.
	Decomposition Decomposition `mapstructure:"decomposition" yaml:"decomposition"`
	// Distributed configures multi-process (data-parallel) runs.
	Distributed Distributed `mapstructure:"distributed" yaml:"distributed"`
}

// Distributed configures the process group of a data-parallel run.
type Distributed struct {
	Backend  string  `mapstructure:"backend" yaml:"backend"`
	TimeoutS float64 `mapstructure:"timeout_s" yaml:"timeout_s"`
	BucketMB float64 `mapstructure:"bucket_mb" yaml:"bucket_mb"`
}

// Decomposition configures the prompt-free gap estimate and the priority
// sampler built on it.
type Decomposition struct {
	Enabled          bool     `mapstructure:"enabled" yaml:"enabled"`
	EverySteps       int      `mapstructure:"every_steps" yaml:"every_steps"`
	WarmupSteps      int      `mapstructure:"warmup_steps" yaml:"warmup_steps"`
	Samples          int      `mapstructure:"samples" yaml:"samples"`
	IncludeOwnPrompt bool     `mapstructure:"include_own_prompt" yaml:"include_own_prompt"`
	Weights          Weights  `mapstructure:"weights" yaml:"weights"`
	PolicyModel      string   `mapstructure:"policy_model" yaml:"policy_model"`
	PolicyTau        float64  `mapstructure:"policy_temperature" yaml:"policy_temperature"`
	PoolSize         int      `mapstructure:"pool_size" yaml:"pool_size"`
	Strategy         Strategy `mapstructure:"strategy" yaml:"strategy"`
	Rho              float64  `mapstructure:"rho" yaml:"rho"`
	Threshold        float64  `mapstructure:"threshold" yaml:"threshold"`
	Temperature      float64  `mapstructure:"temperature" yaml:"temperature"`
	Tol              float64  `mapstructure:"tol" yaml:"tol"`
	BatchSize        int      `mapstructure:"batch_size" yaml:"batch_size"`
	CachePrompts     bool     `mapstructure:"cache_prompts" yaml:"cache_prompts"`
	SharePrompts     int      `mapstructure:"share_prompts" yaml:"share_prompts"`
	PlotTag          string   `mapstructure:"plot_tag" yaml:"plot_tag"`
}

// Run is where and how a run executes.
type Run struct {
	Dir      string `mapstructure:"dir" yaml:"dir"`
	Seed     int64  `mapstructure:"seed" yaml:"seed"`
	Device   string `mapstructure:"device" yaml:"device"`
	Threads  int    `mapstructure:"threads" yaml:"threads"`
	LogEvery int    `mapstructure:"log_every" yaml:"log_every"`
	// TensorBoard writes the metrics as TensorBoard event files too.
	TensorBoard bool `mapstructure:"tensorboard" yaml:"tensorboard"`
}

// Model names the reward model to train.
type Model struct {
	Preset string `mapstructure:"preset" yaml:"preset"`
	Path   string `mapstructure:"path" yaml:"path"`
	DType  string `mapstructure:"dtype" yaml:"dtype"`
	// Attention is auto, sdpa or eager (models.ResolveAttention).
	Attention string `mapstructure:"attention" yaml:"attention"`
	// Precision is fp32 or bf16 (mixed: float32 master weights).
	Precision string `mapstructure:"precision" yaml:"precision"`
	// AllowPickle reads pytorch_model.bin weights with the restricted
	// reader when model.path has no safetensors.
	AllowPickle bool `mapstructure:"allow_pickle" yaml:"allow_pickle"`
	// PadTokenID replaces config.json's pad_token_id (-1: keep it).
	PadTokenID int `mapstructure:"pad_token_id" yaml:"pad_token_id"`
}

// Data names the preference data.
type Data struct {
	Train              string     `mapstructure:"train" yaml:"train"`
	Eval               string     `mapstructure:"eval" yaml:"eval"`
	EvalFraction       float64    `mapstructure:"eval_fraction" yaml:"eval_fraction"`
	MaxLength          int        `mapstructure:"max_length" yaml:"max_length"`
	Truncation         Truncation `mapstructure:"truncation" yaml:"truncation"`
	Tokenizer          string     `mapstructure:"tokenizer" yaml:"tokenizer"`
	PromptKey          string     `mapstructure:"prompt_key" yaml:"prompt_key"`
	ChosenKey          string     `mapstructure:"chosen_key" yaml:"chosen_key"`
	RejectedKey        string     `mapstructure:"rejected_key" yaml:"rejected_key"`
	SkipInvalid        bool       `mapstructure:"skip_invalid" yaml:"skip_invalid"`
	SyntheticPairs     int        `mapstructure:"synthetic_pairs" yaml:"synthetic_pairs"`
	SyntheticMinLength int        `mapstructure:"synthetic_min_length" yaml:"synthetic_min_length"`
	SyntheticMaxLength int        `mapstructure:"synthetic_max_length" yaml:"synthetic_max_length"`
}

// MicroBatch is the number of pairs per forward pass.
func (t Train) MicroBatch() int {
	if t.MicroBatchSize == 0 {
		return t.BatchSize
	}
	return t.MicroBatchSize
}

// Train holds the optimisation settings.
type Train struct {
	Steps              int       `mapstructure:"steps" yaml:"steps"`
	Epochs             int       `mapstructure:"epochs" yaml:"epochs"`
	BatchSize          int       `mapstructure:"batch_size" yaml:"batch_size"`
	MicroBatchSize     int       `mapstructure:"micro_batch_size" yaml:"micro_batch_size"`
	LearningRate       float64   `mapstructure:"learning_rate" yaml:"learning_rate"`
	WeightDecay        float64   `mapstructure:"weight_decay" yaml:"weight_decay"`
	AdamBeta1          float64   `mapstructure:"adam_beta1" yaml:"adam_beta1"`
	AdamBeta2          float64   `mapstructure:"adam_beta2" yaml:"adam_beta2"`
	AdamEps            float64   `mapstructure:"adam_eps" yaml:"adam_eps"`
	Schedule           Schedule  `mapstructure:"schedule" yaml:"schedule"`
	WarmupSteps        int       `mapstructure:"warmup_steps" yaml:"warmup_steps"`
	MinLRRatio         float64   `mapstructure:"min_lr_ratio" yaml:"min_lr_ratio"`
	MaxGradNorm        float64   `mapstructure:"max_grad_norm" yaml:"max_grad_norm"`
	MaxBadSteps        int       `mapstructure:"max_bad_steps" yaml:"max_bad_steps"`
	UseMargin          bool      `mapstructure:"use_margin" yaml:"use_margin"`
	CenterRewardsCoef  float64   `mapstructure:"center_rewards_coef" yaml:"center_rewards_coef"`
	PromptSwapTies     float64   `mapstructure:"prompt_swap_ties" yaml:"prompt_swap_ties"`
	Trainable          Trainable `mapstructure:"trainable" yaml:"trainable"`
	TrainableTopLayers int       `mapstructure:"trainable_top_layers" yaml:"trainable_top_layers"`
	// GradientCheckpointing recomputes each decoder block in the backward
	// pass instead of keeping its activations.
	GradientCheckpointing bool `mapstructure:"gradient_checkpointing" yaml:"gradient_checkpointing"`
	// LoRA: adapters of rank LoRARank (0: off) on LoRATargets, scaled by
	// LoRAAlpha/LoRARank; the score head trains in full.
	LoRARank    int      `mapstructure:"lora_rank" yaml:"lora_rank"`
	LoRAAlpha   float64  `mapstructure:"lora_alpha" yaml:"lora_alpha"`
	LoRATargets []string `mapstructure:"lora_targets" yaml:"lora_targets"`
}

// Eval holds the held-out evaluation settings.
type Eval struct {
	Every     int `mapstructure:"every" yaml:"every"`
	BatchSize int `mapstructure:"batch_size" yaml:"batch_size"`
}

// Checkpoint holds the checkpointing settings.
type Checkpoint struct {
	Every int `mapstructure:"every" yaml:"every"`
	Keep  int `mapstructure:"keep" yaml:"keep"`
}

// ToyPolicy as decomposition.policy_model names the toy tasks' built-in
// policy (data.ToyPolicy) instead of a causal LM folder.
const ToyPolicy = "toy"

// ErrInvalid marks configuration errors.
var ErrInvalid = errors.New("invalid configuration")

// EnvPrefix starts the environment variables that override keys.
const EnvPrefix = "PRISM_"

// Load reads an experiment file over the defaults, applies environment
// overrides (PRISM_<KEY>) and then --set overrides ("key=value", the value
// parsed as YAML), decodes strictly and validates. path may be "" for the
// defaults alone. environ is the environment to read (os.Environ() in
// production).
func Load(path string, sets []string, environ []string) (*Config, error) {
	name, b := "defaults", []byte(nil)
	if path != "" {
		var err error
		if b, err = fsutil.ReadFile(path, fsutil.CapConfig); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		name = path
	}
	cfg, src, err := decode(name, b, sets, environ)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, src.locate(err)
	}
	return cfg, nil
}

// Parse decodes a resolved configuration as a run saves it (the output of
// YAML), strictly as Load does, without the environment or overrides. Keys
// the text lacks, as in a checkpoint older than them, take the defaults.
// It does not validate: a checkpoint made before a rule was tightened must
// still be read, to be compared.
func Parse(yamlText []byte) (*Config, error) {
	// An empty text would silently be the defaults.
	if len(bytes.TrimSpace(yamlText)) == 0 {
		return nil, fmt.Errorf("%w: the saved configuration is empty", ErrInvalid)
	}
	cfg, _, err := decode("saved configuration", yamlText, nil, nil)
	return cfg, err
}

// decode reads the YAML text b, named name in errors, over the defaults,
// applies environ and sets, and decodes strictly without validating. The
// source it returns places a validation error.
func decode(name string, b []byte, sets, environ []string) (*Config, *source, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(DefaultYAML)); err != nil {
		return nil, nil, fmt.Errorf("default config: %w", err)
	}
	keys := knownKeys()
	src := &source{name: name}
	if err := yaml.Unmarshal(b, &src.root); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	if line := secondDocument(b); line > 0 {
		// yaml.Unmarshal and viper read the first document only: the rest
		// would be ignored without a word.
		return nil, nil, fmt.Errorf("%w: %s:%d: a second YAML document; an experiment file holds one", ErrInvalid, name, line)
	}
	if err := src.checkKeys(keys); err != nil {
		return nil, nil, err
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := v.MergeConfig(bytes.NewReader(b)); err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
		}
	}
	for _, kv := range environ {
		env, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(env, EnvPrefix) {
			continue
		}
		for _, k := range keys {
			if EnvName(k) == env {
				x, err := scalar(val)
				if err != nil {
					return nil, nil, fmt.Errorf("%w: environment %s: %v", ErrInvalid, env, err)
				}
				v.Set(k, x)
				src.override(k, fmt.Sprintf("environment %s (%s)", env, k))
			}
		}
	}
	for _, s := range sets {
		k, val, ok := strings.Cut(s, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%w: --set %q: want key=value", ErrInvalid, s)
		}
		k = strings.TrimSpace(k)
		if !contains(keys, k) {
			return nil, nil, fmt.Errorf("%w: --set %s: unknown key%s", ErrInvalid, k, suggest(k, keys))
		}
		x, err := scalar(val)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: --set %s: %v", ErrInvalid, k, err)
		}
		v.Set(k, x)
		src.override(k, "--set "+k)
	}

	var cfg Config
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		Result:           &cfg,
		ErrorUnused:      true,
		WeaklyTypedInput: false,
		DecodeHook:       strictNumbers,
	})
	if err != nil {
		return nil, nil, err
	}
	if err := dec.Decode(v.AllSettings()); err != nil {
		return nil, nil, src.wrap(err)
	}
	return &cfg, src, nil
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// strictNumbers refuses to truncate: 1.5 for an integer key is an error
// (mapstructure would silently store 1).
func strictNumbers(from, to reflect.Type, data any) (any, error) {
	if to.Kind() >= reflect.Int && to.Kind() <= reflect.Int64 {
		if f, ok := data.(float64); ok {
			if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("%v is not an integer", f)
			}
			// float64(MaxInt64) rounds up to 2^63, which does not fit.
			if f >= math.MaxInt64 || f < math.MinInt64 || (to.Kind() != reflect.Int64 && to.Kind() != reflect.Int && (f > math.MaxInt32 || f < math.MinInt32)) {
				return nil, fmt.Errorf("%v is out of range for an integer", f)
			}
			return int64(f), nil
		}
	}
	return data, nil
}

// scalar parses an override value the way YAML would read it.
func scalar(s string) (any, error) {
	var x any
	if err := yaml.Unmarshal([]byte(s), &x); err != nil {
		return nil, fmt.Errorf("value %q: %v", s, err)
	}
	if x == nil {
		return "", nil
	}
	return x, nil
}

// knownKeys lists every dotted key of Config.
func knownKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := prefix + f.Tag.Get("mapstructure")
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, name+".")
				continue
			}
			keys = append(keys, name)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	sort.Strings(keys)
	return keys
}

// source is the experiment file, kept as a YAML tree for line numbers,
// and where the keys that override it came from.
type source struct {
	name string
	root yaml.Node
	// overrides maps keys set by the environment or --set to that origin:
	// an error in such a value names it, not the file.
	overrides map[string]string
}

func (s *source) override(key, origin string) {
	if s.overrides == nil {
		s.overrides = map[string]string{}
	}
	s.overrides[key] = origin
}

// checkKeys reports the first unknown key, with its line. Viper would
// ignore it, and a misspelt key silently running with a default is the
// worst kind of configuration bug.
func (s *source) checkKeys(keys []string) error {
	if len(s.root.Content) == 0 {
		return nil
	}
	doc := s.root.Content[0]
	if doc.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: %s:%d: the file must be a mapping of sections (run, model, data, ...)", ErrInvalid, s.name, doc.Line)
	}
	sections := map[string]bool{}
	for _, k := range keys {
		sec, _, _ := strings.Cut(k, ".")
		sections[sec] = true
	}
	// A repeated key would silently take its last value.
	seen := map[string]int{}
	repeated := func(k *yaml.Node, key string) error {
		if l, ok := seen[key]; ok {
			return fmt.Errorf("%w: %s:%d: %s is set twice (first on line %d)", ErrInvalid, s.name, k.Line, key, l)
		}
		seen[key] = k.Line
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		kn, vn := doc.Content[i], doc.Content[i+1]
		if !sections[kn.Value] {
			return fmt.Errorf("%w: %s:%d: unknown section %q%s", ErrInvalid, s.name, kn.Line, kn.Value, suggest(kn.Value, mapKeys(sections)))
		}
		if err := repeated(kn, "section "+kn.Value); err != nil {
			return err
		}
		if vn.Kind != yaml.MappingNode {
			if vn.Tag == "!!null" {
				continue
			}
			return fmt.Errorf("%w: %s:%d: section %q must be a mapping of keys", ErrInvalid, s.name, kn.Line, kn.Value)
		}
		for j := 0; j+1 < len(vn.Content); j += 2 {
			k := kn.Value + "." + vn.Content[j].Value
			if !contains(keys, k) {
				return fmt.Errorf("%w: %s:%d: unknown key %s%s", ErrInvalid, s.name, vn.Content[j].Line, k, suggest(k, keys))
			}
			if err := repeated(vn.Content[j], k); err != nil {
				return err
			}
		}
	}
	return nil
}

// line returns the line of a dotted key in the file, or 0.
func (s *source) line(key string) int {
	if len(s.root.Content) == 0 {
		return 0
	}
	n := s.root.Content[0]
	var line int
	for _, part := range strings.Split(key, ".") {
		if n.Kind != yaml.MappingNode {
			return 0
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == part {
				line = n.Content[i].Line
				n = n.Content[i+1]
				found = true
				break
			}
		}
		if !found {
			return 0
		}
	}
	return line
}

var quotedKey = regexp.MustCompile(`'([a-z_]+\.[a-z_0-9]+)'`)

// wrap turns a decoding error into one that names the file, the line and
// the key.
func (s *source) wrap(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "decoding failed due to the following error(s):")
	msg = strings.TrimSpace(msg)
	if m := quotedKey.FindStringSubmatch(msg); m != nil {
		msg = strings.TrimSpace(strings.Replace(msg, m[0], "", 1))
		if o, ok := s.overrides[m[1]]; ok {
			return fmt.Errorf("%w: %s: %s", ErrInvalid, o, msg)
		}
		if l := s.line(m[1]); l > 0 {
			return fmt.Errorf("%w: %s:%d: %s: %s", ErrInvalid, s.name, l, m[1], msg)
		}
		return fmt.Errorf("%w: %s: %s: %s", ErrInvalid, s.name, m[1], msg)
	}
	return fmt.Errorf("%w: %s: %s", ErrInvalid, s.name, msg)
}

// locate adds the file and line to a validation error.
func (s *source) locate(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		if o, ok := s.overrides[fe.Key]; ok {
			return fmt.Errorf("%w: %s: %s", ErrInvalid, o, fe.Problem)
		}
		where := s.name
		if l := s.line(fe.Key); l > 0 {
			where = fmt.Sprintf("%s:%d", s.name, l)
		}
		return fmt.Errorf("%w: %s: %s: %s", ErrInvalid, where, fe.Key, fe.Problem)
	}
	return fmt.Errorf("%w: %s: %v", ErrInvalid, s.name, err)
}

// suggest proposes the closest known key for a misspelt one.
func suggest(k string, keys []string) string {
	best, bestD := "", 4
	for _, c := range keys {
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func contains(keys []string, k string) bool {
	i := sort.SearchStrings(keys, k)
	return i < len(keys) && keys[i] == k
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// YAML renders the fully resolved configuration, as saved in a run folder
// and its checkpoints; Parse reads it back.
func (c *Config) YAML() ([]byte, error) {
	return yaml.Marshal(c)
}

// secondDocument returns the line of a second YAML document in b (after a
// "---" that follows content), or 0.
func secondDocument(b []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		return 0
	}
	var next yaml.Node
	if err := dec.Decode(&next); err != nil {
		return 0
	}
	if next.Line > 0 {
		return next.Line
	}
	return 1
}
