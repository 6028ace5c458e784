package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"prism/internal/fsutil"

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

// tokenizeOptions are `prism tokenize`'s flags.
type tokenizeOptions struct {
	tokenizer            string
	addSpecial, truncate bool
}

func newTokenizeCmd() *cobra.Command {
	var o tokenizeOptions
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
			return runTokenize(o, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.tokenizer, "tokenizer", "", "tokenizer.json or the folder holding it")
	cmd.Flags().BoolVar(&o.addSpecial, "add-special", true, "add the post-processor's special tokens")
	cmd.Flags().BoolVar(&o.truncate, "truncate", true, "apply the tokenizer file's truncation settings")
	return cmd
}

// runTokenize is `prism tokenize`.
func runTokenize(o tokenizeOptions, stdin io.Reader, stdout io.Writer) error {
	if o.tokenizer == "" {
		return errors.New("--tokenizer is required")
	}
	tok, err := tokenizer.Load(o.tokenizer)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(stdout, 1<<20)
	defer w.Flush()
	enc := json.NewEncoder(w)
	return eachLine(stdin, func(line int, raw []byte) error {
		var row struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &row); err != nil || row.Text == nil {
			return fmt.Errorf("stdin:%d: want {\"text\": \"...\"}", line)
		}
		encode := tok.EncodeLibrary
		if !o.truncate {
			encode = tok.Encode
		}
		ids, err := encode(*row.Text, o.addSpecial)
		if err != nil {
			return fmt.Errorf("stdin:%d: tokenizer %s: %w", line, o.tokenizer, err)
		}
		if ids == nil {
			ids = []int{}
		}
		return enc.Encode(map[string][]int{"ids": ids})
	})
}

// chatTemplateOptions are `prism chat-template`'s flags.
type chatTemplateOptions struct {
	tokenizer, templateFile string
	bos, eos                stringFlag
	generationPrompt        bool
}

func newChatTemplateCmd() *cobra.Command {
	var o chatTemplateOptions
	cmd := &cobra.Command{
		Use:   "chat-template --tokenizer DIR [--template-file F] [--bos T] [--eos T] [--add-generation-prompt]",
		Short: "Render conversations with a model's chat template",
		Long: `Render JSON Lines {"messages": [...]} from stdin with the chat template of
DIR's tokenizer_config.json (or --template-file), writing {"text": "..."} or
{"error": "..."} for a conversation the template rejects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runChatTemplate(o, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&o.tokenizer, "tokenizer", "", "folder holding tokenizer_config.json")
	cmd.Flags().StringVar(&o.templateFile, "template-file", "", "Jinja chat template file (overrides the folder's)")
	cmd.Flags().Var(&o.bos, "bos", "BOS token text (overrides the folder's)")
	cmd.Flags().Var(&o.eos, "eos", "EOS token text (overrides the folder's)")
	cmd.Flags().BoolVar(&o.generationPrompt, "add-generation-prompt", false, "end with the assistant's turn header")
	return cmd
}

// runChatTemplate is `prism chat-template`.
func runChatTemplate(o chatTemplateOptions, stdin io.Reader, stdout io.Writer) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	return eachLine(stdin, func(line int, raw []byte) error {
		var row struct {
			Messages []data.Message `json:"messages"`
		}
		if err := json.Unmarshal(raw, &row); err != nil {
			return fmt.Errorf("stdin:%d: want {\"messages\": [{\"role\", \"content\"}, ...]}: %v", line, err)
		}
		text, err := chattemplate.Render(cfg, row.Messages, chattemplate.Options{AddGenerationPrompt: o.generationPrompt})
		var le *chattemplate.LimitError
		if errors.As(err, &le) {
			// The template, not this conversation, is at fault.
			return fmt.Errorf("stdin:%d: %w", line, err)
		}
		if err != nil {
			return enc.Encode(map[string]string{"error": err.Error()})
		}
		return enc.Encode(map[string]string{"text": text})
	})
}

// config is the template to render with: the folder's, with --template-file,
// --bos and --eos put over it.
func (o *chatTemplateOptions) config() (*chattemplate.Config, error) {
	cfg := &chattemplate.Config{}
	if o.tokenizer != "" {
		c, err := chattemplate.LoadConfig(o.tokenizer)
		if err != nil && o.templateFile == "" {
			return nil, err
		}
		if c != nil {
			cfg = c
		}
	}
	if o.templateFile != "" {
		b, err := fsutil.ReadFile(o.templateFile, fsutil.CapConfig)
		if err != nil {
			return nil, err
		}
		cfg.Template, cfg.Source = string(b), o.templateFile
	}
	if cfg.Template == "" {
		return nil, errors.New("no chat template: give --tokenizer DIR with a chat_template, or --template-file")
	}
	if o.bos.set {
		cfg.BOS = o.bos.value
	}
	if o.eos.set {
		cfg.EOS = o.eos.value
	}
	return cfg, nil
}

// stringFlag is a string flag that records whether it was given, for
// flags whose empty value is meaningful: --bos "" replaces the folder's
// BOS with none.
type stringFlag struct {
	value string
	set   bool
}

func (f *stringFlag) String() string { return f.value }
func (f *stringFlag) Type() string   { return "string" }

func (f *stringFlag) Set(v string) error {
	f.value, f.set = v, true
	return nil
}
