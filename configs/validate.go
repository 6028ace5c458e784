package configs

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
)

// FieldError is a validation failure of one key.
type FieldError struct {
	Key     string
	Problem string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Problem }

// Validate checks every value for range and consistency. It reports the
// first problem found, naming the key.
// deviceRE is what run.device accepts.
var deviceRE = regexp.MustCompile(`^(auto|cpu|cuda|cuda:[0-9]+)$`)

func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
	}
	positive := func(key string, v int) {
		if v < 1 {
			bad(key, "must be at least 1, got %d", v)
		}
	}
	nonNegative := func(key string, v int) {
		if v < 0 {
			bad(key, "must not be negative, got %d", v)
		}
	}
	// atMost bounds sizes that are allocated before anything else could
	// refuse them (a pair list, the prompt draws of every pair), so that a
	// typo is an error and not an out-of-memory crash.
	atMost := func(key string, v, max int, why string) {
		if v > max {
			bad(key, "must be at most %d (%s), got %d", max, why, v)
		}
	}
	finite := func(key string, v, lo, hi float64, loOpen, hiOpen bool) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			bad(key, "must be a finite number, got %v", v)
		case v < lo || (loOpen && v == lo) || v > hi || (hiOpen && v == hi):
			l, r := "[", "]"
			if loOpen {
				l = "("
			}
			if hiOpen {
				r = ")"
			}
			bad(key, "must be in %s%g, %g%s, got %g", l, lo, hi, r, v)
		}
	}
	oneOf := func(key, v string, allowed ...string) {
		for _, a := range allowed {
			if v == a {
				return
			}
		}
		bad(key, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
	}

	if strings.TrimSpace(c.Run.Dir) == "" {
		bad("run.dir", "must name a folder")
	}
	if d := c.Run.Device; !deviceRE.MatchString(d) {
		bad("run.device", "must be auto, cpu, cuda or cuda:N, got %q", d)
	}
	nonNegative("run.threads", c.Run.Threads)
	positive("run.log_every", c.Run.LogEvery)

	switch {
	case c.Model.Preset == "" && c.Model.Path == "":
		bad("model.preset", "set model.preset or model.path")
	case c.Model.Preset != "" && c.Model.Path != "":
		bad("model.path", "set model.preset or model.path, not both (preset is %q)", c.Model.Preset)
	}
	oneOf("model.dtype", c.Model.DType, "float32")
	oneOf("model.attention", c.Model.Attention, "auto", "sdpa", "eager")
	oneOf("model.precision", c.Model.Precision, "fp32", "bf16")
	if c.Model.PadTokenID < -1 {
		bad("model.pad_token_id", "must be a token id, or -1 to keep config.json's, got %d", c.Model.PadTokenID)
	}

	if strings.TrimSpace(c.Data.Train) == "" {
		bad("data.train", "must name a file, \"synthetic\" or \"toy:NAME\"")
	}
	finite("data.eval_fraction", c.Data.EvalFraction, 0, 1, false, true)
	if c.Data.MaxLength < 2 {
		bad("data.max_length", "must be at least 2, got %d", c.Data.MaxLength)
	}
	oneOf("data.truncation", string(c.Data.Truncation), names(TruncationDrop, TruncationLeft)...)
	for _, k := range []struct{ key, v string }{{"data.prompt_key", c.Data.PromptKey}, {"data.chosen_key", c.Data.ChosenKey}, {"data.rejected_key", c.Data.RejectedKey}} {
		if strings.TrimSpace(k.v) == "" {
			bad(k.key, "must name a field")
		}
	}
	positive("data.synthetic_pairs", c.Data.SyntheticPairs)
	atMost("data.synthetic_pairs", c.Data.SyntheticPairs, 1_000_000, "generated in memory; a larger task belongs in a file")
	atMost("data.max_length", c.Data.MaxLength, 1<<20, "tokens per sequence")
	positive("data.synthetic_min_length", c.Data.SyntheticMinLength)
	if c.Data.SyntheticMaxLength < c.Data.SyntheticMinLength || c.Data.SyntheticMaxLength > c.Data.MaxLength {
		bad("data.synthetic_max_length", "must be between synthetic_min_length (%d) and max_length (%d), got %d",
			c.Data.SyntheticMinLength, c.Data.MaxLength, c.Data.SyntheticMaxLength)
	}

	t := c.Train
	nonNegative("train.steps", t.Steps)
	if t.Steps == 0 {
		positive("train.epochs", t.Epochs)
	} else {
		nonNegative("train.epochs", t.Epochs)
	}
	positive("train.batch_size", t.BatchSize)
	atMost("train.batch_size", t.BatchSize, 1<<20, "pairs per step")
	nonNegative("train.micro_batch_size", t.MicroBatchSize)
	if t.BatchSize >= 1 && t.MicroBatchSize >= 1 && t.BatchSize%t.MicroBatchSize != 0 {
		bad("train.micro_batch_size", "must divide train.batch_size (%d), got %d", t.BatchSize, t.MicroBatchSize)
	}
	finite("train.learning_rate", t.LearningRate, 0, 10, true, false)
	finite("train.weight_decay", t.WeightDecay, 0, 10, false, false)
	finite("train.adam_beta1", t.AdamBeta1, 0, 1, false, true)
	finite("train.adam_beta2", t.AdamBeta2, 0, 1, false, true)
	finite("train.adam_eps", t.AdamEps, 0, 1, true, false)
	oneOf("train.schedule", string(t.Schedule), names(ScheduleCosine, ScheduleLinear, ScheduleConstant)...)
	nonNegative("train.warmup_steps", t.WarmupSteps)
	finite("train.min_lr_ratio", t.MinLRRatio, 0, 1, false, false)
	finite("train.max_grad_norm", t.MaxGradNorm, 0, math.MaxFloat64, false, false)
	nonNegative("train.max_bad_steps", t.MaxBadSteps)
	finite("train.center_rewards_coef", t.CenterRewardsCoef, 0, math.MaxFloat64, false, false)
	finite("train.prompt_swap_ties", t.PromptSwapTies, 0, 1, false, false)
	if t.PromptSwapTies > 0 && c.Decomposition.Enabled {
		bad("train.prompt_swap_ties", "is an alternative to decomposition.enabled (tie pairs have no reward gap to decompose): use one or the other")
	}
	oneOf("train.trainable", string(t.Trainable), names(TrainableAll, TrainableHead, TrainableTopLayers)...)
	nonNegative("train.trainable_top_layers", t.TrainableTopLayers)
	if t.Trainable == TrainableTopLayers && t.TrainableTopLayers < 1 {
		bad("train.trainable_top_layers", "must be at least 1 when train.trainable is top_layers")
	}

	d := c.Decomposition
	if d.Enabled {
		positive("decomposition.every_steps", d.EverySteps)
	} else {
		nonNegative("decomposition.every_steps", d.EverySteps)
	}
	nonNegative("decomposition.warmup_steps", d.WarmupSteps)
	positive("decomposition.samples", d.Samples)
	atMost("decomposition.samples", d.Samples, 1024, "prompts drawn per pair; the paper uses 8")
	atMost("decomposition.batch_size", d.BatchSize, 1<<16, "sequences per scoring pass")
	atMost("decomposition.pool_size", d.PoolSize, 1<<28, "pairs")
	nonNegative("decomposition.pool_size", d.PoolSize)
	nonNegative("decomposition.share_prompts", d.SharePrompts)
	atMost("decomposition.share_prompts", d.SharePrompts, 1<<20, "pairs per shared draw of prompts")
	oneOf("decomposition.weights", string(d.Weights), names(WeightsUniform, WeightsPolicy)...)
	if d.Weights == WeightsPolicy && strings.TrimSpace(d.PolicyModel) == "" {
		bad("decomposition.policy_model", "must name a causal LM folder when decomposition.weights is policy")
	}
	if d.Weights == WeightsPolicy && d.PolicyModel == ToyPolicy && !strings.HasPrefix(c.Data.Train, "toy:") {
		bad("decomposition.policy_model", "%s is the toy tasks' built-in policy: data.train must be a toy: task", ToyPolicy)
	}
	finite("decomposition.policy_temperature", d.PolicyTau, 0, math.MaxFloat64, false, false)
	oneOf("decomposition.strategy", string(d.Strategy), names(StrategyLowestFraction, StrategyThreshold, StrategySoftmax)...)
	finite("decomposition.rho", d.Rho, 0, 1, true, false)
	finite("decomposition.threshold", d.Threshold, -math.MaxFloat64, math.MaxFloat64, false, false)
	finite("decomposition.temperature", d.Temperature, 0, math.MaxFloat64, true, false)
	finite("decomposition.tol", d.Tol, 0, 1, true, false)
	positive("decomposition.batch_size", d.BatchSize)

	nonNegative("eval.every", c.Eval.Every)
	positive("eval.batch_size", c.Eval.BatchSize)
	atMost("eval.batch_size", c.Eval.BatchSize, 1<<16, "pairs per scoring pass")
	nonNegative("checkpoint.every", c.Checkpoint.Every)
	positive("checkpoint.keep", c.Checkpoint.Keep)

	nonNegative("train.lora_rank", c.Train.LoRARank)
	atMost("train.lora_rank", c.Train.LoRARank, 1<<16, "adapter rank")
	if c.Train.LoRARank > 0 {
		finite("train.lora_alpha", c.Train.LoRAAlpha, 0, math.MaxFloat32, true, false)
		if len(c.Train.LoRATargets) == 0 {
			bad("train.lora_targets", "must name at least one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj")
		}
		for _, t := range c.Train.LoRATargets {
			oneOf("train.lora_targets", t, "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
		}
		if c.Train.Trainable != TrainableAll {
			bad("train.trainable", "must be all with LoRA (lora_rank %d): the adapters and the score head are what trains, got %q", c.Train.LoRARank, c.Train.Trainable)
		}
	}
	oneOf("distributed.backend", c.Distributed.Backend, "auto", "gloo", "nccl")
	finite("distributed.timeout_s", c.Distributed.TimeoutS, 0, 7*24*3600, true, false)
	finite("distributed.bucket_mb", c.Distributed.BucketMB, 0, 1<<20, true, false)
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// first returns the first FieldError of err, for tests.
func first(err error) *FieldError {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return nil
}
