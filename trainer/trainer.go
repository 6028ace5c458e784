package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"prism/configs"
	"prism/decomposition"
	"prism/internal/analysis"
	"prism/internal/report"
	"prism/internal/torch"
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
	// OnStep hooks run after every optimizer step, after the run's own
	// (metrics, progress, evaluation, checkpoint), in order; an error
	// stops the run. EveryNSteps schedules one every N steps.
	OnStep []StepHook
	// OnRecompute hooks run after every decomposition recompute, on every
	// rank.
	OnRecompute []RecomputeHook
	// Comm, when set, makes this process one rank of a data-parallel run:
	// each rank computes the gradient of its share of every batch, the
	// gradients are summed across ranks, and rank 0 alone writes the run
	// folder. Batch size, schedule and results do not depend on the
	// number of ranks. Unset, the run is a single process.
	Comm torch.Comm

	// FailNonFinite is fault injection for crash tests: the steps it
	// reports true for get a NaN loss and gradients, as a diverging step
	// would, and so are skipped (see `prism train`'s
	// PRISM_FAILPOINT_NONFINITE_STEPS).
	FailNonFinite func(step int) bool
}

// StepInfo describes a finished optimizer step.
type StepInfo struct {
	Step                     int
	Loss, Accuracy, GradNorm float64
	LR                       float64
	Tokens                   int64
	TokensPerS               float64
	// Skipped is true when a non-finite loss or gradient skipped the update.
	Skipped bool
	// Seconds is the step's own time: forward, backward and update, without
	// evaluation, checkpoints or decomposition.
	Seconds float64
	// AllReduceSeconds is the part of Seconds spent summing gradients
	// across ranks (0 for a single process).
	AllReduceSeconds float64
}

// StepHook runs after an optimizer step.
type StepHook func(StepInfo) error

// EveryNSteps runs h after every step that is a multiple of n; n <= 0
// never runs it.
func EveryNSteps(n int, h StepHook) StepHook {
	return func(s StepInfo) error {
		if n <= 0 || s.Step%n != 0 {
			return nil
		}
		return h(s)
	}
}

// RecomputeInfo describes a finished decomposition recompute.
type RecomputeInfo struct {
	// Step is the number of steps before it; Phase the phase it starts.
	Step, Phase int
	// Selected are the training pairs the phase trains on.
	Selected []int
}

// RecomputeHook runs after a recompute.
type RecomputeHook func(RecomputeInfo) error

// Result summarises a finished run.
type Result struct {
	Steps       int
	Interrupted bool
	ModelDir    string
	// AdapterDir holds the LoRA adapters and the score head (LoRA runs).
	AdapterDir string
	Eval       *analysis.Metrics
	// Test is the shortcut-breaking split of a toy task, and SwapSurvival
	// the share of its pairs whose preference survives another test
	// pair's prompt (analysis.SwapSurvival).
	Test         *analysis.Metrics
	SwapSurvival float64
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

// Run trains a reward model as cfg describes. Cancelling ctx (SIGINT,
// SIGTERM) finishes the current step, writes a checkpoint and returns with
// Result.Interrupted set.
func Run(ctx context.Context, cfg *configs.Config, opt Options) (res *Result, err error) {
	defer torch.Pin()()
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Progress == nil {
		opt.Progress = io.Discard
	}
	if opt.Comm == nil {
		opt.Comm = torch.Single{}
	}
	if cfg.Run.Threads > 0 {
		if _, err := torch.Setup(cfg.Run.Threads); err != nil {
			return nil, fmt.Errorf("run.threads: %w", err)
		}
	}
	sp, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	r := &run{spec: sp, cfg: cfg, opt: opt, comm: opt.Comm}
	if !r.lead() {
		// Rank 0 reports progress and writes the run folder.
		r.opt.Progress = io.Discard
	}
	created := ""
	if r.lead() {
		created = missingAncestor(cfg.Run.Dir)
	}
	openErr := r.agree("opening the run folder", r.openRunDir())
	defer func() {
		r.close()
		if err != nil && r.lead() {
			removeUnstarted(created, cfg.Run.Dir)
			r.removeFresh()
		}
	}()
	if openErr != nil {
		return nil, openErr
	}
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

// priorityOptions are the sampler's settings from the configuration.
func priorityOptions(d configs.Decomposition) decomposition.PriorityOptions {
	return decomposition.PriorityOptions{Strategy: decomposition.Strategy(d.Strategy), Rho: d.Rho,
		Threshold: d.Threshold, Temperature: d.Temperature, PoolSize: d.PoolSize}
}
