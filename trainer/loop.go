package trainer

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"prism/internal/analysis"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/internal/torch"
	"prism/models"
	"prism/trainer/checkpoint"
)

// loop runs optimizer steps until the schedule ends or ctx is cancelled.
// Everything else a run does between steps is a hook (stepHooks), and the
// decomposition recompute runs before the steps it is due for.
func (r *run) loop(ctx context.Context) (*Result, error) {
	total := r.sched.Total
	r.progress = newProgress(r.opt.Progress, total, r.state.Step, r.cfg.Run.LogEvery)
	hooks := r.stepHooks()
	start, elapsed0 := time.Now(), r.state.ElapsedS
	interrupted := false
	for r.state.Step < total {
		// Every rank stops at the same step: a signal may reach only some.
		stop, err := r.anyTrue(ctx.Err() != nil)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", r.state.Step+1, err)
		}
		if stop {
			interrupted = true
			break
		}
		if r.cfg.Decomposition.Due(r.state.Step, total) {
			if err := r.recompute(); err != nil {
				return nil, err
			}
		}
		info, err := r.step()
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", r.state.Step+1, err)
		}
		r.state.Step++
		r.state.SamplerState = r.sampler.State()
		r.state.ElapsedS = elapsed0 + time.Since(start).Seconds()
		info.Step = r.state.Step
		for _, h := range hooks {
			if err := h(info); err != nil {
				return nil, err
			}
		}
	}
	r.progress.finish()
	return r.finish(interrupted)
}

// stepHooks are what runs after each step, in order: the metrics row and
// progress, the divergence guard, evaluation and checkpoints on their
// cadence (the last step has its own, in finish), then the caller's.
func (r *run) stepHooks() []StepHook {
	total := r.sched.Total
	beforeEnd := func(h StepHook) StepHook {
		return func(s StepInfo) error {
			if s.Step >= total {
				return nil
			}
			return h(s)
		}
	}
	hooks := []StepHook{
		r.recordStep,
		r.countBad,
		r.warnZeroGradient(),
		EveryNSteps(r.cfg.Eval.Every, beforeEnd(func(StepInfo) error { _, err := r.evaluate(); return err })),
		EveryNSteps(r.cfg.Checkpoint.Every, beforeEnd(func(StepInfo) error { return r.checkpoint() })),
	}
	return append(hooks, r.opt.OnStep...)
}

// zeroGradSteps is how many first steps with an exactly zero gradient
// make a run warn.
const zeroGradSteps = 3

// warnZeroGradient warns once when the run's first steps all have an
// exactly zero gradient: the loss cannot move, usually because the pairs'
// two sides do not differ in anything the model sees (a chat template that
// drops what differs, text the tokenizer cannot tell apart).
func (r *run) warnZeroGradient() StepHook {
	zero, done := 0, false
	return func(s StepInfo) error {
		if done || s.Skipped {
			return nil
		}
		if s.GradNorm != 0 {
			done = true
			return nil
		}
		if zero++; zero == zeroGradSteps {
			done = true
			r.log.Warn("the gradient has been exactly zero for the first steps: nothing is being learned; check that the pairs' two sides differ once rendered and tokenised",
				"steps", zeroGradSteps, "step", s.Step)
		}
		return nil
	}
}

// recordStep writes the step's metrics row and shows progress.
func (r *run) recordStep(s StepInfo) error {
	rec := map[string]any{"kind": "train", "step": s.Step, "epoch": r.state.Epoch,
		"loss": s.Loss, "accuracy": s.Accuracy, "lr": s.LR, "grad_norm": s.GradNorm,
		"tokens_per_s": s.TokensPerS, "wall_s": r.state.ElapsedS, "skipped": s.Skipped}
	if r.world() > 1 {
		rec["allreduce_s"] = s.AllReduceSeconds
	}
	r.writeMetric(rec)
	if r.out.metricsErr != nil && r.world() == 1 {
		// With ranks, the next checkpoint's agreement stops them all.
		return r.out.metricsErr
	}
	r.progress.update(s)
	return nil
}

