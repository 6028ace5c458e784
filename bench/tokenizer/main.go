// Command tokenizer times `prism tokenize` against the Hugging Face
// tokenizers library (Rust, through its Node binding) on the same text,
// same machine, same run, one thread each, checks that both produce the
// same ids line for line, and reports MB/s, tokens/s and the ratio.
//
//	go run ./bench/tokenizer -prism bin/prism -node-modules bench/tokenizer/node_modules -out bench/results/tokenizer.json
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"prism/internal/fsutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tokenizer bench:", err)
		os.Exit(1)
	}
}

type side struct {
	Seconds   []float64 `json:"seconds"`
	Median    float64   `json:"median_seconds"`
	MBPerS    float64   `json:"mb_per_s"`
	TokPerS   float64   `json:"tokens_per_s"`
	IDsEqual  bool      `json:"ids_equal_to_hf,omitempty"`
	Mismatch  int       `json:"mismatched_lines,omitempty"`
	TokensOut int       `json:"tokens"`
}

func run() error {
	prism := flag.String("prism", "bin/prism", "prism binary")
	nodeModules := flag.String("node-modules", "bench/tokenizer/node_modules", "folder holding the npm tokenizers package")
	fixtures := flag.String("fixtures", envOr("PRISM_FIXTURES", "../shared"), "shared fixtures folder")
	srcDir := flag.String("text-from", ".", "folder whose .go and .md files (plus the golden strings) make the text")
	mb := flag.Float64("mb", 2, "megabytes of text")
	runs := flag.Int("runs", 3, "timed runs per side")
	out := flag.String("out", "", "write results JSON here")
	flag.Parse()

	dir, err := os.MkdirTemp("", "prism-tokbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input := filepath.Join(dir, "in.jsonl")
	nbytes, nlines, err := buildCorpus(input, *fixtures, *srcDir, int(*mb*(1<<20)))
	if err != nil {
		return err
	}
	// Linearity: the same text two and four times over. Whole-command
	// times include start-up (loading libtorch and the tokenizer), so
	// linearity is judged on the marginal cost: t(4x) - t(2x) should be
	// twice t(2x) - t(1x).
	input2, input4 := filepath.Join(dir, "in2.jsonl"), filepath.Join(dir, "in4.jsonl")
	if b, err := os.ReadFile(input); err != nil {
		return err
	} else if err := os.WriteFile(input2, bytes.Repeat(b, 2), 0o644); err != nil {
		return err
	} else if err := os.WriteFile(input4, bytes.Repeat(b, 4), 0o644); err != nil {
		return err
	}
	hfScript, err := filepath.Abs("bench/tokenizer/hf.js")
	if err != nil {
		return err
	}
	results := map[string]any{"bytes": nbytes, "lines": nlines, "runs": *runs, "date": time.Now().UTC().Format(time.RFC3339)}
	for _, name := range []string{"llama3-8b-instruct", "mistral-7b-v0.1", "gpt2"} {
		tokJSON := filepath.Join(*fixtures, "tokenizers", name, "tokenizer.json")
		prismOut, hfOut := filepath.Join(dir, name+".prism"), filepath.Join(dir, name+".hf")
		p := &side{}
		h := &side{}
		for i := 0; i < *runs; i++ {
			s, err := timeCmd(input, prismOut, nil, *prism, "tokenize", "--tokenizer", tokJSON, "--threads", "1")
			if err != nil {
				return fmt.Errorf("prism: %w", err)
			}
			p.Seconds = append(p.Seconds, s)
			env := []string{"NODE_PATH=" + *nodeModules, "RAYON_NUM_THREADS=1", "RAYON_RS_NUM_CPUS=1", "TOKENIZERS_PARALLELISM=false"}
			s, err = timeCmd("", "", env, "node", hfScript, tokJSON, input, hfOut, "true")
			if err != nil {
				return fmt.Errorf("hf: %w", err)
			}
			h.Seconds = append(h.Seconds, s)
		}
		eq, mism, ntok, err := compare(prismOut, hfOut)
		if err != nil {
			return err
		}
		for _, x := range []*side{p, h} {
			x.Median = median(x.Seconds)
			x.MBPerS = float64(nbytes) / (1 << 20) / x.Median
			x.TokPerS = float64(ntok) / x.Median
			x.TokensOut = ntok
		}
		p.IDsEqual, p.Mismatch = eq, mism
		var two, four []float64
		for i := 0; i < *runs; i++ {
			for _, in := range []struct {
				path string
				t    *[]float64
			}{{input2, &two}, {input4, &four}} {
				s, err := timeCmd(in.path, filepath.Join(dir, name+".prism-n"), nil, *prism, "tokenize", "--tokenizer", tokJSON, "--threads", "1")
				if err != nil {
					return fmt.Errorf("prism: %w", err)
				}
				*in.t = append(*in.t, s)
			}
		}
		t1, t2, t4 := p.Median, median(two), median(four)
		linear := (t4 - t2) / (2 * (t2 - t1))
		results[name] = map[string]any{"prism": p, "hf_tokenizers": h, "speed_ratio_prism_over_hf": h.Median / p.Median,
			"prism_2x_input_median_seconds": t2, "prism_4x_input_median_seconds": t4, "prism_marginal_linearity": linear}
		fmt.Printf("%-20s prism %6.2f MB/s  hf %6.2f MB/s  ratio %.2fx  ids equal: %v (%d mismatched lines)  (t4x-t2x)/(2(t2x-t1x)) %.2f\n",
			name, p.MBPerS, h.MBPerS, h.Median/p.Median, eq, mism, linear)
	}
	if *out != "" {
		j, _ := json.MarshalIndent(results, "", "  ")
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		return fsutil.WriteFileAtomic(*out, append(j, '\n'))
	}
	return nil
}

// buildCorpus writes JSON Lines of text: the golden strings and the lines
// of the project's Go and Markdown files, until size bytes.
func buildCorpus(path, fixtures, srcDir string, size int) (int, int, error) {
	var texts []string
	b, err := os.ReadFile(filepath.Join(fixtures, "tokenizers", "golden", "strings.json"))
	if err != nil {
		return 0, 0, err
	}
	var golden []string
	if err := json.Unmarshal(b, &golden); err != nil {
		var obj map[string]string
		if err2 := json.Unmarshal(b, &obj); err2 != nil {
			return 0, 0, fmt.Errorf("strings.json: %v", err)
		}
		for _, v := range obj {
			golden = append(golden, v)
		}
	}
	texts = append(texts, golden...)
	_ = filepath.WalkDir(srcDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() && (d.Name() == "build" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && p != srcDir {
			if d != nil && d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") || strings.HasSuffix(p, ".md") {
			if c, err := os.ReadFile(p); err == nil {
				// Paragraph-sized pieces.
				for _, para := range strings.Split(string(c), "\n\n") {
					if strings.TrimSpace(para) != "" {
						texts = append(texts, para)
					}
				}
			}
		}
		return nil
	})
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	n, lines := 0, 0
	for n < size {
		for _, t := range texts {
			if n >= size {
				break
			}
			j, _ := json.Marshal(map[string]string{"text": t})
			w.Write(append(j, '\n'))
			n += len(t)
			lines++
		}
	}
	return n, lines, w.Flush()
}

func timeCmd(stdin, stdout string, env []string, name string, args ...string) (float64, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if stdin != "" {
		f, err := os.Open(stdin)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		cmd.Stdin = f
	}
	if stdout != "" {
		f, err := os.Create(stdout)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		cmd.Stdout = f
	}
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s: %w: %s", name, err, errb.String())
	}
	return time.Since(start).Seconds(), nil
}

// compare checks the two id files line by line and counts tokens.
func compare(a, b string) (bool, int, int, error) {
	la, err := os.ReadFile(a)
	if err != nil {
		return false, 0, 0, err
	}
	lb, err := os.ReadFile(b)
	if err != nil {
		return false, 0, 0, err
	}
	xa := strings.Split(strings.TrimSpace(string(la)), "\n")
	xb := strings.Split(strings.TrimSpace(string(lb)), "\n")
	if len(xa) != len(xb) {
		return false, -1, 0, fmt.Errorf("%d lines from prism, %d from hf", len(xa), len(xb))
	}
	mism, ntok := 0, 0
	for i := range xa {
		var ra, rb struct{ IDs []int }
		if err := json.Unmarshal([]byte(xa[i]), &ra); err != nil {
			return false, 0, 0, err
		}
		if err := json.Unmarshal([]byte(xb[i]), &rb); err != nil {
			return false, 0, 0, err
		}
		ntok += len(rb.IDs)
		if fmt.Sprint(ra.IDs) != fmt.Sprint(rb.IDs) {
			mism++
		}
	}
	return mism == 0, mism, ntok, nil
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}
