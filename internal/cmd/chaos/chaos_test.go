package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeCheckpoint writes a checkpoint folder with a manifest that matches
// its files.
func fakeCheckpoint(t *testing.T, dir string, step int) {
	t.Helper()
	m := map[string]any{"step": step, "files": map[string]any{}}
	for _, f := range checkpointFiles {
		content := fmt.Sprintf("%s of step %d", f, step)
		if f == "state.json" {
			content = fmt.Sprintf(`{"format": 1, "step": %d}`, step)
		}
		write(t, filepath.Join(dir, f), content)
		size, sum, err := hashFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		m["files"].(map[string]any)[f] = map[string]any{"size": size, "sha256": sum}
	}
	b, _ := json.Marshal(m)
	write(t, filepath.Join(dir, manifestFile), string(b))
}

func TestNewestValid(t *testing.T) {
	run := t.TempDir()
	ck := func(name string) string { return filepath.Join(run, checkpointsDir, name) }
	if want, _, err := newestValid(run); want != nil || err != nil {
		t.Fatalf("no checkpoints folder: %v %v", want, err)
	}
	fakeCheckpoint(t, ck("step-00000010"), 10)
	fakeCheckpoint(t, ck("step-00000015"), 15)
	write(t, filepath.Join(ck("step-00000015"), "optimizer.safetensors"), "damaged")
	fakeCheckpoint(t, ck("step-00000020"), 20)
	os.Remove(filepath.Join(ck("step-00000020"), manifestFile))
	fakeCheckpoint(t, ck("step-00000030"), 25) // manifest of another step
	// A complete-looking temporary folder: not a checkpoint until renamed.
	fakeCheckpoint(t, ck(".step-00000035.tmp-1"), 35)

	want, invalid, err := newestValid(run)
	if err != nil {
		t.Fatal(err)
	}
	if want == nil || want.Name != "step-00000010" || want.Step != 10 {
		t.Errorf("newest valid = %+v, want step-00000010", want)
	}
	if !slices.Equal(invalid, []string{"step-00000030", "step-00000020", "step-00000015"}) {
		t.Errorf("invalid = %q", invalid)
	}
}

func TestLogRecord(t *testing.T) {
	rec := logRecord(`time=2026-11-27T07:30:26.302Z level=INFO msg="skipping a checkpoint that does not verify" checkpoint="runs/a b/step-00000005" error="bad \"x\""`)
	if rec["msg"] != "skipping a checkpoint that does not verify" || rec["checkpoint"] != "runs/a b/step-00000005" || rec["error"] != `bad "x"` {
		t.Errorf("parsed %q", rec)
	}
	if rec := logRecord("step 20/120  loss 0.1769  acc 0.969"); len(rec) != 0 {
		t.Errorf("a progress line parsed as %q", rec)
	}
}

func TestReadTrainerLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	write(t, path, `time=x level=WARN msg="skipping a checkpoint that does not verify" checkpoint=run/checkpoints/step-00000020 error=e
time=x level=INFO msg=resumed checkpoint=run/checkpoints/step-00000015 step=15
time=x level=INFO msg=model shape=llama params=1
step 16/40  loss 0.1
time=x level=INFO msg=resumed checkpoint=run/checkpoints/step-000`) // cut by the kill
	tl, err := readTrainerLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if !tl.SetupDone || tl.ResumedFrom != "run/checkpoints/step-00000015" || tl.ResumedStep != 15 || !slices.Equal(tl.Skipped, []string{"step-00000020"}) {
		t.Errorf("read %+v", tl)
	}
}

