package trainer

import (
	"errors"
	"fmt"
	"path/filepath"
	"prism/trainer/checkpoint"

	"prism/internal/torch"
	"prism/models"
)

// ErrNonFinite stops a run after more than train.max_bad_steps non-finite
// steps in a row.
var ErrNonFinite = errors.New("training diverged")

// countBad tracks non-finite steps in a row and stops the run, with a
// checkpoint of the last good state, after more than train.max_bad_steps.
// Skipped steps leave weights and optimizer state untouched, so the state
// now is the state after the last good step.
func (r *run) countBad(s StepInfo) error {
	if !s.Skipped {
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
		ErrNonFinite, r.state.FirstBad, r.state.Step, r.state.BadRun, limit, r.state.FirstBad-1, filepath.Join(r.cfg.Run.Dir, checkpoint.Dir))
}

// checkpoint has rank 0 write a checkpoint while the others wait.
func (r *run) checkpoint() error {
	var err error
	if r.lead() {
		if err = r.out.metricsErr; err == nil {
			err = r.writeCheckpoint()
		}
	}
	return r.agree("writing the checkpoint", err)
}

func (r *run) writeCheckpoint() error {
	fi, err := r.out.metrics.Stat()
	if err != nil {
		return err
	}
	r.state.MetricsBytes = fi.Size()
	opt, err := r.adam.State()
	if err != nil {
		return err
	}
	n := r.adam.Step
	r.state.OptimizerStep = &n
	r.state.Device = torch.DeviceName(r.device)
	dir, err := checkpoint.Save(r.cfg.Run.Dir, &r.state, r.writeModelFiles, opt, r.cfg.Checkpoint.Keep)
	if err != nil {
		return err
	}
	r.log.Debug("checkpoint", "dir", dir)
	return nil
}

// writeModelFiles writes a checkpoint's model folder: the weights as a
// Hugging Face folder, and with LoRA the adapters.
func (r *run) writeModelFiles(dir string) ([]string, error) {
	weights, err := r.model.Values()
	if err != nil {
		return nil, err
	}
	if err := models.WriteFolder(dir, r.model.Config, weights, nil); err != nil {
		return nil, err
	}
	names := []string{"config.json", "model.safetensors"}
	if r.model.LoRAOptions().Rank > 0 {
		if err := r.model.WriteAdapter(dir, r.baseModelName()); err != nil {
			return nil, err
		}
		names = append(names, models.AdapterFile, "adapter_config.json")
	}
	return names, nil
}
