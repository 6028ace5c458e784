package configs

import (
	"strings"
	"testing"
)

// TestEnumsLoad: every constant of every typed key loads through --set and
// the environment, and a value outside them is refused naming them all, so
// the constants and the validation agree.
func TestEnumsLoad(t *testing.T) {
	tests := []struct {
		key    string
		values []string
		extra  []string // keys another value needs
		get    func(*Config) string
	}{
		{
			key:    "train.schedule",
			values: names(ScheduleCosine, ScheduleLinear, ScheduleConstant),
			get:    func(c *Config) string { return string(c.Train.Schedule) },
		},
		{
			key:    "train.trainable",
			values: names(TrainableAll, TrainableHead, TrainableTopLayers),
			extra:  []string{"train.trainable_top_layers=1"},
			get:    func(c *Config) string { return string(c.Train.Trainable) },
		},
		{
			key:    "data.truncation",
			values: names(TruncationDrop, TruncationLeft),
			get:    func(c *Config) string { return string(c.Data.Truncation) },
		},
		{
			key:    "decomposition.strategy",
			values: names(StrategyLowestFraction, StrategyThreshold, StrategySoftmax),
			get:    func(c *Config) string { return string(c.Decomposition.Strategy) },
		},
		{
			key:    "decomposition.weights",
			values: names(WeightsUniform, WeightsPolicy),
			extra:  []string{"decomposition.policy_model=/models/policy"},
			get:    func(c *Config) string { return string(c.Decomposition.Weights) },
		},
	}
	for _, tt := range tests {
		for _, v := range tt.values {
			t.Run(tt.key+"="+v, func(t *testing.T) {
				c, err := Load("", append([]string{tt.key + "=" + v}, tt.extra...), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := tt.get(c); got != v {
					t.Errorf("--set: got %q, want %q", got, v)
				}
				c, err = Load("", tt.extra, []string{EnvName(tt.key) + "=" + v})
				if err != nil {
					t.Fatal(err)
				}
				if got := tt.get(c); got != v {
					t.Errorf("environment: got %q, want %q", got, v)
				}
			})
		}
		t.Run(tt.key+"=bogus", func(t *testing.T) {
			_, err := Load("", []string{tt.key + "=bogus"}, nil)
			want := "must be one of " + strings.Join(tt.values, ", ") + `, got "bogus"`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to contain %q", err, want)
			}
		})
	}
}

// TestEnumWrongType: a typed key is still a string key; a number is
// refused rather than turned into text.
func TestEnumWrongType(t *testing.T) {
	_, err := Load("", []string{"train.schedule=3"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--set train.schedule") {
		t.Fatalf("err = %v", err)
	}
}
