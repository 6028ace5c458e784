package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"prism/internal/fsutil"

	"github.com/ardanlabs/jinja"
)

// Config is what rendering needs from a tokenizer's configuration.
type Config struct {
	// Template is the Jinja source of the chat template.
	Template string
	// BOS and EOS are the tokenizer's bos_token and eos_token, empty when
	// the tokenizer has none.
	BOS, EOS string
	// Source names where the template came from (a file, or a built-in
	// template), for errors.
	Source string
}

// LoadConfig reads the chat template and the BOS and EOS tokens of the
// tokenizer stored in dir, from dir/tokenizer_config.json.
//
// chat_template may be a string or a list of {"name", "template"} objects,
// of which the one named "default" is used. As in transformers, a
// dir/chat_template.jinja file, when present, takes precedence over the
// chat_template field. bos_token and eos_token may be strings, AddedToken
// objects ({"content": ...}) or null.
func LoadConfig(dir string) (*Config, error) {
	path := filepath.Join(dir, "tokenizer_config.json")
	raw, err := fsutil.ReadFile(path, fsutil.CapTokenizer)
	if err != nil {
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	var fields struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOSToken     json.RawMessage `json:"bos_token"`
		EOSToken     json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("chattemplate: %s: %w", path, err)
	}

	cfg, err := parseTokens(path, fields.BOSToken, fields.EOSToken)
	if err != nil {
		return nil, err
	}

	jinjaPath := filepath.Join(dir, "chat_template.jinja")
	switch src, err := fsutil.ReadFile(jinjaPath, fsutil.CapConfig); {
	case err == nil:
		cfg.Template, cfg.Source = string(src), jinjaPath
		return cfg, compiles(cfg.Template, jinjaPath)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	if isNull(fields.ChatTemplate) {
		return nil, fmt.Errorf("%w: %s has no chat_template (and no chat_template.jinja beside it)", ErrNoTemplate, path)
	}
	if cfg.Template, err = parseTemplate(fields.ChatTemplate); err != nil {
		return nil, fmt.Errorf("chattemplate: %s: %w", path, err)
	}
	cfg.Source = path
	if err := compiles(cfg.Template, path); err != nil {
		return nil, err
	}
	return cfg, nil
}

// compiles checks the template's syntax when it is loaded, so that a broken
// template is an error naming its file rather than one naming the first
// conversation rendered with it.
func compiles(template, path string) error {
	if _, err := jinja.Compile(template); err != nil {
		return fmt.Errorf("chattemplate: %s: chat_template does not compile: %w", path, err)
	}
	return nil
}

// parseTemplate decodes a chat_template field: a string, or a list of named
// templates of which the one named "default" is returned. Its errors name
// the field.
func parseTemplate(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return "", fmt.Errorf("chat_template: want a string or a list of {\"name\", \"template\"} objects, got %s", jsonKind(raw))
	}
	var names []string
	for i, e := range entries {
		var t struct {
			Name     string          `json:"name"`
			Template json.RawMessage `json:"template"`
		}
		if err := json.Unmarshal(e, &t); err != nil {
			return "", fmt.Errorf("chat_template[%d]: want a {\"name\", \"template\"} object: %w", i, err)
		}
		if t.Name != "default" {
			names = append(names, t.Name)
			continue
		}
		var src string
		if err := json.Unmarshal(t.Template, &src); err != nil || isNull(t.Template) {
			return "", fmt.Errorf("chat_template[%d] (%q): template is %s, want a string", i, t.Name, jsonKind(t.Template))
		}
		return src, nil
	}
	return "", fmt.Errorf("chat_template: no template named \"default\" among %q", names)
}

// parseToken decodes a special-token field: a string, an AddedToken object
// holding the string in "content", or null (no token).
func parseToken(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var tok struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return "", fmt.Errorf("want a string, an AddedToken object or null, got %s", jsonKind(raw))
	}
	if tok.Content == nil {
		return "", errors.New("AddedToken object has no string \"content\"")
	}
	return *tok.Content, nil
}

// isNull reports whether raw is absent or the JSON null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// jsonKind names the kind of JSON value raw holds, for error messages.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "missing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// loadTokens reads only bos_token and eos_token from dir's
// tokenizer_config.json; a folder without one has neither.
func loadTokens(dir string) (*Config, error) {
	path := filepath.Join(dir, "tokenizer_config.json")
	raw, err := fsutil.ReadFile(path, fsutil.CapTokenizer)
	if errors.Is(err, fs.ErrNotExist) {
		return &Config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("chattemplate: %w", err)
	}
	var fields struct {
		BOSToken json.RawMessage `json:"bos_token"`
		EOSToken json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("chattemplate: %s: %w", path, err)
	}
	return parseTokens(path, fields.BOSToken, fields.EOSToken)
}

// parseTokens reads the bos_token and eos_token fields of the file at path.
func parseTokens(path string, bos, eos json.RawMessage) (*Config, error) {
	var cfg Config
	var err error
	if cfg.BOS, err = parseToken(bos); err != nil {
		return nil, fmt.Errorf("chattemplate: %s: bos_token: %w", path, err)
	}
	if cfg.EOS, err = parseToken(eos); err != nil {
		return nil, fmt.Errorf("chattemplate: %s: eos_token: %w", path, err)
	}
	return &cfg, nil
}
