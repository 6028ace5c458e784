package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"prism/configs"
	"prism/data"
	"prism/decomposition"
	"prism/internal/fsutil"
	"prism/internal/tensorboard"
	"prism/internal/torch"
	"prism/models"
	"prism/trainer/checkpoint"
)

// run is one training run in progress.
type run struct {
	*spec
	cfg  *configs.Config
	opt  Options
	comm torch.Comm
	log  *slog.Logger

	// What trains: the model, the parameters the optimizer updates, and
	// the policy of the decomposition's importance weights.
	model   *models.RewardModel
	trained []*models.Param
	adam    *models.AdamW
	sched   Schedule
	policy  *models.CausalLM
	// toyPolicy is the toy tasks' built-in policy (policy_model: toy).
	toyPolicy decomposition.LogLikFunc

	// The data: training pairs, held-out pairs, a toy task's
	// shortcut-breaking split, and the prompts the decomposition draws.
	train, eval, test []data.Pair
	prompts           [][]int64
	sampler           *decomposition.PrioritySampler

	state    checkpoint.State
	out      runFolder
	progress *progress
	// poisoned marks the current step for Options.FailNonFinite.
	poisoned bool
	// resumed is set when the run continues from a checkpoint, whose
	// metrics.jsonl already holds the data records; resumeDir is that
	// checkpoint.
	resumed   bool
	resumeDir string
}

// runFolder is what the lead rank writes as the run goes.
type runFolder struct {
	metrics *os.File
	closers []io.Closer
	// metricsErr is the first failure to write a metrics row; it stops
	// the run (rows are never dropped in silence).
	metricsErr error
	// tb writes the metrics as TensorBoard scalars (run.tensorboard);
	// after a failure it is dropped with a warning.
	tb *tensorboard.Writer
	// unlock releases the run folder's lock, last.
	unlock func()
	// fresh are the run files this start made in a folder that was
	// already there: a start that fails before its first checkpoint
	// removes them again (removeUnstarted removes a folder it made).
	fresh []string
}

// LockFile is the run folder's lock: held by the one process that writes
// the folder, for the whole run.
const LockFile = ".prism.lock"

// world is the number of ranks.
func (r *run) world() int { return r.comm.World() }

// lead says whether this process writes the run folder: the only process,
// or rank 0 of a group.
func (r *run) lead() bool { return r.comm.Rank() == 0 }

// openRunDir prepares the run folder, refusing to start a new run over an
// old one's checkpoints.
func (r *run) openRunDir() error {
	dir := r.cfg.Run.Dir
	if !r.lead() {
		r.log = r.opt.Logger.With("rank", r.comm.Rank())
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("run folder %s: %w", dir, err)
	}
	// Two runs writing one folder would interleave their metrics and
	// replace each other's checkpoints.
	host, _ := os.Hostname()
	owner := fmt.Sprintf("prism pid %d on %s, since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	unlock, err := fsutil.Lock(filepath.Join(dir, LockFile), owner)
	if err != nil {
		if errors.Is(err, fsutil.ErrLocked) {
			return fmt.Errorf("run folder %s is %w: one run per folder (wait for it to end, or choose another run.dir)", dir, err)
		}
		return fmt.Errorf("run folder %s: %w", dir, err)
	}
	r.out.unlock = unlock
	for _, name := range []string{"config.yaml", "run.log", "metrics.jsonl"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, fs.ErrNotExist) {
			r.out.fresh = append(r.out.fresh, filepath.Join(dir, name))
		}
	}
	probe := filepath.Join(dir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		return fmt.Errorf("run folder %s is not writable: %w", dir, err)
	}
	os.Remove(probe)
	if r.opt.Resume == "" {
		cks, err := checkpoint.List(dir)
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
	r.out.closers = append(r.out.closers, logf)
	y, err := r.cfg.YAML()
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "config.yaml"), y)
}

