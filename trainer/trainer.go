package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/configs"
	"prism/data"
	"prism/data/encode"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/internal/torch"
	"prism/models"
)

// Options are the parts of a run that are not in the experiment file.
type Options struct {
	// Resume is "" (a new run), "auto" (the newest valid checkpoint of the
	// run folder, or a new run if there is none) or a checkpoint folder.
	Resume string
	// Progress receives the progress bar or lines (os.Stdout in the CLI).
	Progress io.Writer
	// Logger receives events; the trainer also writes them to run.log.
	Logger *slog.Logger
	// AfterStep, when set, runs after every optimizer step (hooks for
	// tests and tools).
	AfterStep func(StepInfo)
	// AfterRecompute, when set, runs after every decomposition recompute
	// with the phase and the training pairs it selected.
	AfterRecompute func(phase int, selected []int)
	// Comm, when set, makes this process one rank of a data-parallel run:
	// each rank computes the gradient of its share of every batch, the
	// gradients are summed across ranks, and rank 0 alone writes the run
	// folder. Batch size, schedule and results do not depend on the
	// number of ranks.
	Comm Comm

	// FailNonFinite is fault injection for crash tests: the steps it
	// reports true for get a NaN loss and gradients, as a diverging step
	// would, and so are skipped (see `prism train`'s
	// PRISM_FAILPOINT_NONFINITE_STEPS).
	FailNonFinite func(step int) bool
}

// StepInfo describes a finished optimizer step.
type StepInfo struct {
	Step           int
	Loss, GradNorm float64
	// Skipped is true when a non-finite loss or gradient skipped the update.
	Skipped bool
	// Seconds is the step's own time: forward, backward and update, without
	// evaluation, checkpoints or decomposition.
	Seconds float64
	// AllReduceSeconds is the part of Seconds spent summing gradients
	// across ranks (0 for a single process).
	AllReduceSeconds float64
}

// Result summarises a finished run.
type Result struct {
	Steps       int
	Interrupted bool
	ModelDir    string
	// AdapterDir holds the LoRA adapters and the score head (LoRA runs).
	AdapterDir string
	Eval       *EvalMetrics
	// Test is the shortcut-breaking split of a toy task.
	Test *EvalMetrics
	// TagShareBefore and TagShareAfter are the share of training pairs
	// with a positive prompt-free gap that carry the plot tag "true", at
	// the first recompute (-1 when there was none) and at the end; Analysis
	// holds the final decomposition of the analysed pairs.
	TagShareBefore, TagShareAfter float64
	Analysis                      []report.Point
	// DecompositionSeconds is the time spent estimating prompt-free gaps,
	// and WallSeconds the run's whole training time.
	DecompositionSeconds, WallSeconds float64
}

// EvalMetrics are the held-out figures.
type EvalMetrics struct {
	Loss       float64 `json:"eval_loss"`
	Accuracy   float64 `json:"eval_accuracy"`
	Margin     float64 `json:"eval_margin"`
	RewardMean float64 `json:"eval_reward_mean"`
	RewardStd  float64 `json:"eval_reward_std"`
	Pairs      int     `json:"eval_pairs"`
}

// run is one training run in progress.
type run struct {
	cfg      *configs.Config
	cfgYAML  string
	opt      Options
	log      *slog.Logger
	model    *models.RewardModel
	trained  []*models.Param
	adam     *AdamW
	sched    Schedule
	train    []data.Pair
	eval     []data.Pair
	test     []data.Pair
	prompts  [][]int64
	policy   *models.CausalLM
	sampler  *data.Sampler
	state    State
	metrics  *os.File
	progress *progress
	closers  []io.Closer
	// poisoned marks the current step for Options.FailNonFinite.
	poisoned bool
	// metricsErr is the first failure to write a metrics row; it stops
	// the run (rows are never dropped in silence).
	metricsErr error
	// resumed is set when the run continues from a checkpoint, whose
	// metrics.jsonl already holds the data records; resumeDir is that
	// checkpoint.
	resumed   bool
	resumeDir string
}

// Run trains a reward model as cfg describes. Cancelling ctx (SIGINT,
// SIGTERM) finishes the current step, writes a checkpoint and returns with
// Result.Interrupted set.
func Run(ctx context.Context, cfg *configs.Config, opt Options) (res *Result, err error) {
	// libtorch keeps the autograd mode and gotch its last error per OS
	// thread: a goroutine that moved between threads mid-run would lose
	// both.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	r := &run{cfg: cfg, opt: opt}
	if cfg.Run.Threads > 0 {
		if _, err := torch.Setup(cfg.Run.Threads); err != nil {
			return nil, fmt.Errorf("run.threads: %w", err)
		}
	}
	y, err := cfg.YAML()
	if err != nil {
		return nil, err
	}
	r.cfgYAML = string(y)
	created := ""
	if r.lead() {
		created = missingAncestor(cfg.Run.Dir)
	} else {
		// Rank 0 reports progress and writes the run folder.
		r.opt.Progress = io.Discard
	}
	if err := r.agree("opening the run folder", r.openRunDir()); err != nil {
		return nil, err
	}
	defer func() {
		r.close()
		if err != nil && r.lead() {
			removeUnstarted(created, cfg.Run.Dir)
		}
	}()
	if err := r.agree("setting up the run", r.setup()); err != nil {
		return nil, err
	}
	if err := r.agree("starting the ranks", r.syncStart()); err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r.loop(ctx)
}

