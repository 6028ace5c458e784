// Command libtorch times the shipped toy training run on two libtorch
// releases side by side in one command: this machine's prism (Debian 12,
// libtorch 1.13.1) and the prism built in the Debian 13 root of
// scripts/debian13.sh (libtorch 2.6.0). Each runs with OpenBLAS's OpenMP
// variant, the one `make setup` selects, and again with the pthreads
// variant (through LD_LIBRARY_PATH, nothing changed on the system) to show
// what the choice is worth. Runs alternate between the configurations so
// that a slow spell of the machine hits them alike; the wall time is the
// whole process, start-up included. The held-out metrics of every run are
// recorded, and the command fails if the two releases disagree beyond
// float rounding.
//
//	make bench-libtorch     (builds both, then runs this)
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"prism/bench/machine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/libtorch:", err)
		os.Exit(1)
	}
}

// config is one libtorch release with one BLAS variant.
type config struct {
	Name     string `json:"name"`
	Libtorch string `json:"libtorch"`
	BLAS     string `json:"blas_variant"`
	// Version is `prism version --json` of the binary, run the same way.
	Version json.RawMessage `json:"prism_version"`
	Seconds []float64       `json:"wall_seconds"`
	Median  float64         `json:"median_wall_seconds"`
	// Accuracy and Loss are the held-out metrics each run printed.
	Accuracy []float64 `json:"heldout_accuracy"`
	Loss     []float64 `json:"heldout_loss"`

	root bool // runs in the Debian 13 root
}

type results struct {
	Machine machine.Info `json:"machine"`
	Command string       `json:"command"`
	Runs    int          `json:"runs_each"`
	Configs []*config    `json:"configs"`
	// Ratio26 is the median wall time on libtorch 2.6 over that on 1.13,
	// both with the BLAS variant setup selects (below 1: 2.6 is faster).
	Ratio26 float64 `json:"ratio_2_6_over_1_13"`
	// PthreadCost is, per release, the pthreads variant's median over the
	// OpenMP one's.
	PthreadCost map[string]float64 `json:"pthreads_over_openmp"`
	// MaxLossRelDiff compares the held-out loss of 1.13 and 2.6.
	MaxLossRelDiff float64 `json:"max_heldout_loss_rel_diff"`
	Met            bool    `json:"target_met"`
	Target         string  `json:"target"`
}

var heldOut = regexp.MustCompile(`held-out: accuracy ([0-9.]+)\s+loss ([0-9.eE+-]+)`)

func run() error {
	prism := flag.String("prism", "bin/prism", "this machine's prism binary")
	script := flag.String("debian13", "scripts/debian13.sh", "the Debian 13 root's script")
	experiment := flag.String("config", "experiments/toy/length-bias.yaml", "the experiment to time")
	runs := flag.Int("runs", 3, "runs of each configuration")
	out := flag.String("out", "", "write the results as JSON here")
	flag.Parse()

	const pthread = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
	cfgs := []*config{
		{Name: "1.13-openmp", Libtorch: "1.13.1 (Debian 12)", BLAS: "openmp"},
		{Name: "2.6-openmp", Libtorch: "2.6.0 (Debian 13)", BLAS: "openmp", root: true},
		{Name: "1.13-pthreads", Libtorch: "1.13.1 (Debian 12)", BLAS: "pthreads"},
		{Name: "2.6-pthreads", Libtorch: "2.6.0 (Debian 13)", BLAS: "pthreads", root: true},
	}
	command := func(c *config, args ...string) *exec.Cmd {
		// Both sides run the same shell line; in the root, scripts/debian13.sh
		// enter puts it in /work/prism with the same binary path.
		env := ""
		if c.BLAS == "pthreads" {
			env = "LD_LIBRARY_PATH=" + pthread + " "
		}
		line := env + "bin/prism " + strings.Join(args, " ")
		if c.root {
			return exec.Command(*script, "enter", "bash", "-c", line)
		}
		cmd := exec.Command("bash", "-c", strings.Replace(line, "bin/prism", *prism, 1))
		return cmd
	}
	for _, c := range cfgs {
		b, err := command(c, "version", "--json").Output()
		if err != nil {
			return fmt.Errorf("%s: prism version: %w (build both first: make bench-libtorch)", c.Name, err)
		}
		c.Version = json.RawMessage(bytes.TrimSpace(b))
	}
	const runDir = "/tmp/prism-bench-libtorch"
	args := []string{"train", "--config", *experiment, "--set", "run.dir=" + runDir}
	clean := func(c *config) error {
		cmd := command(c)
		cmd.Args[len(cmd.Args)-1] = "rm -rf " + runDir
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: removing %s: %w\n%s", c.Name, runDir, err, b)
		}
		return nil
	}
	res := results{Machine: machine.Describe(), Command: "prism " + strings.Join(args, " "), Runs: *runs, Configs: cfgs,
		PthreadCost: map[string]float64{},
		Target:      "libtorch 2.6 with the BLAS setup selects is no slower than 1.13 on the toy run (ratio <= 1.05, the spread of repeated runs here)"}
	for i := 0; i < *runs; i++ {
		for _, c := range cfgs {
			if err := clean(c); err != nil {
				return err
			}
			cmd := command(c, args...)
			t0 := time.Now()
			b, err := cmd.CombinedOutput()
			secs := time.Since(t0).Seconds()
			if err != nil {
				return fmt.Errorf("%s run %d: %w\n%s", c.Name, i+1, err, tail(b))
			}
			m := heldOut.FindSubmatch(b)
			if m == nil {
				return fmt.Errorf("%s run %d: no held-out line in the output:\n%s", c.Name, i+1, tail(b))
			}
			acc, _ := strconv.ParseFloat(string(m[1]), 64)
			loss, _ := strconv.ParseFloat(string(m[2]), 64)
			c.Seconds = append(c.Seconds, secs)
			c.Accuracy = append(c.Accuracy, acc)
			c.Loss = append(c.Loss, loss)
			fmt.Printf("%-14s run %d: %6.1f s  held-out accuracy %.4f loss %.4f\n", c.Name, i+1, secs, acc, loss)
		}
	}
	for _, c := range cfgs {
		c.Median = median(c.Seconds)
	}
	res.Ratio26 = cfgs[1].Median / cfgs[0].Median
	res.PthreadCost["1.13"] = cfgs[2].Median / cfgs[0].Median
	res.PthreadCost["2.6"] = cfgs[3].Median / cfgs[1].Median
	for i := range cfgs[0].Loss {
		a, b := cfgs[0].Loss[i], cfgs[1].Loss[i]
		res.MaxLossRelDiff = math.Max(res.MaxLossRelDiff, math.Abs(a-b)/math.Max(math.Abs(a), 1e-12))
	}
	res.Met = res.Ratio26 <= 1.05
	fmt.Printf("\nmedian wall time: 1.13 %.1f s, 2.6 %.1f s (ratio %.2f); pthreads variant costs x%.2f on 1.13, x%.2f on 2.6; held-out loss differs by %.1e (relative)\n",
		cfgs[0].Median, cfgs[1].Median, res.Ratio26, res.PthreadCost["1.13"], res.PthreadCost["2.6"], res.MaxLossRelDiff)
	// The printed metrics are rounded to 4 digits: anything beyond that is
	// a different computation, not a timing matter.
	if res.MaxLossRelDiff > 1e-3 {
		return errors.Join(machine.WriteJSON(*out, res), fmt.Errorf("libtorch 1.13 and 2.6 disagree: held-out loss differs by %.2e (relative)", res.MaxLossRelDiff))
	}
	return machine.WriteJSON(*out, res)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
