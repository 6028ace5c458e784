package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/sugarme/gotch"

	"prism/data"
	"prism/decomposition"
	"prism/internal/fsutil"
	"prism/internal/report"
	"prism/models"
	"prism/trainer"
)

func newDecomposeCmd(g *globals) *cobra.Command {
	var (
		modelDir, dataPath, promptsPath, out, tag string
		policyDir                                 string
		tau                                       float64
		samples, batch                            int
		includeOwn                                bool
		seed                                      uint64
		length                                    lengthFlags
	)
	cmd := &cobra.Command{
		Use:   "decompose --model DIR --data F.jsonl [--prompts F.jsonl] [--samples M]",
		Short: "Split a reward model's gaps into prompt-free and prompt-related parts",
		Long: `For every pair of a preference file, score both responses under the pair's
own prompt and under M prompts drawn from --prompts (default: the prompts of
the data file), estimate the prompt-free gap Δr2 and the prompt-related gap
Δr1 = Δr - Δr2, and report how much the model reads the prompt: a model that
ignores it shows the same gap under every prompt (the paper's Figure 1).

Writes decomposition.csv, summary.json and quadrants.png to --out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelDir == "" || dataPath == "" {
				return fmt.Errorf("--model and --data are required")
			}
			m, _, err := models.LoadWith(modelDir, gotch.CPU, rand.New(rand.NewPCG(0, 0)), models.LoadOptions{AllowPickle: g.allowPickle})
			if err != nil {
				return err
			}
			defer m.Drop()
			pairs, err := data.ReadTokenPairs(dataPath, m.Config.VocabSize)
			if err != nil {
				return err
			}
			promptSrc := pairs
			if promptsPath != "" {
				if promptSrc, err = data.ReadTokenPairs(promptsPath, m.Config.VocabSize); err != nil {
					return err
				}
			}
			// Every response is scored under every prompt of the pool: the
			// longest prompt with the longest response must fit, since
			// cutting either would change what the estimator measures.
			limit, err := length.limit(g, m)
			if err != nil {
				return err
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
				return fmt.Errorf("the longest prompt (%d tokens) with the longest response (%d) exceeds the limit of %d tokens (--max-length, capped at the model's max_position_embeddings): every response is scored under every prompt, so shorten the data or raise --max-length", longPrompt, longResp, limit)
			}
			pool := trainer.PromptPool(promptSrc)
			var policy *models.CausalLM
			if policyDir != "" {
				if policy, err = models.LoadCausalLM(policyDir, gotch.CPU); err != nil {
					return err
				}
				defer policy.Drop()
			}
			ests, st, err := trainer.Decompose(m, policy, pairs, pool, decomposition.Options{Samples: samples, IncludeOwn: includeOwn, Tol: 1e-6, Seed: seed, PolicyTau: tau}, batch)
			if err != nil {
				return err
			}
			if out == "" {
				out = "decomposition"
			}
			idx := make([]int, len(pairs))
			for i := range idx {
				idx[i] = i
			}
			if err := trainer.WriteDecompositionTable(filepath.Join(out, "decomposition.csv"), pairs, idx, ests, map[int]bool{}); err != nil {
				return err
			}
			s := summarize(ests)
			s["pairs"], s["samples"], s["seconds"], s["pairs_per_s"] = len(pairs), samples, st.Seconds, float64(st.Pairs)/st.Seconds
			var ess float64
			for _, e := range ests {
				ess += e.ESS
			}
			s["mean_ess"] = ess / float64(len(ests))
			j, _ := json.MarshalIndent(s, "", "  ")
			if err := fsutil.WriteFileAtomic(filepath.Join(out, "summary.json"), append(j, '\n')); err != nil {
				return err
			}
			pts := make([]report.Point, len(pairs))
			for i, e := range ests {
				gname := pairs[i].Tags[tag]
				if gname == "" {
					gname = "pairs"
				}
				pts[i] = report.Point{PromptFree: e.PromptFree, PromptRelated: e.PromptRelated, Group: gname}
			}
			if err := report.Quadrants(filepath.Join(out, "quadrants.png"), []report.Panel{{Title: filepath.Base(modelDir), Points: pts}}); err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "pairs\t%d (M = %d prompts each, %.0f pairs/s)\n", len(pairs), samples, float64(st.Pairs)/st.Seconds)
			fmt.Fprintf(w, "mean |gap| under own prompt\t%.4f\n", s["mean_abs_gap"])
			fmt.Fprintf(w, "mean |Δr2| (prompt-free)\t%.4f\n", s["mean_abs_prompt_free"])
			fmt.Fprintf(w, "mean |Δr1| (prompt-related)\t%.4f\n", s["mean_abs_prompt_related"])
			fmt.Fprintf(w, "mean std of gap across prompts\t%.4f\n", s["mean_std_across_prompts"])
			fmt.Fprintf(w, "pairs ranked alike under other prompts (|mean gap| > std, same sign)\t%.3f\n", s["sign_stable_share"])
			fmt.Fprintf(w, "prompt-free share of |gap|\t%.3f\n", s["prompt_free_share"])
			fmt.Fprintf(w, "mean effective sample size of the weights\t%.2f\n", s["mean_ess"])
			fmt.Fprintf(w, "outputs\t%s\n", out)
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&modelDir, "model", "", "reward model folder")
	cmd.Flags().StringVar(&dataPath, "data", "", "pairs (JSON Lines of token ids)")
	cmd.Flags().StringVar(&promptsPath, "prompts", "", "file whose prompts are sampled (default: the data file's)")
	cmd.Flags().IntVar(&samples, "samples", 8, "M, prompts sampled per pair")
	cmd.Flags().BoolVar(&includeOwn, "include-own", true, "count the pair's own prompt among the samples")
	cmd.Flags().IntVar(&batch, "batch-size", 256, "sequences per scoring pass")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the prompt draws")
	cmd.Flags().StringVar(&out, "out", "", "output folder (default: ./decomposition)")
	cmd.Flags().StringVar(&tag, "tag", "", "pair tag that colours the plot")
	cmd.Flags().StringVar(&policyDir, "policy", "", "causal LM folder for importance weights (default: uniform weights)")
	cmd.Flags().Float64Var(&tau, "tau", 1, "temperature τ of the policy weights")
	cmd.Flags().IntVar(&length.max, "max-length", 2048, "longest sequence scored, in tokens (never more than the model's max_position_embeddings); a pool whose longest prompt and response exceed it is refused")
	length.policy = overRefuse
	return cmd
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
