package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"prism/data"
	"prism/internal/fixtures"
)

// TestLoadConfigLlama3 loads the Llama-3 format from the committed
// llama3-shape fixture and from the real Llama-3-8B-Instruct files (when
// the shared fixtures are present).
func TestLoadConfigLlama3(t *testing.T) {
	for _, tt := range []struct {
		name, prefix string
		dir          func(testing.TB) string
	}{
		{"llama3-shape", "{%- for m in messages -%}", func(tb testing.TB) string { return fixtures.Tokenizer(tb, "llama3-shape") }},
		{"llama3-8b-instruct", "{% set loop_messages = messages %}", fixtures.Llama3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(tt.dir(t))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.BOS != "<|begin_of_text|>" || cfg.EOS != "<|eot_id|>" {
				t.Errorf("BOS, EOS = %q, %q, want <|begin_of_text|>, <|eot_id|>", cfg.BOS, cfg.EOS)
			}
			if !strings.HasPrefix(cfg.Template, tt.prefix) {
				t.Errorf("Template = %.60q..., want one starting %q", cfg.Template, tt.prefix)
			}
			got, err := Render(cfg, []data.Message{{Role: "user", Content: " Hi "}}, Options{AddGenerationPrompt: true})
			if err != nil {
				t.Fatal(err)
			}
			want := "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
			if got != want {
				t.Errorf("Render = %q, want %q", got, want)
			}
		})
	}
}

// writeConfig writes a tokenizer_config.json holding body to a new folder
// and returns the folder.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name, body string
		want       Config
	}{
		{
			name: "strings",
			body: `{"chat_template": "T", "bos_token": "<s>", "eos_token": "</s>"}`,
			want: Config{Template: "T", BOS: "<s>", EOS: "</s>"},
		},
		{
			name: "added tokens and null",
			body: `{"chat_template": "T", "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": null}`,
			want: Config{Template: "T", BOS: "<s>"},
		},
		{
			name: "named templates",
			body: `{"chat_template": [{"name": "tool_use", "template": "U"}, {"name": "default", "template": "D"}]}`,
			want: Config{Template: "D"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConfig(t, tt.body)
			cfg, err := LoadConfig(dir)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Source = filepath.Join(dir, "tokenizer_config.json")
			if *cfg != tt.want {
				t.Errorf("LoadConfig = %+v, want %+v", *cfg, tt.want)
			}
		})
	}
}

