package models

import (
	"fmt"
	"sort"
)

func intp(v int) *int { return &v }

// presets are tiny random models for tests and demos: a few layers, small
// hidden sizes, fast on a CPU.
var presets = map[string]func() *Config{
	"tiny-llama": func() *Config {
		return &Config{ModelType: "llama", VocabSize: 128, HiddenSize: 64, IntermediateSize: 128,
			NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-5,
			RopeTheta: 10000, MaxPositionEmbeddings: 512, PadTokenID: intp(0), BOSTokenID: 1, EOSTokenID: 2}
	},
	// Llama 3.1's rope scaling and an explicit head_dim that differs from
	// hidden/heads.
	"tiny-llama3": func() *Config {
		return &Config{ModelType: "llama", VocabSize: 128, HiddenSize: 64, IntermediateSize: 160,
			NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 1, HeadDim: 32, RMSNormEps: 1e-5,
			RopeTheta: 500000, MaxPositionEmbeddings: 1024, PadTokenID: intp(0), BOSTokenID: 1, EOSTokenID: 2,
			RopeScaling: &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64}}
	},
	// Mistral's sliding window, short enough that test sequences exceed it.
	"tiny-mistral": func() *Config {
		return &Config{ModelType: "mistral", VocabSize: 128, HiddenSize: 64, IntermediateSize: 128,
			NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-5,
			RopeTheta: 1e6, MaxPositionEmbeddings: 512, SlidingWindow: 8, PadTokenID: intp(0), BOSTokenID: 1, EOSTokenID: 2}
	},
}

// Preset returns the config of a named tiny model.
func Preset(name string) (*Config, error) {
	mk, ok := presets[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown model preset %q (have %v)", ErrConfig, name, PresetNames())
	}
	c := mk()
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// PresetNames lists the presets.
func PresetNames() []string {
	var names []string
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