// evaluate scores the held-out pairs.
func (r *run) evaluate() (*analysis.Metrics, error) {
	if len(r.eval) == 0 {
		return nil, nil
	}
	ev, err := analysis.Evaluate(r.scorer(2*r.cfg.Eval.BatchSize), r.eval)
	if err != nil {
		return nil, err
	}
	r.writeMetric(map[string]any{"kind": "eval", "step": r.state.Step, "eval_loss": ev.Loss, "eval_accuracy": ev.Accuracy,
		"eval_margin": ev.Margin, "eval_reward_mean": ev.RewardMean, "eval_reward_std": ev.RewardStd, "eval_pairs": ev.Pairs})
	r.log.Info("eval", "step", r.state.Step, "loss", round(ev.Loss), "accuracy", round(ev.Accuracy), "margin", round(ev.Margin))
	r.drawCurves()
	return ev, nil
}

// finish checkpoints the run's last step; a run that ran to its end is
// then evaluated, analysed and saved.
func (r *run) finish(interrupted bool) (*Result, error) {
	res := &Result{Steps: r.state.Step, Interrupted: interrupted,
		DecompositionSeconds: r.state.DecompSeconds, WallSeconds: r.state.ElapsedS}
	if err := r.checkpoint(); err != nil {
		return nil, err
	}
	if interrupted {
		r.log.Info("interrupted: checkpoint written; continue with --resume auto", "step", r.state.Step)
		return res, nil
	}
	var err error
	if res.Eval, err = r.evaluate(); err != nil {
		return nil, err
	}
	if len(r.test) > 0 {
		if res.Test, err = analysis.Evaluate(r.scorer(2*r.cfg.Eval.BatchSize), r.test); err != nil {
			return nil, err
		}
		if res.SwapSurvival, err = analysis.SwapSurvival(r.scorer(2*r.cfg.Eval.BatchSize), r.test, uint64(r.cfg.Run.Seed)); err != nil {
			return nil, err
		}
		r.writeMetric(map[string]any{"kind": "test", "step": r.state.Step, "test_accuracy": res.Test.Accuracy,
			"test_loss": res.Test.Loss, "test_pairs": res.Test.Pairs, "test_swap_survival": res.SwapSurvival})
		r.log.Info("test split", "accuracy", round(res.Test.Accuracy), "pairs", res.Test.Pairs, "preference_kept_under_swapped_prompt", round(res.SwapSurvival))
	}
	if len(r.eval) == 0 {
		r.drawCurves() // evaluate drew them otherwise
	}
	if err := r.finalAnalysis(res); err != nil {
		return nil, err
	}
	if err := r.saveModel(res); err != nil {
		return nil, err
	}
	if r.lead() {
		// What a crash during this end left (a half-drawn curves.png of a
		// start that died here) goes; nothing is being written now.
		checkpoint.RemoveLeftovers(r.cfg.Run.Dir)
	}
	return res, nil
}

// saveModel writes the trained model (lead rank): with LoRA merged, as a
// plain Hugging Face model, with the adapters and score head beside it.
func (r *run) saveModel(res *Result) error {
	res.ModelDir = filepath.Join(r.cfg.Run.Dir, "model")
	stats := &models.Stats{Extra: map[string]any{"steps": r.state.Step, "trainer": "prism",
		"device": torch.DeviceName(r.device), "attention": r.compute.Attention, "precision": r.compute.Precision}}
	if res.Eval != nil {
		stats.RewardMean, stats.RewardStd = res.Eval.RewardMean, res.Eval.RewardStd
	}
	var err error
	if r.lead() {
		err = r.model.SaveWith(res.ModelDir, stats, r.tokenizerFiles())
		if err == nil && r.model.LoRAOptions().Rank > 0 {
			res.AdapterDir = filepath.Join(r.cfg.Run.Dir, "adapter")
			err = fsutil.WriteDirAtomic(res.AdapterDir, func(tmp string) error { return r.model.WriteAdapter(tmp, r.baseModelName()) })
		}
		if err == nil {
			err = r.out.metricsErr
		}
	}
	if err := r.agree("saving the model", err); err != nil {
		return err
	}
	r.log.Info("saved model", "dir", res.ModelDir)
	return nil
}

// drawCurves redraws RUN_DIR/curves.png from the run folder (lead rank).
// A figure that cannot be drawn is a warning: the run goes on.
func (r *run) drawCurves() {
	if !r.lead() {
		return
	}
	c, err := report.ReadCurves(r.cfg.Run.Dir)
	if err == nil {
		err = report.WriteCurves(filepath.Join(r.cfg.Run.Dir, "curves.png"), []*report.Curves{c})
	}
	if err != nil {
		r.log.Warn("curves.png not drawn", "error", err)
	}
}
