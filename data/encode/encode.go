// Package encode turns text preference pairs into token ids with a model's
// own tokenizer and chat template, keeping the boundary between prompt and
// response so that any prompt can later be paired with any response.
package encode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"prism/internal/fsutil"

	"prism/data"
	"prism/data/chattemplate"
	"prism/data/tokenizer"
)

// Encoder renders and tokenises pairs.
type Encoder struct {
	Tok  *tokenizer.Tokenizer
	Chat *chattemplate.Config
	// dir is the folder the tokenizer came from, for errors.
	dir string
}

// Load reads tokenizer.json and tokenizer_config.json from a model or
// tokenizer folder.
func Load(dir string) (*Encoder, error) { return LoadWith(dir, LoadOptions{}) }

// LoadOptions replace the folder's chat template: for tokenizers that have
// none (GPT-2-style base models), or to score with another format.
type LoadOptions struct {
	// TemplateFile is a Jinja chat template file.
	TemplateFile string
	// Template names a built-in template (chattemplate.BuiltinNames).
	Template string
}

// LoadWith is Load with the chat template that opt names, if any.
func LoadWith(dir string, opt LoadOptions) (*Encoder, error) {
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, err
	}
	chat, err := chattemplate.LoadConfigWith(dir, chattemplate.Override{File: opt.TemplateFile, Builtin: opt.Template})
	if err != nil {
		return nil, err
	}
	return &Encoder{Tok: tok, Chat: chat, dir: dir}, nil
}

// Pair renders a text pair with the chat template and tokenises it: the
// prompt is the conversation rendered with the generation prompt, each
// response what the full conversation adds to it. The rendered text
// already holds BOS, so no special tokens are added again (a duplicated BOS
// shifts reward-model accuracy).
func (e *Encoder) Pair(p data.TextPair) (data.Pair, error) {
	prompt, err := chattemplate.Render(e.Chat, p.Prompt, chattemplate.Options{AddGenerationPrompt: true})
	if err != nil {
		return data.Pair{}, templateErr("chat template (prompt)", err)
	}
	out := data.Pair{ID: p.ID, Source: p.Source, Margin: p.Margin, Tags: p.Tags}
	if p.Subset != "" {
		out.Tags = map[string]string{"subset": p.Subset}
		for k, v := range p.Tags {
			out.Tags[k] = v
		}
	}
	if out.Prompt, err = e.Text(prompt); err != nil {
		return data.Pair{}, err
	}
	for _, side := range []struct {
		name string
		msgs []data.Message
		dst  *[]int64
	}{{"chosen", p.Chosen, &out.Chosen}, {"rejected", p.Rejected, &out.Rejected}} {
		full, err := renderFull(e, append(append([]data.Message{}, p.Prompt...), side.msgs...))
		if err != nil {
			return data.Pair{}, templateErr("chat template ("+side.name+")", err)
		}
		resp, ok := strings.CutPrefix(full, prompt)
		if !ok {
			return data.Pair{}, fmt.Errorf("%s: the rendered conversation does not start with the rendered prompt, so the prompt/response boundary is lost", side.name)
		}
		if *side.dst, err = e.Text(resp); err != nil {
			return data.Pair{}, err
		}
		if len(*side.dst) == 0 {
			return data.Pair{}, fmt.Errorf("%s: the response renders to no tokens", side.name)
		}
	}
	// Different texts can still be the same tokens (characters the
	// tokenizer maps to <unk>, or a template that drops what differs): a
	// pair with nothing between its sides teaches nothing.
	if slices.Equal(out.Chosen, out.Rejected) {
		return data.Pair{}, errors.New("chosen and rejected are the same tokens once rendered and tokenised (characters the tokenizer cannot tell apart, or a chat template that leaves out what differs)")
	}
	return out, nil
}

// Text tokenises text as it is: special tokens written in it are
// recognised, none are added (rendered chat templates already hold BOS).
func (e *Encoder) Text(text string) ([]int64, error) {
	ids, err := e.Tok.Encode(text, false)
	if err != nil {
		if e.dir != "" {
			return nil, fmt.Errorf("tokenizer %s: %w", e.dir, err)
		}
		return nil, err
	}
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return out, nil
}

