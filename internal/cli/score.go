package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/spf13/cobra"

	"prism/data/encode"
	"prism/internal/fsutil"
)

// scoreOptions are `prism score`'s flags.
type scoreOptions struct {
	model, input, output, tokenizer string
	batch                           int
	length                          lengthFlags
	template                        templateFlags
	place                           modelFlags
}

func newScoreCmd(g *globals) *cobra.Command {
	var o scoreOptions
	cmd := &cobra.Command{
		Use:   "score --model DIR --input F.jsonl [--output F.jsonl]",
		Short: "Score sequences or conversations with a reward model",
		Long: `Score JSON Lines rows with a saved reward model: {"input_ids": [...]},
{"prompt": ..., "response": ...} (strings or message lists) or
{"messages": [...]}. Text rows are rendered with the model's chat template
and tokenised with its tokenizer (--tokenizer, default --model). Output rows
{"reward": x} come in input order, to --output or stdout. Rows longer than
--max-length tokens (never more than the model's max_position_embeddings)
are truncated to their first tokens, with a warning, or refused with
--over-length refuse.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScore(g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.model, "model", "", "reward model folder (Hugging Face format)")
	cmd.Flags().StringVar(&o.input, "input", "", `JSON Lines of {"input_ids": [...]}, {"prompt", "response"} or {"messages"}`)
	cmd.Flags().StringVar(&o.tokenizer, "tokenizer", "", "tokenizer folder for text rows (default: --model)")
	cmd.Flags().StringVar(&o.output, "output", "", "output JSON Lines: a regular file (replaced atomically; a symbolic link's target is replaced) or - for stdout (default: stdout)")
	cmd.Flags().IntVar(&o.batch, "batch-size", 32, "sequences per forward pass")
	o.length.register(cmd, overTruncate, "")
	o.template.register(cmd)
	o.place.register(cmd)
	return cmd
}

// runScore is `prism score`.
func runScore(g *globals, o scoreOptions, stdout io.Writer) error {
	if o.model == "" || o.input == "" {
		return errors.New("--model and --input are required")
	}
	if o.batch < 1 {
		return fmt.Errorf("--batch-size %d: want at least 1", o.batch)
	}
	if o.output != "" && o.output != "-" {
		// Refused before any work: --output replaces only a regular file.
		if err := fsutil.CheckFileTarget(o.output); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	rows, lines, err := readScoreRows(o.input, o.encoder())
	if err != nil {
		return err
	}
	m, err := o.place.load(g, o.model)
	if err != nil {
		return err
	}
	defer m.Drop()
	for i, r := range rows {
		for _, id := range r {
			if id < 0 || id >= int64(m.Config.VocabSize) {
				return fmt.Errorf("%s:%d: token id %d is outside the model's vocabulary (%d)", o.input, lines[i], id, m.Config.VocabSize)
			}
		}
	}
	limit, err := o.length.limit(g, m)
	if err != nil {
		return err
	}
	if err := o.fit(g, rows, lines, limit); err != nil {
		return err
	}
	rewards, err := m.Score(rows, o.batch)
	if err != nil {
		return err
	}
	for i, r := range rewards {
		if math.IsNaN(r) || math.IsInf(r, 0) {
			return fmt.Errorf("%s:%d: the reward is %v under the model %s (its config or weights overflow): nothing was written", o.input, lines[i], r, o.model)
		}
	}
	return o.write(stdout, rewards)
}

// encoder returns the loader of the tokenizer for text rows: it loads on
// first use, so token-id input needs no tokenizer.
func (o *scoreOptions) encoder() func() (*encode.Encoder, error) {
	tok := tokenizerDir(o.tokenizer, o.model)
	var encoder *encode.Encoder
	return func() (*encode.Encoder, error) {
		if encoder == nil {
			var err error
			if encoder, err = encode.LoadWith(tok, o.template.options()); err != nil {
				return nil, fmt.Errorf("text rows need a tokenizer (--tokenizer): %w", err)
			}
		}
		return encoder, nil
	}
}

// fit applies the length limit to the rows in place: longer rows are cut
// to their first tokens, with a warning, or refused.
func (o *scoreOptions) fit(g *globals, rows [][]int64, lines []int, limit int) error {
	cut := 0
	for i, r := range rows {
		if len(r) <= limit {
			continue
		}
		if o.length.policy == overRefuse {
			return fmt.Errorf("%s:%d: %d tokens, over the limit of %d (--max-length, capped at the model's max_position_embeddings); pass --over-length truncate to score the first %d", o.input, lines[i], len(r), limit, limit)
		}
		rows[i] = r[:limit]
		cut++
	}
	if cut > 0 {
		g.logger.Warn("truncated rows to the length limit (their first tokens are scored)", "file", o.input, "rows", cut, "max_length", limit)
	}
	return nil
}

// write writes one {"reward": x} line per row to --output or stdout.
func (o *scoreOptions) write(stdout io.Writer, rewards []float64) error {
	var buf bytes.Buffer
	for _, r := range rewards {
		b, _ := json.Marshal(map[string]float64{"reward": r})
		buf.Write(append(b, '\n'))
	}
	if o.output == "" || o.output == "-" {
		_, err := stdout.Write(buf.Bytes())
		return err
	}
	return fsutil.WriteFileAtomic(o.output, buf.Bytes())
}

// readScoreRows reads rows {"input_ids": [...]}, {"prompt": ..., "response":
// ...} (strings or message lists) or {"messages": [...]}; text rows are
// rendered and tokenised with the encoder that enc returns (loaded on
// first use). It returns the ids and each row's line.
func readScoreRows(path string, enc func() (*encode.Encoder, error)) ([][]int64, []int, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var rows [][]int64
	var lines []int
	err = eachLine(f, func(line int, raw []byte) error {
		ids, err := encode.Row(raw, enc)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		rows = append(rows, ids)
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(rows) == 0 {
		return nil, nil, fmt.Errorf("%s: no rows", path)
	}
	return rows, lines, nil
}