// openRunDir prepares the run folder, refusing to start a new run over an
// old one's checkpoints.
func (r *run) openRunDir() error {
	dir := r.cfg.Run.Dir
	if !r.lead() {
		r.log = r.opt.Logger.With("rank", r.opt.Comm.Rank())
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run folder %s: %w", dir, err)
	}
	probe := filepath.Join(dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		return fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	os.Remove(probe)
	if r.opt.Resume == "" {
		cks, err := listCheckpoints(dir)
		if err != nil {
			return err
		}
		if len(cks) > 0 {
			return fmt.Errorf("run folder %s already holds checkpoints (newest %s): pass --resume auto to continue it, or choose another run.dir", dir, filepath.Base(cks[0]))
		}
	}
	logf, err := os.OpenFile(filepath.Join(dir, "run.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.log = slog.New(teeHandler{r.opt.Logger.Handler(), slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	r.closers = append(r.closers, logf)
	return fsutil.WriteFileAtomic(filepath.Join(dir, "config.yaml"), []byte(r.cfgYAML))
}

func (r *run) close() {
	if r.adam != nil {
		r.adam.Drop()
	}
	if r.model != nil {
		r.model.Drop()
	}
	if r.policy != nil {
		r.policy.Drop()
	}
	if r.metrics != nil {
		r.metrics.Close()
	}
	for _, c := range r.closers {
		c.Close()
	}
}

// setup loads data and model, and the checkpoint when resuming.
func (r *run) setup() error {
	c := r.cfg
	var resumeDir string
	if b := c.Train.BatchSize; b < r.world() {
		return fmt.Errorf("train.batch_size is %d, fewer pairs than the %d ranks: every rank needs a share of each batch", b, r.world())
	}
	if r.opt.Resume != "" && r.lead() {
		dir, st, err := findResume(c.Run.Dir, r.opt.Resume, r.log.Warn)
		if err != nil {
			return err
		}
		if st != nil {
			if err := sameRun(st.Config, r.cfgYAML); err != nil {
				return fmt.Errorf("cannot resume from %s: %w", dir, err)
			}
			resumeDir, r.state = dir, *st
		}
	}
	if resumeDir == "" {
		r.state = State{Format: stateFormat, DataSeed: uint64(c.Run.Seed), Config: r.cfgYAML, FirstTagShare: -1}
	}

	if r.opt.Resume != "" && r.lead() {
		if err := r.trimMetrics(resumeDir != ""); err != nil {
			return err
		}
	}
	r.resumed, r.resumeDir = resumeDir != "", resumeDir
	if r.lead() {
		mf, err := os.OpenFile(filepath.Join(c.Run.Dir, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		r.metrics = mf
	}

	mcfg, err := r.modelConfig()
	if err != nil {
		return err
	}
	if err := r.loadData(mcfg); err != nil {
		return err
	}

	initRNG := rand.New(rand.NewPCG(uint64(c.Run.Seed), 0x1417))
	switch {
	case resumeDir != "":
		var info *models.LoadInfo
		r.model, info, err = models.Load(filepath.Join(resumeDir, modelSubdir), gotch.CPU, initRNG)
		if err == nil && info.NewHead {
			// Every checkpoint saves the head; a new random one would
			// silently restart the reward from scratch.
			r.model.Drop()
			r.model = nil
			err = fmt.Errorf("checkpoint %s: %s has no score.weight (the reward head), so it cannot be resumed", resumeDir, filepath.Join(resumeDir, modelSubdir))
		}
	case c.Model.Path != "":
		var info *models.LoadInfo
		r.model, info, err = models.LoadWith(c.Model.Path, gotch.CPU, initRNG, models.LoadOptions{AllowPickle: c.Model.AllowPickle})
		if err == nil && info.NewHead {
			r.log.Info("the checkpoint has no reward head; starting a new one", "model", c.Model.Path)
		}
	default:
		r.model, err = models.FromValues(mcfg, models.RandomInit(mcfg, initRNG), gotch.CPU)
	}
	if err != nil {
		return err
	}
	if c.Train.LoRARank > 0 {
		if err := r.enableLoRA(resumeDir); err != nil {
			return err
		}
	} else if r.trained, err = selectTrainable(r.model, c.Train.Trainable, c.Train.TrainableTopLayers); err != nil {
		return err
	}
	if r.adam, err = NewAdamW(r.trained, c.Train.AdamBeta1, c.Train.AdamBeta2, c.Train.AdamEps, c.Train.WeightDecay); err != nil {
		return err
	}
	if resumeDir != "" {
		st, err := readOptimizer(resumeDir)
		if err != nil {
			return fmt.Errorf("%s: %w", resumeDir, err)
		}
		if err := r.adam.SetState(st); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(resumeDir, optimizerFile), err)
		}
		r.adam.Step = r.state.optimizerStep()
		r.log.Info("resumed", "checkpoint", resumeDir, "step", r.state.Step)
	}
	if d := c.Decomposition; d.Weights == "policy" {
		if r.policy, err = models.LoadCausalLM(d.PolicyModel, gotch.CPU); err != nil {
			return fmt.Errorf("decomposition.policy_model: %w", err)
		}
		if r.policy.Config().VocabSize != r.model.Config.VocabSize {
			return fmt.Errorf("decomposition.policy_model %s has a vocabulary of %d, the reward model %d", d.PolicyModel, r.policy.Config().VocabSize, r.model.Config.VocabSize)
		}
	}
	return nil
}

// start builds the sampler and schedule from the run state (after every
// rank has rank 0's).
func (r *run) start() error {
	c := r.cfg
	if r.state.Phase > 0 {
		r.sampler = data.NewSampler(len(r.state.Selected), phaseSeed(r.state.DataSeed, r.state.Phase))
		for _, i := range r.state.Selected {
			if i < 0 || i >= len(r.train) {
				return fmt.Errorf("%s: selected pair %d is outside the training set (%d pairs)", r.resumeDir, i, len(r.train))
			}
		}
	} else {
		r.sampler = data.NewSampler(len(r.train), r.state.DataSeed)
	}
	r.sampler.Epoch, r.sampler.Pos = r.state.Epoch, r.state.EpochPos
	r.prompts = PromptPool(r.train)

	total := c.Train.Steps
	if total == 0 {
		total = c.Train.Epochs * data.StepsPerEpoch(len(r.train), c.Train.BatchSize)
	}
	r.sched = Schedule{Base: c.Train.LearningRate, Warmup: c.Train.WarmupSteps, Total: total, Kind: c.Train.Schedule, MinRatio: c.Train.MinLRRatio}

	var trainedN int64
	for _, p := range r.trained {
		trainedN += p.Numel()
	}
	r.log.Info("model", "shape", r.model.Config.ModelType, "params", r.model.NumParams(), "trained_params", trainedN, "ranks", r.world())
	return nil
}

// enableLoRA attaches the configured adapters (read back from the
// checkpoint when resuming) and trains them and the score head only.
func (r *run) enableLoRA(resumeDir string) error {
	t := r.cfg.Train
	o := models.LoRAOptions{Rank: t.LoRARank, Alpha: t.LoRAAlpha, Targets: t.LoRATargets}
	if err := r.model.EnableLoRA(o, rand.New(rand.NewPCG(uint64(r.cfg.Run.Seed), 0x10a))); err != nil {
		return fmt.Errorf("train.lora_rank: %w", err)
	}
	if resumeDir != "" {
		if err := r.model.ReadAdapter(filepath.Join(resumeDir, modelSubdir)); err != nil {
			return fmt.Errorf("checkpoint %s: %w", resumeDir, err)
		}
	}
	r.trained = append(append([]*models.Param{}, r.model.LoRA()...), r.model.Param("score.weight"))
	return nil
}

// modelConfig returns the config of the model to train without loading
// weights.
func (r *run) modelConfig() (*models.Config, error) {
	if r.cfg.Model.Path != "" {
		return models.LoadConfig(filepath.Join(r.cfg.Model.Path, "config.json"))
	}
	return models.Preset(r.cfg.Model.Preset)
}

func (r *run) loadData(mcfg *models.Config) error {
	c := r.cfg.Data
	var pairs []data.Pair
	var err error
	switch {
	case c.Train == "synthetic":
		pairs, err = data.Synthetic(c.SyntheticPairs, c.SyntheticMinLength, c.SyntheticMaxLength, mcfg.VocabSize, uint64(r.cfg.Run.Seed))
	case strings.HasPrefix(c.Train, "toy:"):
		pairs, r.test, err = data.Toy(strings.TrimPrefix(c.Train, "toy:"), c.SyntheticPairs, mcfg.VocabSize, uint64(r.cfg.Run.Seed))
	default:
		pairs, err = r.readPairs(c.Train, mcfg.VocabSize)
	}
	if err != nil {
		return err
	}
	if c.Eval != "" {
		r.train = pairs
		if r.eval, err = r.readPairs(c.Eval, mcfg.VocabSize); err != nil {
			return err
		}
	} else {
		r.train, r.eval = data.Split(pairs, c.EvalFraction, uint64(r.cfg.Run.Seed))
	}
	var dropped, truncated int
	r.train, dropped, truncated = data.Fit(r.train, c.MaxLength, data.Truncation(c.Truncation))
	var ed, et int
	r.eval, ed, et = data.Fit(r.eval, c.MaxLength, data.Truncation(c.Truncation))
	r.log.Info("data", "train_pairs", len(r.train), "eval_pairs", len(r.eval),
		"dropped_over_length", dropped+ed, "truncated", truncated+et, "max_length", c.MaxLength, "policy", c.Truncation)
	if !r.resumed {
		r.writeMetric(map[string]any{"kind": "data", "train_pairs": len(r.train), "eval_pairs": len(r.eval),
			"dropped_over_length": dropped + ed, "truncated": truncated + et})
	}
	if len(r.train) == 0 {
		return fmt.Errorf("no training pairs left after the length limit (%d dropped)", dropped)
	}
	return nil
}

// tokenizerDir is the folder of the tokenizer for text data.
func (r *run) tokenizerDir() string {
	if r.cfg.Data.Tokenizer != "" {
		return r.cfg.Data.Tokenizer
	}
	return r.cfg.Model.Path
}

// readPairs reads a data file: pre-tokenised pairs as they are, text pairs
// through the tokenizer and chat template (once: epochs and the
// decomposition reuse the ids).
func (r *run) readPairs(path string, vocab int) ([]data.Pair, error) {
	d := r.cfg.Data
	pairs, st, err := encode.ReadFile(path, r.tokenizerDir(), vocab, data.ReadOptions{
		Keys:        data.Keys{Prompt: d.PromptKey, Chosen: d.ChosenKey, Rejected: d.RejectedKey, Margin: "margin"},
		SkipInvalid: d.SkipInvalid,
	}, encode.LoadOptions{})
	if err != nil {
		return nil, err
	}
	if st.Skipped > 0 {
		r.log.Warn("skipped invalid rows", "file", path, "skipped", st.Skipped, "summary", st.Summary())
		if !r.resumed {
			r.writeMetric(map[string]any{"kind": "data", "file": path, "skipped_invalid": st.Skipped, "skip_reasons": st.Reasons})
		}
	}
	return pairs, nil
}

// selectTrainable freezes what the config does not train.
func selectTrainable(m *models.RewardModel, mode string, topLayers int) ([]*models.Param, error) {
	L := m.Config.NumHiddenLayers
	if mode == "top_layers" && topLayers > L {
		return nil, fmt.Errorf("train.trainable_top_layers = %d but the model has %d layers", topLayers, L)
	}
	var out []*models.Param
	for _, p := range m.Params {
		train := true
		switch mode {
		case "head":
			train = p.Name == "score.weight"
		case "top_layers":
			train = p.Name == "score.weight" || p.Name == "model.norm.weight"
			var l int
			if _, err := fmt.Sscanf(p.Name, "model.layers.%d.", &l); err == nil && l >= L-topLayers {
				train = true
			}
		}
		if !train {
			if err := p.SetTrainable(false); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// sameRun refuses to resume under a different model, data or optimisation
// setup: the result would match neither run. Run settings (threads,
// logging) and the checkpoint cadence may change.
func sameRun(saved, current string) error {
	sections := func(y string) map[string]string {
		out := map[string]string{}
		var cur string
		for _, l := range strings.Split(y, "\n") {
			if l != "" && !strings.HasPrefix(l, " ") {
				cur = strings.TrimSuffix(l, ":")
				continue
			}
			if cur == "train" && strings.HasPrefix(l, "  gradient_checkpointing:") {
				continue // memory, not results: may change on resume
			}
			out[cur] += l + "\n"
		}
		return out
	}
	a, b := sections(saved), sections(current)
	for _, s := range []string{"model", "data", "train", "decomposition"} {
		if a[s] != b[s] {
			return fmt.Errorf("the %s section of the configuration differs from the checkpoint's (saved:\n%s\nnow:\n%s)", s, a[s], b[s])
		}
	}
	return nil
}

// loop runs optimizer steps until the schedule ends or ctx is cancelled.
func (r *run) loop(ctx context.Context) (*Result, error) {
	c := r.cfg
	total := r.sched.Total
	r.progress = newProgress(r.opt.Progress, total, r.state.Step, c.Run.LogEvery)
	start := time.Now()
	elapsed0 := r.state.ElapsedS
	res := &Result{}
	for r.state.Step < total {
		// Every rank stops at the same step: a signal may reach only some.
		stop, err := r.anyTrue(ctx.Err() != nil)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", r.state.Step+1, err)
		}
		if stop {
			res.Interrupted = true
			break
		}
		if r.dueRecompute(r.state.Step) {
			if err := r.recompute(); err != nil {
				return nil, err
			}
		}
		stepStart := time.Now()
		m, err := r.step()
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", r.state.Step+1, err)
		}
		r.state.Step++
		r.state.Epoch, r.state.EpochPos = r.sampler.Epoch, r.sampler.Pos
		r.state.ElapsedS = elapsed0 + time.Since(start).Seconds()
		stepSeconds := time.Since(stepStart).Seconds()
		m.tokensPerS = float64(m.tokens) / stepSeconds
		rec := map[string]any{"kind": "train", "step": r.state.Step, "epoch": r.state.Epoch,
			"loss": m.loss, "accuracy": m.accuracy, "lr": m.lr, "grad_norm": m.gradNorm,
			"tokens_per_s": m.tokensPerS, "wall_s": r.state.ElapsedS, "skipped": m.skipped}
		if r.opt.Comm != nil {
			rec["allreduce_s"] = m.allreduceS
		}
		r.writeMetric(rec)
		if r.metricsErr != nil && r.opt.Comm == nil {
			// With ranks, the next checkpoint's agreement stops them all.
			return nil, r.metricsErr
		}
		r.progress.update(r.state.Step, m)
		if err := r.countBad(m); err != nil {
			return nil, err
		}
		if c.Eval.Every > 0 && r.state.Step%c.Eval.Every == 0 && r.state.Step < total {
			if _, err := r.evaluate(); err != nil {
				return nil, err
			}
		}
		if c.Checkpoint.Every > 0 && r.state.Step%c.Checkpoint.Every == 0 && r.state.Step < total {
			if err := r.checkpoint(); err != nil {
				return nil, err
			}
		}
		if r.opt.AfterStep != nil {
			r.opt.AfterStep(StepInfo{Step: r.state.Step, Loss: m.loss, GradNorm: m.gradNorm, Skipped: m.skipped, Seconds: stepSeconds, AllReduceSeconds: m.allreduceS})
		}
	}
	r.progress.finish()
	res.Steps = r.state.Step
	res.DecompositionSeconds, res.WallSeconds = r.state.DecompSeconds, r.state.ElapsedS
	if err := r.checkpoint(); err != nil {
		return nil, err
	}
	if res.Interrupted {
		r.log.Info("interrupted: checkpoint written; continue with --resume auto", "step", r.state.Step)
		return res, nil
	}
	ev, err := r.evaluate()
	if err != nil {
		return nil, err
	}
	res.Eval = ev
	if len(r.test) > 0 {
		if res.Test, err = r.evaluatePairs(r.test, 2*c.Eval.BatchSize); err != nil {
			return nil, err
		}
		r.writeMetric(map[string]any{"kind": "test", "step": r.state.Step, "test_accuracy": res.Test.Accuracy,
			"test_loss": res.Test.Loss, "test_pairs": res.Test.Pairs})
		r.log.Info("test split", "accuracy", round(res.Test.Accuracy), "pairs", res.Test.Pairs)
	}
	if err := r.finalAnalysis(res); err != nil {
		return nil, err
	}
	res.ModelDir = filepath.Join(c.Run.Dir, "model")
	stats := &models.Stats{Extra: map[string]any{"steps": r.state.Step, "trainer": "prism"}}
	if ev != nil {
		stats.RewardMean, stats.RewardStd = ev.RewardMean, ev.RewardStd
	}
	var serr error
	if r.lead() {
		// With LoRA the model is saved merged (a plain Hugging Face
		// model), and the adapters with the score head beside it.
		serr = r.model.SaveWith(res.ModelDir, stats, r.tokenizerFiles())
		if serr == nil && r.model.LoRAOptions().Rank > 0 {
			res.AdapterDir = filepath.Join(c.Run.Dir, "adapter")
			serr = fsutil.WriteDirAtomic(res.AdapterDir, func(tmp string) error { return r.model.WriteAdapter(tmp, r.baseModelName()) })
		}
	}
	if serr == nil {
		serr = r.metricsErr
	}
	if err := r.agree("saving the model", serr); err != nil {
		return nil, err
	}
	r.log.Info("saved model", "dir", res.ModelDir)
	return res, nil
}

// ErrNonFinite stops a run after more than train.max_bad_steps non-finite
// steps in a row.
var ErrNonFinite = errors.New("training diverged")

// countBad tracks non-finite steps in a row and stops the run, with a
// checkpoint of the last good state, after more than train.max_bad_steps.
// Skipped steps leave weights and optimizer state untouched, so the state
// now is the state after the last good step.
func (r *run) countBad(m stepMetrics) error {
	if !m.skipped {
		r.state.BadRun, r.state.FirstBad = 0, 0
		return nil
	}
	if r.state.BadRun == 0 {
		r.state.FirstBad = r.state.Step
	}
	r.state.BadRun++
	limit := r.cfg.Train.MaxBadSteps
	if limit == 0 || r.state.BadRun <= limit {
		return nil
	}
	if err := r.checkpoint(); err != nil {
		return fmt.Errorf("%w at step %d, and the checkpoint failed: %w", ErrNonFinite, r.state.Step, err)
	}
	r.writeMetric(map[string]any{"kind": "stopped", "step": r.state.Step, "reason": "non-finite", "first_bad_step": r.state.FirstBad, "bad_in_a_row": r.state.BadRun})
	return fmt.Errorf("%w: steps %d to %d (%d in a row, more than train.max_bad_steps=%d) had a NaN or infinite loss or gradient norm, so their updates were skipped; the last good state (after step %d) is checkpointed in %s. Lower train.learning_rate, check the data around those steps, or raise train.max_bad_steps",
		ErrNonFinite, r.state.FirstBad, r.state.Step, r.state.BadRun, limit, r.state.FirstBad-1, filepath.Join(r.cfg.Run.Dir, checkpointDir))
}

// checkpoint has rank 0 write a checkpoint while the others wait.
func (r *run) checkpoint() error {
	var err error
	if r.lead() {
		if err = r.metricsErr; err == nil {
			err = r.writeCheckpoint()
		}
	}
	return r.agree("writing the checkpoint", err)
}

func (r *run) writeCheckpoint() error {
	fi, err := r.metrics.Stat()
	if err != nil {
		return err
	}
	r.state.MetricsBytes = fi.Size()
	weights, err := r.model.Values()
	if err != nil {
		return err
	}
	opt, err := r.adam.State()
	if err != nil {
		return err
	}
	n := r.adam.Step
	r.state.OptimizerStep = &n
	var adapter func(dir string) error
	if r.model.LoRAOptions().Rank > 0 {
		adapter = func(dir string) error { return r.model.WriteAdapter(dir, r.baseModelName()) }
	}
	dir, err := saveCheckpoint(r.cfg.Run.Dir, &r.state, r.model.Config, weights, opt, adapter, r.cfg.Checkpoint.Keep)
	if err != nil {
		return err
	}
	r.log.Debug("checkpoint", "dir", dir)
	return nil
}

type stepMetrics struct {
	loss, accuracy, lr, gradNorm, tokensPerS, allreduceS float64
	tokens                                               int64
	skipped                                              bool
}

// step runs one optimizer step over one batch, in micro-batches whose
// gradients accumulate.
func (r *run) step() (m stepMetrics, err error) {
	c := r.cfg.Train
	idx := r.sampler.Next(c.BatchSize)
	if r.state.Phase > 0 {
		for k, i := range idx {
			idx[k] = r.state.Selected[i]
		}
	}
	if err := r.adam.ZeroGrad(); err != nil {
		return m, err
	}
	n := len(idx)
	correct := 0
	r.poisoned = r.opt.FailNonFinite != nil && r.opt.FailNonFinite(r.state.Step+1)
	// Each rank takes a contiguous share of the global batch; weighting by
	// the global size makes the sum over ranks the batch mean.
	first, last := 0, n
	if c := r.opt.Comm; c != nil {
		first, last = shard(n, c.Rank(), c.World())
	}
	for lo := first; lo < last; lo += c.MicroBatch() {
		hi := min(lo+c.MicroBatch(), last)
		pairs := make([]data.Pair, 0, hi-lo)
		for _, i := range idx[lo:hi] {
			pairs = append(pairs, r.train[i])
		}
		// Each micro-batch's mean loss is weighted by its share of the
		// batch, so the accumulated gradient is that of the batch mean.
		loss, corr, tokens, err := r.pairLoss(pairs, float64(len(pairs))/float64(n), true)
		if err != nil {
			return m, err
		}
		m.loss += loss
		correct += corr
		m.tokens += tokens
	}
	if m.allreduceS, err = r.reduceGrads(); err != nil {
		return m, err
	}
	if r.opt.Comm != nil {
		tot, err := r.sumAcross([]float64{m.loss, float64(correct), float64(m.tokens)})
		if err != nil {
			return m, err
		}
		m.loss, correct, m.tokens = tot[0], int(tot[1]), int64(tot[2])
	}
	m.accuracy = float64(correct) / float64(n)
	m.lr = r.sched.LR(r.state.Step)
	m.gradNorm, err = r.adam.GradNorm()
	if err != nil {
		return m, err
	}
	if math.IsNaN(m.loss) || math.IsInf(m.loss, 0) || math.IsNaN(m.gradNorm) || math.IsInf(m.gradNorm, 0) {
		// A non-finite loss or gradient would poison the weights: skip the
		// update and count it.
		m.skipped = true
		r.state.BadSteps++
		r.log.Warn("non-finite loss or gradient norm: update skipped", "step", r.state.Step+1, "loss", m.loss, "grad_norm", m.gradNorm)
		return m, nil
	}
	if err := r.adam.ClipGradNorm(m.gradNorm, c.MaxGradNorm); err != nil {
		return m, err
	}
	if err := r.adam.Update(m.lr); err != nil {
		return m, err
	}
	r.state.Tokens += m.tokens
	return m, nil
}

// pairLoss scores a group of pairs in one forward pass (chosen rows, then
// rejected rows) and returns the Bradley-Terry loss (scaled by weight) and
// the number of pairs ranked right. With backward set, it also runs the
// backward pass.
func (r *run) pairLoss(pairs []data.Pair, weight float64, backward bool) (loss float64, correct int, tokens int64, err error) {
	b := len(pairs)
	seqs := make([][]int64, 0, 2*b)
	margins := make([]float32, b)
	for i := range pairs {
		seqs = append(seqs, pairs[i].ChosenSeq())
		margins[i] = float32(pairs[i].Margin)
	}
	for i := range pairs {
		seqs = append(seqs, pairs[i].RejectedSeq())
	}
	batch := models.Collate(seqs, r.model.PadID())
	for _, v := range batch.Mask {
		tokens += v
	}
	var tensors []*ts.Tensor
	defer func() { dropAll(tensors) }()
	// lossOf turns the rewards into the weighted Bradley-Terry loss and
	// reads the loss value and the ranking out of them.
	lossOf := func(rewards *ts.Tensor) (l *ts.Tensor, err error) {
		keep := func(t *ts.Tensor, e error) *ts.Tensor {
			if e != nil && err == nil {
				err = e
			}
			if t != nil {
				tensors = append(tensors, t)
			}
			return t
		}
		rc := keep(rewards.Narrow(0, 0, int64(b), false))
		rr := keep(rewards.Narrow(0, int64(b), int64(b), false))
		diff := keep(rc.Sub(rr, false))
		if err != nil {
			return nil, err
		}
		if r.cfg.Train.UseMargin {
			mt := keep(ts.OfSlice(margins))
			diff = keep(diff.Sub(mt, false))
		}
		l = keep(keep(keep(diff.LogSigmoid(false)).Mean(gotch.Float, false)).MulScalar(ts.FloatScalar(-weight), false))
		if coef := r.cfg.Train.CenterRewardsCoef; coef > 0 {
			sum := keep(rc.Add(rr, false))
			center := keep(keep(keep(sum.Square(false)).Mean(gotch.Float, false)).MulScalar(ts.FloatScalar(coef*weight), false))
			l = keep(l.Add(center, false))
		}
		if err != nil {
			return nil, err
		}
		lv, err := models.Float64s(l)
		if err != nil {
			return nil, err
		}
		loss = lv[0]
		rcv, err := models.Float64s(rc)
		if err != nil {
			return nil, err
		}
		rrv, err := models.Float64s(rr)
		if err != nil {
			return nil, err
		}
		for i := range rcv {
			if rcv[i] > rrv[i] { // a tie counts as wrong
				correct++
			}
		}
		if r.poisoned {
			l = keep(l.MulScalar(ts.FloatScalar(math.NaN()), false))
			if err != nil {
				return nil, err
			}
			loss = math.NaN()
		}
		return l, nil
	}
	if backward {
		err = r.model.ForwardBackward(batch, r.cfg.Train.GradientCheckpointing, lossOf)
		return loss, correct, tokens, err
	}
	rewards, err := r.model.Forward(batch)
	if err != nil {
		return 0, 0, 0, err
	}
	defer rewards.Drop()
	_, err = lossOf(rewards)
	return loss, correct, tokens, err
}

// evaluate scores the held-out pairs.
func (r *run) evaluate() (*EvalMetrics, error) {
	if len(r.eval) == 0 {
		return nil, nil
	}
	ev, err := r.evaluatePairs(r.eval, 2*r.cfg.Eval.BatchSize)
	if err != nil {
		return nil, err
	}
	r.writeMetric(map[string]any{"kind": "eval", "step": r.state.Step, "eval_loss": ev.Loss, "eval_accuracy": ev.Accuracy,
		"eval_margin": ev.Margin, "eval_reward_mean": ev.RewardMean, "eval_reward_std": ev.RewardStd, "eval_pairs": ev.Pairs})
	r.log.Info("eval", "step", r.state.Step, "loss", round(ev.Loss), "accuracy", round(ev.Accuracy), "margin", round(ev.Margin))
	return ev, nil
}

// evaluatePairs is Evaluate with the scoring split across the ranks.
func (r *run) evaluatePairs(pairs []data.Pair, batchSize int) (*EvalMetrics, error) {
	seqs := make([][]int64, 0, 2*len(pairs))
	for i := range pairs {
		seqs = append(seqs, pairs[i].ChosenSeq())
	}
	for i := range pairs {
		seqs = append(seqs, pairs[i].RejectedSeq())
	}
	s, err := r.score(seqs, batchSize)
	if err != nil {
		return nil, err
	}
	return PairMetrics(s[:len(pairs)], s[len(pairs):]), nil
}

// Evaluate computes loss, pairwise accuracy (strict: a tie is wrong), mean
// margin and reward statistics over pairs, without gradients.
func Evaluate(m *models.RewardModel, pairs []data.Pair, batchSize int) (*EvalMetrics, error) {
	chosen, rejected, err := ScorePairs(m, pairs, batchSize)
	if err != nil {
		return nil, err
	}
	return PairMetrics(chosen, rejected), nil
}

// ScorePairs returns the rewards of every pair's chosen and rejected
// sequence, without gradients, batchSize sequences per forward pass.
func ScorePairs(m *models.RewardModel, pairs []data.Pair, batchSize int) (chosen, rejected []float64, err error) {
	seqs := make([][]int64, 0, 2*len(pairs))
	for i := range pairs {
		seqs = append(seqs, pairs[i].ChosenSeq())
	}
	for i := range pairs {
		seqs = append(seqs, pairs[i].RejectedSeq())
	}
	r, err := m.Score(seqs, batchSize)
	if err != nil {
		return nil, nil, err
	}
	return r[:len(pairs)], r[len(pairs):], nil
}

// PairMetrics summarises rewards of chosen and rejected responses.
func PairMetrics(chosen, rejected []float64) *EvalMetrics {
	n := len(chosen)
	ev := &EvalMetrics{Pairs: n}
	var sum, sumSq float64
	for i := range chosen {
		d := chosen[i] - rejected[i]
		ev.Loss += softplus(-d)
		if d > 0 {
			ev.Accuracy++
		}
		ev.Margin += d
		for _, x := range []float64{chosen[i], rejected[i]} {
			sum += x
			sumSq += x * x
		}
	}
	ev.Loss /= float64(n)
	ev.Accuracy /= float64(n)
	ev.Margin /= float64(n)
	k := float64(2 * n)
	ev.RewardMean = sum / k
	ev.RewardStd = math.Sqrt(math.Max(0, sumSq/k-ev.RewardMean*ev.RewardMean))
	return ev
}

// softplus(x) = log(1 + e^x), stable for large |x|; -log σ(d) = softplus(-d).
func softplus(x float64) float64 {
	if x > 30 {
		return x
	}
	return math.Log1p(math.Exp(x))
}

func (r *run) writeMetric(m map[string]any) {
	if r.metrics == nil || r.metricsErr != nil {
		return
	}
	b, err := json.Marshal(finiteOrNull(m))
	if err == nil {
		_, err = r.metrics.Write(append(b, '\n'))
	}
	if err != nil {
		r.metricsErr = fmt.Errorf("metrics.jsonl: a %v row could not be written: %w", m["kind"], err)
		r.log.Error("writing metrics", "error", r.metricsErr)
	}
}

// finiteOrNull replaces NaN and infinite numbers (the loss of a skipped
// step) with nil, which JSON writes as null: encoding/json refuses them,
// and the row must not be lost. The row's "skipped" says why.
func finiteOrNull(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v = nil
			}
		case float32:
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				v = nil
			}
		}
		out[k] = v
	}
	return out
}

