// Command memory measures prism's resident memory over a long tiny
// training run: RSS at step 200 and at the last step, and the growth
// between them. gotch tensors hold C memory the Go collector does not see,
// so a leak of one tensor per step shows here and nowhere else.
//
//	go run ./bench/memory -steps 2000 -out bench/results/memory.json
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"prism/configs"
	"prism/internal/fsutil"
	"prism/internal/torch"
	"prism/trainer"
)

func main() {
	torch.Pin() // for the whole process: libtorch state is per OS thread
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "memory:", err)
		os.Exit(1)
	}
}

// rssKiB reads the resident set size from /proc.
func rssKiB() (int64, error) { return procStatus("VmRSS:") }

// procStatus reads one kB figure of /proc/self/status (VmRSS, VmHWM).
func procStatus(key string) (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			return strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", key)
}

func run() error {
	steps := flag.Int("steps", 2000, "optimizer steps")
	from := flag.Int("from", 200, "step of the first measurement")
	out := flag.String("out", "", "write the result as JSON here")
	flag.Parse()
	if *from >= *steps {
		return fmt.Errorf("-from %d must be below -steps %d", *from, *steps)
	}
	threads, err := torch.Setup(0)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "prism-memory-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := configs.Load("", []string{
		"run.dir=" + filepath.Join(dir, "run"),
		fmt.Sprintf("train.steps=%d", *steps),
		"eval.every=500", "checkpoint.every=500", "run.log_every=100000",
	}, nil)
	if err != nil {
		return err
	}
	samples := map[int]int64{}
	var sampleErr error
	start := time.Now()
	_, err = trainer.Run(context.Background(), cfg, trainer.Options{OnStep: []trainer.StepHook{func(si trainer.StepInfo) error {
		step := si.Step
		if step == *from || step == *steps || step%250 == 0 {
			runtime.GC()
			kib, err := rssKiB()
			if err != nil {
				sampleErr = err
			}
			samples[step] = kib
		}
		return nil
	}}})
	if err != nil {
		return err
	}
	if sampleErr != nil {
		return sampleErr
	}
	a, b := samples[*from], samples[*steps]
	peak, err := procStatus("VmHWM:")
	if err != nil {
		return err
	}
	res := map[string]any{
		"benchmark":    "rss over a tiny training run (tiny-llama, batch 32, checkpoints and eval every 500 steps)",
		"threads":      threads,
		"steps":        *steps,
		"from_step":    *from,
		"rss_kib_from": a,
		"rss_kib_end":  b,
		"growth_pct":   100 * float64(b-a) / float64(a),
		"peak_rss_kib": peak,
		"samples_kib":  samples,
		"seconds":      time.Since(start).Seconds(),
		"date":         time.Now().UTC().Format(time.RFC3339),
	}
	j, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(j))
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		return fsutil.WriteFileAtomic(*out, append(j, '\n'))
	}
	return nil
}