func TestCheckRestart(t *testing.T) {
	ck15 := &checkpoint{"step-00000015", 15}
	for _, c := range []struct {
		name        string
		log         trainerLog
		want        *checkpoint
		invalid     []string
		determinate bool
		fail        string
	}{
		{"resumed right", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/step-00000015", ResumedStep: 15}, ck15, nil, true, ""},
		{"refused a damaged one", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/step-00000015", ResumedStep: 15, Skipped: []string{"step-00000020"}}, ck15, []string{"step-00000020"}, true, ""},
		{"killed while loading", trainerLog{}, ck15, nil, false, ""},
		{"afresh with nothing to resume", trainerLog{SetupDone: true}, nil, nil, true, ""},
		{"half-written", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/.step-00000020.tmp-1", ResumedStep: 20}, ck15, nil, true, "want step-00000015"},
		{"older", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/step-00000010", ResumedStep: 10}, ck15, nil, true, "want step-00000015"},
		{"from nothing", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/step-00000010", ResumedStep: 10}, nil, nil, true, "no checkpoint verified"},
		{"afresh over a good one", trainerLog{SetupDone: true}, ck15, nil, true, "started afresh although"},
		{"refused a good one", trainerLog{SetupDone: true, ResumedFrom: "r/checkpoints/step-00000015", ResumedStep: 15, Skipped: []string{"step-00000020"}}, ck15, nil, true, "which verifies"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, det, err := checkRestart(&c.log, c.want, c.invalid)
			if det != c.determinate {
				t.Errorf("determinate = %v", det)
			}
			if c.fail == "" && err != nil || c.fail != "" && (err == nil || !strings.Contains(err.Error(), c.fail)) {
				t.Errorf("error %v, want one saying %q", err, c.fail)
			}
		})
	}
}

func TestCompareMetrics(t *testing.T) {
	dir := t.TempDir()
	ref := `{"kind":"data","train_pairs":10}
{"kind":"train","step":1,"loss":0.5,"wall_s":0.1,"tokens_per_s":100}
{"kind":"train","step":2,"loss":0.4,"wall_s":0.2,"tokens_per_s":100}
{"kind":"eval","step":2,"eval_loss":0.3}
`
	same := `{"kind":"data","train_pairs":10}
{"kind":"train","step":1,"loss":0.5,"wall_s":7,"tokens_per_s":1}
{"tokens_per_s":5,"kind":"train","step":2,"loss":0.4,"wall_s":9}
{"kind":"eval","step":2,"eval_loss":0.3}
`
	dup := `{"kind":"data","train_pairs":10}
{"kind":"train","step":1,"loss":0.5,"wall_s":0.1,"tokens_per_s":100}
{"kind":"train","step":2,"loss":0.4,"wall_s":0.2,"tok
{"kind":"data","train_pairs":10}
{"kind":"train","step":2,"loss":0.4,"wall_s":0.2,"tokens_per_s":100}
{"kind":"eval","step":2,"eval_loss":0.3}
{"kind":"eval","step":2,"eval_loss":0.3}
`
	write(t, filepath.Join(dir, "ref"), ref)
	write(t, filepath.Join(dir, "same"), same)
	write(t, filepath.Join(dir, "dup"), dup)
	if d, err := compareMetricFiles(filepath.Join(dir, "ref"), filepath.Join(dir, "same")); err != nil || d != nil {
		t.Errorf("timings only: %q %v", d, err)
	}
	d, err := compareMetricFiles(filepath.Join(dir, "ref"), filepath.Join(dir, "dup"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(d, "; ")
	for _, want := range []string{"6 records, the reference 4", "data x1", "eval@2 x1", "1 lines are not JSON"} {
		if !strings.Contains(got, want) {
			t.Errorf("differences %q do not say %q", got, want)
		}
	}
}

func TestCompareRuns(t *testing.T) {
	ref, got := filepath.Join(t.TempDir(), "ref"), filepath.Join(t.TempDir(), "got")
	for _, run := range []string{ref, got} {
		write(t, filepath.Join(run, "config.yaml"), "run:\n  dir: "+run+"\n")
		write(t, filepath.Join(run, "run.log"), run)
		write(t, filepath.Join(run, "model", "config.json"), "{}")
		write(t, filepath.Join(run, "metrics.jsonl"), `{"kind":"train","step":1,"wall_s":`+fmt.Sprint(len(run))+"}\n")
		write(t, filepath.Join(run, checkpointsDir, "step-00000002", "state.json"), `{"step":2,"elapsed_s":`+fmt.Sprint(len(run))+`,"config":"`+run+`"}`)
	}
	if d, err := compareRuns(ref, got); err != nil || d != nil {
		t.Fatalf("equal runs: %q %v", d, err)
	}
	write(t, filepath.Join(got, "model", "config.json"), "{ }")
	write(t, filepath.Join(got, checkpointsDir, "step-00000002", "state.json"), `{"step":3}`)
	write(t, filepath.Join(got, "decomposition", "final.csv"), "")
	write(t, filepath.Join(got, ".model.tmp-1", "x"), "") // a leftover: reported apart
	d, err := compareRuns(ref, got)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"decomposition/final.csv: not in the reference run",
		"checkpoints/step-00000002/state.json: step is 3, the reference 2",
		"model/config.json: bytes differ (3 bytes, the reference 2)",
	}
	if !slices.Equal(d, want) {
		t.Errorf("differences\n%q\nwant\n%q", d, want)
	}
}

func TestTempEntries(t *testing.T) {
	run := t.TempDir()
	for _, f := range []string{"metrics.jsonl", "checkpoints/step-00000005/state.json", "checkpoints/.step-00000010.tmp-3/model/x", ".model.tmp-4/.model.safetensors.tmp5", "decomposition/.plot-1.png"} {
		write(t, filepath.Join(run, f), "")
	}
	got, err := tempEntries(run)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range got {
		names = append(names, n)
		if n == ".model.tmp-4" || n == "checkpoints/.step-00000010.tmp-3" {
			if !isWriteTemp(n) {
				t.Errorf("isWriteTemp(%q) = false", n)
			}
		} else if isWriteTemp(n) {
			t.Errorf("isWriteTemp(%q) = true", n)
		}
	}
	slices.Sort(names)
	if want := []string{".model.tmp-4", "checkpoints/.step-00000010.tmp-3", "decomposition/.plot-1.png"}; !slices.Equal(names, want) {
		t.Errorf("temp entries %q, want %q", names, want)
	}
	if isWriteTemp("checkpoints/.step-00000010.tmp-3.old") || !isCheckpointTemp("checkpoints/.step-00000010.tmp-3") || !isModelTemp(".model.tmp-4") {
		t.Error("isWriteTemp and friends misclassify")
	}
}

func TestPlanKills(t *testing.T) {
	ref := &timeline{total: 20 * time.Second}
	plans := planKills(rand.New(rand.NewPCG(1, 2)), 10, 3, true, ref)
	kinds := map[string]int{}
	var last time.Duration
	for i, p := range plans {
		kinds[p.kind]++
		if p.kind == planTimed {
			if p.at < last || p.at >= 19*time.Second {
				t.Errorf("kill %d at %v (after %v, run %v)", i, p.at, last, ref.total)
			}
			last = p.at
		}
	}
	if kinds[planTimed] != 6 || kinds[planCheckpoint] != 3 || kinds[planSave] != 1 || plans[9].kind != planSave {
		t.Errorf("plans %+v", plans)
	}
	if plans := planKills(rand.New(rand.NewPCG(1, 2)), 3, 3, true, ref); plans[2].kind != planCheckpoint {
		t.Errorf("all kills mid-checkpoint leaves no room for the save: %+v", plans)
	}
}

func TestTimelineAndWritesLeft(t *testing.T) {
	tl := &timeline{at: []time.Duration{0, 10, 20, 30}}
	for d, want := range map[time.Duration]int{0: 0, 9: 0, 10: 1, 25: 2, 99: 3} {
		if got := tl.stepAt(d); got != want {
			t.Errorf("stepAt(%v) = %d, want %d", d, got, want)
		}
	}
	// Checkpoints at 5, 10, 15 and the final one at 20.
	for step, want := range map[int]int{0: 4, 4: 4, 5: 3, 16: 1, 20: 1} {
		if got := writesLeft(step, 20, 5); got != want {
			t.Errorf("writesLeft(%d) = %d, want %d", step, got, want)
		}
	}
}

// TestWatchFiresInTheWrite plays a checkpoint write and checks that the
// watch fires at its temporary folder, a leftover aside.
func TestWatchFiresInTheWrite(t *testing.T) {
	run := t.TempDir()
	write(t, filepath.Join(run, checkpointsDir, ".step-00000005.tmp-1", "state.json"), "") // leftover
	w, err := watchWrites(run)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	type hit struct {
		tmp, moment string
		err         error
	}
	ch := make(chan hit, 1)
	go func() {
		tmp, moment, err := w.wait(isCheckpointTemp, 1, 1)
		ch <- hit{tmp, moment, err}
	}()
	pause := func() { time.Sleep(50 * time.Millisecond) } // lets the watch catch up
	pause()
	write(t, filepath.Join(run, "metrics.jsonl"), "")
	tmp := filepath.Join(run, checkpointsDir, ".step-00000010.tmp-2")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	pause()
	write(t, filepath.Join(tmp, "state.json"), "{}")
	select {
	case h := <-ch:
		if h.err != nil || h.tmp != tmp {
			t.Errorf("fired at %q (%s), %v; want %q", h.tmp, h.moment, h.err, tmp)
		}
		t.Logf("fired at %s: %s", filepath.Base(h.tmp), h.moment)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not fire")
	}
}
