package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"prism/data"
	"prism/data/encode"
	"prism/internal/analysis"
	"prism/internal/fsutil"
	"prism/internal/rewardbench"
	"prism/models"
)

func newEvalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a reward model (rewardbench, pairs)",
	}
	cmd.AddCommand(newEvalRewardBenchCmd(g), newEvalPairsCmd(g))
	return cmd
}

// evalOptions are the flags every `prism eval` subcommand shares.
type evalOptions struct {
	model, tokenizer, out string
	data                  []string
	batch                 int
	skipInvalid           bool
	length                lengthFlags
	template              templateFlags
	place                 modelFlags
}

// register declares the shared flags; dataHelp describes --data.
func (o *evalOptions) register(cmd *cobra.Command, dataHelp string) {
	cmd.Flags().StringVar(&o.model, "model", "", "reward model folder")
	cmd.Flags().StringArrayVar(&o.data, "data", nil, dataHelp)
	cmd.Flags().StringVar(&o.tokenizer, "tokenizer", "", "tokenizer folder for text pairs (default: --model)")
	cmd.Flags().StringVar(&o.out, "out", "", "output folder for results.json, results.md and scores.jsonl (default: none)")
	cmd.Flags().IntVar(&o.batch, "batch-size", 32, "sequences per forward pass")
	cmd.Flags().BoolVar(&o.skipInvalid, "skip-invalid", false, "skip bad rows (reported by reason on stderr and in results.json) instead of failing")
	o.length.register(cmd, overTruncate, " (the official RewardBench scorer truncates)")
	o.template.register(cmd)
	o.place.register(cmd)
}

// evalRun is what an evaluation read and scored.
type evalRun struct {
	m                 *models.RewardModel
	pairs             []data.Pair
	chosen, rejected  []float64
	skipped           data.ReadStats
	maxLength, cutOff int
}

// loadAndScore reads the model and the pairs of every --data file,
// applies the length limit and scores both sides. Skipped rows and
// truncated pairs are reported on stderr.
func (o *evalOptions) loadAndScore(g *globals) (*evalRun, error) {
	if o.model == "" || len(o.data) == 0 {
		return nil, fmt.Errorf("--model and --data are required")
	}
	if o.batch < 1 {
		return nil, fmt.Errorf("--batch-size %d: want at least 1", o.batch)
	}
	m, err := o.place.load(g, o.model)
	if err != nil {
		return nil, err
	}
	r := &evalRun{m: m}
	fail := func(err error) (*evalRun, error) {
		m.Drop()
		return nil, err
	}
	if r.maxLength, err = o.length.limit(g, m); err != nil {
		return fail(err)
	}
	tok := tokenizerDir(o.tokenizer, o.model)
	for _, path := range o.data {
		pairs, st, err := encode.ReadFile(path, tok, m.Config.VocabSize, data.ReadOptions{SkipInvalid: o.skipInvalid}, o.template.options())
		if err != nil {
			return fail(err)
		}
		if st.Skipped > 0 {
			g.logger.Warn("skipped invalid rows", "file", path, "skipped", st.Skipped, "rows", st.Rows, "summary", st.Summary())
		}
		r.skipped.Rows += st.Rows
		r.skipped.Merge(st)
		pairs, cut, err := o.length.fitPairs(path, pairs, r.maxLength)
		if err != nil {
			return fail(err)
		}
		if cut > 0 {
			g.logger.Warn("truncated pairs to the length limit (their first tokens are scored)", "file", path, "pairs", cut, "max_length", r.maxLength)
		}
		r.cutOff += cut
		for i := range pairs {
			pairs[i].ID = len(r.pairs) + i
		}
		r.pairs = append(r.pairs, pairs...)
	}
	if r.chosen, r.rejected, err = analysis.ScorePairs(analysis.ModelScorer(m, o.batch), r.pairs); err != nil {
		return fail(err)
	}
	return r, nil
}

// inputReport is what every evaluation's results.json says about its
// input: the files, what was skipped and what was cut.
type inputReport struct {
	Data      []string       `json:"data"`
	Pairs     int            `json:"pairs"`
	MaxLength int            `json:"max_length"`
	Truncated int            `json:"truncated_pairs"`
	Skipped   int            `json:"skipped_rows"`
	Reasons   map[string]int `json:"skip_reasons,omitempty"`
	Examples  []string       `json:"skip_examples,omitempty"`
}

// input is results.json's account of what r read.
func (o *evalOptions) input(r *evalRun) inputReport {
	return inputReport{Data: o.data, Pairs: len(r.pairs), MaxLength: r.maxLength, Truncated: r.cutOff,
		Skipped: r.skipped.Skipped, Reasons: r.skipped.Reasons, Examples: r.skipped.Examples}
}

