package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"prism/configs"
	"prism/internal/launch"
	"prism/internal/safetensors"
	"prism/internal/torch"
	"prism/internal/torch/dist"
	"prism/models"
	"prism/trainer/checkpoint"
)

// Data-parallel tests run each rank as a child process (this test binary,
// re-executed with PRISM_TRAINER_TEST_CHILD=dist).
const distSpec = "PRISM_TRAINER_TEST_DIST" // rank,world,port,action

// distChild trains one rank. The action is "" (train), "stop:N" (rank 0
// alone is cancelled after step N, as if only it got SIGINT) or "die:N"
// (rank 1 exits abruptly after step N). Each rank writes the selections
// of every recompute to sel-<rank>.txt next to the config.
func distChild() int {
	if _, err := torch.Setup(1); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	parts := strings.Split(os.Getenv(distSpec), ",")
	rank, _ := strconv.Atoi(parts[0])
	world, _ := strconv.Atoi(parts[1])
	port, _ := strconv.Atoi(parts[2])
	action, at := "", 0
	if a, n, ok := strings.Cut(parts[3], ":"); ok {
		action = a
		at, _ = strconv.Atoi(n)
	}
	cfgPath := os.Getenv(childCfg)
	cfg, err := configs.Load(cfgPath, nil, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	g, err := dist.Join(dist.Env{Rank: rank, World: world, Addr: "127.0.0.1", Port: port},
		dist.Options{Backend: "gloo", Timeout: time.Duration(cfg.Distributed.TimeoutS * float64(time.Second))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sel bytes.Buffer
	resume := ""
	if os.Getenv(childEnv+"_RESUME") != "" {
		resume = "auto"
	}
	res, err := Run(ctx, cfg, Options{
		Comm:          g,
		Resume:        resume,
		FailNonFinite: poisonFromEnv(),
		OnStep: []StepHook{func(s StepInfo) error {
			switch {
			case action == "stop" && rank == 0 && s.Step == at:
				cancel()
			case action == "die" && rank == 1 && s.Step == at:
				os.Exit(3)
			}
			return nil
		}},
		OnRecompute: []RecomputeHook{func(rc RecomputeInfo) error {
			_, err := fmt.Fprintln(&sel, rc.Phase, rc.Selected)
			return err
		}},
	})
	if werr := os.WriteFile(filepath.Join(filepath.Dir(cfgPath), fmt.Sprintf("sel-%d.txt", rank)), sel.Bytes(), 0o644); werr != nil {
		fmt.Fprintln(os.Stderr, werr)
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("rank %d: %d steps, interrupted %v\n", rank, res.Steps, res.Interrupted)
	return 0
}

// runRanks runs world ranks of cfg and returns each one's exit error and
// output.
func runRanks(t *testing.T, cfg string, world int, action string, resume bool) ([]error, []string) {
	t.Helper()
	port, err := launch.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	errs, texts, err := launch.RunTestRanks(world, func(rank int) []string {
		env := []string{childEnv + "=dist", childCfg + "=" + cfg, fmt.Sprintf("%s=%d,%d,%d,%s", distSpec, rank, world, port, action)}
		if resume {
			env = append(env, childEnv+"_RESUME=1")
		}
		return env
	})
	if err != nil {
		t.Fatal(err)
	}
	return errs, texts
}

// dpConfig is a small prioritised run: 12 steps of 9 pairs in micro-
// batches of 3 (2 ranks get 4 and 5 pairs: uneven shards), recomputes at steps
// 4 and 8, and checkpoints every 3 steps.
func dpConfig(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf(`run:
  dir: %s
  log_every: 1000
data:
  train: toy:length_bias
  synthetic_pairs: 160
train:
  steps: 12
  batch_size: 9
  micro_batch_size: 3
  warmup_steps: 2
  weight_decay: 0.01
eval:
  every: 5
checkpoint:
  every: 3
  keep: 5
decomposition:
  enabled: true
  warmup_steps: 4
  every_steps: 4
  samples: 4
  pool_size: 48
distributed:
  timeout_s: 20
`, filepath.Join(dir, "run"))
	p := filepath.Join(dir, "exp.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// trainAlone runs cfg in this process, as a single process.
func trainAlone(t *testing.T, cfg string, resume string) *Result {
	t.Helper()
	c, err := configs.Load(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sel bytes.Buffer
	res, err := Run(context.Background(), c, Options{Resume: resume, OnRecompute: []RecomputeHook{func(rc RecomputeInfo) error {
		_, err := fmt.Fprintln(&sel, rc.Phase, rc.Selected)
		return err
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(cfg), "sel-alone.txt"), sel.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return res
}

// weightDiff is the largest difference between two saved models'
// weights, relative to the largest weight, and the tensor it is in.
func weightDiff(t *testing.T, a, b string) (float64, string) {
	t.Helper()
	fa, err := safetensors.Open(filepath.Join(a, "model", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := safetensors.Open(filepath.Join(b, "model", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	worst, where := 0.0, ""
	for _, info := range fa.Header().Tensors {
		ib, ok := fb.Lookup(info.Name)
		if !ok {
			t.Fatalf("%s is missing from %s", info.Name, b)
		}
		ra, _ := fa.ReadRaw(info.Name)
		rb, _ := fb.ReadRaw(info.Name)
		va, err := safetensors.ToFloat32(info, ra)
		if err != nil {
			t.Fatal(err)
		}
		vb, err := safetensors.ToFloat32(ib, rb)
		if err != nil {
			t.Fatal(err)
		}
		scale := 0.0
		for _, x := range va {
			scale = math.Max(scale, math.Abs(float64(x)))
		}
		for i := range va {
			if d := math.Abs(float64(va[i]-vb[i])) / math.Max(scale, 1e-12); d > worst {
				worst, where = d, info.Name
			}
		}
	}
	return worst, where
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dpTolerance bounds the weight difference between world sizes: the
// sums of the ranks' gradients differ from one process's in the last
// bits, and AdamW carries that through 12 steps.
const dpTolerance = 1e-4

// TestDataParallelMatchesOneProcess: 2 processes with global batch B end
// with the weights of 1 process with batch B, both ranks make the same
// selections at every recompute, and only rank 0 writes the run folder.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	alone := dpConfig(t, filepath.Join(t.TempDir(), "alone"))
	trainAlone(t, alone, "")
	two := dpConfig(t, filepath.Join(t.TempDir(), "two"))
	errs, outs := runRanks(t, two, 2, "", false)
	for rank, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v\n%s", rank, err, outs[rank])
		}
	}
	s0 := readFile(t, filepath.Join(filepath.Dir(two), "sel-0.txt"))
	s1 := readFile(t, filepath.Join(filepath.Dir(two), "sel-1.txt"))
	if strings.Count(s0, "\n") != 2 {
		t.Fatalf("want 2 recomputes, rank 0 saw:\n%s", s0)
	}
	if s0 != s1 {
		t.Fatalf("the ranks selected different pairs:\nrank 0:\n%s\nrank 1:\n%s", s0, s1)
	}
	if sa := readFile(t, filepath.Join(filepath.Dir(alone), "sel-alone.txt")); sa != s0 {
		t.Logf("selections differ from one process's (scores differ in the last bits):\n%s\nvs\n%s", sa, s0)
	}
	d, where := weightDiff(t, filepath.Join(filepath.Dir(alone), "run"), filepath.Join(filepath.Dir(two), "run"))
	t.Logf("largest weight difference, 1 vs 2 processes: %.3g of the tensor's largest weight (%s)", d, where)
	if d > dpTolerance {
		t.Fatalf("weights differ by %.3g (in %s), more than %g", d, where, dpTolerance)
	}
	m := readFile(t, filepath.Join(filepath.Dir(two), "run", "metrics.jsonl"))
	if got := strings.Count(m, `"kind":"train"`); got != 12 {
		t.Errorf("metrics.jsonl has %d train records, want 12 (one writer)", got)
	}
	if !strings.Contains(m, `"allreduce_s"`) {
		t.Errorf("metrics.jsonl lacks the allreduce time")
	}
}

// TestDataParallelResumeOtherWorldSizes: a 2-process run stopped at step
// 5 (by a signal that reached rank 0 only) resumes with 3 processes, which
// stop at step 8 and resume in 1 process; it ends where an uninterrupted
// 1-process run ends.
func TestDataParallelResumeOtherWorldSizes(t *testing.T) {
	alone := dpConfig(t, filepath.Join(t.TempDir(), "alone"))
	trainAlone(t, alone, "")
	cfg := dpConfig(t, filepath.Join(t.TempDir(), "mixed"))
	for _, leg := range []struct {
		world  int
		stop   int
		resume bool
	}{{2, 5, false}, {3, 8, true}} {
		errs, outs := runRanks(t, cfg, leg.world, fmt.Sprintf("stop:%d", leg.stop), leg.resume)
		for rank, err := range errs {
			if err != nil {
				t.Fatalf("%d processes, rank %d: %v\n%s", leg.world, rank, err, outs[rank])
			}
			if want := fmt.Sprintf("%d steps, interrupted true", leg.stop); !strings.Contains(outs[rank], want) {
				t.Fatalf("%d processes, rank %d did not stop at step %d:\n%s", leg.world, rank, leg.stop, outs[rank])
			}
		}
	}
	res := trainAlone(t, cfg, "auto")
	if res.Steps != 12 {
		t.Fatalf("resumed run ended at step %d", res.Steps)
	}
	d, where := weightDiff(t, filepath.Join(filepath.Dir(alone), "run"), filepath.Join(filepath.Dir(cfg), "run"))
	t.Logf("largest weight difference, uninterrupted vs 2, 3 then 1 processes: %.3g (%s)", d, where)
	if d > dpTolerance {
		t.Fatalf("weights differ by %.3g (in %s), more than %g", d, where, dpTolerance)
	}
}

// TestDataParallelResumeAfterSkippedSteps: two processes that skip
// non-finite steps (2 and 7), stopped at step 5 and resumed, end with the
// bytes of an uninterrupted two-process run: the optimizer's own step
// count (applied updates only) travels with the checkpoint to every rank.
func TestDataParallelResumeAfterSkippedSteps(t *testing.T) {
	t.Setenv(childPoison, "2,7")
	ref := dpConfig(t, filepath.Join(t.TempDir(), "ref"))
	cfg := dpConfig(t, filepath.Join(t.TempDir(), "resumed"))
	for _, leg := range []struct {
		cfg, action string
		resume      bool
	}{{ref, "", false}, {cfg, "stop:5", false}, {cfg, "", true}} {
		errs, outs := runRanks(t, leg.cfg, 2, leg.action, leg.resume)
		for rank, err := range errs {
			if err != nil {
				t.Fatalf("%s %s: rank %d: %v\n%s", filepath.Base(filepath.Dir(leg.cfg)), leg.action, rank, err, outs[rank])
			}
		}
	}
	a := finalWeights(t, filepath.Join(filepath.Dir(ref), "run"))
	b := finalWeights(t, filepath.Join(filepath.Dir(cfg), "run"))
	if !bytes.Equal(a, b) {
		d, where := weightDiff(t, filepath.Join(filepath.Dir(ref), "run"), filepath.Join(filepath.Dir(cfg), "run"))
		t.Fatalf("final weights differ from the uninterrupted run's by %.3g (in %s)", d, where)
	}
	m := readFile(t, filepath.Join(filepath.Dir(cfg), "run", "metrics.jsonl"))
	if n, s := strings.Count(m, `"kind":"train"`), strings.Count(m, `"skipped":true`); n != 12 || s != 2 {
		t.Errorf("metrics.jsonl: %d train rows (want 12), %d skipped (want 2)", n, s)
	}
}

// TestDataParallelPeerDeath: when rank 1 dies, rank 0 fails with an error
// well within the timeout, and its newest checkpoint is intact.
func TestDataParallelPeerDeath(t *testing.T) {
	cfg := dpConfig(t, filepath.Join(t.TempDir(), "die"))
	start := time.Now()
	errs, outs := runRanks(t, cfg, 2, "die:4", false)
	took := time.Since(start)
	var ee *exec.ExitError
	if !errors.As(errs[1], &ee) || ee.ExitCode() != 3 {
		t.Fatalf("rank 1 should have died with 3: %v\n%s", errs[1], outs[1])
	}
	if !errors.As(errs[0], &ee) || ee.ExitCode() != 1 {
		t.Fatalf("rank 0 should have failed: %v\n%s", errs[0], outs[0])
	}
	if took > 60*time.Second {
		t.Fatalf("rank 0 took %v to fail (timeout 20s)", took)
	}
	t.Logf("rank 0 after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(outs[0]))
	runDir := filepath.Join(filepath.Dir(cfg), "run")
	cks, err := checkpoint.List(runDir)
	if err != nil || len(cks) == 0 {
		t.Fatalf("no checkpoint left: %v", err)
	}
	st, err := checkpoint.Verify(cks[0])
	if err != nil {
		t.Fatalf("newest checkpoint %s is damaged: %v", cks[0], err)
	}
	if st.Step != 3 {
		t.Errorf("newest checkpoint is at step %d, want 3", st.Step)
	}
	if _, err := os.Stat(filepath.Join(runDir, "model")); err == nil {
		t.Errorf("a failed run left a final model")
	}
}

// TestGradientCheckpointingSameRun: a run with per-block gradient
// checkpointing ends with the weights of one without, bit for bit, and
// may switch it on when resuming.
func TestGradientCheckpointingSameRun(t *testing.T) {
	plain := dpConfig(t, filepath.Join(t.TempDir(), "plain"))
	trainAlone(t, plain, "")
	ck := dpConfig(t, filepath.Join(t.TempDir(), "ck"))
	b, err := os.ReadFile(ck)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ck, []byte(strings.Replace(string(b), "train:\n", "train:\n  gradient_checkpointing: true\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	trainAlone(t, ck, "")
	if !bytes.Equal(finalWeights(t, filepath.Join(filepath.Dir(plain), "run")), finalWeights(t, filepath.Join(filepath.Dir(ck), "run"))) {
		d, where := weightDiff(t, filepath.Join(filepath.Dir(plain), "run"), filepath.Join(filepath.Dir(ck), "run"))
		t.Fatalf("weights differ with gradient checkpointing: %.3g in %s", d, where)
	}
}

// loraConfig is dpConfig with rank-4 LoRA adapters.
func loraConfig(t *testing.T, dir string) string {
	t.Helper()
	p := dpConfig(t, dir)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(b), "train:\n", "train:\n  lora_rank: 4\n  learning_rate: 5.0e-3\n", 1)
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoRARun: a LoRA run trains only the adapters and the score head;
// its merged model, and the base weights with its adapter folder read
// back, give the same rewards bit for bit; a LoRA run stopped and resumed
// ends with the bytes of one that never stopped.
func TestLoRARun(t *testing.T) {
	cfgPath := loraConfig(t, filepath.Join(t.TempDir(), "lora"))
	res := trainAlone(t, cfgPath, "")
	runDir := filepath.Join(filepath.Dir(cfgPath), "run")
	if res.AdapterDir != filepath.Join(runDir, "adapter") {
		t.Fatalf("adapter dir %q", res.AdapterDir)
	}
	cfg, err := configs.Load(cfgPath, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The base weights in the newest checkpoint are the initial ones.
	cks, err := checkpoint.List(runDir)
	if err != nil || len(cks) == 0 {
		t.Fatal("no checkpoint", err)
	}
	base, _, err := models.Load(filepath.Join(cks[0], checkpoint.ModelDir), torch.CPU(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer base.Drop()
	mcfg, _ := models.Preset(cfg.Model.Preset)
	init := models.RandomInit(mcfg, rand.New(rand.NewPCG(uint64(cfg.Run.Seed), 0x1417)))
	now, err := base.Values()
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range init {
		if same := slices.Equal(v, now[name]); same != (name != "score.weight") {
			t.Errorf("%s: unchanged = %v after LoRA training", name, same)
		}
	}
	// Merged model vs base + adapter folder.
	merged, _, err := models.Load(res.ModelDir, torch.CPU(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer merged.Drop()
	mv, err := merged.Values()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"} {
		if slices.Equal(mv[name], init[name]) {
			t.Errorf("%s: the merged model equals the base: the adapters did not train", name)
		}
	}
	if err := base.EnableLoRA(models.LoRAOptions{Rank: 4, Alpha: cfg.Train.LoRAAlpha, Targets: cfg.Train.LoRATargets}, rand.New(rand.NewPCG(1, 2))); err != nil {
		t.Fatal(err)
	}
	if err := base.ReadAdapter(res.AdapterDir); err != nil {
		t.Fatal(err)
	}
	seqs := [][]int64{{1, 5, 9, 12, 3}, {1, 7, 7}, {1, 2, 3, 4, 5, 6, 7, 8, 9}}
	a, err := merged.Score(seqs, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := base.Score(seqs, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Fatalf("merged model %v, base + adapter %v", a, b)
	}

	// Stop at step 5 and resume: the same bytes as the run above.
	stopped := loraConfig(t, filepath.Join(t.TempDir(), "stopped"))
	c2, err := configs.Load(stopped, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r2, err := Run(ctx, c2, Options{OnStep: []StepHook{EveryNSteps(5, func(StepInfo) error {
		cancel()
		return nil
	})}})
	if err != nil || !r2.Interrupted {
		t.Fatalf("stop: %v %+v", err, r2)
	}
	trainAlone(t, stopped, "auto")
	stoppedRun := filepath.Join(filepath.Dir(stopped), "run")
	if !bytes.Equal(finalWeights(t, runDir), finalWeights(t, stoppedRun)) {
		d, where := weightDiff(t, runDir, stoppedRun)
		t.Fatalf("resumed LoRA run differs: %.3g in %s", d, where)
	}
	ad1, _ := os.ReadFile(filepath.Join(res.AdapterDir, models.AdapterFile))
	ad2, _ := os.ReadFile(filepath.Join(stoppedRun, "adapter", models.AdapterFile))
	if len(ad1) == 0 || !bytes.Equal(ad1, ad2) {
		t.Fatalf("resumed LoRA run's adapter file differs")
	}
}

// TestLoRADataParallel: LoRA adapters train the same with 2 ranks as with
// one.
func TestLoRADataParallel(t *testing.T) {
	alone := loraConfig(t, filepath.Join(t.TempDir(), "alone"))
	trainAlone(t, alone, "")
	two := loraConfig(t, filepath.Join(t.TempDir(), "two"))
	errs, outs := runRanks(t, two, 2, "", false)
	for rank, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v\n%s", rank, err, outs[rank])
		}
	}
	d, where := weightDiff(t, filepath.Join(filepath.Dir(alone), "run"), filepath.Join(filepath.Dir(two), "run"))
	t.Logf("LoRA, 1 vs 2 processes: largest merged-weight difference %.3g (%s)", d, where)
	if d > dpTolerance {
		t.Fatalf("weights differ by %.3g (in %s)", d, where)
	}
}
