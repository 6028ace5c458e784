package report

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRun makes a run folder: metrics rows (one skipped step with a null
// loss, a data row without a step, eval rows) and two recompute tables.
func writeRun(t *testing.T, dir string, partialLast bool) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "decomposition"), 0o755)
	rows := `{"kind":"data","train_pairs":10}
{"kind":"train","step":1,"loss":0.69,"accuracy":0.5,"lr":0.001,"grad_norm":1.5,"skipped":false}
{"kind":"train","step":2,"loss":null,"accuracy":0.5,"lr":0.001,"grad_norm":null,"skipped":true}
{"kind":"train","step":3,"loss":0.5,"accuracy":0.75,"lr":0.0009,"grad_norm":1.1,"skipped":false}
{"kind":"eval","step":3,"eval_loss":0.55,"eval_accuracy":0.7,"eval_margin":0.3}
{"kind":"decomposition","step":3,"phase":1}
`
	if partialLast {
		rows += `{"kind":"train","step":4,"lo`
	}
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(rows), 0o644)
	table := "pair_id,gap,prompt_free,prompt_related\n"
	for i := range 11 {
		table += "1,0.5," + []string{"0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"}[i] + ",0.1\n"
	}
	os.WriteFile(filepath.Join(dir, "decomposition", "step-00000003.csv"), []byte(table), 0o644)
	os.WriteFile(filepath.Join(dir, "decomposition", "step-00000005.csv"), []byte("pair_id,prompt_free\n1,2\n2,4\n"), 0o644)
}

func TestReadCurves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "prioritised")
	writeRun(t, dir, true)
	c, err := ReadCurves(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "prioritised" || len(c.Loss.Step) != 2 || c.Loss.Value[1] != 0.5 || len(c.LR.Step) != 2 || len(c.EvalAccuracy.Value) != 1 || c.EvalMargin.Value[0] != 0.3 {
		t.Errorf("curves %+v", c)
	}
	if len(c.Free) != 2 || c.Free[0] != (FreeGaps{Step: 3, P10: 0.1, P50: 0.5, P90: 0.9}) || c.Free[1].Step != 5 || c.Free[1].P50 != 4 {
		t.Errorf("Δr2 summaries %+v", c.Free)
	}
	// A malformed line that is not the last is an error naming it.
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte("{\"kind\":\"train\",\"step\":1}\n{oops\n{\"kind\":\"eval\"}\n"), 0o644)
	if _, err := ReadCurves(dir); err == nil || !strings.Contains(err.Error(), "metrics.jsonl:2") {
		t.Errorf("malformed line: %v", err)
	}
	if _, err := ReadCurves(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a run folder") {
		t.Errorf("empty folder: %v", err)
	}
}

// TestWriteCurves draws one run and two overlaid into PNGs of the
// expected size.
func TestWriteCurves(t *testing.T) {
	root := t.TempDir()
	var runs []*Curves
	for _, name := range []string{"vanilla", "prioritised"} {
		writeRun(t, filepath.Join(root, name), false)
		c, err := ReadCurves(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, c)
	}
	for _, rs := range [][]*Curves{runs[:1], runs} {
		path := filepath.Join(root, "curves.png")
		if err := WriteCurves(path, rs); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 1000 || cfg.Height < 500 {
			t.Errorf("%d runs: png %+v %v", len(rs), cfg, err)
		}
	}
	if err := WriteCurves(filepath.Join(root, "none.png"), nil); err == nil {
		t.Error("no runs drew a figure")
	}
}
