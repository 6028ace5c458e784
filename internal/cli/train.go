package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"prism/configs"
	"prism/internal/torch"
	"prism/internal/torch/dist"
	"prism/trainer"
)

// joinFromEnv joins the process group that torchrun's variables describe
// (nil for a single process).
func joinFromEnv(g *globals, cfg *configs.Config) (*dist.Group, error) {
	env, ok, err := dist.FromEnv(os.Getenv)
	if err != nil {
		return nil, fmt.Errorf("distributed launch: %w", err)
	}
	if !ok || env.World == 1 {
		return nil, nil
	}
	// Ranks sharing a machine share its cores unless told otherwise.
	if !g.threadsSet && cfg.Run.Threads == 0 && os.Getenv("PRISM_THREADS") == "" {
		if _, err := torch.Setup(max(1, runtime.NumCPU()/env.LocalWorld)); err != nil {
			return nil, err
		}
	}
	backend := cfg.Distributed.Backend
	if backend == "auto" {
		backend = "gloo" // CPU tensors; NCCL once training runs on CUDA
	}
	if env.Rank != 0 {
		// Rank 0 logs the run; the others speak up for problems only.
		g.logger = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: max(g.level, slog.LevelWarn)}))
	}
	g.logger.Info("joining process group", "rank", env.Rank, "world", env.World, "backend", backend, "master", fmt.Sprintf("%s:%d", env.Addr, env.Port))
	return dist.Join(env, dist.Options{
		Backend:     backend,
		Timeout:     time.Duration(cfg.Distributed.TimeoutS * float64(time.Second)),
		BucketBytes: int64(cfg.Distributed.BucketMB * (1 << 20)),
	})
}

// trainOptions are `prism train`'s flags.
type trainOptions struct {
	config, resume string
	sets           []string
	dryRun         bool
	memoryGiB      float64
	ignoreMemory   bool
	json           bool
}

