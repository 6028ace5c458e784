package experiments

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"prism/configs"
	"prism/internal/torch"
)

func TestMain(m *testing.M) {
	if _, err := torch.Setup(0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// TestCompareSmall runs both arms of a shortened toy experiment for one
// seed and checks the summary and plots; a second call reuses the runs.
func TestCompareSmall(t *testing.T) {
	base := []string{"data.synthetic_pairs=240", "train.epochs=1", "train.batch_size=16",
		"decomposition.warmup_steps=4", "decomposition.every_steps=5", "decomposition.samples=2"}
	out := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opt := Options{ConfigPath: "length-bias.yaml", Seeds: 1, Out: out, Logger: logger, Progress: io.Discard,
		Load: func(extra []string) (*configs.Config, error) {
			return configs.Load(filepath.Join("toy", "length-bias.yaml"), append(append([]string{}, base...), extra...), nil)
		}}
	sum, err := Compare(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Runs) != 2 || sum.Runs[0].Arm != "vanilla" || sum.Runs[1].Arm != "prioritised" {
		t.Fatalf("runs %+v", sum.Runs)
	}
	v, p := sum.Runs[0], sum.Runs[1]
	if v.TagShareBefore != -1 || p.TagShareBefore < 0 || p.TagShareBefore > 1 {
		t.Errorf("tag share before: vanilla %v (want -1: no recompute), prioritised %v", v.TagShareBefore, p.TagShareBefore)
	}
	if v.DecompSeconds != 0 || p.DecompSeconds <= 0 {
		t.Errorf("decomposition seconds: vanilla %v, prioritised %v", v.DecompSeconds, p.DecompSeconds)
	}
	for _, f := range []string{"summary.md", "summary.json", "quadrants-seed-1.png", "seed-1/prioritised/decomposition/step-00000004.csv"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	md := sum.Markdown()
	if !strings.Contains(md, "| vanilla |") || !strings.Contains(md, "| prioritised |") {
		t.Errorf("summary:\n%s", md)
	}
	again, err := Compare(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if again.Runs[1].TestAccuracy != p.TestAccuracy || again.Runs[1].TagShareBefore != p.TagShareBefore {
		t.Errorf("rerun changed the result: %+v then %+v", p, again.Runs[1])
	}
}

func TestPM(t *testing.T) {
	if got := pm([]float64{1, 2, 3}); got != "2.000 ± 1.000" {
		t.Errorf("pm = %q", got)
	}
	if got := pm(nil); got != "n/a" {
		t.Errorf("pm(nil) = %q", got)
	}
}

// TestCompareSweep: a sweep of a decomposition key over two seeds trains
// each vanilla run once (its configuration does not depend on the key),
// tabulates the paired difference per value, draws the difference plot,
// and a rerun after a result file is lost gives the same summary.
func TestCompareSweep(t *testing.T) {
	base := []string{"data.synthetic_pairs=160", "train.epochs=1", "train.batch_size=16",
		"decomposition.warmup_steps=3", "decomposition.every_steps=4", "decomposition.samples=2"}
	out := t.TempDir()
	opt := Options{ConfigPath: "length-bias.yaml", Seeds: 2, Out: out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Progress: io.Discard,
		Sweeps: []Sweep{{Key: "decomposition.rho", Values: []string{"0.25", "0.75"}}},
		Load: func(extra []string) (*configs.Config, error) {
			return configs.Load(filepath.Join("toy", "length-bias.yaml"), append(append([]string{}, base...), extra...), nil)
		}}
	sum, err := Compare(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Runs) != 12 || len(sum.Sweeps) != 1 || len(sum.Sweeps[0].Settings) != 2 {
		t.Fatalf("%d runs, sweeps %+v", len(sum.Runs), sum.Sweeps)
	}
	dirs := map[string]bool{}
	for _, r := range sum.Runs {
		dirs[r.Dir] = true
		if r.Arm == "vanilla" && r.Setting != "" && !strings.HasPrefix(r.Dir, filepath.Join(out, "seed-")) {
			t.Errorf("vanilla under %s trained again in %s", r.Setting, r.Dir)
		}
	}
	if len(dirs) != 8 {
		t.Errorf("%d distinct runs, want 8 (4 base, 4 prioritised under the sweep)", len(dirs))
	}
	st := sum.Sweeps[0].Settings[0]
	if st.Diffs["prioritised"].N != 2 || math.Abs(st.Diffs["prioritised"].Mean-(st.Means["prioritised"]-st.Means["vanilla"])) > 1e-12 {
		t.Errorf("setting %+v", st)
	}
	md := sum.Markdown()
	for _, want := range []string{"Sweep of `decomposition.rho`", "| 0.25 | prioritised | ", "| 0.75 | prioritised | ", "95% t interval", "| decomposition.rho=0.75 | 2 | prioritised |"} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	for _, f := range []string{"diff-decomposition.rho.png", "quadrants-seed-2.png", "decomposition.rho=0.25/seed-1/prioritised/compare-result.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	// A study killed after a run finished but before its result was
	// recorded continues: that run resumes from its final checkpoint.
	os.Remove(filepath.Join(out, "decomposition.rho=0.75", "seed-2", "prioritised", "compare-result.json"))
	again, err := Compare(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sum.Runs {
		a, b := sum.Runs[i], again.Runs[i]
		if a.TestAccuracy != b.TestAccuracy || a.Dir != b.Dir || a.Setting != b.Setting {
			t.Errorf("run %d: %+v, then %+v", i, a, b)
		}
	}
}

func TestParseSweep(t *testing.T) {
	sw, err := ParseSweep("decomposition.rho = 0.25, 0.5,0.75")
	if err != nil || sw.Key != "decomposition.rho" || strings.Join(sw.Values, "|") != "0.25|0.5|0.75" {
		t.Errorf("%+v %v", sw, err)
	}
	for _, bad := range []string{"rho", "=1,2", "rho=", "rho=1,,2", "rho=1,1"} {
		if _, err := ParseSweep(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestCompareSwapArm: a third arm trained on prompt-swapped ties is paired
// with the control like the prioritised one.
func TestCompareSwapArm(t *testing.T) {
	base := []string{"data.synthetic_pairs=160", "train.epochs=1", "train.batch_size=16",
		"decomposition.warmup_steps=3", "decomposition.every_steps=4", "decomposition.samples=2"}
	out := t.TempDir()
	sum, err := Compare(context.Background(), Options{ConfigPath: "length-bias.yaml", Seeds: 2, Out: out,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Progress: io.Discard, Arms: append(append([]Arm{}, Arms...), SwapArm(0.5)),
		Load: func(extra []string) (*configs.Config, error) {
			return configs.Load(filepath.Join("toy", "length-bias.yaml"), append(append([]string{}, base...), extra...), nil)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Runs) != 6 || sum.Base.Diffs["swap"].N != 2 || sum.Base.Diffs["prioritised"].N != 2 {
		t.Fatalf("runs %d, base %+v", len(sum.Runs), sum.Base)
	}
	if !strings.Contains(sum.Markdown(), "| base | swap | ") {
		t.Errorf("no swap row:\n%s", sum.Markdown())
	}
	b, err := os.ReadFile(filepath.Join(out, "seed-1", "swap", "metrics.jsonl"))
	if err != nil || !strings.Contains(string(b), `"train_pairs":216`) {
		t.Errorf("the swap arm's data row (144 training pairs + 72 ties): %v", err)
	}
}
