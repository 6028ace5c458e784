package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
	"prism/internal/fsutil"
	"prism/internal/safetensors"
	"prism/models"
	"prism/trainer/checkpoint"
)

func TestMissingAncestor(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ path, want string }{
		{dir, ""},
		{filepath.Join(dir, "run"), filepath.Join(dir, "run")},
		{filepath.Join(dir, "a", "b", "run"), filepath.Join(dir, "a")},
	}
	for _, tt := range tests {
		if got := missingAncestor(tt.path); got != tt.want {
			t.Errorf("missingAncestor(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestRemoveUnstarted: a folder that holds a checkpoint or a model is a run
// to keep; one that holds neither is removed.
func TestRemoveUnstarted(t *testing.T) {
	for _, kept := range []string{checkpoint.Dir, checkpoint.ModelDir} {
		dir := filepath.Join(t.TempDir(), "run")
		if err := os.MkdirAll(filepath.Join(dir, kept), 0o755); err != nil {
			t.Fatal(err)
		}
		removeUnstarted(dir, dir)
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("a run folder with %s was removed: %v", kept, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removeUnstarted(dir, dir)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("an unstarted run folder was kept: %v", err)
	}
}

// TestResumeRefusesHeadlessCheckpoint: a checkpoint whose model has no
// reward head is refused instead of resuming with a new random head.
func TestResumeRefusesHeadlessCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg, err := configs.Load(smallConfig(t, dir, ""), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	mcfg, err := models.Preset(cfg.Model.Preset)
	if err != nil {
		t.Fatal(err)
	}
	weights := models.RandomInit(mcfg, rand.New(rand.NewPCG(1, 2)))
	st := &checkpoint.State{Format: checkpoint.Format, Step: 4, Config: string(y), FirstTagShare: -1}
	ck, err := checkpoint.Save(cfg.Run.Dir, st, func(dir string) ([]string, error) {
		return []string{"config.json", "model.safetensors"}, models.WriteFolder(dir, mcfg, weights, nil)
	}, map[string][]float32{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Rewrite the weights without the head and re-sign the manifest, so
	// the checkpoint verifies and only the missing head is wrong.
	path := filepath.Join(ck, checkpoint.ModelDir, "model.safetensors")
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var kept []safetensors.Tensor
	for _, ti := range f.Header().Tensors {
		if ti.Name == "score.weight" {
			continue
		}
		raw, err := f.ReadRaw(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: raw})
	}
	f.Close()
	if err := safetensors.Write(path, kept, nil); err != nil {
		t.Fatal(err)
	}
	var man checkpoint.Manifest
	b, err := os.ReadFile(filepath.Join(ck, checkpoint.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	if man.Files[checkpoint.ModelDir+"/model.safetensors"], err = checkpoint.HashFile(path); err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(man); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, checkpoint.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, Options{Resume: "auto"})
	if err == nil || !strings.Contains(err.Error(), "no score.weight") {
		t.Fatalf("err = %v; want a refusal naming the missing head", err)
	}
}

// TestRunFolderLock: while another process holds a run folder's lock, a
// run there is refused at once, naming the holder, and writes nothing;
// once it is free the run goes ahead, and its lock file is gone after it.
// A stale lock file (its holder died) does not stop a run.
func TestRunFolderLock(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(runDir, LockFile)
	release, err := fsutil.Lock(lock, "prism pid 4242 on elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load("", []string{"run.dir=" + runDir, "data.synthetic_pairs=64",
		"train.steps=2", "train.batch_size=8", "eval.every=0", "checkpoint.every=0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, Options{Progress: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "is in use by prism pid 4242 on elsewhere") || !strings.Contains(err.Error(), runDir) {
		t.Fatalf("run in a locked folder: %v", err)
	}
	if ents, _ := os.ReadDir(runDir); len(ents) != 1 {
		t.Errorf("a refused run wrote into the folder: %v", ents)
	}
	release()
	if err := os.WriteFile(lock, []byte("prism pid 1 (died)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Progress: io.Discard}); err != nil {
		t.Fatalf("run after the lock was released: %v", err)
	}
	if _, err := os.Lstat(lock); !os.IsNotExist(err) {
		t.Errorf("the lock file outlived the run: %v", err)
	}
}

// TestWarnZeroGradient: three first steps with a zero gradient warn once;
// a run whose gradient moves does not warn, even if it is zero later.
func TestWarnZeroGradient(t *testing.T) {
	for _, tt := range []struct {
		norms []float64
		warns int
	}{
		{[]float64{0, 0, 0, 0, 0}, 1},
		{[]float64{0, 0, 1, 0, 0, 0}, 0},
		{[]float64{0.5, 0, 0, 0}, 0},
	} {
		var buf strings.Builder
		r := &run{log: slog.New(slog.NewTextHandler(&buf, nil))}
		hook := r.warnZeroGradient()
		for i, g := range tt.norms {
			if err := hook(StepInfo{Step: i + 1, GradNorm: g}); err != nil {
				t.Fatal(err)
			}
		}
		if got := strings.Count(buf.String(), "exactly zero"); got != tt.warns {
			t.Errorf("norms %v: %d warnings, want %d:\n%s", tt.norms, got, tt.warns, buf.String())
		}
	}
}

// TestPadTokenID: a model folder whose config.json has no pad_token_id is
// refused before anything loads, naming the key that fixes it; with
// model.pad_token_id the run goes ahead and the saved model records it.
func TestPadTokenID(t *testing.T) {
	dir := t.TempDir()
	c, err := models.Preset("tiny-llama")
	if err != nil {
		t.Fatal(err)
	}
	modelDir := filepath.Join(dir, "base")
	if err := models.SaveValues(modelDir, c, models.RandomInit(c, rand.New(rand.NewPCG(1, 1))), nil); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(modelDir, "config.json")
	var raw map[string]any
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw, "pad_token_id")
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(sets ...string) *configs.Config {
		cfg, err := configs.Load("", append([]string{"run.dir=" + filepath.Join(dir, "run"), "model.preset=", "model.path=" + modelDir,
			"data.synthetic_pairs=64", "train.steps=2", "train.batch_size=8", "eval.every=0", "checkpoint.every=0"}, sets...), nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if _, err := MakePlan(load()); err == nil || !strings.Contains(err.Error(), "model.pad_token_id") || !strings.Contains(err.Error(), cfgPath) {
		t.Fatalf("a model without pad_token_id: %v", err)
	}
	if _, err := Run(context.Background(), load(), Options{Progress: io.Discard}); err == nil || !strings.Contains(err.Error(), "model.pad_token_id") {
		t.Fatalf("run without pad_token_id: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); !os.IsNotExist(err) {
		t.Errorf("the refused run left its folder: %v", err)
	}
	if _, err := MakePlan(load("model.pad_token_id=500")); err == nil || !strings.Contains(err.Error(), "outside the model's vocabulary") {
		t.Fatalf("a pad id outside the vocabulary: %v", err)
	}
	res, err := Run(context.Background(), load("model.pad_token_id=3"), Options{Progress: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := models.LoadConfig(filepath.Join(res.ModelDir, "config.json"))
	if err != nil || saved.PadTokenID == nil || *saved.PadTokenID != 3 {
		t.Fatalf("saved pad_token_id: %v, %v", saved, err)
	}
}

// TestFailedStartInExistingFolder: a start that fails in a run folder that
// was already there leaves it as it was: its own files are removed, the
// user's are kept.
func TestFailedStartInExistingFolder(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(runDir, "notes.txt")
	if err := os.WriteFile(mine, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := configs.Load("", []string{"run.dir=" + runDir, "data.train=" + filepath.Join(t.TempDir(), "missing.jsonl"),
		"train.steps=2", "eval.every=0", "checkpoint.every=0", "run.tensorboard=true"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Progress: io.Discard}); err == nil {
		t.Fatal("a run on a missing data file started")
	}
	ents, err := os.ReadDir(runDir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "notes.txt" {
		t.Errorf("after a failed start the folder holds %v (%v), want only notes.txt", ents, err)
	}
}

// TestCurvesAndTensorBoard: a run draws curves.png and, with
// run.tensorboard, writes an event file holding a scalar per metrics
// number (its tag kind/key); a resumed start writes a second file.
func TestCurvesAndTensorBoard(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "run")
	sets := []string{"run.dir=" + runDir, "model.preset=tiny-llama", "data.train=toy:length_bias", "data.synthetic_pairs=64",
		"train.batch_size=8", "train.steps=6", "eval.every=3", "checkpoint.every=3", "run.tensorboard=true"}
	cfg, err := configs.Load("", sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Progress: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(runDir, "curves.png")); err != nil || fi.Size() < 1000 {
		t.Errorf("curves.png: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(runDir, "tensorboard", "events.out.tfevents.*"))
	if len(files) != 1 {
		t.Fatalf("event files %v, want 1", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"brain.Event:2", "train/loss", "train/grad_norm", "eval/eval_accuracy"} {
		if !bytes.Contains(b, []byte(tag)) {
			t.Errorf("the event file has no %q", tag)
		}
	}
	cfg, err = configs.Load("", sets, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Progress: io.Discard, Resume: "auto"}); err != nil {
		t.Fatal(err)
	}
	if files, _ = filepath.Glob(filepath.Join(runDir, "tensorboard", "events.out.tfevents.*")); len(files) != 2 {
		t.Errorf("after a resume, event files %v, want 2", files)
	}
}
