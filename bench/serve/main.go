// Command serve measures `prism serve` under load on loopback, with
// batching (requests that arrive together share forward passes) and
// without it (--max-batch-tokens 1: one row per pass), side by side: the
// rows per second each sustains with many clients sending without pause,
// then p50 and p99 latency at one fixed offered load that both can carry.
// The load generator is vegeta (github.com/tsenart/vegeta), in this
// process; each server is a `prism serve` process over a random model of
// the small shape (4 layers, hidden 256, 32,000 tokens). Each request is
// one row, as OpenRLHF's client sends one query per sample. Before timing,
// both servers are checked to give the same rewards.
//
//	go run ./bench/serve -prism bin/prism -out bench/results/serve.json
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"prism/bench/machine"
	"prism/models"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/serve:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "", "write the results as JSON here")
	prism := flag.String("prism", "bin/prism", "the prism binary")
	duration := flag.Duration("duration", 15*time.Second, "length of each measurement")
	clients := flag.Int("clients", 64, "concurrent clients of the throughput measurement")
	load := flag.Float64("load", 0.8, "the fixed offered load, as a fraction of the unbatched server's throughput")
	minLen := flag.Int("min-tokens", 32, "shortest row")
	maxLen := flag.Int("max-tokens", 256, "longest row")
	threads := flag.Int("threads", 0, "the server's libtorch threads (0: every core)")
	smoke := flag.Bool("smoke", false, "a quick check of the harness")
	flag.Parse()
	if *smoke {
		*duration, *clients = 2*time.Second, 8
	}

	dir, err := os.MkdirTemp("", "prism-bench-serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pad := 0
	c := &models.Config{ModelType: "llama", VocabSize: 32000, HiddenSize: 256, IntermediateSize: 688, NumHiddenLayers: 4,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 64, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 2048, PadTokenID: &pad, HiddenAct: "silu", InitializerRange: 0.02}
	model := filepath.Join(dir, "model")
	if err := models.SaveValues(model, c, models.RandomInit(c, rand.New(rand.NewPCG(1, 2))), nil); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var targets []vegeta.Target
	for range 512 {
		ids := make([]int64, *minLen+rng.IntN(*maxLen-*minLen+1))
		for i := range ids {
			ids[i] = 1 + rng.Int64N(31999)
		}
		body, _ := json.Marshal(map[string]any{"rows": []map[string]any{{"input_ids": ids}}})
		targets = append(targets, vegeta.Target{Method: "POST", Body: body, Header: http.Header{"Content-Type": {"application/json"}}})
	}

	modes := []struct {
		name   string
		tokens string
	}{{"batched", "16384"}, {"unbatched", "1"}}
	start := func(tokens string) (*server, error) {
		return startServer(*prism, model, tokens, *threads)
	}
	// Both servers give the same rewards (batching changes no reward).
	var first []float64
	for _, m := range modes {
		s, err := start(m.tokens)
		if err != nil {
			return err
		}
		r, err := s.rewards(targets[:32])
		s.stop()
		if werr := s.wait(); err == nil {
			err = werr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		if first == nil {
			first = r
			continue
		}
		for i := range r {
			if math.Abs(r[i]-first[i]) > 1e-5*max(1, math.Abs(first[i])) {
				return fmt.Errorf("row %d: %v batched, %v unbatched", i, first[i], r[i])
			}
		}
	}

	res := map[string]any{}
	rowsPerS := map[string]float64{}
	for _, m := range modes {
		s, err := start(m.tokens)
		if err != nil {
			return err
		}
		// Warm up, then many clients without pause.
		attack(s.url, targets, vegeta.Rate{}, *clients, 2*time.Second)
		met := attack(s.url, targets, vegeta.Rate{}, *clients, *duration)
		s.stop()
		if err := s.wait(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		rowsPerS[m.name] = met.Throughput
		res[m.name] = map[string]any{"throughput": summary(met), "max_batch_tokens": m.tokens}
		fmt.Printf("%s, %d clients: %.1f rows/s, p50 %v, p99 %v, success %.3f\n", m.name, *clients, met.Throughput, met.Latencies.P50, met.Latencies.P99, met.Success)
	}
	rate := *load * rowsPerS["unbatched"]
	for _, m := range modes {
		s, err := start(m.tokens)
		if err != nil {
			return err
		}
		attack(s.url, targets, vegeta.Rate{}, *clients, 2*time.Second)
		met := attack(s.url, targets, vegeta.Rate{Freq: max(1, int(rate)), Per: time.Second}, 0, *duration)
		s.stop()
		if err := s.wait(); err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		res[m.name].(map[string]any)["fixed_load"] = summary(met)
		fmt.Printf("%s at %d requests/s offered: p50 %v, p99 %v, success %.3f\n", m.name, int(rate), met.Latencies.P50, met.Latencies.P99, met.Success)
	}
	res["speedup"] = rowsPerS["batched"] / rowsPerS["unbatched"]
	res["offered_rows_per_s"] = int(rate)
	fmt.Printf("batching: %.2fx the rows/s of one row per pass\n", res["speedup"])
	return machine.WriteJSON(*out, map[string]any{
		"benchmark": "prism serve on loopback: rows/s with many clients and latency at a fixed offered load, batching on and off",
		"machine":   machine.Describe(), "smoke": *smoke, "clients": *clients, "duration_s": duration.Seconds(),
		"rows_tokens": []int{*minLen, *maxLen}, "model": map[string]any{"layers": 4, "hidden": 256, "vocab": 32000, "params": c.ParamCount()},
		"load_generator": "vegeta v12 (library), one row per request", "results": res,
	})
}

// attack sends targets round robin: with rate.Freq 0, from workers
// clients each sending the next request when its last is answered.
func attack(url string, targets []vegeta.Target, rate vegeta.Rate, workers int, d time.Duration) *vegeta.Metrics {
	for i := range targets {
		targets[i].URL = url + "/score"
	}
	opts := []func(*vegeta.Attacker){vegeta.Timeout(60 * time.Second), vegeta.KeepAlive(true)}
	if rate.Freq == 0 {
		opts = append(opts, vegeta.Workers(uint64(workers)), vegeta.MaxWorkers(uint64(workers)))
	}
	a := vegeta.NewAttacker(opts...)
	var m vegeta.Metrics
	for r := range a.Attack(vegeta.NewStaticTargeter(targets...), rate, d, "serve") {
		m.Add(r)
	}
	m.Close()
	return &m
}

func summary(m *vegeta.Metrics) map[string]any {
	return map[string]any{"requests": m.Requests, "rows_per_s": m.Throughput, "offered_per_s": m.Rate, "success": m.Success,
		"p50_ms": ms(m.Latencies.P50), "p90_ms": ms(m.Latencies.P90), "p99_ms": ms(m.Latencies.P99), "max_ms": ms(m.Latencies.Max),
		"status_codes": m.StatusCodes, "errors": m.Errors}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// server is a `prism serve` process.
type server struct {
	cmd  *exec.Cmd
	url  string
	done chan error
}

func startServer(prism, model, tokens string, threads int) (*server, error) {
	cmd := exec.Command(prism, "serve", "--model", model, "--addr", "127.0.0.1:0", "--max-batch-tokens", tokens,
		"--max-queue-rows", "100000", "--threads", fmt.Sprint(threads), "--log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("prism serve did not start: %v: %s", err, stderr.String())
	}
	_, rest, _ := strings.Cut(line, "on http://")
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("prism serve: unexpected first line %q", line)
	}
	s := &server{cmd: cmd, url: "http://" + fields[0], done: make(chan error, 1)}
	go func() {
		io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.String())
		}
		s.done <- err
	}()
	return s, nil
}

// stop sends SIGTERM: the server finishes what it accepted and exits 0.
func (s *server) stop() { s.cmd.Process.Signal(syscall.SIGTERM) }

func (s *server) wait() error {
	select {
	case err := <-s.done:
		if err != nil {
			return fmt.Errorf("prism serve exited with %w", err)
		}
		return nil
	case <-time.After(2 * time.Minute):
		s.cmd.Process.Kill()
		return fmt.Errorf("prism serve did not exit within 2 minutes of SIGTERM")
	}
}

// rewards posts each target's row and returns the rewards.
func (s *server) rewards(targets []vegeta.Target) ([]float64, error) {
	var out []float64
	for _, t := range targets {
		resp, err := http.Post(s.url+"/score", "application/json", bytes.NewReader(t.Body))
		if err != nil {
			return nil, err
		}
		var r struct {
			Rewards []float64 `json:"rewards"`
			Error   string    `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(r.Rewards) != 1 {
			return nil, fmt.Errorf("status %d %s %v", resp.StatusCode, r.Error, err)
		}
		out = append(out, r.Rewards[0])
	}
	return out, nil
}
