package configs

import "strings"

// SourceKind is the kind of training data data.train names.
type SourceKind string

// The kinds of training data.
const (
	// SourceSynthetic is the built-in learnable task ("synthetic").
	SourceSynthetic SourceKind = "synthetic"
	// SourceToy is one of the paper's synthetic tasks ("toy:<task>").
	SourceToy SourceKind = "toy"
	// SourceFile is a file of pairs.
	SourceFile SourceKind = "file"
)

// Source is data.train, parsed.
type Source struct {
	Kind SourceKind
	// Task names the toy task when Kind is SourceToy.
	Task string
	// Path is the file when Kind is SourceFile.
	Path string
}

// toyPrefix starts a toy task's name in data.train.
const toyPrefix = "toy:"

// Source says what data.train names: the synthetic task, a toy task or a
// file.
func (d Data) Source() Source {
	switch {
	case d.Train == string(SourceSynthetic):
		return Source{Kind: SourceSynthetic}
	case strings.HasPrefix(d.Train, toyPrefix):
		return Source{Kind: SourceToy, Task: strings.TrimPrefix(d.Train, toyPrefix)}
	default:
		return Source{Kind: SourceFile, Path: d.Train}
	}
}

// TotalSteps is the number of optimizer steps of the run: train.steps when
// set, else train.epochs passes over trainPairs pairs, the last batch of
// each epoch possibly short. t.BatchSize must be positive, as Validate
// ensures.
func (t Train) TotalSteps(trainPairs int) int {
	if t.Steps > 0 {
		return t.Steps
	}
	return t.Epochs * ((trainPairs + t.BatchSize - 1) / t.BatchSize)
}

// Due reports whether the prompt-free gaps are recomputed once `step`
// optimizer steps of a run of total steps are done, before the next one:
// every decomposition.every_steps steps from decomposition.warmup_steps
// on, but not at the end, where nothing would train on the selection.
func (d Decomposition) Due(step, total int) bool {
	return d.Enabled && step >= d.WarmupSteps && (step-d.WarmupSteps)%d.EverySteps == 0 && step < total
}