// writeResults writes results.json and results.md to dir, and the
// per-example lines when there are any.
func writeResults(dir string, v any, md string, perExample []byte) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("results.json: %w", err)
	}
	if perExample != nil {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, "scores.jsonl"), perExample); err != nil {
			return err
		}
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "results.json"), append(j, '\n')); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "results.md"), []byte(md))
}

// exampleRow is one line of scores.jsonl, with the official scorer's field
// names: results is 1 when the chosen reward is strictly higher, else 0.
type exampleRow struct {
	ID       string  `json:"id"`
	Subset   string  `json:"subset,omitempty"`
	Chosen   float64 `json:"scores_chosen"`
	Rejected float64 `json:"scores_rejected"`
	Result   int     `json:"results"`
}

// perExample is scores.jsonl: one exampleRow per pair.
func perExample(r *evalRun) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for i, p := range r.pairs {
		row := exampleRow{ID: p.Source, Subset: p.Tags["subset"], Chosen: r.chosen[i], Rejected: r.rejected[i]}
		if (rewardbench.Result{Chosen: row.Chosen, Rejected: row.Rejected}).Correct() {
			row.Result = 1
		}
		if err := enc.Encode(row); err != nil {
			return nil, fmt.Errorf("scores.jsonl, row %s: %w", p.Source, err)
		}
	}
	return b.Bytes(), nil
}

// RewardBenchReport is `prism eval rewardbench`'s results.json.
type RewardBenchReport struct {
	*rewardbench.Scores
	Input inputReport `json:"input"`
}

