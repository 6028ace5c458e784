package experiments

import (
	"context"
	"io"
	"log/slog"
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
	cfg, err := configs.Load(filepath.Join("toy", "length-bias.yaml"), []string{
		"data.synthetic_pairs=240", "train.epochs=1", "train.batch_size=16",
		"decomposition.warmup_steps=4", "decomposition.every_steps=5", "decomposition.samples=2",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sum, err := Compare(context.Background(), "length-bias.yaml", cfg, 1, out, logger, io.Discard)
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
	again, err := Compare(context.Background(), "length-bias.yaml", cfg, 1, out, logger, io.Discard)
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
