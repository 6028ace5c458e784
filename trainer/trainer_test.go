package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"prism/configs"
	"prism/internal/torch"
	"prism/trainer/checkpoint"
)

// The kill-and-resume tests run the trainer in a child process (this test
// binary, re-executed) so it can be killed for real.
const (
	childEnv   = "PRISM_TRAINER_TEST_CHILD"
	childCfg   = "PRISM_TRAINER_TEST_CONFIG"
	childDelay = "PRISM_TRAINER_TEST_DELAY_MS"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "dist" {
		os.Exit(distChild())
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	if _, err := torch.Setup(0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// child trains from $PRISM_TRAINER_TEST_CONFIG, resuming when
// $PRISM_TRAINER_TEST_CHILD is "resume", sleeping after each step when
// asked to (so that the parent can kill it mid-run).
func child() int {
	if _, err := torch.Setup(0); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cfg, err := configs.Load(os.Getenv(childCfg), nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	delay, _ := strconv.Atoi(os.Getenv(childDelay))
	resume := ""
	if os.Getenv(childEnv) == "resume" {
		resume = "auto"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg, Options{Resume: resume, FailNonFinite: poisonFromEnv(), OnStep: []StepHook{func(StepInfo) error {
		time.Sleep(time.Duration(delay) * time.Millisecond)
		return nil
	}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if res.Interrupted {
		fmt.Println("interrupted at", res.Steps)
	}
	return 0
}

// childPoison lists, comma-separated, the steps a child process makes
// non-finite (Options.FailNonFinite), so that kill-and-resume runs skip steps.
const childPoison = "PRISM_TRAINER_TEST_POISON"

func poisonFromEnv() func(int) bool {
	spec := os.Getenv(childPoison)
	if spec == "" {
		return nil
	}
	steps := map[int]bool{}
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			panic(fmt.Sprintf("%s=%q: %v", childPoison, spec, err))
		}
		steps[n] = true
	}
	return func(step int) bool { return steps[step] }
}

// smallConfig writes an experiment for a fast run into dir.
func smallConfig(t *testing.T, dir string, extra string) string {
	t.Helper()
	dataSection := "data:\n  synthetic_pairs: 400\n"
	if strings.Contains(extra, "data:") {
		dataSection = ""
	}
	y := fmt.Sprintf(`run:
  dir: %s
  log_every: 1000
%strain:
  steps: 40
  batch_size: 16
  micro_batch_size: 8
  warmup_steps: 5
  weight_decay: 0.01
eval:
  every: 15
checkpoint:
  every: 4
  keep: 2
%s`, filepath.Join(dir, "run"), dataSection, extra)
	p := filepath.Join(dir, "exp.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startChild(t *testing.T, cfg, mode string, delayMS int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childCfg+"="+cfg, childDelay+"="+strconv.Itoa(delayMS))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	})
	return cmd
}

func runChild(t *testing.T, cfg, mode string) {
	t.Helper()
	cmd := startChild(t, cfg, mode, 0)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child %s: %v", mode, err)
	}
}

// waitCheckpoint waits until the run has a checkpoint at or past step.
func waitCheckpoint(t *testing.T, runDir string, step int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		cks, _ := checkpoint.List(runDir)
		if len(cks) > 0 {
			n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(cks[0]), checkpoint.Prefix))
			if n >= step {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no checkpoint at step %d within a minute", step)
}

func finalWeights(t *testing.T, runDir string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(runDir, "model", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func finalOptimizer(t *testing.T, runDir string) []byte {
	t.Helper()
	cks, err := checkpoint.List(runDir)
	if err != nil || len(cks) == 0 {
		t.Fatalf("no checkpoints in %s: %v", runDir, err)
	}
	b, err := os.ReadFile(filepath.Join(cks[0], checkpoint.OptimizerFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKillAndResumeIsBitwise: a run SIGKILLed twice and resumed with
// --resume auto ends with the same bytes as one that never stopped.
func TestKillAndResumeIsBitwise(t *testing.T) {
	// The prioritised case kills inside decomposition phases: the
	// selection, its sampler position and the phase draws must resume too.
	prioritised := "data:\n  train: toy:length_bias\n  synthetic_pairs: 400\ndecomposition:\n  enabled: true\n  warmup_steps: 6\n  every_steps: 10\n  samples: 3\n  pool_size: 96\n"
	for _, tt := range []struct{ name, extra, poison string }{
		{"tiny-llama", "model:\n  preset: tiny-llama\n", ""},
		{"tiny-mistral", "model:\n  preset: tiny-mistral\n", ""},
		{"prioritised", prioritised, ""},
		// Non-finite steps skipped before the first kill, between the
		// kills and after the last: AdamW's own step count (applied
		// updates only) must resume, not the trainer's.
		{"skipped-steps", "model:\n  preset: tiny-llama\n", "3,6,14,30"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.poison != "" {
				t.Setenv(childPoison, tt.poison)
			}
			ref := t.TempDir()
			refCfg := smallConfig(t, ref, tt.extra)
			runChild(t, refCfg, "fresh")

			dir := t.TempDir()
			cfg := smallConfig(t, dir, tt.extra)
			runDir := filepath.Join(dir, "run")
			for i, kill := range []int{9, 22} {
				mode := "fresh"
				if i > 0 {
					mode = "resume"
				}
				cmd := startChild(t, cfg, mode, 15)
				waitCheckpoint(t, runDir, kill)
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				_ = cmd.Wait()
			}
			runChild(t, cfg, "resume")

			if !bytes.Equal(finalWeights(t, ref+"/run"), finalWeights(t, runDir)) {
				t.Fatal("final weights differ from the uninterrupted run")
			}
			if !bytes.Equal(finalOptimizer(t, ref+"/run"), finalOptimizer(t, runDir)) {
				t.Fatal("final optimizer state differs from the uninterrupted run")
			}
			// The metrics of the steps repeated after a kill are not doubled,
			// and skipped steps have their rows too.
			b, _ := os.ReadFile(filepath.Join(runDir, "metrics.jsonl"))
			if n := strings.Count(string(b), `"kind":"train"`); n != 40 {
				t.Errorf("metrics.jsonl has %d train lines, want 40", n)
			}
			if tt.poison != "" {
				var skipped []int
				for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
					var row struct {
						Kind    string
						Step    int
						Skipped bool
						Loss    *float64
					}
					if err := json.Unmarshal([]byte(l), &row); err != nil {
						t.Fatalf("metrics.jsonl line %q: %v", l, err)
					}
					if row.Kind == "train" && row.Skipped {
						skipped = append(skipped, row.Step)
						if row.Loss != nil {
							t.Errorf("step %d: skipped with loss %v, want null", row.Step, *row.Loss)
						}
					}
				}
				if !slices.Equal(skipped, []int{3, 6, 14, 30}) {
					t.Errorf("metrics.jsonl marks steps %v skipped, want 3, 6, 14 and 30", skipped)
				}
			}
		})
	}
}

// TestSIGINTCheckpointsAndResumes: SIGINT finishes the step, writes a
// checkpoint and exits 0; resuming ends where an uninterrupted run does.
func TestSIGINTCheckpointsAndResumes(t *testing.T) {
	ref := t.TempDir()
	runChild(t, smallConfig(t, ref, ""), "fresh")

	dir := t.TempDir()
	cfg := smallConfig(t, dir, "")
	runDir := filepath.Join(dir, "run")
	cmd := startChild(t, cfg, "fresh", 20)
	waitCheckpoint(t, runDir, 8)
	start := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("interrupted run did not exit 0: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("exit took %v after SIGINT", d)
	}
	st, err := checkpoint.Verify(mustNewest(t, runDir))
	if err != nil {
		t.Fatal(err)
	}
	if st.Step < 8 || st.Step >= 40 {
		t.Fatalf("interrupt checkpoint at step %d", st.Step)
	}
	if _, err := os.Stat(filepath.Join(runDir, "model")); err == nil {
		t.Error("an interrupted run saved a final model")
	}
	runChild(t, cfg, "resume")
	if !bytes.Equal(finalWeights(t, ref+"/run"), finalWeights(t, runDir)) {
		t.Fatal("weights after SIGINT + resume differ from the uninterrupted run")
	}
}

func mustNewest(t *testing.T, runDir string) string {
	cks, err := checkpoint.List(runDir)
	if err != nil || len(cks) == 0 {
		t.Fatalf("no checkpoint: %v", err)
	}
	return cks[0]
}

// TestResumeSkipsDamagedCheckpoint: --resume auto falls back past a
// damaged newest checkpoint; naming the damaged one is an error.
func TestResumeSkipsDamagedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfgPath := smallConfig(t, dir, "")
	cfg, err := configs.Load(cfgPath, []string{"train.steps=12"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	runDir := cfg.Run.Dir
	cks, _ := checkpoint.List(runDir)
	if len(cks) != 2 {
		t.Fatalf("keep=2 left %d checkpoints", len(cks))
	}
	newest, older := cks[0], cks[1]
	// Truncate the newest checkpoint's weights.
	w := filepath.Join(newest, checkpoint.ModelDir, "model.safetensors")
	b, _ := os.ReadFile(w)
	if err := os.WriteFile(w, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = checkpoint.Verify(newest)
	if !errors.Is(err, checkpoint.ErrInvalid) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged checkpoint: %v", err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	dir2, st, err := checkpoint.Find(runDir, "auto", logger.Warn)
	if err != nil || dir2 != older || st.Step != 8 {
		t.Fatalf("auto picked %s (step %v), %v; want %s", dir2, st, err, older)
	}
	if !strings.Contains(logs.String(), "does not verify") {
		t.Errorf("no warning about the damaged checkpoint: %s", logs.String())
	}
	// Resuming by path to the damaged one fails.
	cfg2, _ := configs.Load(cfgPath, []string{"train.steps=16"}, nil)
	if _, err := Run(context.Background(), cfg2, Options{Resume: newest}); err == nil || !errors.Is(err, checkpoint.ErrInvalid) {
		t.Fatalf("resume from a damaged checkpoint: %v", err)
	}
	// Missing manifest.
	os.Remove(filepath.Join(older, checkpoint.ManifestFile))
	if _, err := checkpoint.Verify(older); err == nil || !strings.Contains(err.Error(), "no manifest") {
		t.Fatalf("checkpoint without manifest: %v", err)
	}
}

func TestNewRunRefusesOldCheckpoints(t *testing.T) {
	dir := t.TempDir()
	cfg, err := configs.Load(smallConfig(t, dir, ""), []string{"train.steps=4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{}); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), "--resume auto") {
		t.Fatalf("second fresh run over the same folder: %v", err)
	}
	// Resuming under a configuration that gives another run is refused,
	// and the error names each differing key with both values.
	for _, set := range [][]string{{"train.weight_decay=0.5"}, {"data.max_length=32", "train.adam_beta1=0.8"}} {
		cfg2, err := configs.Load(filepath.Join(dir, "exp.yaml"), append([]string{"train.steps=4"}, set...), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Run(context.Background(), cfg2, Options{Resume: "auto"})
		var mm *configs.ResumeMismatch
		if !errors.As(err, &mm) || len(mm.Changes) != len(set) {
			t.Fatalf("resume with %v: %v", set, err)
		}
		for _, kv := range set {
			if key := strings.Split(kv, "=")[0]; !strings.Contains(err.Error(), key+": ") {
				t.Errorf("resume with %v: the error does not name %s: %v", set, key, err)
			}
		}
	}
	// A new learning rate may be set on resume (the README's example).
	cfg3, err := configs.Load(filepath.Join(dir, "exp.yaml"), []string{"train.steps=4", "train.learning_rate=0.5"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg3, Options{Resume: "auto"}); err != nil {
		t.Fatalf("resume with another learning rate: %v", err)
	}
}

// TestLearnsSyntheticTask: tiny Llama and Mistral models reach high
// held-out accuracy on the learnable synthetic task, and the loss curve is
// in the metrics file.
func TestLearnsSyntheticTask(t *testing.T) {
	for _, tt := range []struct {
		preset string
		extra  []string
	}{
		{"tiny-llama", nil},
		// Sequences within the receptive field of Mistral's short window.
		{"tiny-mistral", []string{"data.synthetic_max_length=12"}},
	} {
		t.Run(tt.preset, func(t *testing.T) {
			dir := t.TempDir()
			sets := append([]string{"run.dir=" + filepath.Join(dir, "run"), "model.preset=" + tt.preset,
				"eval.every=0", "checkpoint.every=0"}, tt.extra...)
			cfg, err := configs.Load("", sets, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Eval == nil || res.Eval.Accuracy < 0.9 {
				t.Fatalf("held-out accuracy %+v, want >= 0.9", res.Eval)
			}
			b, _ := os.ReadFile(filepath.Join(cfg.Run.Dir, "metrics.jsonl"))
			if n := strings.Count(string(b), `"kind":"train"`); n != res.Steps {
				t.Errorf("%d train lines for %d steps", n, res.Steps)
			}
			t.Logf("%s: %d steps, held-out accuracy %.3f, loss %.3f", tt.preset, res.Steps, res.Eval.Accuracy, res.Eval.Loss)
		})
	}
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		s    Schedule
		step int
		want float64
	}{
		{Schedule{Base: 1, Warmup: 10, Total: 110, Kind: "cosine"}, 0, 0},
		{Schedule{Base: 1, Warmup: 10, Total: 110, Kind: "cosine"}, 5, 0.5},
		{Schedule{Base: 1, Warmup: 10, Total: 110, Kind: "cosine"}, 10, 1},
		{Schedule{Base: 1, Warmup: 10, Total: 110, Kind: "cosine"}, 60, 0.5},
		{Schedule{Base: 1, Warmup: 10, Total: 110, Kind: "cosine"}, 110, 0},
		{Schedule{Base: 2, Warmup: 0, Total: 100, Kind: "linear"}, 25, 1.5},
		{Schedule{Base: 2, Warmup: 0, Total: 100, Kind: "linear", MinRatio: 0.1}, 100, 0.2},
		{Schedule{Base: 2, Warmup: 4, Total: 100, Kind: "constant"}, 2, 1},
		{Schedule{Base: 2, Warmup: 4, Total: 100, Kind: "constant"}, 50, 2},
	}
	for _, tt := range tests {
		if got := tt.s.LR(tt.step); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%+v LR(%d) = %v, want %v", tt.s, tt.step, got, tt.want)
		}
	}
}

// TestNonFiniteSteps: a NaN step is skipped and counted; more than
// train.max_bad_steps in a row stop the run with ErrNonFinite and a
// checkpoint holding the weights of the last good step.
func TestNonFiniteSteps(t *testing.T) {
	load := func(dir, maxBad string) *configs.Config {
		sets := []string{"train.steps=12", "eval.every=0", "checkpoint.every=0"}
		if maxBad != "" {
			sets = append(sets, "train.max_bad_steps="+maxBad)
		}
		cfg, err := configs.Load(smallConfig(t, dir, ""), sets, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	// One bad step: skipped, counted, the run goes on.
	dir := t.TempDir()
	var skipped []int
	res, err := Run(context.Background(), load(dir, ""), Options{
		FailNonFinite: func(step int) bool { return step == 3 },
		OnStep: []StepHook{func(si StepInfo) error {
			if si.Skipped {
				skipped = append(skipped, si.Step)
			}
			return nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 12 || !slices.Equal(skipped, []int{3}) {
		t.Fatalf("steps %d, skipped %v; want 12 steps, step 3 skipped", res.Steps, skipped)
	}
	st, err := checkpoint.Verify(mustNewest(t, filepath.Join(dir, "run")))
	if err != nil || st.BadSteps != 1 || st.BadRun != 0 {
		t.Fatalf("state %+v, %v: want 1 bad step, none in a row", st, err)
	}

	// Every step from 5 on is bad. With no limit the run ends with the
	// weights of step 4; with max_bad_steps 3 it stops at step 8 and its
	// checkpoint holds the same weights.
	from5 := func(step int) bool { return step >= 5 }
	ref := t.TempDir()
	if _, err := Run(context.Background(), load(ref, "0"), Options{FailNonFinite: from5}); err != nil {
		t.Fatal(err)
	}
	stop := t.TempDir()
	_, err = Run(context.Background(), load(stop, "3"), Options{FailNonFinite: from5})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "steps 5 to 8") || !strings.Contains(err.Error(), "after step 4") {
		t.Fatalf("err = %v; want ErrNonFinite naming steps 5 to 8 and the last good step 4", err)
	}
	ck := mustNewest(t, filepath.Join(stop, "run"))
	st, err = checkpoint.Verify(ck)
	if err != nil || st.Step != 8 || st.FirstBad != 5 || st.BadRun != 4 {
		t.Fatalf("checkpoint %s: %+v, %v", ck, st, err)
	}
	got, err := os.ReadFile(filepath.Join(ck, checkpoint.ModelDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, finalWeights(t, filepath.Join(ref, "run"))) {
		t.Fatal("the checkpoint of the stopped run does not hold the weights of the last good step")
	}
}

// TestFullDiskAtCheckpoint: when the disk fills up, the checkpoint that no
// longer fits is an error that stops the run, the previous checkpoint stays
// valid, no half-written folder is left, and the run resumes from it once
// there is space. It mounts a small tmpfs, so it needs root.
func TestFullDiskAtCheckpoint(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v: %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	cfg, err := configs.Load(smallConfig(t, mnt, ""), []string{"train.steps=12", "eval.every=0", "checkpoint.every=4", "checkpoint.keep=3"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	fill := func(si StepInfo) {
		if si.Step != 5 {
			return
		}
		f, err := os.Create(filler)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Write(buf); err != nil {
				return // full
			}
		}
	}
	_, err = Run(context.Background(), cfg, Options{OnStep: []StepHook{func(si StepInfo) error { fill(si); return nil }}})
	if err == nil || !strings.Contains(err.Error(), "writing checkpoint") || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("err = %v; want a checkpoint error wrapping ENOSPC", err)
	}
	runDir := filepath.Join(mnt, "run")
	ck := mustNewest(t, runDir)
	st, err := checkpoint.Verify(ck)
	if err != nil || st.Step != 4 {
		t.Fatalf("newest checkpoint %s: %+v, %v; want the intact step-4 checkpoint", ck, st, err)
	}
	left, _ := filepath.Glob(filepath.Join(runDir, checkpoint.Dir, ".*"))
	if len(left) > 0 {
		t.Fatalf("half-written checkpoint left behind: %v", left)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, Options{Resume: "auto"})
	if err != nil || res.Steps != 12 {
		t.Fatalf("resume after freeing space: %+v, %v", res, err)
	}
}

// TestWriteMetric: non-finite numbers become null and the row is kept;
// a row that cannot be encoded at all stops the run instead of vanishing.
func TestWriteMetric(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &run{out: runFolder{metrics: f}, log: slog.New(slog.DiscardHandler)}
	r.writeMetric(map[string]any{"kind": "train", "step": 3, "loss": math.NaN(), "grad_norm": math.Inf(1), "lr": 0.5, "skipped": true})
	if r.out.metricsErr != nil {
		t.Fatal(r.out.metricsErr)
	}
	b, _ := os.ReadFile(f.Name())
	if got := strings.TrimSpace(string(b)); got != `{"grad_norm":null,"kind":"train","loss":null,"lr":0.5,"skipped":true,"step":3}` {
		t.Errorf("row %s", got)
	}
	r.writeMetric(map[string]any{"kind": "eval", "bad": make(chan int)})
	if r.out.metricsErr == nil || !strings.Contains(r.out.metricsErr.Error(), "eval") {
		t.Errorf("unencodable row: %v", r.out.metricsErr)
	}
}
