package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The experiments, one a variant. Each names no run.dir: the test sets it.
//
// A variant may have NAME.env beside it: KEY=VALUE lines set in its
// trainers' environment (the failpoints of `prism train`).
//
//go:embed *.yaml *.env
var experiments embed.FS

type variant struct {
	Name  string
	YAML  []byte
	Steps int // train.steps
	Every int // checkpoint.every
	Env   []string
}

func variantNames() []string {
	names, _ := fs.Glob(experiments, "*.yaml")
	for i, n := range names {
		names[i] = strings.TrimSuffix(n, ".yaml")
	}
	return names
}

func loadVariant(name string) (*variant, error) {
	b, err := experiments.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no variant %q (there are %s)", name, strings.Join(variantNames(), ", "))
	}
	var c struct {
		Train struct {
			Steps int `yaml:"steps"`
		} `yaml:"train"`
		Checkpoint struct {
			Every int `yaml:"every"`
		} `yaml:"checkpoint"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("variant %s: %w", name, err)
	}
	// The kill schedule needs both known in advance.
	if c.Train.Steps <= 0 || c.Checkpoint.Every <= 0 {
		return nil, fmt.Errorf("variant %s: train.steps and checkpoint.every must be set", name)
	}
	v := &variant{Name: name, YAML: b, Steps: c.Train.Steps, Every: c.Checkpoint.Every}
	if env, err := experiments.ReadFile(name + ".env"); err == nil {
		for _, l := range strings.Split(string(env), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				if !strings.Contains(l, "=") {
					return nil, fmt.Errorf("variant %s: %s.env: want KEY=VALUE, got %q", name, name, l)
				}
				v.Env = append(v.Env, l)
			}
		}
	}
	return v, nil
}

// tester runs the crash test of one variant at a time.
type tester struct {
	prism    string
	threads  int
	out      string
	kills    int  // per variant
	midMin   int  // of which at least this many mid-checkpoint
	killSave bool // and the last one aimed at the final model's write
	say      func(format string, args ...any)
}

// variantResult is the outcome for one variant, as the JSON summary gives it.
type variantResult struct {
	Name               string        `json:"name"`
	Steps              int           `json:"steps"`
	CheckpointEvery    int           `json:"checkpoint_every"`
	ReferenceSeconds   float64       `json:"reference_seconds"`
	ChaosSeconds       float64       `json:"chaos_seconds"`
	Attempts           int           `json:"attempts"`
	Kills              []*killRecord `json:"kills"`
	KillCount          int           `json:"kill_count"`
	KillsMidCheckpoint int           `json:"kills_mid_checkpoint"`
	KillsMidSave       int           `json:"kills_mid_save"`
	KillsSurvived      int           `json:"kills_survived"`
	// Restarts are the starts with --resume auto; of them, Resumes loaded
	// the checkpoint they had to, FreshStarts rightly found none, and the
	// others were killed before they had loaded anything.
	Restarts    int `json:"restarts"`
	Resumes     int `json:"resumes"`
	FreshStarts int `json:"fresh_starts"`
	// WrongLoads are starts that loaded another checkpoint than the newest
	// that verifies (a half-written one, say), or none when there was one.
	WrongLoads int `json:"wrong_loads"`
	// RefusedCheckpoints are those the trainer skipped as damaged (each
	// confirmed damaged by the test's own check).
	RefusedCheckpoints []string `json:"refused_checkpoints,omitempty"`
	FinalWeightsEqual  bool     `json:"final_weights_equal"`
	ReferenceSHA256    string   `json:"reference_model_sha256"`
	ChaosSHA256        string   `json:"chaos_model_sha256"`
	// Differences lists the outputs that differ from the reference run.
	Differences []string `json:"differences,omitempty"`
	Leftovers   []string `json:"leftovers,omitempty"`
	Failures    []string `json:"failures,omitempty"`
	Passed      bool     `json:"passed"`
}

// killRecord is one SIGKILL and what followed it.
type killRecord struct {
	Attempt       int     `json:"attempt"`
	Plan          string  `json:"plan"` // timed, mid-checkpoint or mid-save
	AfterSeconds  float64 `json:"after_seconds"`
	ResumedAt     int     `json:"resumed_at_step"` // where the killed process had started
	LastStep      int     `json:"last_step"`       // the last step it reported
	Moment        string  `json:"moment"`
	MidCheckpoint bool    `json:"mid_checkpoint"`
	MidSave       bool    `json:"mid_save"`
	Evidence      string  `json:"evidence,omitempty"`
	Restart       string  `json:"restart"`
	Survived      bool    `json:"survived"`
	restartOK     bool
}

func (t *tester) trainArgs(cfg, runDir string, resume bool) []string {
	args := []string{"--threads", strconv.Itoa(t.threads), "train", "--config", cfg,
		"--set", "run.dir=" + runDir, "--set", "run.log_every=1"}
	if resume {
		args = append(args, "--resume", "auto")
	}
	return args
}

// runVariant trains v once without interruption and once with kills, and
// compares. Failures of the trainer under test go into the result; the
// error is for failures of the test itself.
func (t *tester) runVariant(ctx context.Context, v *variant, rng *rand.Rand) (*variantResult, error) {
	dir := filepath.Join(t.out, v.Name)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "experiment.yaml")
	if err := os.WriteFile(cfg, v.YAML, 0o644); err != nil {
		return nil, err
	}
	res := &variantResult{Name: v.Name, Steps: v.Steps, CheckpointEvery: v.Every}

	refDir := filepath.Join(dir, "reference")
	t.say("%s: reference run (%d steps, a checkpoint every %d)", v.Name, v.Steps, v.Every)
	p, err := startTrainer(ctx, t.prism, t.trainArgs(cfg, refDir, false), filepath.Join(dir, "logs", "reference.log"), v.Env)
	if err != nil {
		return nil, err
	}
	<-p.done
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if p.err != nil {
		return nil, fmt.Errorf("%s: the reference run failed (%v):\n%s", v.Name, p.err, p.tail(10))
	}
	refTime := time.Since(p.start)
	res.ReferenceSeconds = refTime.Seconds()
	ref, err := p.steps.timeline(v.Steps, refTime)
	if err != nil {
		return nil, fmt.Errorf("%s: reference run: %w", v.Name, err)
	}
	t.say("%s: reference done in %.1fs", v.Name, refTime.Seconds())

	runDir := filepath.Join(dir, "chaos")
	start := time.Now()
	completed, err := t.chaos(ctx, v, res, rng, ref, cfg, runDir, filepath.Join(dir, "logs"))
	if err != nil {
		return nil, err
	}
	res.ChaosSeconds = time.Since(start).Seconds()
	if completed {
		if err := t.compare(res, refDir, runDir); err != nil {
			return nil, err
		}
	}
	for _, k := range res.Kills {
		k.Survived = k.restartOK && res.FinalWeightsEqual
		if k.Survived {
			res.KillsSurvived++
		}
	}
	res.KillCount = len(res.Kills)
	if res.KillCount < t.kills {
		res.Failures = append(res.Failures, fmt.Sprintf("only %d kills, want %d", res.KillCount, t.kills))
	}
	if res.KillsMidCheckpoint < t.midMin {
		res.Failures = append(res.Failures, fmt.Sprintf("only %d kills landed while a checkpoint was being written, want %d", res.KillsMidCheckpoint, t.midMin))
	}
	res.Passed = len(res.Failures) == 0 && len(res.Differences) == 0 && len(res.Leftovers) == 0 && res.FinalWeightsEqual
	return res, nil
}

// How a kill is aimed.
const (
	planTimed      = "timed"          // at a moment of the reference run's timeline
	planCheckpoint = "mid-checkpoint" // at a checkpoint write
	planSave       = "mid-save"       // at the write of the final model
)

type killPlan struct {
	kind string
	at   time.Duration // planTimed: the moment
}

// planKills spreads the timed kills uniformly over the reference run (up
// to 95% of it, so the interrupted run does not finish first), puts mid
// mid-checkpoint kills at random places among them and, with save, aims
// the last kill at the final model's write.
func planKills(rng *rand.Rand, kills, mid int, save bool, ref *timeline) []killPlan {
	plans := make([]killPlan, kills)
	free := kills
	if save && kills > mid {
		free--
		plans[free].kind = planSave
	}
	for i := range plans[:free] {
		plans[i].kind = planTimed
	}
	for _, i := range rng.Perm(free)[:min(mid, free)] {
		plans[i].kind = planCheckpoint
	}
	var ats []time.Duration
	for _, p := range plans {
		if p.kind == planTimed {
			ats = append(ats, time.Duration(rng.Float64()*0.95*float64(ref.total)))
		}
	}
	slices.Sort(ats)
	for i := range plans {
		if plans[i].kind == planTimed {
			plans[i].at, ats = ats[0], ats[1:]
		}
	}
	return plans
}

// chaos trains v in runDir, killing the trainer t.kills times and
// restarting it with --resume auto after each kill, until it completes
// (completed false: the trainer failed or never completed).
func (t *tester) chaos(ctx context.Context, v *variant, res *variantResult, rng *rand.Rand, ref *timeline, cfg, runDir, logDir string) (completed bool, err error) {
	plans := planKills(rng, t.kills, t.midMin, t.killSave, ref)
	var pending []*killRecord // kills whose restart has not yet been seen
	for attempt := 1; ; attempt++ {
		if attempt > 3*t.kills+10 {
			res.Failures = append(res.Failures, fmt.Sprintf("the run did not complete in %d starts", attempt-1))
			return false, nil
		}
		res.Attempts, res.Restarts = attempt, attempt-1
		// What --resume auto must load, by the test's own check.
		want, invalid, err := newestValid(runDir)
		if err != nil {
			return false, err
		}
		before, err := tempEntries(runDir)
		if err != nil {
			return false, err
		}
		resumeStep := 0
		if want != nil {
			resumeStep = want.Step
		}

		var plan *killPlan
		if n := len(res.Kills); n < t.kills {
			plan = &plans[n]
			// A mid-checkpoint kill that came too late (the write had
			// finished) is made up for by the next timed ones.
			left := 0
			for _, p := range plans[n:] {
				if p.kind != planSave {
					left++
				}
			}
			if plan.kind == planTimed && t.midMin-res.KillsMidCheckpoint >= left {
				plan.kind = planCheckpoint
			}
		}
		var watch *writeWatch
		if plan != nil && plan.kind != planTimed {
			if watch, err = watchWrites(runDir); err != nil {
				return false, err
			}
		}
		logPath := filepath.Join(logDir, fmt.Sprintf("attempt-%02d.log", attempt))
		p, err := startTrainer(ctx, t.prism, t.trainArgs(cfg, runDir, attempt > 1), logPath, v.Env)
		if err != nil {
			if watch != nil {
				watch.Close()
			}
			return false, err
		}
		var target, event string
		switch {
		case plan == nil:
		case plan.kind == planCheckpoint:
			nth := 1 + rng.IntN(min(2, writesLeft(resumeStep, v.Steps, v.Every)))
			target, event = killAimed(p, watch, isCheckpointTemp, nth, rng.IntN(13))
		case plan.kind == planSave:
			target, event = killAimed(p, watch, isModelTemp, 1, rng.IntN(6))
		default:
			t.killTimed(ctx, p, rng, ref, plan.at, resumeStep)
		}
		<-p.done
		if ctx.Err() != nil {
			return false, ctx.Err()
		}

		// Did this start load what it had to?
		tl, err := readTrainerLog(logPath)
		if err != nil {
			return false, err
		}
		outcome, determinate, cerr := checkRestart(tl, want, invalid)
		if cerr != nil {
			res.WrongLoads++
			res.Failures = append(res.Failures, fmt.Sprintf("start %d: %v", attempt, cerr))
			outcome = "FAILED: " + cerr.Error()
		}
		if determinate {
			for _, k := range pending {
				k.Restart, k.restartOK = outcome, cerr == nil
			}
			if len(pending) > 0 {
				t.say("%s:   restart: %s", v.Name, outcome)
			}
			pending = nil
			for _, s := range tl.Skipped {
				if !slices.Contains(res.RefusedCheckpoints, s) {
					res.RefusedCheckpoints = append(res.RefusedCheckpoints, s)
				}
			}
			switch {
			case attempt == 1:
			case cerr != nil:
			case tl.ResumedFrom != "":
				res.Resumes++
			default:
				res.FreshStarts++
			}
		}

		switch {
		case p.killed() && p.killedAt > 0:
			k, err := t.record(p, v, attempt, plan, resumeStep, runDir, before, target, event)
			if err != nil {
				return false, err
			}
			res.Kills = append(res.Kills, k)
			pending = append(pending, k)
			if k.MidCheckpoint {
				res.KillsMidCheckpoint++
			}
			if k.MidSave {
				res.KillsMidSave++
			}
			t.say("%s: kill %d/%d (%s) after %.2fs: %s", v.Name, len(res.Kills), t.kills, k.Plan, k.AfterSeconds, k.Moment)
			if k.Evidence != "" {
				t.say("%s:   evidence: %s", v.Name, k.Evidence)
			}
		case p.err != nil:
			res.Failures = append(res.Failures, fmt.Sprintf("start %d: the trainer failed (%v); %s ends:\n%s", attempt, p.err, logPath, p.tail(5)))
			return false, nil
		case len(res.Kills) >= t.kills:
			t.say("%s: the run completed (start %d)", v.Name, attempt)
			return true, nil
		default:
			// Done before the kill: the next start resumes the finished
			// run (its last checkpoint), which must change nothing.
			t.say("%s: start %d completed the run before its kill; starting again", v.Name, attempt)
		}
	}
}

// killTimed kills the trainer at moment at of the reference run: when it
// has reported the step the reference had reported by then, plus the time
// the reference spent after that step. A moment before the resumed step
// (a mid-checkpoint kill went further) becomes one in the start-up.
func (t *tester) killTimed(ctx context.Context, p *proc, rng *rand.Rand, ref *timeline, at time.Duration, resumeStep int) {
	k := ref.stepAt(at)
	switch {
	case k == 0:
		// In the reference's start-up or first step.
	case k <= resumeStep:
		at = time.Duration(rng.Float64() * float64(ref.at[1]))
		k = 0
	default:
		if !p.steps.waitStep(ctx, k, p.done) {
			return
		}
		at -= ref.at[k]
	}
	if p.sleep(ctx, at) {
		p.kill()
	}
}

// writesLeft is how many checkpoint writes a run resumed at step has
// ahead: one every `every` steps, and the final one.
func writesLeft(step, steps, every int) int {
	n := 1
	for s := step + 1; s < steps; s++ {
		if s%every == 0 {
			n++
		}
	}
	return n
}

// killAimed kills the trainer in the nth write from now into a temporary
// folder that want accepts, after events file events in it. It returns
// that folder and the last event seen.
func killAimed(p *proc, w *writeWatch, want func(rel string) bool, nth, events int) (tmp, event string) {
	defer w.Close()
	type hit struct{ tmp, event string }
	ch := make(chan hit, 1) // buffered: wait may return after we stop listening
	go func() {
		tmp, event, err := w.wait(want, nth, events)
		if err == nil {
			ch <- hit{tmp, event}
		}
	}()
	select {
	case h := <-ch:
		p.kill()
		return h.tmp, h.event
	case <-p.done:
		return "", ""
	}
}

// record describes a kill from the evidence left on disk: the temporary
// files and folders the dead process left (a write it did not finish), and
// the last step it reported.
func (t *tester) record(p *proc, v *variant, attempt int, plan *killPlan, resumeStep int, runDir string, before map[string]bool, target, event string) (*killRecord, error) {
	k := &killRecord{Attempt: attempt, Plan: plan.kind, AfterSeconds: p.killedAt.Seconds(), ResumedAt: resumeStep, LastStep: p.steps.lastStep()}
	after, err := tempEntries(runDir)
	if err != nil {
		return nil, err
	}
	var news []string
	for _, e := range slices.Sorted(maps.Keys(after)) {
		if !before[e] {
			news = append(news, e)
		}
	}
	// A temporary folder is renamed into place when its write ends; if it
	// is still there now that the process is dead, the kill came while it
	// was being written.
	for _, e := range news {
		if !isWriteTemp(e) {
			continue
		}
		what := "writing checkpoint " + strings.TrimPrefix(strings.SplitN(filepath.Base(e), ".tmp-", 2)[0], ".")
		if isModelTemp(e) {
			what, k.MidSave = "saving the final model", true
		} else {
			k.MidCheckpoint = true
		}
		k.Moment = what
		if target != "" && filepath.Join(runDir, e) == target {
			k.Moment += ", after " + event
		}
		entries, _ := os.ReadDir(filepath.Join(runDir, e))
		k.Evidence = fmt.Sprintf("%s (%d entries) is still there after the process died", e, len(entries))
		return k, nil
	}
	if target != "" {
		k.Evidence = fmt.Sprintf("aimed at %s after %s, but the write had finished when the kill landed", filepath.Base(target), event)
	}
	switch {
	case len(news) > 0:
		k.Moment = "writing " + strings.Join(news, ", ")
		if k.Evidence == "" {
			k.Evidence = "left " + strings.Join(news, ", ")
		}
	case k.LastStep == 0:
		k.Moment = "starting up, before its first step"
	case k.LastStep >= v.Steps:
		k.Moment = "after the last step (final checkpoint, evaluation, analysis or save)"
	default:
		k.Moment = fmt.Sprintf("training, after step %d", k.LastStep)
	}
	return k, nil
}

// compare checks the finished run against the reference: the final
// weights, every other deterministic output, and temporary leftovers.
func (t *tester) compare(res *variantResult, refDir, runDir string) error {
	weights := filepath.Join("model", "model.safetensors")
	_, refSum, err := hashFile(filepath.Join(refDir, weights))
	if err != nil {
		return err
	}
	res.ReferenceSHA256 = refSum
	if _, sum, err := hashFile(filepath.Join(runDir, weights)); err == nil {
		res.ChaosSHA256 = sum
	}
	res.FinalWeightsEqual = res.ChaosSHA256 == refSum
	if res.Differences, err = compareRuns(refDir, runDir); err != nil {
		return err
	}
	left, err := tempEntries(runDir)
	if err != nil {
		return err
	}
	res.Leftovers = slices.Sorted(maps.Keys(left))
	refLeft, err := tempEntries(refDir)
	if err != nil {
		return err
	}
	for _, e := range slices.Sorted(maps.Keys(refLeft)) {
		res.Leftovers = append(res.Leftovers, "reference/"+e)
	}
	return nil
}
