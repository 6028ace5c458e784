// Command chaos is prism's crash test for resuming training (make chaos).
//
// For each variant (a tiny CPU experiment embedded here, vanilla and
// prioritised training) it trains once without interruption, then trains
// the same experiment in another folder while SIGKILLing the trainer at
// random moments, restarting it with --resume auto after each kill until
// the run completes. The timed kills are spread over the reference run's
// timeline. Others are aimed at checkpoint writes, and the last one at the
// write of the final model: the test watches the run folder (inotify on
// Linux) for the trainer's temporary folder and kills as it appears or a
// random number of file events later, and counts the kill as landing
// mid-write only if that folder is still there once the process is dead.
// It then checks that
//
//   - every restart resumed from the newest checkpoint that verifies
//     against its manifest (verified here, independently of the trainer
//     and before the restart), so a half-written checkpoint is never
//     loaded, and refused only checkpoints that do not verify;
//   - the model the interrupted run saved equals the reference's bit for
//     bit, and so do its checkpoints, decomposition tables and plots and
//     its metrics (timings aside);
//   - no temporary file or folder is left in the run folder.
//
// It prints a summary, writes it as JSON (-summary) and exits 1 if any
// check fails (2 if the test itself cannot run). The kill schedule comes from -seed, which is printed; the
// moments also depend on timing, so a seed replays the plan, not every
// kill to the microsecond. Logs of every start are kept under -out.
//
// Usage:
//
//	chaos [-prism bin/prism] [-out runs/chaos] [-seed N] [-kills 10]
//	      [-mid-checkpoint 3] [-kill-save] [-variants vanilla,prioritised]
//	      [-threads 1] [-timeout 20m] [-summary FILE]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ok, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

// summary is the JSON report.
type summary struct {
	Seed               uint64           `json:"seed"`
	Prism              string           `json:"prism"`
	Threads            int              `json:"threads"`
	Kills              int              `json:"kills"`
	KillsMidCheckpoint int              `json:"kills_mid_checkpoint"`
	KillsMidSave       int              `json:"kills_mid_save"`
	KillsSurvived      int              `json:"kills_survived"`
	Restarts           int              `json:"restarts"`
	Resumes            int              `json:"resumes"`
	WrongLoads         int              `json:"wrong_loads"`
	FinalWeightsEqual  bool             `json:"final_weights_equal"`
	Passed             bool             `json:"passed"`
	Seconds            float64          `json:"seconds"`
	Variants           []*variantResult `json:"variants"`
}

