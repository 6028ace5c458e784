// Package trainer owns the training loop of a reward model. A run reads
// top to bottom: Run (trainer.go) resolves the configuration (spec.go),
// opens the run folder (run.go), loads data, model and checkpoint
// (setup.go), and loops (loop.go): before a step the priority sampler
// recomputes Δr2 when due (recompute.go), the step runs (step.go), then
// the step hooks run in order: metrics and progress, the divergence guard
// (recovery.go), evaluation and checkpoints every N steps, and the
// caller's Options.OnStep. At the end: a checkpoint, the final evaluation
// and analysis, the saved model. Collectives go through one torch.Comm
// (dist.go); the checkpoint format is the checkpoint subpackage's; plan.go
// answers `prism train --dry-run` from the same resolution.
package trainer