func TestLoadConfigJinjaFile(t *testing.T) {
	dir := writeConfig(t, `{"chat_template": "from config", "bos_token": "<s>"}`)
	if err := os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte("from file"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Template != "from file" || cfg.BOS != "<s>" {
		t.Errorf("LoadConfig = %+v, want the template of chat_template.jinja and BOS <s>", *cfg)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name, body string
		// want are the fragments the error must hold, besides the file.
		want []string
	}{
		{"invalid JSON", `{"chat_template": "T",`, []string{"unexpected end of JSON input"}},
		{"missing template", `{"bos_token": "<s>"}`, []string{"no chat_template"}},
		{"null template", `{"chat_template": null}`, []string{"no chat_template"}},
		{"template of wrong type", `{"chat_template": 42}`, []string{"chat_template", "got a number"}},
		{"template entry of wrong type", `{"chat_template": [{"name": "default", "template": 1}]}`, []string{"chat_template", "chat_template[0]", "template"}},
		{"no default template", `{"chat_template": [{"name": "tool_use", "template": "U"}]}`, []string{"chat_template", `no template named "default"`, "tool_use"}},
		{"bos object without content", `{"chat_template": "T", "bos_token": {"lstrip": false}}`, []string{"bos_token", "content"}},
		{"eos of wrong type", `{"chat_template": "T", "eos_token": ["</s>"]}`, []string{"eos_token", "got a list"}},
		{"template that does not compile", `{"chat_template": "{% for m in messages %}{{ m.content }"}`, []string{"chat_template does not compile"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeConfig(t, tt.body)
			cfg, err := LoadConfig(dir)
			if err == nil {
				t.Fatalf("LoadConfig = %+v, want an error", *cfg)
			}
			msg := err.Error()
			for _, w := range append([]string{filepath.Join(dir, "tokenizer_config.json")}, tt.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(t.TempDir())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "tokenizer_config.json") {
		t.Errorf("LoadConfig of an empty folder: %v, want a not-exist error naming tokenizer_config.json", err)
	}
}

func TestRaiseException(t *testing.T) {
	cfg := &Config{Template: `{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ m.content }}{% endfor %}`}
	out, err := Render(cfg, []data.Message{{Role: "system", Content: "x"}}, Options{})
	var te *TemplateError
	if !errors.As(err, &te) || te.Message != "System role not supported" {
		t.Fatalf("Render = %q, %v, want TemplateError %q", out, err, "System role not supported")
	}
	if !strings.Contains(err.Error(), "System role not supported") {
		t.Errorf("error %q does not hold the raised message", err)
	}
	if out, err := Render(cfg, []data.Message{{Role: "user", Content: "ok"}}, Options{}); err != nil || out != "ok" {
		t.Errorf("Render = %q, %v, want %q", out, err, "ok")
	}
}

func TestRender(t *testing.T) {
	msgs := []data.Message{{Role: "user", Content: "Hi"}}
	tests := []struct {
		name     string
		template string
		opt      Options
		want     string
	}{
		{
			name:     "message keys in order",
			template: `{% for m in messages %}{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}{{ m | tojson }}{% endfor %}`,
			want:     `role=user;content=Hi;{"role": "user", "content": "Hi"}`,
		},
		{
			name:     "special tokens",
			template: `{{ bos_token }}|{{ eos_token }}`,
			want:     "<s>|</s>",
		},
		{
			name:     "generation prompt",
			template: `{% if add_generation_prompt %}gen{% else %}no{% endif %}`,
			opt:      Options{AddGenerationPrompt: true},
			want:     "gen",
		},
		{
			name:     "no tools is none, as in transformers",
			template: `{{ tools is defined }} {{ tools is none }} {{ documents is none }}`,
			want:     "True True True",
		},
		{
			name:     "tools keep key order",
			template: `{% for t in tools %}{{ t | tojson }}{% for k, v in t.function.items() %};{{ k }}{% endfor %}{% endfor %}`,
			opt:      Options{Tools: []json.RawMessage{json.RawMessage(`{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"b": 1, "a": 2.5}}}`)}},
			want:     `{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"b": 1, "a": 2.5}}};name;description;parameters`,
		},
		{
			name:     "trim_blocks and lstrip_blocks",
			template: "{% for m in messages %}\n    {% if true %}\n[{{ m.content }}]\n    {% endif %}\n{% endfor %}\n",
			want:     "[Hi]\n",
		},
		{
			name:     "strftime_now",
			template: `{{ strftime_now('%Y') | length }}`,
			want:     "4",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Template: tt.template, BOS: "<s>", EOS: "</s>"}
			got, err := Render(cfg, msgs, tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRenderJSON(t *testing.T) {
	cfg := &Config{Template: `{% for m in messages %}{{ m.role }}:{% if m.tool_calls is defined %}{{ m.tool_calls | tojson }}{% else %}{{ m.content }}{% endif %};{% endfor %}`}
	msgs := `[{"role": "user", "content": "w?"}, {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"n": 9007199254740993}}}]}]`
	got, err := RenderJSON(cfg, []byte(msgs), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := `user:w?;assistant:[{"function": {"name": "f", "arguments": {"n": 9007199254740993}}}];`
	if got != want {
		t.Errorf("RenderJSON = %q, want %q", got, want)
	}
}

func TestRenderErrors(t *testing.T) {
	good := &Config{Template: `{{ messages | length }}`}
	tests := []struct {
		name     string
		cfg      *Config
		messages string
		opt      Options
		want     string
	}{
		{"nil config", nil, `[]`, Options{}, "nil config"},
		{"bad template", &Config{Template: `{% for %}`}, `[]`, Options{}, "compiling template"},
		{"unclosed block", &Config{Template: `{% if true %}x`}, `[]`, Options{}, "compiling template"},
		{"messages not JSON", good, `[{"role": `, Options{}, "messages"},
		{"messages not an array", good, `{"role": "user"}`, Options{}, "not a JSON array"},
		{"message not an object", good, `["hi"]`, Options{}, "messages[0]"},
		{"data after messages", good, `[] []`, Options{}, "after the value"},
		{"bad tool", good, `[]`, Options{Tools: []json.RawMessage{json.RawMessage(`{"type": }`)}}, "tools[0]"},
		{"too deep", good, strings.Repeat("[", 5000) + strings.Repeat("]", 5000), Options{}, "nested deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RenderJSON(tt.cfg, []byte(tt.messages), tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RenderJSON = %q, %v, want an error containing %q", got, err, tt.want)
			}
		})
	}
}

// FuzzRender checks that no template or conversation makes rendering
// panic, crash or run away: it renders with small limits on, so templates
// that recurse, loop or repeat without end must stop at them.
func FuzzRender(f *testing.F) {
	f.Add(`{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}`, `[]`)
	f.Add(`{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}`, `[]`)
	f.Add(`{% set ns = namespace(s='ab') %}{% for m in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}`, `[]`)
	f.Add(`{{ 'x' * 3000000000 }}{{ 'y' * -5 }}`, `[]`)
	f.Add(`{%- macro m() -%}{%- for x in messages recursive -%}{{ loop(x.content) }}{%- endfor -%}{%- endmacro -%}{{ m() }}`, `[{"content": [{"content": []}]}]`)
	f.Add(`{{ messages[5].content + 1 }}`, `[{"role": "user", "content": "x"}]`)
	f.Add(`{{ (messages | first).content | trim }}{{ 1 / 0 }}`, `[{}]`)
	f.Add(`{% for m in messages %}{{ m.content[::-1] | tojson(indent=2) }}{% endfor %}`, `[{"content": [1, {"a": null}]}]`)
	f.Add(`{{ raise_exception() }}`, `[]`)
	f.Add(`{% set ns = namespace(x=1) %}{{ ns.x.y.z() }}`, `[]`)
	lim := Limits{Depth: 32, Steps: 10_000, Output: 1 << 20, Time: time.Second}
	f.Fuzz(func(t *testing.T, template, messages string) {
		start := time.Now()
		RenderJSON(&Config{Template: template}, []byte(messages), Options{Limits: &lim})
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("rendering took %v under a 1s limit", d)
		}
	})
}