func run() (bool, error) {
	t := &tester{}
	var (
		seed        uint64
		variants    string
		summaryPath string
		timeout     time.Duration
	)
	flag.StringVar(&t.prism, "prism", filepath.Join("bin", "prism"), "the prism binary under test")
	flag.StringVar(&t.out, "out", filepath.Join("runs", "chaos"), "folder for the runs and logs (each variant's subfolder is emptied first)")
	flag.StringVar(&summaryPath, "summary", "", "where to write the JSON summary (default OUT/summary.json)")
	flag.Uint64Var(&seed, "seed", 0, "seed of the kill schedule (0: a new one, printed)")
	flag.IntVar(&t.kills, "kills", 10, "SIGKILLs per variant")
	flag.IntVar(&t.midMin, "mid-checkpoint", 3, "how many of the kills must land while a checkpoint is being written")
	flag.BoolVar(&t.killSave, "kill-save", true, "aim the last kill at the write of the final model")
	flag.StringVar(&variants, "variants", strings.Join(variantNames(), ","), "the experiments to run, comma-separated")
	flag.IntVar(&t.threads, "threads", 1, "libtorch threads of every trainer run (the same in all, for the same arithmetic)")
	flag.DurationVar(&timeout, "timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	if flag.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if t.kills < 1 || t.midMin < 0 || t.midMin > t.kills {
		return false, fmt.Errorf("-kills %d -mid-checkpoint %d: want 1 or more kills, of which 0 to all mid-checkpoint", t.kills, t.midMin)
	}
	if _, err := os.Stat(t.prism); err != nil {
		return false, fmt.Errorf("the prism binary: %w (make build makes bin/prism)", err)
	}
	var vs []*variant
	for _, name := range strings.Split(variants, ",") {
		v, err := loadVariant(strings.TrimSpace(name))
		if err != nil {
			return false, err
		}
		vs = append(vs, v)
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	if summaryPath == "" {
		summaryPath = filepath.Join(t.out, "summary.json")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	t.say = func(format string, args ...any) {
		fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	t.say("seed %d (replay the schedule with -seed %d); %s, %d thread(s)", seed, seed, t.prism, t.threads)

	s := &summary{Seed: seed, Prism: t.prism, Threads: t.threads, FinalWeightsEqual: true, Passed: true}
	for _, v := range vs {
		// Each variant draws from its own stream, so choosing variants
		// does not change another's schedule.
		h := fnv.New64a()
		h.Write([]byte(v.Name))
		res, err := t.runVariant(ctx, v, rand.New(rand.NewPCG(seed, h.Sum64())))
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, fmt.Errorf("%s: stopped: %w", v.Name, context.Cause(ctx))
		}
		if err != nil {
			return false, err
		}
		s.Variants = append(s.Variants, res)
		s.Kills += res.KillCount
		s.KillsMidCheckpoint += res.KillsMidCheckpoint
		s.KillsMidSave += res.KillsMidSave
		s.KillsSurvived += res.KillsSurvived
		s.Restarts += res.Restarts
		s.Resumes += res.Resumes
		s.WrongLoads += res.WrongLoads
		s.FinalWeightsEqual = s.FinalWeightsEqual && res.FinalWeightsEqual
		s.Passed = s.Passed && res.Passed
	}
	s.Seconds = time.Since(start).Seconds()

	printSummary(s)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(summaryPath), 0o755); err != nil {
		return false, err
	}
	if err := os.WriteFile(summaryPath, append(b, '\n'), 0o644); err != nil {
		return false, err
	}
	fmt.Printf("summary written to %s\n", summaryPath)
	return s.Passed, nil
}

func printSummary(s *summary) {
	yes := func(b bool, y, n string) string {
		if b {
			return y
		}
		return n
	}
	fmt.Printf("\nchaos summary (seed %d, %.0fs)\n", s.Seed, s.Seconds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "variant\tkills\tmid-checkpoint\tmid-save\trestarts\tresumed\tfresh\tfinal weights\tother outputs\tleftovers\tresult")
	for _, v := range s.Variants {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\n", v.Name, v.KillCount, v.KillsMidCheckpoint, v.KillsMidSave, v.Restarts, v.Resumes, v.FreshStarts,
			yes(v.FinalWeightsEqual, "equal", "DIFFER"), yes(len(v.Differences) == 0, "equal", fmt.Sprintf("%d DIFFER", len(v.Differences))),
			len(v.Leftovers), yes(v.Passed, "pass", "FAIL"))
	}
	tw.Flush()
	fmt.Printf("kills survived: %d of %d (%d mid-checkpoint, %d mid-save)\n", s.KillsSurvived, s.Kills, s.KillsMidCheckpoint, s.KillsMidSave)
	// A start killed during start-up, before it logs what it resumed from,
	// is not counted in Resumes; the next start's check covers its kill.
	fmt.Printf("restarts with --resume auto: %d; of those seen resuming (the rest were killed during start-up), from the newest checkpoint that verifies: %d; loaded a wrong or half-written checkpoint: %d\n", s.Restarts, s.Resumes, s.WrongLoads)
	fmt.Printf("final weights bit-identical to the uninterrupted run: %s\n", yes(s.FinalWeightsEqual, "yes", "NO"))
	for _, v := range s.Variants {
		for _, f := range v.Failures {
			fmt.Printf("%s: FAIL: %s\n", v.Name, f)
		}
		for _, d := range v.Differences {
			fmt.Printf("%s: differs: %s\n", v.Name, d)
		}
		for _, l := range v.Leftovers {
			fmt.Printf("%s: left behind: %s\n", v.Name, l)
		}
	}
	fmt.Println(yes(s.Passed, "PASS", "FAIL"))
}
