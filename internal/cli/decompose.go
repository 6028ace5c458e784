package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"prism/data"
	"prism/data/encode"
	"prism/decomposition"
	"prism/internal/analysis"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/models"
)

// decomposeOptions are `prism decompose`'s flags.
type decomposeOptions struct {
	model, tokenizer, data, prompts, out, tag string
	policy                                    string
	tau                                       float64
	samples, batch, share                     int
	cachePrompts                              bool
	includeOwn                                bool
	seed                                      uint64
	length                                    lengthFlags
	template                                  templateFlags
	place                                     modelFlags
}

func newDecomposeCmd(g *globals) *cobra.Command {
	var o decomposeOptions
	cmd := &cobra.Command{
		Use:   "decompose --model DIR --data F.jsonl [--prompts F.jsonl] [--samples M]",
		Short: "Split a reward model's gaps into prompt-free and prompt-related parts",
		Long: `For every pair of a preference file, score both responses under the pair's
own prompt and under M prompts drawn from --prompts (default: the prompts of
the data file), estimate the prompt-free gap Δr2 and the prompt-related gap
Δr1 = Δr - Δr2, and report how much the model reads the prompt: a model that
ignores it shows the same gap under every prompt (the paper's Figure 1).
Pairs are text (through the tokenizer and its chat template, as prism eval
reads them) or token ids.

Writes decomposition.csv, summary.json and quadrants.png to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDecompose(g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.model, "model", "", "reward model folder")
	cmd.Flags().StringVar(&o.tokenizer, "tokenizer", "", "tokenizer folder for text pairs (default: --model)")
	cmd.Flags().StringVar(&o.data, "data", "", "pairs (JSON Lines or Parquet: text or token ids)")
	cmd.Flags().StringVar(&o.prompts, "prompts", "", "file whose prompts are sampled (default: the data file's)")
	cmd.Flags().IntVar(&o.samples, "samples", 8, "M, prompts sampled per pair")
	cmd.Flags().BoolVar(&o.includeOwn, "include-own", true, "count the pair's own prompt among the samples")
	cmd.Flags().IntVar(&o.batch, "batch-size", 256, "sequences per scoring pass")
	cmd.Flags().BoolVar(&o.cachePrompts, "cache-prompts", true, "run each prompt once and score its responses after its cached keys and values (same rewards; false scores every sequence whole)")
	cmd.Flags().IntVar(&o.share, "share-prompts", 0, "pairs (consecutive in the file) that share one draw of M prompts; 0 or 1: each pair draws its own")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "seed of the prompt draws")
	cmd.Flags().StringVar(&o.out, "out", "", "output folder (default: ./decomposition)")
	cmd.Flags().StringVar(&o.tag, "tag", "", "pair tag that colours the plot")
	cmd.Flags().StringVar(&o.policy, "policy", "", "causal LM folder for importance weights (default: uniform weights)")
	cmd.Flags().Float64Var(&o.tau, "tau", 1, "temperature τ of the policy weights")
	cmd.Flags().IntVar(&o.length.max, "max-length", 2048, "longest sequence scored, in tokens (never more than the model's max_position_embeddings); a pool whose longest prompt and response exceed it is refused")
	o.length.policy = overRefuse
	o.template.register(cmd)
	o.place.register(cmd)
	return cmd
}

// runDecompose is `prism decompose`.
func runDecompose(g *globals, o decomposeOptions, stdout io.Writer) error {
	if o.model == "" || o.data == "" {
		return fmt.Errorf("--model and --data are required")
	}
	if o.batch < 1 {
		return fmt.Errorf("--batch-size %d: want at least 1", o.batch)
	}
	if o.out == "" {
		o.out = "decomposition"
	}
	if err := fsutil.CheckDirTarget(o.out); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if o.samples < 1 {
		return fmt.Errorf("--samples %d: want at least 1 prompt per pair", o.samples)
	}
	if o.share < 0 {
		return fmt.Errorf("--share-prompts %d: want 0 (each pair draws its own prompts) or more", o.share)
	}
	m, err := o.place.load(g, o.model)
	if err != nil {
		return err
	}
	defer m.Drop()
	pairs, pool, err := o.readPairs(g, m)
	if err != nil {
		return err
	}
	var policy *models.CausalLM
	if o.policy != "" {
		if policy, err = o.place.loadPolicy(o.policy); err != nil {
			return err
		}
		defer policy.Drop()
	}
	opt := decomposition.Options{Samples: o.samples, IncludeOwn: o.includeOwn, Tol: 1e-6, Seed: o.seed, PolicyTau: o.tau, Share: o.share}
	ests, st, err := analysis.EstimatePairs(pairs, pool, opt, analysis.ModelPrefixScorer(m, o.batch, o.cachePrompts), analysis.PolicyLogLik(policy, o.batch, o.cachePrompts))
	if err != nil {
		return err
	}
	s, err := o.writeOutputs(pairs, ests, st)
	if err != nil {
		return err
	}
	return o.print(stdout, len(pairs), s, st)
}

// readPairs reads the pairs and the prompt pool through the loader every
// command uses, and refuses a pool whose longest prompt with the longest
// response does not fit: every response is scored under every prompt of
// the pool, and cutting either would change what the estimator measures.
func (o *decomposeOptions) readPairs(g *globals, m *models.RewardModel) (pairs []data.Pair, pool [][]int64, err error) {
	tok := tokenizerDir(o.tokenizer, o.model)
	read := func(path string) ([]data.Pair, error) {
		ps, _, err := encode.ReadFile(path, tok, m.Config.VocabSize, data.ReadOptions{}, o.template.options())
		return ps, err
	}
	if pairs, err = read(o.data); err != nil {
		return nil, nil, err
	}
	promptSrc := pairs
	if o.prompts != "" {
		if promptSrc, err = read(o.prompts); err != nil {
			return nil, nil, err
		}
	}
	limit, err := o.length.limit(g, m)
	if err != nil {
		return nil, nil, err
	}
	longPrompt, longResp := 0, 0
	for _, p := range promptSrc {
		longPrompt = max(longPrompt, len(p.Prompt))
	}
	for _, p := range pairs {
		longPrompt = max(longPrompt, len(p.Prompt))
		longResp = max(longResp, len(p.Chosen), len(p.Rejected))
	}
	if longPrompt+longResp > limit {
		return nil, nil, fmt.Errorf("the longest prompt (%d tokens) with the longest response (%d) exceeds the limit of %d tokens (--max-length, capped at the model's max_position_embeddings): every response is scored under every prompt, so shorten the data or raise --max-length", longPrompt, longResp, limit)
	}
	return pairs, decomposition.PromptPool(promptSrc), nil
}

// writeOutputs writes decomposition.csv, summary.json and quadrants.png.
func (o *decomposeOptions) writeOutputs(pairs []data.Pair, ests []decomposition.PairEstimate, st decomposition.Stats) (map[string]any, error) {
	idx := make([]int, len(pairs))
	for i := range idx {
		idx[i] = i
	}
	if err := decomposition.WriteTable(filepath.Join(o.out, "decomposition.csv"), pairs, idx, ests, map[int]bool{}); err != nil {
		return nil, err
	}
	s := summarize(ests)
	s["pairs"], s["samples"], s["seconds"], s["pairs_per_s"] = len(pairs), o.samples, st.Seconds, float64(st.Pairs)/st.Seconds
	s["mean_ess"] = decomposition.MeanESS(ests)
	j, _ := json.MarshalIndent(s, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(o.out, "summary.json"), append(j, '\n')); err != nil {
		return nil, err
	}
	pts := decomposition.Points(pairs, idx, ests, o.tag)
	return s, report.Quadrants(filepath.Join(o.out, "quadrants.png"), []report.Panel{{Title: filepath.Base(o.model), Points: pts}})
}

// print shows the summary.
func (o *decomposeOptions) print(stdout io.Writer, n int, s map[string]any, st decomposition.Stats) error {
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "pairs\t%d (M = %d prompts each, %.0f pairs/s)\n", n, o.samples, float64(st.Pairs)/st.Seconds)
	fmt.Fprintf(w, "mean |gap| under own prompt\t%.4f\n", s["mean_abs_gap"])
	fmt.Fprintf(w, "mean |Δr2| (prompt-free)\t%.4f\n", s["mean_abs_prompt_free"])
	fmt.Fprintf(w, "mean |Δr1| (prompt-related)\t%.4f\n", s["mean_abs_prompt_related"])
	fmt.Fprintf(w, "mean std of gap across prompts\t%.4f\n", s["mean_std_across_prompts"])
	fmt.Fprintf(w, "pairs ranked alike under other prompts (|mean gap| > std, same sign)\t%.3f\n", s["sign_stable_share"])
	fmt.Fprintf(w, "prompt-free share of |gap|\t%.3f\n", s["prompt_free_share"])
	fmt.Fprintf(w, "mean effective sample size of the weights\t%.2f\n", s["mean_ess"])
	fmt.Fprintf(w, "outputs\t%s\n", o.out)
	return w.Flush()
}

// summarize condenses the per-pair estimates into the Figure 1 figures.
func summarize(ests []decomposition.PairEstimate) map[string]any {
	var gap, pf, pr, std, stable float64
	abs := func(x float64) float64 {
		if x < 0 {
			return -x
		}
		return x
	}
	for _, e := range ests {
		gap += abs(e.Gap)
		pf += abs(e.PromptFree)
		pr += abs(e.PromptRelated)
		std += e.Std
		// The gap keeps its sign across prompts when |mean| > std.
		if abs(e.Mean) > e.Std && (e.Mean > 0) == (e.Gap > 0) {
			stable++
		}
	}
	n := float64(len(ests))
	share := 0.0
	if pf+pr > 0 {
		share = pf / (pf + pr)
	}
	return map[string]any{
		"mean_abs_gap": gap / n, "mean_abs_prompt_free": pf / n, "mean_abs_prompt_related": pr / n,
		"mean_std_across_prompts": std / n, "sign_stable_share": stable / n, "prompt_free_share": share,
	}
}
