// Command report turns the JSON files under bench/results into one
// markdown table of every figure against its target (bench/results/README.md).
//
//	go run ./bench/report -dir bench/results
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"prism/internal/fsutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/report:", err)
		os.Exit(1)
	}
}

func read(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func yes(b bool) string {
	if b {
		return "met"
	}
	return "**missed**"
}

// side is one side of the training-step comparison.
type side struct {
	MedianSeconds float64 `json:"median_step_seconds"`
	MFU           float64 `json:"mfu"`
}

func run() error {
	dir := flag.String("dir", "bench/results", "folder of the results files")
	flag.Parse()
	var b strings.Builder
	b.WriteString("# Benchmark results\n\nWritten by `go run ./bench/report` from the JSON files beside it; `make bench` runs everything. ")
	b.WriteString("Both sides of each comparison ran in the same command on the same machine. See bench/NOTES.md for what the time goes to and what changed it.\n\n")
	b.WriteString("| figure | prism | baseline | ratio | target | status |\n| --- | --- | --- | --- | --- | --- |\n")

	machine, err := trainRows(&b, filepath.Join(*dir, "train.json"), "")
	if err != nil {
		return err
	}
	if _, err := trainRows(&b, filepath.Join(*dir, "train-bf16-libtorch2.6.json"), "bf16 on libtorch 2.6, "); err != nil {
		return err
	}
	type side struct {
		PairsPerS     float64 `json:"pairs_per_s"`
		TokensPerPair float64 `json:"tokens_computed_per_pair"`
		Tokens, Pairs int
		SharePrompts  int `json:"share_prompts"`
	}
	type cmp struct {
		Whole   side    `json:"whole"`
		Cache   side    `json:"prompt_cache"`
		Shared  *side   `json:"shared_prompts"`
		Speedup float64 `json:"speedup"`
		Shared2 float64 `json:"shared_speedup"`
		Diff    float64 `json:"max_free_gap_difference"`
	}
	type shape struct {
		Pairs    int  `json:"pairs"`
		Pool     int  `json:"pool_prompts"`
		Prompt   int  `json:"prompt_tokens"`
		Response int  `json:"response_tokens"`
		Policy   bool `json:"policy"`
	}
	type toyRun struct {
		Share float64  `json:"share"`
		Max   float64  `json:"target_share_max"`
		Met   bool     `json:"target_met"`
		Test  float64  `json:"test_accuracy"`
		Sets  []string `json:"sets"`
	}
	var dec struct {
		Throughput map[string]cmp             `json:"throughput"`
		Long       map[string]json.RawMessage `json:"long_prompts"`
		Pooled     map[string]json.RawMessage `json:"pooled"`
		Policy     map[string]json.RawMessage `json:"policy"`
		Toy        struct {
			toyRun
			Alt     *toyRun `json:"alternative"`
			Shared  *toyRun `json:"shared_prompts"`
			Overlap *struct {
				Other  float64 `json:"kept_other_seed"`
				Shared float64 `json:"kept_shared"`
				Share  int     `json:"share_prompts"`
			} `json:"selection_overlap"`
		} `json:"toy_run"`
	}
	shapeRow := func(raw map[string]json.RawMessage) (cmp, shape, bool, error) {
		var c cmp
		var sh shape
		if raw["M=8"] == nil {
			return c, sh, false, nil
		}
		if err := json.Unmarshal(raw["M=8"], &c); err != nil {
			return c, sh, false, err
		}
		if err := json.Unmarshal(raw["shape"], &sh); err != nil {
			return c, sh, false, err
		}
		return c, sh, true, nil
	}
	if ok, err := read(filepath.Join(*dir, "decomposition.json"), &dec); err != nil {
		return err
	} else if ok {
		for _, k := range []string{"M=4", "M=8"} {
			c := dec.Throughput[k]
			fmt.Fprintf(&b, "| Δr2 recompute, toy pairs, %s (Δr2 agrees to %.0e) | %.0f pairs/s (prompt cache) | %.0f pairs/s (each sequence whole) | %.2fx | | |\n", k, c.Diff, c.Cache.PairsPerS, c.Whole.PairsPerS, c.Speedup)
		}
		if c, sh, ok, err := shapeRow(dec.Long); err != nil {
			return err
		} else if ok {
			fmt.Fprintf(&b, "| Δr2 recompute, long prompts (%d pairs, %d-token prompts, %d-token responses, M=8; Δr2 agrees to %.0e; tokens through the model per pair %.0f vs %.0f) | %.2f pairs/s (prompt cache) | %.2f pairs/s (each sequence whole) | %.2fx | ≥ 2.5x | %s |\n",
				sh.Pairs, sh.Prompt, sh.Response, c.Diff, c.Cache.TokensPerPair, c.Whole.TokensPerPair, c.Cache.PairsPerS, c.Whole.PairsPerS, c.Speedup, yes(c.Speedup >= 2.5))
			if c.Shared != nil {
				fmt.Fprintf(&b, "| the same with groups of %d pairs sharing their prompt draws (the pool is the pairs' own prompts, so no fewer prompts run) | %.2f pairs/s | %.2f pairs/s (each sequence whole) | %.2fx | | |\n",
					c.Shared.SharePrompts, c.Shared.PairsPerS, c.Whole.PairsPerS, c.Shared2)
			}
		}
		if c, sh, ok, err := shapeRow(dec.Pooled); err != nil {
			return err
		} else if ok && c.Shared != nil {
			fmt.Fprintf(&b, "| Δr2 recompute, %d candidate pairs drawing from %d prompts (%d-token prompts, M=8): shared draws in groups of %d, tokens through the model per pair %.0f vs %.0f | %.2f pairs/s (shared, cached) | %.2f pairs/s (per-pair draws, cached); %.2f (whole) | %.2fx; %.2fx | | |\n",
				sh.Pairs, sh.Pool, sh.Prompt, c.Shared.SharePrompts, c.Shared.TokensPerPair, c.Cache.TokensPerPair, c.Shared.PairsPerS, c.Cache.PairsPerS, c.Whole.PairsPerS, c.Shared.PairsPerS/c.Cache.PairsPerS, c.Shared2)
		}
		if c, sh, ok, err := shapeRow(dec.Policy); err != nil {
			return err
		} else if ok {
			fmt.Fprintf(&b, "| Δr2 recompute with policy weights (%d pairs, %d-token prompts, M=8; the policy's pass cached too; Δr2 and ESS agree to %.0e) | %.2f pairs/s (prompt cache) | %.2f pairs/s (each sequence whole) | %.2fx | | |\n",
				sh.Pairs, sh.Prompt, c.Diff, c.Cache.PairsPerS, c.Whole.PairsPerS, c.Speedup)
		}
		t := dec.Toy
		fmt.Fprintf(&b, "| Δr2 recompute, share of the length-bias toy run as shipped (test accuracy %.3f) | %.0f%% | | | ≤ %.0f%% | %s |\n", t.Test, 100*t.Share, 100*t.Max, yes(t.Met))
		for _, alt := range []*toyRun{t.Shared, t.Alt} {
			if alt != nil {
				fmt.Fprintf(&b, "| the toy run with %s (test accuracy %.3f) | %.0f%% | | | none (changes the selection) | |\n", strings.Join(alt.Sets, ", "), alt.Test, 100*alt.Share)
			}
		}
		if o := t.Overlap; o != nil {
			fmt.Fprintf(&b, "| selection on the trained toy model: share of the lowest-Δr2 half kept with groups of %d sharing draws; kept under another seed of per-pair draws | %.1f%% | %.1f%% (another seed) | | | |\n",
				o.Share, 100*o.Shared, 100*o.Other)
		}
	}
	var srv struct {
		Clients int `json:"clients"`
		Results struct {
			Speedup float64 `json:"speedup"`
			Offered int     `json:"offered_rows_per_s"`
		} `json:"results"`
	}
	var srvRaw struct {
		Results map[string]json.RawMessage `json:"results"`
	}
	if ok, err := read(filepath.Join(*dir, "serve.json"), &srv); err != nil {
		return err
	} else if ok {
		if _, err := read(filepath.Join(*dir, "serve.json"), &srvRaw); err != nil {
			return err
		}
		type meas struct {
			RowsPerS float64 `json:"rows_per_s"`
			P50      float64 `json:"p50_ms"`
			P99      float64 `json:"p99_ms"`
			Success  float64 `json:"success"`
		}
		var on, off struct {
			Throughput meas `json:"throughput"`
			Fixed      meas `json:"fixed_load"`
		}
		if err := json.Unmarshal(srvRaw.Results["batched"], &on); err != nil {
			return err
		}
		if err := json.Unmarshal(srvRaw.Results["unbatched"], &off); err != nil {
			return err
		}
		fmt.Fprintf(&b, "| prism serve, %d clients on loopback, one row each (32–256 tokens), small model | %.1f rows/s (batching) | %.1f rows/s (one row per pass) | %.2fx | | |\n",
			srv.Clients, on.Throughput.RowsPerS, off.Throughput.RowsPerS, srv.Results.Speedup)
		fmt.Fprintf(&b, "| prism serve at %d rows/s offered: p50 / p99 latency (success %.3f / %.3f) | %.0f / %.0f ms (batching) | %.0f / %.0f ms (one row per pass) | | | |\n",
			srv.Results.Offered, on.Fixed.Success, off.Fixed.Success, on.Fixed.P50, on.Fixed.P99, off.Fixed.P50, off.Fixed.P99)
	}
	var growth struct {
		Growth []map[string]json.RawMessage `json:"growth"`
	}
	if ok, err := read(filepath.Join(*dir, "decomposition-growth.json"), &growth); err != nil {
		return err
	} else if ok {
		for _, g := range growth.Growth {
			var shape struct {
				Pairs  int `json:"pairs"`
				Prompt int `json:"prompt_tokens"`
				M      int `json:"M"`
			}
			if err := json.Unmarshal(g["shape"], &shape); err != nil {
				return err
			}
			var c cmp
			if err := json.Unmarshal(g[fmt.Sprintf("M=%d", shape.M)], &c); err != nil {
				return err
			}
			fmt.Fprintf(&b, "| Δr2 recompute growth: M=%d, %d-token prompts (%d pairs) | %.2f pairs/s (prompt cache) | %.2f pairs/s (each sequence whole) | %.2fx | | |\n",
				shape.M, shape.Prompt, shape.Pairs, c.Cache.PairsPerS, c.Whole.PairsPerS, c.Speedup)
		}
	}
	var tok map[string]json.RawMessage
	if ok, err := read(filepath.Join(*dir, "tokenizer.json"), &tok); err != nil {
		return err
	} else if ok {
		for _, name := range []string{"llama3-8b-instruct", "mistral-7b-v0.1", "gpt2"} {
			var t struct {
				Prism struct {
					MBPerS   float64 `json:"mb_per_s"`
					IDsEqual bool    `json:"ids_equal_to_hf"`
					Median   float64 `json:"median_seconds"`
				} `json:"prism"`
				T2 float64 `json:"prism_2x_input_median_seconds"`
				T4 float64 `json:"prism_4x_input_median_seconds"`
				HF struct {
					MBPerS float64 `json:"mb_per_s"`
				} `json:"hf_tokenizers"`
				Ratio  float64  `json:"speed_ratio_prism_over_hf"`
				Linear *float64 `json:"prism_marginal_linearity"`
			}
			if err := json.Unmarshal(tok[name], &t); err != nil {
				continue
			}
			fmt.Fprintf(&b, "| tokenizer, %s (ids equal: %v) | %.2f MB/s | %.2f MB/s (HF tokenizers) | %.2fx | ≥ 1.0x | %s |\n",
				name, t.Prism.IDsEqual, t.Prism.MBPerS, t.HF.MBPerS, t.Ratio, yes(t.Ratio >= 1 && t.Prism.IDsEqual))
			if t.Linear != nil && t.T4 > t.Prism.Median {
				// The line through the times of 1× and 4× the text (start-up
				// plus a per-byte cost) should predict the time of 2×.
				t1 := t.Prism.Median
				pred := t1 + (t.T4-t1)/3
				res := (t.T2 - pred) / t.T2
				fmt.Fprintf(&b, "| tokenizer, %s: linear in input (1×, 2×, 4× the text: %.2f, %.2f, %.2f s; 2× off the 1×–4× line by) | %+.1f%% | | | within ±10%% | %s |\n",
					name, t1, t.T2, t.T4, 100*res, yes(math.Abs(res) <= 0.10))
			}
		}
	}
	var mem struct {
		Growth float64 `json:"growth_pct"`
		Peak   int64   `json:"peak_rss_kib"`
		From   int     `json:"from_step"`
		Steps  int     `json:"steps"`
	}
	if ok, err := read(filepath.Join(*dir, "memory-tiny.json"), &mem); err != nil {
		return err
	} else if ok {
		if mem.Peak > 0 {
			fmt.Fprintf(&b, "| peak resident memory, tiny run | %.0f MiB | | | | |\n", float64(mem.Peak)/1024)
		}
		fmt.Fprintf(&b, "| resident memory growth, step %d to %d | %+.2f%% | | | < 5%% | %s |\n", mem.From, mem.Steps, mem.Growth, yes(mem.Growth < 5))
	}
	var dp struct {
		Results []struct {
			Shape struct {
				Name   string  `json:"name"`
				Params int64   `json:"params"`
				MiB    float64 `json:"gradient_mib"`
			} `json:"shape"`
			One struct {
				Step float64 `json:"median_step_seconds"`
			} `json:"one_process"`
			Two struct {
				Step      float64 `json:"median_step_seconds"`
				AllReduce float64 `json:"median_allreduce_seconds"`
				Share     float64 `json:"allreduce_share_of_step"`
			} `json:"two_processes"`
			Speedup float64 `json:"speedup"`
			LossErr float64 `json:"max_loss_rel_diff"`
		} `json:"results"`
	}
	if ok, err := read(filepath.Join(*dir, "dist.json"), &dp); err != nil {
		return err
	} else if ok {
		for _, r := range dp.Results {
			fmt.Fprintf(&b, "| data parallel, %s (%.1fM params; loss agrees to %.0e): 2 processes vs 1 on the same cores | %.3f s/step | %.3f s/step (1 process) | %.2fx | none (record) | |\n",
				r.Shape.Name, float64(r.Shape.Params)/1e6, r.LossErr, r.Two.Step, r.One.Step, r.Speedup)
			fmt.Fprintf(&b, "| data parallel, %s: allreduce of %.0f MiB of gradients per step (Gloo, loopback) | %.3f s (%.0f%% of the step) | | | | |\n",
				r.Shape.Name, r.Shape.MiB, r.Two.AllReduce, 100*r.Two.Share)
		}
	}
	var lt struct {
		Configs []struct {
			Name   string  `json:"name"`
			Median float64 `json:"median_wall_seconds"`
		} `json:"configs"`
		Ratio   float64            `json:"ratio_2_6_over_1_13"`
		Pthread map[string]float64 `json:"pthreads_over_openmp"`
		LossErr float64            `json:"max_heldout_loss_rel_diff"`
		Met     bool               `json:"target_met"`
	}
	if ok, err := read(filepath.Join(*dir, "libtorch.json"), &lt); err != nil {
		return err
	} else if ok && len(lt.Configs) >= 4 {
		fmt.Fprintf(&b, "| toy run wall time, libtorch 2.6 vs 1.13, OpenBLAS OpenMP (held-out loss agrees to %.0e) | %.1f s | %.1f s (1.13) | %.2f (time ratio) | ≤ 1.05 | %s |\n",
			lt.LossErr, lt.Configs[1].Median, lt.Configs[0].Median, lt.Ratio, yes(lt.Met))
		fmt.Fprintf(&b, "| toy run wall time with OpenBLAS's pthreads variant instead (1.13; 2.6) | %.1f s; %.1f s | | x%.2f; x%.2f slower | none (why setup picks OpenMP) | |\n",
			lt.Configs[2].Median, lt.Configs[3].Median, lt.Pthread["1.13"], lt.Pthread["2.6"])
	}
	if machine != "" {
		fmt.Fprintf(&b, "\nMachine: %s.\n", machine)
	}
	return fsutil.WriteFileAtomic(filepath.Join(*dir, "README.md"), []byte(b.String()))
}

// trainRows adds the rows of a training-step result file (bench/train's
// JSON) to b, each figure's name prefixed by label, and returns the
// machine it ran on ("" when the file is not there).
func trainRows(b *strings.Builder, path, label string) (string, error) {
	var train struct {
		Machine struct {
			CPU   string `json:"cpu"`
			Cores int    `json:"cores"`
			Torch struct {
				Version string `json:"libtorch_version"`
				BLAS    string `json:"blas"`
			} `json:"libtorch"`
			Date string `json:"date"`
		} `json:"machine"`
		Threads   int     `json:"threads"`
		Peak      float64 `json:"matmul_peak_gflops"`
		Precision string  `json:"precision"`
		Results   []struct {
			Shape struct {
				Name string `json:"Name"`
			} `json:"shape"`
			Prism   side    `json:"prism"`
			PyTorch side    `json:"pytorch_eager"`
			Speedup float64 `json:"speedup_prism_over_pytorch"`
			Target  float64 `json:"target_speedup"`
			Met     bool    `json:"target_met"`
			LossErr float64 `json:"max_loss_rel_diff"`
		} `json:"results"`
	}
	ok, err := read(path, &train)
	if err != nil || !ok {
		return "", err
	}
	m := train.Machine
	baseline := "PyTorch eager"
	if train.Precision == "bf16" {
		baseline = "PyTorch eager, bf16"
	}
	for _, r := range train.Results {
		fmt.Fprintf(b, "| training step, %s%s (loss agrees to %.0e) | %.3f s | %.3f s (%s) | %.2fx | ≥ %.1fx | %s |\n",
			label, r.Shape.Name, r.LossErr, r.Prism.MedianSeconds, r.PyTorch.MedianSeconds, baseline, r.Speedup, r.Target, yes(r.Met))
		if r.Shape.Name == "medium" && train.Precision != "bf16" {
			// The peak is float32's: a bf16 step's share of it says nothing.
			fmt.Fprintf(b, "| medium step, share of the %.0f GFLOP/s matmul peak | %.0f%% | %.0f%% | | ≥ 50%% | %s |\n",
				train.Peak, 100*r.Prism.MFU, 100*r.PyTorch.MFU, yes(r.Prism.MFU >= 0.5))
		}
	}
	return fmt.Sprintf("%s, %d cores, libtorch %s, %s, %d threads, %s", m.CPU, m.Cores, m.Torch.Version, m.Torch.BLAS, train.Threads, m.Date), nil
}