func newTrainCmd(g *globals) *cobra.Command {
	var o trainOptions
	cmd := &cobra.Command{
		Use:   "train [--config F.yaml]",
		Short: "Train a reward model from an experiment file",
		Long: `Train a reward model as an experiment file describes (see configs/default.yaml
for every key and its default). Keys can be overridden with PRISM_<KEY>
environment variables and --set key=value flags.

Without --config, the embedded defaults run: a tiny Llama on the built-in
synthetic task, in runs/default.

On SIGINT or SIGTERM the current step finishes, a checkpoint is written and
prism exits 0; --resume auto continues from the newest valid checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrain(cmd.Context(), g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.config, "config", "", "experiment YAML file (default: the embedded defaults)")
	cmd.Flags().StringVar(&o.resume, "resume", "", `"auto" (newest valid checkpoint of the run folder) or a checkpoint folder`)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print the resolved plan (model shape, parameters, memory, steps, decomposition cost) and exit; needs config.json, not the weights")
	cmd.Flags().BoolVar(&o.json, "json", false, "with --dry-run: print the plan as JSON, for scripts (memory_total_bytes: the estimate of what the configured run needs)")
	cmd.Flags().Float64Var(&o.memoryGiB, "memory-gib", 0, "check the memory plan against a device of this many GiB (default: this machine's memory)")
	cmd.Flags().BoolVar(&o.ignoreMemory, "ignore-memory-plan", false, "start even when weights, gradients and optimizer state exceed the device's memory")
	cmd.Flags().StringArrayVar(&o.sets, "set", nil, "override a key: --set train.learning_rate=1e-5 (repeatable)")
	return cmd
}

// runTrain is `prism train`.
func runTrain(ctx context.Context, g *globals, o trainOptions, stdout io.Writer) error {
	if o.memoryGiB < 0 || math.IsNaN(o.memoryGiB) || math.IsInf(o.memoryGiB, 0) {
		return fmt.Errorf("--memory-gib %v: want a positive size in GiB (or 0 for this machine's memory)", o.memoryGiB)
	}
	cfg, err := g.loadConfig(o.config, o.sets)
	if err != nil {
		return err
	}
	plan, err := trainer.MakePlan(cfg)
	if err != nil && o.dryRun {
		return err
	}
	if err == nil && o.memoryGiB > 0 {
		plan.SetDevice("a device given by --memory-gib", int64(o.memoryGiB*(1<<30)))
	}
	if o.json && !o.dryRun {
		return errors.New("--json goes with --dry-run")
	}
	if o.dryRun {
		if o.json {
			return writePlanJSON(stdout, plan)
		}
		plan.Write(stdout)
		return nil
	}
	// A run that cannot fit is refused before anything loads; the
	// plan only needs config.json, so failing to make it is left
	// to the run itself to report.
	if err == nil && !o.ignoreMemory {
		if err := checkMemory(g, plan); err != nil {
			return err
		}
	}
	group, err := joinFromEnv(g, cfg)
	if err != nil {
		return err
	}
	opt := trainer.Options{
		Resume:   o.resume,
		Progress: stdout,
		Logger:   g.logger,
	}
	if opt.FailNonFinite, err = failpoint(g); err != nil {
		return err
	}
	if group != nil {
		defer group.Close()
		opt.Comm = group
	}
	res, err := trainer.Run(ctx, cfg, opt)
	if err != nil {
		return err
	}
	if group != nil && group.Rank() != 0 {
		return nil // rank 0 reports
	}
	printTrainResult(stdout, cfg, res)
	return nil
}

// checkMemory refuses a plan whose weights, gradients and optimizer state
// exceed the device's memory, and warns when the whole estimate does.
func checkMemory(g *globals, plan *trainer.Plan) error {
	if err := plan.CheckMemory(); err != nil {
		return fmt.Errorf("%w (--ignore-memory-plan runs it anyway)", err)
	}
	if m := plan.Memory; m.DeviceBytes > 0 && m.Total() > m.DeviceBytes {
		g.logger.Warn("the estimated memory of this run exceeds the device's; lower train.micro_batch_size or data.max_length, or set train.gradient_checkpointing",
			"estimate_gib", float64(m.Total())/(1<<30), "device_gib", float64(m.DeviceBytes)/(1<<30))
	}
	return nil
}

// printTrainResult reports a finished or interrupted run.
func printTrainResult(out io.Writer, cfg *configs.Config, res *trainer.Result) {
	if res.Interrupted {
		fmt.Fprintf(out, "interrupted at step %d; checkpoint written under %s/checkpoints; continue with --resume auto\n", res.Steps, cfg.Run.Dir)
		return
	}
	fmt.Fprintf(out, "trained %d steps; model saved to %s\n", res.Steps, res.ModelDir)
	if res.AdapterDir != "" {
		fmt.Fprintf(out, "LoRA adapters and the score head (PEFT layout) saved to %s; %s has them merged\n", res.AdapterDir, res.ModelDir)
	}
	if res.Eval != nil {
		fmt.Fprintf(out, "held-out: accuracy %.4f  loss %.4f  margin %.4f  (%d pairs)\n", res.Eval.Accuracy, res.Eval.Loss, res.Eval.Margin, res.Eval.Pairs)
	}
}

// failpointEnv makes the listed steps non-finite (comma-separated step
// numbers): the crash test (make chaos) uses it to check that runs which
// skip steps resume exactly.
const failpointEnv = "PRISM_FAILPOINT_NONFINITE_STEPS"

// failpoint reads failpointEnv into trainer.Options.FailNonFinite (nil
// when it is unset).
func failpoint(g *globals) (func(step int) bool, error) {
	spec := os.Getenv(failpointEnv)
	if spec == "" {
		return nil, nil
	}
	steps, err := parseSteps(spec)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", failpointEnv, spec, err)
	}
	g.logger.Warn("failpoint: these steps are made non-finite on purpose (a crash-test setting)", "env", failpointEnv, "steps", spec)
	return func(step int) bool { return steps[step] }, nil
}

// parseSteps reads failpointEnv's comma-separated step numbers.
func parseSteps(spec string) (map[int]bool, error) {
	steps := map[int]bool{}
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("want comma-separated step numbers from 1, got %q", f)
		}
		steps[n] = true
	}
	return steps, nil
}

// writePlanJSON prints the plan for scripts, with the memory the
// configured run needs.
func writePlanJSON(w io.Writer, plan *trainer.Plan) error {
	b, err := json.MarshalIndent(struct {
		*trainer.Plan
		MemoryTotal int64 `json:"memory_total_bytes"`
	}{plan, plan.Memory.Total()}, "", "  ")
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
