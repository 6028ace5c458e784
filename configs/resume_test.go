package configs

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestResumeChanges(t *testing.T) {
	base := []string{"train.learning_rate=1e-4", "data.train=a.jsonl"}
	tests := []struct {
		name             string
		sets             []string // over base, for the current run
		refused, allowed []Change
	}{
		{name: "identical"},
		{
			name:    "learning rate",
			sets:    []string{"train.learning_rate=1e-5"},
			allowed: []Change{{"train.learning_rate", "0.0001", "1e-05"}},
		},
		{
			name: "every resumable key",
			sets: []string{
				"train.learning_rate=2e-4", "train.min_lr_ratio=0.1", "train.max_grad_norm=0",
				"train.max_bad_steps=0", "train.gradient_checkpointing=true", "train.micro_batch_size=8",
				"decomposition.batch_size=16", "decomposition.plot_tag=math",
			},
			allowed: []Change{
				{"train.micro_batch_size", "0", "8"},
				{"train.learning_rate", "0.0001", "0.0002"},
				{"train.min_lr_ratio", "0", "0.1"},
				{"train.max_grad_norm", "1", "0"},
				{"train.max_bad_steps", "10", "0"},
				{"train.gradient_checkpointing", "false", "true"},
				{"decomposition.batch_size", "256", "16"},
				{"decomposition.plot_tag", `""`, "math"},
			},
		},
		{
			name: "free sections",
			sets: []string{"run.dir=elsewhere", "run.seed=2", "eval.every=5", "checkpoint.keep=1", "distributed.backend=gloo"},
		},
		{
			name:    "data file",
			sets:    []string{"data.train=b.jsonl"},
			refused: []Change{{"data.train", "a.jsonl", "b.jsonl"}},
		},
		{
			name:    "empty string",
			sets:    []string{"data.eval=held.jsonl"},
			refused: []Change{{"data.eval", `""`, "held.jsonl"}},
		},
		{
			name:    "list",
			sets:    []string{"train.lora_targets=[q_proj, v_proj]"},
			refused: []Change{{"train.lora_targets", "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]", "[q_proj, v_proj]"}},
		},
		{
			name:    "enum",
			sets:    []string{"decomposition.strategy=softmax"},
			refused: []Change{{"decomposition.strategy", "lowest_fraction", "softmax"}},
		},
		{
			name:    "both",
			sets:    []string{"model.preset=tiny-mistral", "train.batch_size=16", "train.learning_rate=1e-5"},
			refused: []Change{{"model.preset", "tiny-llama", "tiny-mistral"}, {"train.batch_size", "32", "16"}},
			allowed: []Change{{"train.learning_rate", "0.0001", "1e-05"}},
		},
	}
	saved := load(t, base...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused, allowed := ResumeChanges(saved, load(t, append(base[:len(base):len(base)], tt.sets...)...))
			if !reflect.DeepEqual(refused, tt.refused) {
				t.Errorf("refused = %q, want %q", refused, tt.refused)
			}
			if !reflect.DeepEqual(allowed, tt.allowed) {
				t.Errorf("allowed = %q, want %q", allowed, tt.allowed)
			}
		})
	}
}

// TestResumeReadme: the README's resume with a new learning rate, the
// saved side read back from its YAML as the trainer does.
func TestResumeReadme(t *testing.T) {
	y, err := load(t).YAML()
	if err != nil {
		t.Fatal(err)
	}
	saved, err := Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	refused, allowed := ResumeChanges(saved, load(t, "train.learning_rate=1e-5"))
	if err := ResumeError(refused); err != nil {
		t.Fatal(err)
	}
	if want := "train.learning_rate: 0.001 → 1e-05"; len(allowed) != 1 || allowed[0].String() != want {
		t.Errorf("allowed = %q, want [%s]", allowed, want)
	}
}

func TestResumeError(t *testing.T) {
	if err := ResumeError(nil); err != nil {
		t.Fatalf("ResumeError(nil) = %v", err)
	}
	changes := []Change{{"data.train", "a.jsonl", "b.jsonl"}, {"train.batch_size", "8", "16"}}
	err := ResumeError(changes)
	want := "the checkpoint was made with a different configuration: data.train: a.jsonl → b.jsonl; train.batch_size: 8 → 16 " +
		"(these keys must match to resume; run.*, eval.*, checkpoint.*, distributed.* and model.attention, train.learning_rate, "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant it to start %q", err, want)
	}
	for _, k := range resumable {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error does not name %s", k)
		}
	}
	var m *ResumeMismatch
	if !errors.As(err, &m) || !reflect.DeepEqual(m.Changes, changes) {
		t.Errorf("not a *ResumeMismatch with the changes: %#v", err)
	}
	if errors.Is(err, ErrInvalid) {
		t.Error("a resume mismatch is not an invalid configuration")
	}
}

// TestResumeKeysExist: a renamed key would otherwise silently turn a
// resumable key into a refused one.
func TestResumeKeysExist(t *testing.T) {
	keys := knownKeys()
	for _, k := range resumable {
		if !contains(keys, k) {
			t.Errorf("resumable key %s is not a key", k)
		}
	}
	for _, s := range freeSections {
		if !slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, s+".") }) {
			t.Errorf("free section %s has no keys", s)
		}
	}
	var flat []string
	for _, kv := range flatten(load(t)) {
		flat = append(flat, kv.key)
	}
	if !reflect.DeepEqual(slices.Sorted(slices.Values(flat)), keys) {
		t.Errorf("flatten keys differ from the known keys:\n%v\n%v", flat, keys)
	}
}

func load(t *testing.T, sets ...string) *Config {
	t.Helper()
	c, err := Load("", sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