func newEvalRewardBenchCmd(g *globals) *cobra.Command {
	var o evalOptions
	cmd := &cobra.Command{
		Use:   "rewardbench --model DIR --data F [--data PRIOR_SETS]",
		Short: "Score RewardBench the way the official code does",
		Long: `Score RewardBench data (Parquet or JSON Lines with prompt, chosen, rejected,
subset and optionally id) as allenai/reward-bench does (` + rewardbench.Upstream + `):
per-subset accuracy (a tie is wrong), the four sections as
example-count-weighted means of their subsets (math-prm weighted as the
official code does; a section with no subset scores 0), "Prior Sets" as the
mean accuracy on anthropic_helpful, anthropic_hhh, shp and summarize when
their rows are given (the pref-sets data, as a second --data or in the same
file), and the leaderboard score: sections and prior sets weighted
2, 2, 2, 2, 1, or the mean of the four sections without prior sets.
Subsets outside both are scored on their own and left out of the sections.

Sequences longer than --max-length (2048, as the official scorer) are
truncated to their first tokens, or refused with --over-length refuse.
--out gets results.json, results.md and scores.jsonl, one line per pair:
id, subset, scores_chosen, scores_rejected and results (1 right, 0 wrong).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEvalRewardBench(g, o, cmd.OutOrStdout())
		},
	}
	o.register(cmd, "RewardBench data: Parquet, JSON or JSON Lines with a subset column; repeat for the prior sets")
	return cmd
}

// runEvalRewardBench is `prism eval rewardbench`.
func runEvalRewardBench(g *globals, o evalOptions, stdout io.Writer) error {
	if o.out != "" {
		if err := fsutil.CheckDirTarget(o.out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	r, err := o.loadAndScore(g)
	if err != nil {
		return err
	}
	defer r.m.Drop()
	res := make([]rewardbench.Result, len(r.pairs))
	for i, p := range r.pairs {
		sub := p.Tags["subset"]
		if sub == "" {
			return fmt.Errorf("row %s has no subset: RewardBench rows need a \"subset\" field", p.Source)
		}
		res[i] = rewardbench.Result{Subset: sub, Chosen: r.chosen[i], Rejected: r.rejected[i]}
	}
	s := rewardbench.Score(res)
	if len(s.Other) > 0 {
		g.logger.Warn("subsets that are neither RewardBench's nor prior sets are scored on their own and left out of the sections", "subsets", strings.Join(s.Other, ", "))
	}
	md := rewardBenchMarkdown(o.model, s, r)
	fmt.Fprint(stdout, md)
	lines, err := perExample(r)
	if err != nil {
		return err
	}
	return writeResults(o.out, RewardBenchReport{Scores: s, Input: o.input(r)}, md, lines)
}

// rewardBenchMarkdown is results.md, which the command also prints: the
// sections, then every subset, then what was cut or skipped.
func rewardBenchMarkdown(model string, s *rewardbench.Scores, r *evalRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# RewardBench: %s\n\nScored as %s.\n\n| section | score |\n| --- | --- |\n", model, rewardbench.Upstream)
	for _, sec := range rewardbench.Sections {
		v := s.Sections[sec.Name]
		note := ""
		if slices.Contains(s.Missing, sec.Name) {
			note = " (no subset in the data: 0, as the official code scores it)"
		}
		fmt.Fprintf(&b, "| %s | %.2f%s |\n", sec.Name, 100*v, note)
	}
	if s.PriorSets != nil {
		fmt.Fprintf(&b, "| Prior Sets (0.5 weight) | %.2f |\n", 100**s.PriorSets)
	}
	fmt.Fprintf(&b, "| **overall** | **%.2f** |\n", 100*s.Overall)
	if len(s.Missing) > 0 {
		fmt.Fprintf(&b, "\nSections missing from the data: %s. The overall score counts them as 0, as the leaderboard would; over the sections present it is %.2f, a figure for this partial run only.\n",
			strings.Join(s.Missing, ", "), 100*s.OverallPresent)
	}
	fmt.Fprintf(&b, "\n| subset | correct | total | accuracy |\n| --- | --- | --- | --- |\n")
	names := make([]string, 0, len(s.Subsets))
	for n := range s.Subsets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ss := s.Subsets[n]
		fmt.Fprintf(&b, "| %s | %d | %d | %.4f |\n", n, ss.Correct, ss.Total, ss.Accuracy)
	}
	if len(s.Other) > 0 {
		fmt.Fprintf(&b, "\nSubsets outside RewardBench's sections and prior sets, in no section: %s\n", strings.Join(s.Other, ", "))
	}
	if r.cutOff > 0 {
		fmt.Fprintf(&b, "\n%d pairs were truncated to their first %d tokens.\n", r.cutOff, r.maxLength)
	}
	if r.skipped.Skipped > 0 {
		fmt.Fprintf(&b, "\n%s.\n", r.skipped.Summary())
	}
	return b.String()
}

// PairsReport is `prism eval pairs`' result.
type PairsReport struct {
	Metrics *analysis.Metrics `json:"metrics"`
	// SwappedAccuracy is the accuracy with each pair's prompt replaced by
	// another pair's: a model that reads the prompt drops toward chance on
	// prompt-dependent preferences; a prompt-blind one does not move.
	SwappedAccuracy float64     `json:"swapped_prompt_accuracy"`
	Input           inputReport `json:"input"`
}

// evalPairsOptions are `prism eval pairs`' flags.
type evalPairsOptions struct {
	evalOptions
	seed uint64
}

func newEvalPairsCmd(g *globals) *cobra.Command {
	var o evalPairsOptions
	cmd := &cobra.Command{
		Use:   "pairs --model DIR --data F",
		Short: "Accuracy, margin and reward statistics on any preference file, plus the prompt-swap probe",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEvalPairs(g, o, cmd.OutOrStdout())
		},
	}
	o.register(cmd, "pairs: Parquet, JSON or JSON Lines (text or token ids); repeatable")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "seed of the prompt swap")
	return cmd
}

// runEvalPairs is `prism eval pairs`.
func runEvalPairs(g *globals, o evalPairsOptions, stdout io.Writer) error {
	if o.out != "" {
		if err := fsutil.CheckDirTarget(o.out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	r, err := o.loadAndScore(g)
	if err != nil {
		return err
	}
	defer r.m.Drop()
	rep := &PairsReport{Metrics: analysis.PairMetrics(r.chosen, r.rejected), Input: o.input(r)}
	if len(r.pairs) > 1 {
		if rep.SwappedAccuracy, err = o.swappedAccuracy(r); err != nil {
			return err
		}
	}
	ev := rep.Metrics
	md := fmt.Sprintf("| pairs | accuracy | accuracy, prompts swapped | mean margin | loss | reward mean | reward std |\n| --- | --- | --- | --- | --- | --- | --- |\n| %d | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n",
		ev.Pairs, ev.Accuracy, rep.SwappedAccuracy, ev.Margin, ev.Loss, ev.RewardMean, ev.RewardStd)
	if r.cutOff > 0 {
		md += fmt.Sprintf("\n%d pairs were truncated to their first %d tokens.\n", r.cutOff, r.maxLength)
	}
	if r.skipped.Skipped > 0 {
		md += fmt.Sprintf("\n%s.\n", r.skipped.Summary())
	}
	fmt.Fprint(stdout, md)
	lines, err := perExample(r)
	if err != nil {
		return err
	}
	return writeResults(o.out, rep, md, lines)
}

// swappedAccuracy scores every pair under another pair's prompt, drawn
// with --seed, and returns the accuracy (PairsReport.SwappedAccuracy). It
// needs at least two pairs.
func (o *evalPairsOptions) swappedAccuracy(r *evalRun) (float64, error) {
	pairs := r.pairs
	rng := rand.New(rand.NewPCG(o.seed, 0x5a9))
	swapped := make([]data.Pair, len(pairs))
	for i, p := range pairs {
		j := rng.IntN(len(pairs) - 1)
		if j >= i {
			j++
		}
		swapped[i] = data.Pair{Prompt: pairs[j].Prompt, Chosen: p.Chosen, Rejected: p.Rejected}
	}
	sc, sr, err := analysis.ScorePairs(analysis.ModelScorer(r.m, o.batch), swapped)
	if err != nil {
		return 0, err
	}
	return analysis.PairMetrics(sc, sr).Accuracy, nil
}