// openMetrics opens metrics.jsonl for appending (lead rank).
func (r *run) openMetrics() error {
	mf, err := os.OpenFile(filepath.Join(r.cfg.Run.Dir, "metrics.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.out.metrics = mf
	if !r.cfg.Run.TensorBoard {
		return nil
	}
	dir := filepath.Join(r.cfg.Run.Dir, "tensorboard")
	_, statErr := os.Lstat(dir)
	tb, err := tensorboard.Create(dir, time.Now())
	if err != nil {
		return fmt.Errorf("run.tensorboard: %w", err)
	}
	r.out.tb = tb
	// A start that fails before its first checkpoint takes them away.
	r.out.fresh = append(r.out.fresh, tb.Path())
	if errors.Is(statErr, fs.ErrNotExist) {
		r.out.fresh = append(r.out.fresh, dir)
	}
	return nil
}

// writeScalars writes a metrics row's numbers as TensorBoard scalars
// tagged kind/key, at the row's step (rows without one are skipped).
func (r *run) writeScalars(m map[string]any) {
	step, ok := m["step"].(int)
	if r.out.tb == nil || !ok {
		return
	}
	kind, _ := m["kind"].(string)
	values := map[string]float64{}
	for k, v := range m {
		if k == "step" || k == "kind" {
			continue
		}
		switch x := v.(type) {
		case float64:
			values[kind+"/"+k] = x
		case float32:
			values[kind+"/"+k] = float64(x)
		case int:
			values[kind+"/"+k] = float64(x)
		case int64:
			values[kind+"/"+k] = float64(x)
		}
	}
	if err := r.out.tb.Scalars(int64(step), time.Now(), values); err != nil {
		r.log.Warn("TensorBoard events: writing stopped (metrics.jsonl goes on)", "error", err)
		r.out.tb.Close()
		r.out.tb = nil
	}
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
	if r.out.metrics != nil {
		r.out.metrics.Close()
	}
	if r.out.tb != nil {
		r.out.tb.Close()
	}
	for _, c := range r.out.closers {
		c.Close()
	}
	if r.out.unlock != nil {
		r.out.unlock()
		r.out.unlock = nil
	}
}

// writeMetric appends a row to metrics.jsonl (lead rank; a no-op on the
// others and after a failed write).
func (r *run) writeMetric(m map[string]any) {
	if r.out.metrics == nil || r.out.metricsErr != nil {
		return
	}
	b, err := json.Marshal(finiteOrNull(m))
	if err == nil {
		_, err = r.out.metrics.Write(append(b, '\n'))
	}
	if err != nil {
		r.out.metricsErr = fmt.Errorf("metrics.jsonl: a %v row could not be written: %w", m["kind"], err)
		r.log.Error("writing metrics", "error", r.out.metricsErr)
		return
	}
	r.writeScalars(m)
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
	return trimMetricsToStep(path, r.state.Step)
}

// trimMetricsToStep drops the lines past step: checkpoints from before
// metrics_bytes.
func trimMetricsToStep(path string, step int) error {
	b, err := fsutil.ReadFile(path, fsutil.CapState)
	if err != nil {
		return err
	}
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

// tokenizerFiles are the tokenizer's files to ship with the saved model,
// when the run read text through a tokenizer.
func (r *run) tokenizerFiles() map[string][]byte {
	dir := r.tokenizerDir()
	if dir == "" {
		return nil
	}
	out := map[string][]byte{}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if b, err := fsutil.ReadFile(filepath.Join(dir, name), fsutil.CapTokenizer); err == nil {
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

// removeFresh removes the run files a failed start made in a run folder
// that was there before it, unless the start got as far as a checkpoint
// or a model (then the files belong to a run that can be resumed).
func (r *run) removeFresh() {
	dir := r.cfg.Run.Dir
	for _, kept := range []string{checkpoint.Dir, checkpoint.ModelDir} {
		if _, err := os.Lstat(filepath.Join(dir, kept)); err == nil {
			return
		}
	}
	for _, p := range r.out.fresh {
		os.Remove(p)
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
	for _, kept := range []string{checkpoint.Dir, checkpoint.ModelDir} {
		if _, err := os.Lstat(filepath.Join(dir, kept)); err == nil {
			return
		}
	}
	os.RemoveAll(created)
}
