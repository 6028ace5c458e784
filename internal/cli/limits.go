package cli

import (
	"fmt"
	"math/rand/v2"

	"github.com/spf13/cobra"

	"prism/data"
	"prism/data/encode"
	"prism/internal/torch"
	"prism/models"
)

// lengthFlags are --max-length and --over-length, shared by the commands
// that score: how long a sequence may be, and what becomes of longer ones.
// No sequence is ever scored past the model's max_position_embeddings.
type lengthFlags struct {
	max    int
	policy string
}

const (
	overTruncate = "truncate"
	overRefuse   = "refuse"
)

func (l *lengthFlags) register(cmd *cobra.Command, policy, why string) {
	cmd.Flags().IntVar(&l.max, "max-length", 2048, "longest sequence scored, in tokens (never more than the model's max_position_embeddings)")
	cmd.Flags().StringVar(&l.policy, "over-length", policy, "longer sequences: truncate (keep the first max-length tokens) or refuse"+why)
}

// limit is the longest sequence the model may score: --max-length, capped
// at max_position_embeddings with a warning.
func (l *lengthFlags) limit(g *globals, m *models.RewardModel) (int, error) {
	if l.max < 1 {
		return 0, fmt.Errorf("--max-length %d: want at least 1", l.max)
	}
	if l.policy != overTruncate && l.policy != overRefuse {
		return 0, fmt.Errorf("--over-length %q: want %s or %s", l.policy, overTruncate, overRefuse)
	}
	if mpe := m.Config.MaxPositionEmbeddings; mpe > 0 && l.max > mpe {
		g.logger.Warn("--max-length exceeds the model's max_position_embeddings: no sequence is scored past it", "max_length", l.max, "max_position_embeddings", mpe)
		return mpe, nil
	}
	return l.max, nil
}

// fitPairs applies the limit to both sequences of every pair: truncated
// (the first n tokens, as the official RewardBench scorer truncates) or,
// with refuse, an error naming the first pair too long.
func (l *lengthFlags) fitPairs(name string, pairs []data.Pair, n int) ([]data.Pair, int, error) {
	out := make([]data.Pair, len(pairs))
	cut := 0
	for i, p := range pairs {
		q, was := data.TruncateRight(p, n)
		if was {
			if l.policy == overRefuse {
				return nil, 0, fmt.Errorf("%s: row %s: %d and %d tokens (chosen, rejected), over the limit of %d (--max-length, capped at the model's max_position_embeddings); pass --over-length truncate to score the first %d tokens",
					name, p.Source, len(p.Prompt)+len(p.Chosen), len(p.Prompt)+len(p.Rejected), n, n)
			}
			cut++
		}
		out[i] = q
	}
	return out, cut, nil
}

// templateFlags name a chat template for tokenizers that have none.
type templateFlags struct {
	file, name string
}

func (t *templateFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.file, "template-file", "", "Jinja chat template for text rows (replaces the tokenizer's)")
	cmd.Flags().StringVar(&t.name, "template", "", "built-in chat template for text rows: chatml, llama3, raw or tulu (replaces the tokenizer's)")
}

func (t *templateFlags) options() encode.LoadOptions {
	return encode.LoadOptions{TemplateFile: t.file, Template: t.name}
}

// modelFlags are --device and --attention, shared by the commands that
// load a model to score with.
type modelFlags struct {
	device, attention, precision string
}

func (f *modelFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.device, "device", "auto", "where the model runs: auto (the first CUDA card when libtorch sees one, else the CPU), cpu, cuda or cuda:N")
	cmd.Flags().StringVar(&f.attention, "attention", "auto", "attention: auto (sdpa where libtorch has it, else eager), sdpa or eager")
	cmd.Flags().StringVar(&f.precision, "precision", "fp32", "compute precision: fp32, or bf16 (bfloat16 weights and activations; rewards in float32)")
}

// placement resolves --device, --attention and --precision.
func (f *modelFlags) placement() (torch.Device, models.Compute, error) {
	var c models.Compute
	dev, err := torch.ResolveDevice(f.device)
	if err != nil {
		return dev, c, fmt.Errorf("--device: %w", err)
	}
	if c.Attention, err = models.ResolveAttention(f.attention); err != nil {
		return dev, c, fmt.Errorf("--attention: %w", err)
	}
	if c.Precision, err = models.ResolvePrecision(f.precision); err != nil {
		return dev, c, fmt.Errorf("--precision: %w", err)
	}
	return dev, c, nil
}

// load reads the reward model in dir onto the chosen device, computing
// as chosen.
func (f *modelFlags) load(g *globals, dir string) (*models.RewardModel, error) {
	dev, c, err := f.placement()
	if err != nil {
		return nil, err
	}
	m, _, err := models.LoadWith(dir, dev, rand.New(rand.NewPCG(0, 0)), models.LoadOptions{AllowPickle: g.allowPickle})
	if err != nil {
		return nil, err
	}
	if err := m.SetCompute(c); err != nil {
		m.Drop()
		return nil, err
	}
	return m, nil
}

// loadPolicy reads the causal LM in dir likewise.
func (f *modelFlags) loadPolicy(dir string) (*models.CausalLM, error) {
	dev, c, err := f.placement()
	if err != nil {
		return nil, err
	}
	lm, err := models.LoadCausalLM(dir, dev)
	if err != nil {
		return nil, err
	}
	if err := lm.SetCompute(c); err != nil {
		lm.Drop()
		return nil, err
	}
	return lm, nil
}

// tokenizerDir is the tokenizer folder of text input: --tokenizer, or the
// model's own folder.
func tokenizerDir(tokenizer, model string) string {
	if tokenizer != "" {
		return tokenizer
	}
	return model
}
