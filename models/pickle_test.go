package models

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
)

// pickleConfig is the model of testdata/pickle-model: its
// pytorch_model.bin holds RandomInit(pickleConfig(), seed 5) as written by
// torch.save (converted from prism's safetensors with Debian's torch 1.13 by
// testdata/pickle-model-gen.py).
func pickleConfig() *Config {
	pad := 0
	c := &Config{ModelType: "llama", VocabSize: 32, HiddenSize: 16, IntermediateSize: 32, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 1, RMSNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 64, PadTokenID: &pad}
	c.applyDefaults()
	return c
}

// TestPickleWeights: a folder with pickle weights only is refused by
// default with the reason and the way out; with AllowPickle the restricted
// reader loads it and the model gives the same rewards as the weights it
// was written from.
func TestPickleWeights(t *testing.T) {
	dir := "testdata/pickle-model"
	_, _, err := Load(dir, gotch.CPU, rand.New(rand.NewPCG(0, 0)))
	if !errors.Is(err, errPickleOnly) || !strings.Contains(err.Error(), "--allow-pickle") || !strings.Contains(err.Error(), "arbitrary code") {
		t.Fatalf("Load = %v; want a refusal that says why and names --allow-pickle", err)
	}
	m, info, err := LoadWith(dir, gotch.CPU, rand.New(rand.NewPCG(0, 0)), LoadOptions{AllowPickle: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Drop()
	if info.NewHead {
		t.Fatal("the score head was not read")
	}
	c := pickleConfig()
	vals := RandomInit(c, rand.New(rand.NewPCG(5, 0)))
	ref, err := FromValues(c, vals, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Drop()
	seqs := [][]int64{{1, 5, 9, 3}, {2, 7}, {4, 4, 4, 4, 4, 8}}
	got, err := m.Score(seqs, 8)
	if err != nil {
		t.Fatal(err)
	}
	want, err := ref.Score(seqs, 8)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("reward %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// TestWritePickleFixtureSource writes the safetensors folder the fixture
// was converted from, when PRISM_WRITE_PICKLE_SOURCE names a folder.
func TestWritePickleFixtureSource(t *testing.T) {
	out := os.Getenv("PRISM_WRITE_PICKLE_SOURCE")
	if out == "" {
		t.Skip("set PRISM_WRITE_PICKLE_SOURCE to regenerate testdata/pickle-model")
	}
	c := pickleConfig()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFolder(out, c, RandomInit(c, rand.New(rand.NewPCG(5, 0))), nil); err != nil {
		t.Fatal(err)
	}
	t.Log("wrote", filepath.Join(out, "model.safetensors"))
}
