package trainer

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"

	"prism/configs"
	"prism/data"
	"prism/data/encode"
	"prism/decomposition"
	"prism/internal/torch"
	"prism/models"
	"prism/trainer/checkpoint"
)

// setup loads the checkpoint when resuming, the data, the model, its
// optimizer and the policy.
func (r *run) setup() error {
	c := r.cfg
	if b := c.Train.BatchSize; b < r.world() {
		return fmt.Errorf("train.batch_size is %d, fewer pairs than the %d ranks: every rank needs a share of each batch", b, r.world())
	}
	y, err := c.YAML()
	if err != nil {
		return err
	}
	r.state = checkpoint.State{Format: checkpoint.Format, DataSeed: uint64(c.Run.Seed), Config: string(y), FirstTagShare: -1}
	if r.lead() {
		if err := r.findResume(); err != nil {
			return err
		}
		if err := r.openMetrics(); err != nil {
			return err
		}
	}
	if err := r.loadData(); err != nil {
		return err
	}
	if err := r.loadModel(); err != nil {
		return err
	}
	if d := c.Decomposition; d.Weights == configs.WeightsPolicy && d.PolicyModel == configs.ToyPolicy {
		if r.source.Kind != configs.SourceToy {
			return fmt.Errorf("decomposition.policy_model: %s is the toy tasks' policy; data.train is not a toy task", configs.ToyPolicy)
		}
		r.toyPolicy = data.ToyPolicy(r.model.Config.VocabSize)
	} else if d.Weights == configs.WeightsPolicy {
		if r.policy, err = models.LoadCausalLM(d.PolicyModel, r.device); err != nil {
			return fmt.Errorf("decomposition.policy_model: %w", err)
		}
		if err := r.policy.SetCompute(r.compute); err != nil {
			return err
		}
		if r.policy.Config().VocabSize != r.model.Config.VocabSize {
			return fmt.Errorf("decomposition.policy_model %s has a vocabulary of %d, the reward model %d", d.PolicyModel, r.policy.Config().VocabSize, r.model.Config.VocabSize)
		}
	}
	return nil
}

// findResume finds the checkpoint to resume (lead rank), refuses one made
// under a configuration that would give another run, and trims
// metrics.jsonl back to it.
func (r *run) findResume() error {
	if r.opt.Resume == "" {
		return nil
	}
	dir, st, err := checkpoint.Find(r.cfg.Run.Dir, r.opt.Resume, r.log.Warn)
	if err != nil {
		return err
	}
	if st != nil {
		saved, err := configs.Parse([]byte(st.Config))
		if err != nil {
			return fmt.Errorf("cannot resume from %s: its configuration: %w", dir, err)
		}
		refused, allowed := configs.ResumeChanges(saved, r.cfg)
		if err := configs.ResumeError(refused); err != nil {
			return fmt.Errorf("cannot resume from %s: %w", dir, err)
		}
		for _, ch := range allowed {
			r.log.Warn("resuming with a changed setting: the run will not match an uninterrupted one", "change", ch.String())
		}
		r.resumeDir, r.state = dir, *st
		r.resumed = true
	}
	return r.trimMetrics(r.resumed)
}

// loadModel builds the model (from the checkpoint, model.path or a preset
// with random weights), chooses what trains and restores the optimizer.
func (r *run) loadModel() (err error) {
	c := r.cfg
	initRNG := rand.New(rand.NewPCG(uint64(c.Run.Seed), 0x1417))
	var info *models.LoadInfo
	switch {
	case r.resumed:
		r.model, info, err = models.Load(filepath.Join(r.resumeDir, checkpoint.ModelDir), r.device, initRNG)
		if err == nil && info.NewHead {
			// Every checkpoint saves the head; a new random one would
			// silently restart the reward from scratch.
			return fmt.Errorf("checkpoint %s: %s has no score.weight (the reward head), so it cannot be resumed", r.resumeDir, filepath.Join(r.resumeDir, checkpoint.ModelDir))
		}
		if err == nil {
			if d := r.model.Config.ShapeDiff(r.spec.model); d != "" {
				return fmt.Errorf("checkpoint %s: its model has %s as the run's model (%s) has: it is not this run's model", r.resumeDir, d, r.modelSource())
			}
		}
	case c.Model.Path != "":
		r.model, info, err = models.LoadWith(c.Model.Path, r.device, initRNG, models.LoadOptions{AllowPickle: c.Model.AllowPickle})
		if err == nil {
			r.model.Config.PadTokenID = r.spec.model.PadTokenID // model.pad_token_id, resolved
		}
		if err == nil && info.NewHead {
			r.log.Info("the checkpoint has no reward head; starting a new one", "model", c.Model.Path)
		}
	default:
		r.model, err = models.FromValues(r.spec.model, models.RandomInit(r.spec.model, initRNG), r.device)
	}
	if err != nil {
		return err
	}
	if err := r.model.SetCompute(r.compute); err != nil {
		return err
	}
	if c.Train.LoRARank > 0 {
		err = r.enableLoRA()
	} else {
		err = r.selectTrainable()
	}
	if err != nil {
		return err
	}
	if r.adam, err = models.NewAdamW(r.trained, c.Train.AdamBeta1, c.Train.AdamBeta2, c.Train.AdamEps, c.Train.WeightDecay); err != nil {
		return err
	}
	if !r.resumed {
		return nil
	}
	st, err := checkpoint.ReadOptimizer(r.resumeDir)
	if err != nil {
		return fmt.Errorf("%s: %w", r.resumeDir, err)
	}
	if err := r.adam.SetState(st); err != nil {
		return fmt.Errorf("%s: %w", filepath.Join(r.resumeDir, checkpoint.OptimizerFile), err)
	}
	r.adam.Step = r.state.AdamStep()
	r.log.Info("resumed", "checkpoint", r.resumeDir, "step", r.state.Step)
	return nil
}