// Pairs encodes every pair; with skipInvalid, pairs the template rejects
// are skipped and counted, by reason, instead of failing the whole file.
func (e *Encoder) Pairs(name string, in []data.TextPair, skipInvalid bool) ([]data.Pair, data.ReadStats, error) {
	out := make([]data.Pair, 0, len(in))
	var st data.ReadStats
	for _, p := range in {
		q, err := e.Pair(p)
		var le *chattemplate.LimitError
		if errors.As(err, &le) {
			// The template is at fault, not the row: nothing to skip.
			return nil, st, fmt.Errorf("%s:%s: %w", name, p.Where, err)
		}
		if err != nil {
			full := fmt.Errorf("%w: %s: row %s: %v", data.ErrInvalid, name, p.Source, err)
			if p.Where != "" {
				full = fmt.Errorf("%w: %s:%s: %v", data.ErrInvalid, name, p.Where, err)
			}
			if !skipInvalid {
				return nil, st, full
			}
			st.Skip(err.Error(), full)
			continue
		}
		q.ID = len(out)
		out = append(out, q)
	}
	if len(out) == 0 {
		return nil, st, errors.New(name + ": no pair could be encoded")
	}
	return out, st, nil
}

// IsTokenFile reports whether a JSON Lines or JSON file holds
// pre-tokenised pairs ("chosen_ids"), judged by its first row.
func IsTokenFile(path string) (bool, error) {
	if strings.HasSuffix(strings.ToLower(path), ".parquet") {
		return false, nil
	}
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, err
	}
	// The first row is the first non-blank line, or the whole head of a
	// JSON array. A file of blank lines has no row: it is left to the text
	// reader, which reports it as empty.
	first := bytes.TrimLeft(head[:n], " \t\r\n")
	if len(first) > 0 && first[0] != '[' {
		if i := bytes.IndexByte(first, '\n'); i >= 0 {
			first = first[:i]
		}
	}
	return bytes.Contains(first, []byte(`"chosen_ids"`)), nil
}

// ReadFile reads preference pairs of any supported kind: pre-tokenised
// JSON Lines as they are, text rows (JSON Lines, JSON, Parquet) rendered
// and tokenised with the tokenizer of tokDir and its chat template, or the
// one that lo names. It returns what was skipped (with opt.SkipInvalid),
// by reason.
func ReadFile(path, tokDir string, vocab int, opt data.ReadOptions, lo LoadOptions) ([]data.Pair, data.ReadStats, error) {
	tokens, err := IsTokenFile(path)
	if err != nil {
		return nil, data.ReadStats{}, err
	}
	if tokens {
		p, err := data.ReadTokenPairs(path, vocab)
		return p, data.ReadStats{Rows: len(p)}, err
	}
	if tokDir == "" {
		return nil, data.ReadStats{}, fmt.Errorf("%s holds text pairs: name the tokenizer folder (data.tokenizer, or a model.path with tokenizer.json)", path)
	}
	text, st, err := data.ReadTextPairs(path, opt)
	if err != nil {
		return nil, st, err
	}
	e, err := LoadWith(tokDir, lo)
	if err != nil {
		return nil, st, err
	}
	pairs, est, err := e.Pairs(path, text, opt.SkipInvalid)
	if err != nil {
		return nil, st, err
	}
	st.Merge(est)
	for _, p := range pairs {
		for _, ids := range [][]int64{p.Prompt, p.Chosen, p.Rejected} {
			for _, id := range ids {
				if vocab > 0 && id >= int64(vocab) {
					return nil, st, fmt.Errorf("%s: row %s: token id %d from %s is outside the model's vocabulary (%d): tokenizer and model do not match", path, p.Source, id, tokDir, vocab)
				}
			}
		}
	}
	return pairs, st, nil
}

// renderFull renders a whole conversation without the generation prompt.
func renderFull(e *Encoder, msgs []data.Message) (string, error) {
	return chattemplate.Render(e.Chat, msgs, chattemplate.Options{})
}

// Conversation renders a whole conversation (no generation prompt) and
// tokenises it, as a reward model scores it.
func (e *Encoder) Conversation(msgs []data.Message) ([]int64, error) {
	text, err := renderFull(e, msgs)
	if err != nil {
		return nil, templateErr("chat template", err)
	}
	return e.Text(text)
}

// templateErr puts context on a rendering error; a limit error already
// names the template and says what it reached.
func templateErr(context string, err error) error {
	var le *chattemplate.LimitError
	if errors.As(err, &le) {
		return err
	}
	return fmt.Errorf("%s: %w", context, err)
}
