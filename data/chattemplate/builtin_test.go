package chattemplate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"prism/data"
	"prism/internal/fixtures"
)

// TestBuiltins renders a conversation with every built-in template: the
// prompt with the generation prompt must be a prefix of the whole
// conversation (the boundary between prompt and response), and ChatML's
// output is checked against its published layout.
func TestBuiltins(t *testing.T) {
	prompt := []data.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Capital of France?"}}
	full := append(append([]data.Message{}, prompt...), data.Message{Role: "assistant", Content: "Paris."})
	for _, name := range BuiltinNames() {
		t.Run(name, func(t *testing.T) {
			cfg := &Config{Template: builtins[name], BOS: "<s>", EOS: "</s>"}
			p, err := Render(cfg, prompt, Options{AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			f, err := Render(cfg, full, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(f, p) || len(f) == len(p) {
				t.Errorf("prompt %q is not a proper prefix of the conversation %q", p, f)
			}
			if !strings.Contains(f, "Paris.") {
				t.Errorf("the response is missing: %q", f)
			}
		})
	}
	got, err := Render(&Config{Template: builtins["chatml"]}, full, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\nParis.<|im_end|>\n"
	if got != want {
		t.Errorf("chatml\n got %q\nwant %q", got, want)
	}
}

// TestLoadConfigWith: a tokenizer without a chat template (GPT-2's) is an
// error that says how to give one, and is usable with a built-in template
// or a template file, keeping its own BOS and EOS.
func TestLoadConfigWith(t *testing.T) {
	gpt2 := fixtures.Tokenizer(t, "gpt2")
	_, err := LoadConfigWith(gpt2, Override{})
	if !errors.Is(err, ErrNoTemplate) || !strings.Contains(err.Error(), "--template-file") || !strings.Contains(err.Error(), "chatml") {
		t.Errorf("no template: %v", err)
	}
	cfg, err := LoadConfigWith(gpt2, Override{Builtin: "chatml"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Template != builtins["chatml"] || cfg.BOS != "<|endoftext|>" || cfg.EOS != "<|endoftext|>" {
		t.Errorf("built-in: %+v", cfg)
	}
	file := filepath.Join(t.TempDir(), "t.jinja")
	os.WriteFile(file, []byte("{% for m in messages %}{{ m['content'] }}{% endfor %}"), 0o644)
	if cfg, err = LoadConfigWith(gpt2, Override{File: file}); err != nil || !strings.HasPrefix(cfg.Template, "{% for m") {
		t.Errorf("file: %+v, %v", cfg, err)
	}
	// A template file overrides one the tokenizer has.
	if cfg, err = LoadConfigWith(fixtures.Tokenizer(t, "llama3-shape"), Override{File: file}); err != nil || !strings.HasPrefix(cfg.Template, "{% for m") || cfg.BOS != "<|begin_of_text|>" {
		t.Errorf("override: %+v, %v", cfg, err)
	}
	bad := filepath.Join(t.TempDir(), "bad.jinja")
	os.WriteFile(bad, []byte("{% for m in messages %}"), 0o644)
	for _, o := range []Override{
		{Builtin: "no-such-format"},
		{File: filepath.Join(t.TempDir(), "missing.jinja")},
		{File: bad},
		{File: file, Builtin: "chatml"},
	} {
		if _, err := LoadConfigWith(gpt2, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