// trimMetrics cuts metrics.jsonl back to what it held when the resumed
// checkpoint was written: the killed run logged past it (steps, a
// recompute at the checkpoint's step, the final evaluation), and the
// resumed run logs all that again. With no checkpoint to resume (resumed
// false), the run starts over and so does the file.
func (r *run) trimMetrics(resumed bool) error {
	path := filepath.Join(r.cfg.Run.Dir, "metrics.jsonl")
	if !resumed {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if n := r.state.MetricsBytes; n > 0 {
		if fi.Size() > n {
			return os.Truncate(path, n)
		}
		return nil
	}
	// A checkpoint from before metrics_bytes: drop the lines past its step.
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	step := r.state.Step
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		var m struct {
			Step *int `json:"step"`
		}
		if json.Unmarshal([]byte(l), &m) != nil {
			continue // a line cut by the crash
		}
		if m.Step != nil && *m.Step > step {
			continue
		}
		keep = append(keep, l)
	}
	out := strings.Join(keep, "\n")
	if out != "" {
		out += "\n"
	}
	return fsutil.WriteFileAtomic(path, []byte(out))
}

func round(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// baseModelName names the base model in adapter configs.
func (r *run) baseModelName() string {
	if r.cfg.Model.Path != "" {
		return r.cfg.Model.Path
	}
	return "prism preset " + r.cfg.Model.Preset
}

// tokenizerFiles are the tokenizer's files to ship with the saved model,
// when the run read text through a tokenizer.
func (r *run) tokenizerFiles() map[string][]byte {
	dir := r.tokenizerDir()
	if dir == "" {
		return nil
	}
	out := map[string][]byte{}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			out[name] = b
		}
	}
	return out
}

// missingAncestor returns the outermost folder of dir's path that does not
// exist yet (dir itself when only it is missing), or "" when dir exists.
func missingAncestor(dir string) string {
	missing := ""
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			return missing
		}
		missing = d
		if filepath.Dir(d) == d {
			return missing
		}
	}
}

// removeUnstarted removes created, the folders a failed run made for its
// run folder dir, unless the run got as far as a checkpoint or a model.
// What is left before that point (the resolved config, a log whose lines
// went to stderr too) is no run to resume, and a failed command should
// leave nothing behind.
func removeUnstarted(created, dir string) {
	if created == "" {
		return
	}
	for _, kept := range []string{checkpointDir, modelSubdir} {
		if _, err := os.Lstat(filepath.Join(dir, kept)); err == nil {
			return
		}
	}
	os.RemoveAll(created)
}
