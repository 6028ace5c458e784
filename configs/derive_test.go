package configs

import "testing"

func TestSource(t *testing.T) {
	tests := []struct {
		train string
		want  Source
	}{
		{"synthetic", Source{Kind: SourceSynthetic}},
		{"toy:length_bias", Source{Kind: SourceToy, Task: "length_bias"}},
		{"toy:adversarial", Source{Kind: SourceToy, Task: "adversarial"}},
		{"data/pairs.jsonl", Source{Kind: SourceFile, Path: "data/pairs.jsonl"}},
		// Only the exact word is the synthetic task.
		{"synthetic.jsonl", Source{Kind: SourceFile, Path: "synthetic.jsonl"}},
		{"toys/pairs.jsonl", Source{Kind: SourceFile, Path: "toys/pairs.jsonl"}},
	}
	for _, tt := range tests {
		if got := (Data{Train: tt.train}).Source(); got != tt.want {
			t.Errorf("Source(%q) = %+v, want %+v", tt.train, got, tt.want)
		}
	}
}

// TestSourceLoad: the default and a --set value parse the same way.
func TestSourceLoad(t *testing.T) {
	c, err := Load("", []string{"data.train=toy:length_bias"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Data.Source(), (Source{Kind: SourceToy, Task: "length_bias"}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	c, err = Load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Data.Source().Kind; got != SourceSynthetic {
		t.Errorf("default data.train is %v, want synthetic", got)
	}
}

func TestTotalSteps(t *testing.T) {
	tests := []struct {
		name  string
		train Train
		pairs int
		want  int
	}{
		{"steps win", Train{Steps: 7, Epochs: 3, BatchSize: 4}, 100, 7},
		{"exact batches", Train{Epochs: 2, BatchSize: 4}, 8, 4},
		{"short last batch", Train{Epochs: 2, BatchSize: 4}, 9, 6}, // 3 batches an epoch
		{"one short batch", Train{Epochs: 3, BatchSize: 32}, 1, 3},
		{"batch of one", Train{Epochs: 1, BatchSize: 1}, 5, 5},
		{"no pairs", Train{Epochs: 2, BatchSize: 4}, 0, 0},
	}
	for _, tt := range tests {
		if got := tt.train.TotalSteps(tt.pairs); got != tt.want {
			t.Errorf("%s: TotalSteps(%d) = %d, want %d", tt.name, tt.pairs, got, tt.want)
		}
	}
}

func TestDue(t *testing.T) {
	on := Decomposition{Enabled: true, WarmupSteps: 10, EverySteps: 5}
	tests := []struct {
		name        string
		d           Decomposition
		step, total int
		want        bool
	}{
		{"before warmup", on, 9, 100, false},
		{"at warmup", on, 10, 100, true},
		{"between", on, 12, 100, false},
		{"every", on, 15, 100, true},
		{"last step before the end", on, 95, 100, true},
		{"at the end", on, 100, 100, false},
		{"past the end", on, 105, 100, false},
		{"disabled", Decomposition{WarmupSteps: 10, EverySteps: 5}, 10, 100, false},
		{"disabled without period", Decomposition{}, 0, 100, false},
		{"no warmup", Decomposition{Enabled: true, EverySteps: 1}, 0, 1, true},
	}
	for _, tt := range tests {
		if got := tt.d.Due(tt.step, tt.total); got != tt.want {
			t.Errorf("%s: Due(%d, %d) = %v, want %v", tt.name, tt.step, tt.total, got, tt.want)
		}
	}
}
