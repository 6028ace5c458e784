package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/spf13/cobra"
	"github.com/sugarme/gotch"

	"prism/internal/fsutil"
	"prism/models"
)

func newScoreCmd(g *globals) *cobra.Command {
	var (
		modelDir, input, output string
		batch                   int
	)
	cmd := &cobra.Command{
		Use:   "score --model DIR --input F.jsonl [--output F.jsonl]",
		Short: "Score token sequences with a reward model",
		Long: `Score rows {"input_ids": [...]} with a saved reward model. Output rows
{"reward": x} come in input order, to --output or stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelDir == "" || input == "" {
				return errors.New("--model and --input are required")
			}
			if batch < 1 {
				return fmt.Errorf("--batch-size %d: want at least 1", batch)
			}
			rows, err := readScoreRows(input)
			if err != nil {
				return err
			}
			m, _, err := models.Load(modelDir, gotch.CPU, rand.New(rand.NewPCG(0, 0)))
			if err != nil {
				return err
			}
			defer m.Drop()
			for i, r := range rows {
				for _, id := range r {
					if id < 0 || id >= int64(m.Config.VocabSize) {
						return fmt.Errorf("%s:%d: token id %d is outside the model's vocabulary (%d)", input, i+1, id, m.Config.VocabSize)
					}
				}
			}
			rewards, err := m.Score(rows, batch)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			for _, r := range rewards {
				b, _ := json.Marshal(map[string]float64{"reward": r})
				buf.Write(append(b, '\n'))
			}
			if output == "" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			return fsutil.WriteFileAtomic(output, buf.Bytes())
		},
	}
	cmd.Flags().StringVar(&modelDir, "model", "", "reward model folder (Hugging Face format)")
	cmd.Flags().StringVar(&input, "input", "", `JSON Lines of {"input_ids": [...]}`)
	cmd.Flags().StringVar(&output, "output", "", "output JSON Lines (default: stdout)")
	cmd.Flags().IntVar(&batch, "batch-size", 32, "sequences per forward pass")
	return cmd
}

func readScoreRows(path string) ([][]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var rows [][]int64
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			var row struct {
				InputIDs []int64 `json:"input_ids"`
			}
			if derr := dec.Decode(&row); derr != nil {
				return nil, fmt.Errorf("%s:%d: %v", path, line, derr)
			}
			if len(row.InputIDs) == 0 {
				return nil, fmt.Errorf("%s:%d: field \"input_ids\" is missing or empty", path, line)
			}
			rows = append(rows, row.InputIDs)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
	}
	return rows, nil
}
