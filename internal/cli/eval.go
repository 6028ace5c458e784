package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/sugarme/gotch"

	"prism/data"
	"prism/data/encode"
	"prism/internal/fsutil"
	"prism/internal/rewardbench"
	"prism/models"
	"prism/trainer"
)

func newEvalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a reward model (rewardbench, pairs)",
	}
	cmd.AddCommand(newEvalRewardBenchCmd(g), newEvalPairsCmd(g))
	return cmd
}

type evalFlags struct {
	g                           *globals
	model, data, tokenizer, out string
	batch                       int
	skipInvalid                 bool
}

func (f *evalFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.model, "model", "", "reward model folder")
	cmd.Flags().StringVar(&f.data, "data", "", "pairs: Parquet, JSON or JSON Lines (text or token ids)")
	cmd.Flags().StringVar(&f.tokenizer, "tokenizer", "", "tokenizer folder for text pairs (default: --model)")
	cmd.Flags().StringVar(&f.out, "out", "", "output folder for results.json and results.md (default: none)")
	cmd.Flags().IntVar(&f.batch, "batch-size", 32, "sequences per forward pass")
	cmd.Flags().BoolVar(&f.skipInvalid, "skip-invalid", false, "skip and count bad rows instead of failing")
}

// load reads the model and the pairs.
func (f *evalFlags) load() (*models.RewardModel, []data.Pair, error) {
	if f.model == "" || f.data == "" {
		return nil, nil, fmt.Errorf("--model and --data are required")
	}
	if f.batch < 1 {
		return nil, nil, fmt.Errorf("--batch-size %d: want at least 1", f.batch)
	}
	m, _, err := models.LoadWith(f.model, gotch.CPU, rand.New(rand.NewPCG(0, 0)), models.LoadOptions{AllowPickle: f.g.allowPickle})
	if err != nil {
		return nil, nil, err
	}
	tok := f.tokenizer
	if tok == "" {
		tok = f.model
	}
	pairs, _, err := encode.ReadFile(f.data, tok, m.Config.VocabSize, data.ReadOptions{SkipInvalid: f.skipInvalid})
	if err != nil {
		m.Drop()
		return nil, nil, err
	}
	return m, pairs, nil
}

// loadAndScore reads the model and the pairs and scores both sides.
func (f *evalFlags) loadAndScore() (m *models.RewardModel, pairs []data.Pair, chosen, rejected []float64, err error) {
	m, pairs, err = f.load()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if chosen, rejected, err = trainer.ScorePairs(m, pairs, f.batch); err != nil {
		m.Drop()
		return nil, nil, nil, nil, err
	}
	return m, pairs, chosen, rejected, nil
}

func writeResults(dir string, v any, md string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "results.json"), append(j, '\n')); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, "results.md"), []byte(md))
}

func newEvalRewardBenchCmd(g *globals) *cobra.Command {
	f := &evalFlags{g: g}
	cmd := &cobra.Command{
		Use:   "rewardbench --model DIR --data F",
		Short: "Score RewardBench's filtered split the way the official code does",
		Long: `Score the RewardBench "filtered" split (Parquet or JSON Lines with prompt,
chosen, rejected and subset): per-subset accuracy (a tie is wrong), the four
sections as example-count-weighted means of their subsets (math-prm weighted
as the official code does) and the overall score as the mean of the
sections.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, pairs, chosen, rejected, err := f.loadAndScore()
			if err != nil {
				return err
			}
			defer m.Drop()
			res := make([]rewardbench.Result, len(pairs))
			for i, p := range pairs {
				sub := p.Tags["subset"]
				if sub == "" {
					return fmt.Errorf("%s: pair %d has no subset", f.data, p.ID)
				}
				res[i] = rewardbench.Result{Subset: sub, Chosen: chosen[i], Rejected: rejected[i]}
			}
			s, err := rewardbench.Score(res)
			if err != nil {
				return fmt.Errorf("%s: %w", f.data, err)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "# RewardBench: %s\n\n| section | score |\n| --- | --- |\n", f.model)
			for _, sec := range []string{"Chat", "Chat Hard", "Safety", "Reasoning"} {
				if v, ok := s.Sections[sec]; ok {
					fmt.Fprintf(&b, "| %s | %.2f |\n", sec, 100*v)
				} else {
					fmt.Fprintf(&b, "| %s | n/a |\n", sec)
				}
			}
			fmt.Fprintf(&b, "| **overall** | **%.2f** |\n\n| subset | correct | total | accuracy |\n| --- | --- | --- | --- |\n", 100*s.Overall)
			names := make([]string, 0, len(s.Subsets))
			for n := range s.Subsets {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				ss := s.Subsets[n]
				fmt.Fprintf(&b, "| %s | %d | %d | %.4f |\n", n, ss.Correct, ss.Total, ss.Accuracy)
			}
			if len(s.Missing) > 0 {
				fmt.Fprintf(&b, "\nSections with no subset in the data (left out of the overall score): %s\n", strings.Join(s.Missing, ", "))
			}
			fmt.Fprint(cmd.OutOrStdout(), b.String())
			return writeResults(f.out, s, b.String())
		},
	}
	f.register(cmd)
	return cmd
}

// PairsReport is `prism eval pairs`' result.
type PairsReport struct {
	Metrics *trainer.EvalMetrics `json:"metrics"`
	// SwappedAccuracy is the accuracy with each pair's prompt replaced by
	// another pair's: a model that reads the prompt drops toward chance on
	// prompt-dependent preferences; a prompt-blind one does not move.
	SwappedAccuracy float64 `json:"swapped_prompt_accuracy"`
}

func newEvalPairsCmd(g *globals) *cobra.Command {
	f := &evalFlags{g: g}
	var seed uint64
	cmd := &cobra.Command{
		Use:   "pairs --model DIR --data F",
		Short: "Accuracy, margin and reward statistics on any preference file, plus the prompt-swap probe",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, pairs, chosen, rejected, err := f.loadAndScore()
			if err != nil {
				return err
			}
			defer m.Drop()
			rep := &PairsReport{Metrics: trainer.PairMetrics(chosen, rejected)}
			if len(pairs) > 1 {
				rng := rand.New(rand.NewPCG(seed, 0x5a9))
				swapped := make([]data.Pair, len(pairs))
				for i, p := range pairs {
					j := rng.IntN(len(pairs) - 1)
					if j >= i {
						j++
					}
					swapped[i] = data.Pair{Prompt: pairs[j].Prompt, Chosen: p.Chosen, Rejected: p.Rejected}
				}
				sc, sr, err := trainer.ScorePairs(m, swapped, f.batch)
				if err != nil {
					return err
				}
				rep.SwappedAccuracy = trainer.PairMetrics(sc, sr).Accuracy
			}
			ev := rep.Metrics
			md := fmt.Sprintf("| pairs | accuracy | accuracy, prompts swapped | mean margin | loss | reward mean | reward std |\n| --- | --- | --- | --- | --- | --- | --- |\n| %d | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n",
				ev.Pairs, ev.Accuracy, rep.SwappedAccuracy, ev.Margin, ev.Loss, ev.RewardMean, ev.RewardStd)
			fmt.Fprint(cmd.OutOrStdout(), md)
			return writeResults(f.out, rep, md)
		},
	}
	f.register(cmd)
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the prompt swap")
	return cmd
}
