package configs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestParseRoundTrip: what a run saves parses back to the same Config.
func TestParseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		sets []string
	}{
		{"defaults", nil},
		{"changed", []string{
			"run.dir=runs/x", "train.learning_rate=3e-5", "train.schedule=linear",
			"train.trainable=top_layers", "train.trainable_top_layers=2",
			"data.truncation=left", "data.train=toy:adversarial", "data.eval_fraction=0",
			"decomposition.enabled=true", "decomposition.strategy=softmax",
			"decomposition.weights=policy", "decomposition.policy_model=/m",
			"decomposition.plot_tag='true'", // a string that reads as a bool unquoted
		}},
		{"lora", []string{"train.lora_rank=4", "train.lora_alpha=8", "train.lora_targets=[q_proj, v_proj]"}},
		{"no lora targets", []string{"train.lora_targets=[]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load("", tt.sets, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, b)
			}
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("round trip changed the config:\n%+v\n%+v", c, got)
			}
		})
	}
}

func TestParse(t *testing.T) {
	// The environment is the current run's, not the saved one's.
	t.Setenv("PRISM_TRAIN_STEPS", "99")

	t.Run("missing keys take the defaults", func(t *testing.T) {
		c, err := Parse([]byte("train:\n  steps: 5\n"))
		if err != nil {
			t.Fatal(err)
		}
		d, err := Load("", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		d.Train.Steps = 5
		if !reflect.DeepEqual(c, d) {
			t.Errorf("got %+v, want the defaults with train.steps 5", c)
		}
	})
	t.Run("does not validate", func(t *testing.T) {
		c, err := Parse([]byte("train:\n  learning_rate: 0\n  schedule: exponential\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Train.LearningRate != 0 || c.Train.Schedule != "exponential" {
			t.Errorf("got %+v", c.Train)
		}
	})

	bad := []struct {
		name, text string
		want       []string
	}{
		{"empty", "\n", []string{"empty"}},
		{"unknown key", "train:\n  lerning_rate: 1e-4\n", []string{"saved configuration:2", "unknown key train.lerning_rate"}},
		{"wrong type", "train:\n  steps: many\n", []string{"saved configuration:2", "train.steps"}},
		{"fraction", "train:\n  steps: 1.5\n", []string{"train.steps", "not an integer"}},
		{"not yaml", "train: [1\n", []string{"saved configuration"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
