package configs

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exp.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LearningRate != 1e-3 || c.Model.Preset != "tiny-llama" || c.Checkpoint.Keep != 3 {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestPrecedence(t *testing.T) {
	p := writeFile(t, "train:\n  learning_rate: 2.0e-4\n  batch_size: 8\n  micro_batch_size: 4\nrun:\n  seed: 7\n")
	env := []string{"PRISM_TRAIN_BATCH_SIZE=32", "PRISM_RUN_SEED=9", "PRISM_UNRELATED=1", "PATH=/bin"}
	c, err := Load(p, []string{"run.seed=11", "train.schedule=linear"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LearningRate != 2e-4 {
		t.Errorf("file value lost: lr = %v", c.Train.LearningRate)
	}
	if c.Train.BatchSize != 32 {
		t.Errorf("environment did not override the file: batch_size = %d", c.Train.BatchSize)
	}
	if c.Run.Seed != 11 || c.Train.Schedule != "linear" {
		t.Errorf("--set did not win: seed %d schedule %q", c.Run.Seed, c.Train.Schedule)
	}
	if c.Train.MicroBatchSize != 4 || c.Checkpoint.Keep != 3 {
		t.Errorf("file/default mix wrong: %+v", c.Train)
	}
}

func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		sets    []string
		env     []string
		want    []string // substrings of the error
		wantKey string
	}{
		{name: "unknown key", file: "train:\n  lerning_rate: 1e-4\n", want: []string{"exp.yaml:2", "unknown key train.lerning_rate", "did you mean train.learning_rate"}},
		{name: "unknown section", file: "trian:\n  steps: 3\n", want: []string{"exp.yaml:1", "unknown section \"trian\"", "did you mean train"}},
		{name: "wrong type string", file: "train:\n  batch_size: lots\n", want: []string{"exp.yaml:2", "train.batch_size"}},
		{name: "wrong type fraction", file: "train:\n  steps: 1.5\n", want: []string{"train.steps", "not an integer"}},
		{name: "wrong type bool", file: "train:\n  use_margin: 3\n", want: []string{"train.use_margin"}},
		{name: "section not a map", file: "train: 5\n", want: []string{"exp.yaml:1", "section \"train\" must be a mapping"}},
		{name: "not a mapping", file: "- a\n- b\n", want: []string{"must be a mapping"}},
		{name: "bad yaml", file: "train:\n  steps: [1\n", want: []string{"exp.yaml"}},
		{name: "repeated key", file: "train:\n  steps: 3\n  batch_size: 4\n  steps: 5\n", want: []string{"exp.yaml:4", "train.steps is set twice (first on line 2)"}},
		{name: "repeated section", file: "train:\n  steps: 3\nrun:\n  seed: 2\ntrain:\n  batch_size: 4\n", want: []string{"exp.yaml:5", "section train is set twice (first on line 1)"}},
		{name: "alias bomb", file: aliasBomb, want: []string{"exp.yaml", "excessive aliasing"}},
		{name: "negative batch", file: "train:\n  batch_size: -4\n", want: []string{"exp.yaml:2", "train.batch_size", "at least 1"}},
		{name: "zero keep", file: "checkpoint:\n  keep: 0\n", want: []string{"checkpoint.keep"}},
		{name: "nan lr", file: "train:\n  learning_rate: .nan\n", want: []string{"exp.yaml:2", "train.learning_rate", "finite"}},
		{name: "zero lr", file: "train:\n  learning_rate: 0\n", want: []string{"train.learning_rate", "(0, 10]"}},
		{name: "micro does not divide", file: "train:\n  batch_size: 10\n  micro_batch_size: 4\n", want: []string{"train.micro_batch_size", "divide"}},
		{name: "bad schedule", file: "train:\n  schedule: exp\n", want: []string{"train.schedule", "cosine, linear, constant"}},
		{name: "preset and path", file: "model:\n  path: /x\n", want: []string{"model.path", "not both"}},
		{name: "set unknown", sets: []string{"train.lr=1"}, want: []string{"--set train.lr", "unknown key"}},
		{name: "swap fraction", file: "train:\n  prompt_swap_ties: 1.5\n", want: []string{"exp.yaml:2", "train.prompt_swap_ties"}},
		{name: "swap with decomposition", file: "train:\n  prompt_swap_ties: 0.5\ndecomposition:\n  enabled: true\n", want: []string{"train.prompt_swap_ties", "alternative to decomposition.enabled"}},
		{name: "set malformed", sets: []string{"train.steps"}, want: []string{"key=value"}},
		{name: "env wrong type", env: []string{"PRISM_TRAIN_STEPS=many"}, want: []string{"environment PRISM_TRAIN_STEPS (train.steps)"}},
		// A value from --set or the environment is named as such, not as
		// the file's line that it overrides.
		{name: "set nan over the file", file: "train:\n  learning_rate: 1e-4\n", sets: []string{"train.learning_rate=.nan"}, want: []string{"--set train.learning_rate: must be a finite number"}},
		{name: "set wrong type", file: "train:\n  steps: 3\n", sets: []string{"train.steps=many"}, want: []string{"--set train.steps:"}},
		{name: "env negative", env: []string{"PRISM_TRAIN_BATCH_SIZE=-1"}, want: []string{"environment PRISM_TRAIN_BATCH_SIZE (train.batch_size): must be at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ""
			if tt.file != "" {
				p = writeFile(t, tt.file)
			}
			_, err := Load(p, tt.sets, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error is not ErrInvalid: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.yaml"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	c, err := Load("", []string{"train.learning_rate=3e-5", "run.dir=runs/x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, string(b))
	c2, err := Load(p, nil, nil)
	if err != nil {
		t.Fatalf("resolved config does not load back: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(c2, c) {
		t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
	}
}

func TestValidateReportsKey(t *testing.T) {
	c, err := Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Train.AdamBeta2 = math.Inf(1)
	if fe := first(c.Validate()); fe == nil || fe.Key != "train.adam_beta2" {
		t.Fatalf("got %v", fe)
	}
}

// TestExperimentFilesLoad: every experiment file in the repository is
// valid.
func TestExperimentFilesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "experiments", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no experiment files found")
	}
	for _, f := range files {
		if _, err := Load(f, nil, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// aliasBomb nests YAML aliases under known keys to 10^9 strings when
// expanded ("billion laughs").
const aliasBomb = `run:
  dir: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
  device: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
  log_every: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
model:
  preset: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
  path: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
  dtype: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
data:
  train: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
  eval: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
  tokenizer: [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]
`

// TestSizesAreBounded: sizes allocated before anything else could refuse
// them are bounded, each error naming the key, the bound and the value as
// given.
func TestSizesAreBounded(t *testing.T) {
	for _, tt := range []struct{ set, want string }{
		{"data.synthetic_pairs=2000000000", "data.synthetic_pairs: must be at most 1000000"},
		{"decomposition.samples=100000", "decomposition.samples: must be at most 1024"},
		{"decomposition.batch_size=10000000", "decomposition.batch_size: must be at most 65536"},
		{"train.batch_size=2000000", "train.batch_size: must be at most 1048576"},
		{"eval.batch_size=1000000", "eval.batch_size: must be at most 65536"},
		{"train.lora_rank=100000", "train.lora_rank: must be at most 65536"},
	} {
		_, err := Load("", []string{tt.set}, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), strings.Split(tt.set, "=")[1]) {
			t.Errorf("--set %s: %v, want %q and the value", tt.set, err, tt.want)
		}
	}
}
