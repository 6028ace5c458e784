package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"prism/data"
	"prism/data/chattemplate"
	"prism/data/tokenizer"
)

// eachLine decodes JSON Lines from r into fn, naming the line in errors.
func eachLine(r io.Reader, fn func(line int, raw []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 && len(bytes.TrimSpace(b)) > 0 {
			if ferr := fn(line, b); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("stdin:%d: %w", line, err)
		}
	}
}

func newTokenizeCmd() *cobra.Command {
	var (
		path       string
		addSpecial bool
		truncate   bool
	)
	cmd := &cobra.Command{
		Use:   "tokenize --tokenizer PATH [--add-special=false]",
		Short: "Encode JSON Lines {\"text\": ...} from stdin to {\"ids\": [...]}",
		Long: `Encode text with a Hugging Face tokenizer.json (PATH is the file or the folder
holding it). Reads JSON Lines {"text": "..."} on stdin and writes
{"ids": [...]} in the same order. --add-special adds the post-processor's
special tokens (BOS/EOS), as Hugging Face's add_special_tokens does. The
file's own truncation settings apply, as in the Hugging Face library
(--truncate=false turns them off, as transformers does by default).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if path == "" {
				return errors.New("--tokenizer is required")
			}
			tok, err := tokenizer.Load(path)
			if err != nil {
				return err
			}
			w := bufio.NewWriterSize(cmd.OutOrStdout(), 1<<20)
			defer w.Flush()
			enc := json.NewEncoder(w)
			return eachLine(cmd.InOrStdin(), func(line int, raw []byte) error {
				var row struct {
					Text *string `json:"text"`
				}
				if err := json.Unmarshal(raw, &row); err != nil || row.Text == nil {
					return fmt.Errorf("stdin:%d: want {\"text\": \"...\"}", line)
				}
				encode := tok.EncodeLibrary
				if !truncate {
					encode = tok.Encode
				}
				ids, err := encode(*row.Text, addSpecial)
				if err != nil {
					return fmt.Errorf("stdin:%d: tokenizer %s: %w", line, path, err)
				}
				if ids == nil {
					ids = []int{}
				}
				return enc.Encode(map[string][]int{"ids": ids})
			})
		},
	}
	cmd.Flags().StringVar(&path, "tokenizer", "", "tokenizer.json or the folder holding it")
	cmd.Flags().BoolVar(&addSpecial, "add-special", true, "add the post-processor's special tokens")
	cmd.Flags().BoolVar(&truncate, "truncate", true, "apply the tokenizer file's truncation settings")
	return cmd
}

func newChatTemplateCmd() *cobra.Command {
	var (
		dir, templateFile, bos, eos string
		genPrompt                   bool
	)
	cmd := &cobra.Command{
		Use:   "chat-template --tokenizer DIR [--template-file F] [--bos T] [--eos T] [--add-generation-prompt]",
		Short: "Render conversations with a model's chat template",
		Long: `Render JSON Lines {"messages": [...]} from stdin with the chat template of
DIR's tokenizer_config.json (or --template-file), writing {"text": "..."} or
{"error": "..."} for a conversation the template rejects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := &chattemplate.Config{}
			if dir != "" {
				c, err := chattemplate.LoadConfig(dir)
				if err != nil && templateFile == "" {
					return err
				}
				if c != nil {
					cfg = c
				}
			}
			if templateFile != "" {
				b, err := os.ReadFile(templateFile)
				if err != nil {
					return err
				}
				cfg.Template = string(b)
			}
			if cfg.Template == "" {
				return errors.New("no chat template: give --tokenizer DIR with a chat_template, or --template-file")
			}
			if cmd.Flags().Changed("bos") {
				cfg.BOS = bos
			}
			if cmd.Flags().Changed("eos") {
				cfg.EOS = eos
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			defer w.Flush()
			enc := json.NewEncoder(w)
			return eachLine(cmd.InOrStdin(), func(line int, raw []byte) error {
				var row struct {
					Messages []data.Message `json:"messages"`
				}
				if err := json.Unmarshal(raw, &row); err != nil {
					return fmt.Errorf("stdin:%d: want {\"messages\": [{\"role\", \"content\"}, ...]}: %v", line, err)
				}
				text, err := chattemplate.Render(cfg, row.Messages, chattemplate.Options{AddGenerationPrompt: genPrompt})
				if err != nil {
					return enc.Encode(map[string]string{"error": err.Error()})
				}
				return enc.Encode(map[string]string{"text": text})
			})
		},
	}
	cmd.Flags().StringVar(&dir, "tokenizer", "", "folder holding tokenizer_config.json")
	cmd.Flags().StringVar(&templateFile, "template-file", "", "Jinja chat template file (overrides the folder's)")
	cmd.Flags().StringVar(&bos, "bos", "", "BOS token text (overrides the folder's)")
	cmd.Flags().StringVar(&eos, "eos", "", "EOS token text (overrides the folder's)")
	cmd.Flags().BoolVar(&genPrompt, "add-generation-prompt", false, "end with the assistant's turn header")
	return cmd
}
