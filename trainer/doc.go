// Package trainer owns the training loop of a reward model: the
// Bradley-Terry loss, the optimizer and its schedule, evaluation,
// checkpoints and exact resume.
package trainer