// selectTrainable freezes what train.trainable does not train.
func (r *run) selectTrainable() error {
	for _, p := range r.model.Params {
		if r.trains(p.Name) {
			r.trained = append(r.trained, p)
		} else if err := p.SetTrainable(false); err != nil {
			return err
		}
	}
	return nil
}

// enableLoRA attaches the configured adapters (read back from the
// checkpoint when resuming) and trains them and the score head only.
func (r *run) enableLoRA() error {
	t := r.cfg.Train
	o := models.LoRAOptions{Rank: t.LoRARank, Alpha: t.LoRAAlpha, Targets: t.LoRATargets}
	if err := r.model.EnableLoRA(o, rand.New(rand.NewPCG(uint64(r.cfg.Run.Seed), 0x10a))); err != nil {
		return fmt.Errorf("train.lora_rank: %w", err)
	}
	if r.resumed {
		if err := r.model.ReadAdapter(filepath.Join(r.resumeDir, checkpoint.ModelDir)); err != nil {
			return fmt.Errorf("checkpoint %s: %w", r.resumeDir, err)
		}
	}
	r.trained = append(append([]*models.Param{}, r.model.LoRA()...), r.model.Param("score.weight"))
	return nil
}

// loadData reads or generates the pairs and splits and fits them.
func (r *run) loadData() error {
	c := r.cfg.Data
	vocab := r.spec.model.VocabSize
	var pairs []data.Pair
	var err error
	switch src := r.source; src.Kind {
	case configs.SourceSynthetic:
		pairs, err = data.Synthetic(c.SyntheticPairs, c.SyntheticMinLength, c.SyntheticMaxLength, vocab, uint64(r.cfg.Run.Seed))
	case configs.SourceToy:
		pairs, r.test, err = data.Toy(src.Task, c.SyntheticPairs, vocab, uint64(r.cfg.Run.Seed))
	default:
		pairs, err = r.readPairs(src.Path, vocab)
	}
	if err != nil {
		return err
	}
	if c.Eval != "" {
		r.train = pairs
		if r.eval, err = r.readPairs(c.Eval, vocab); err != nil {
			return err
		}
	} else {
		r.train, r.eval = data.Split(pairs, c.EvalFraction, uint64(r.cfg.Run.Seed))
	}
	if f := r.cfg.Train.PromptSwapTies; f > 0 {
		n := len(r.train)
		if r.train, err = data.SwapTies(r.train, f, uint64(r.cfg.Run.Seed)); err != nil {
			return fmt.Errorf("train.prompt_swap_ties: %w", err)
		}
		r.log.Info("prompt-swapped tie pairs added", "pairs", len(r.train)-n, "fraction", f)
	}
	var dropped, truncated, ed, et int
	r.train, dropped, truncated = data.Fit(r.train, c.MaxLength, data.Truncation(c.Truncation))
	heldOut := len(r.eval)
	r.eval, ed, et = data.Fit(r.eval, c.MaxLength, data.Truncation(c.Truncation))
	if heldOut > 0 && len(r.eval) == 0 {
		// Evaluating nothing would report a model measured on no pair.
		from := "the held-out split of " + c.Train
		if c.Eval != "" {
			from = c.Eval
		}
		return fmt.Errorf("%s: no evaluation pair is left after the length limit: all %d were over data.max_length = %d (raise it, use data.truncation: left, or set data.eval_fraction: 0 and no data.eval to train without evaluation)", from, heldOut, c.MaxLength)
	}
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

// start builds the sampler and schedule from the run state (after every
// rank has rank 0's).
func (r *run) start() error {
	c := r.cfg
	r.sampler = decomposition.NewPrioritySampler(len(r.train), r.state.DataSeed, priorityOptions(c.Decomposition))
	if err := r.sampler.Restore(r.state.SamplerState); err != nil {
		return fmt.Errorf("%s: %w", r.resumeDir, err)
	}
	r.prompts = decomposition.PromptPool(r.train)
	r.sched = Schedule{Base: c.Train.LearningRate, Warmup: c.Train.WarmupSteps, Total: c.Train.TotalSteps(len(r.train)),
		Kind: c.Train.Schedule, MinRatio: c.Train.MinLRRatio}
	var trainedN int64
	for _, p := range r.trained {
		trainedN += p.Numel()
	}
	r.log.Info("model", "shape", r.model.Config.ModelType, "params", r.model.NumParams(), "trained_params", trainedN, "dtype", r.dtype.String(), "device", torch.DeviceName(r.device), "attention", r.compute.Attention, "precision", r.compute.Precision, "ranks", r.world())
	return nil
}

// modelSource names where the run's model comes from, for messages.
func (r *run) modelSource() string {
	if p := r.cfg.Model.Path; p != "" {
		return filepath.Join(p, "config.json")
	}
	return "model.preset " + r.cfg.Model.Preset
}
