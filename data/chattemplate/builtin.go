package chattemplate

import (
	"errors"
	"fmt"
	"prism/internal/fsutil"
	"sort"
	"strings"
)

// ErrNoTemplate is returned when a tokenizer has no chat template, as
// GPT-2-style base models' tokenizers do: name one with Override.
var ErrNoTemplate = errors.New("chattemplate: no chat template")

// builtins are chat formats for tokenizers that ship none, written here
// after each format's published layout. They render the conversation
// exactly as the format prescribes and add the generation prompt on
// request, so that the prompt renders to a prefix of the whole
// conversation (the prompt/response boundary the decomposition needs).
var builtins = map[string]string{
	// ChatML (OpenAI's layout, used by Qwen and many fine-tunes).
	"chatml": `{%- for m in messages -%}
{{ '<|im_start|>' ~ m['role'] ~ '\n' ~ m['content'] ~ '<|im_end|>\n' }}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif -%}`,
	// Llama-3 Instruct: header, two newlines, trimmed content, <|eot_id|>.
	"llama3": `{%- for m in messages -%}
{%- if loop.first %}{{ bos_token }}{% endif -%}
{{ '<|start_header_id|>' ~ m['role'] ~ '<|end_header_id|>\n\n' ~ (m['content'] | trim) ~ '<|eot_id|>' }}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif -%}`,
	// Tülu (AllenAI's instruction format, which RewardBench's scorer uses
	// for models without a template): <|role|>, newline, content, newline.
	"tulu": `{%- for m in messages -%}
{{ '<|' ~ m['role'] ~ '|>\n' ~ m['content'] ~ '\n' }}
{%- endfor -%}
{%- if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif -%}`,
	// Plain text: the turns' contents, one per paragraph, no roles.
	"raw": `{%- for m in messages -%}
{{ m['content'] }}{% if not loop.last %}{{ '\n\n' }}{% endif %}
{%- endfor -%}
{%- if add_generation_prompt and messages %}{{ '\n\n' }}{% endif -%}`,
}

// BuiltinNames lists the built-in templates.
func BuiltinNames() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Override replaces a tokenizer's chat template: File is a Jinja file,
// Builtin names a built-in template. At most one may be set.
type Override struct {
	File, Builtin string
}

// Hint is what to say to a user whose tokenizer has no chat template.
func Hint() string {
	return "pass --template-file FILE (a Jinja chat template) or --template NAME (built in: " + strings.Join(BuiltinNames(), ", ") + ")"
}

// LoadConfigWith is LoadConfig with the template that o names, if any. The
// BOS and EOS tokens still come from dir's tokenizer_config.json, when it
// has one.
func LoadConfigWith(dir string, o Override) (*Config, error) {
	if o.File == "" && o.Builtin == "" {
		cfg, err := LoadConfig(dir)
		if errors.Is(err, ErrNoTemplate) {
			return nil, fmt.Errorf("%w: %s", err, Hint())
		}
		return cfg, err
	}
	if o.File != "" && o.Builtin != "" {
		return nil, errors.New("chattemplate: --template-file and --template are exclusive")
	}
	// The folder's own template is replaced, so only its tokens are read:
	// a template it lacks or cannot compile does not matter here.
	cfg, err := loadTokens(dir)
	if err != nil {
		return nil, err
	}
	if o.Builtin != "" {
		src, ok := builtins[o.Builtin]
		if !ok {
			return nil, fmt.Errorf("chattemplate: no built-in template %q (have %s)", o.Builtin, strings.Join(BuiltinNames(), ", "))
		}
		cfg.Template, cfg.Source = src, "built-in template "+o.Builtin
		return cfg, compiles(src, cfg.Source)
	}
	src, err := fsutil.ReadFile(o.File, fsutil.CapConfig)
	if err != nil {
		return nil, fmt.Errorf("chattemplate: template file: %w", err)
	}
	if len(strings.TrimSpace(string(src))) == 0 {
		return nil, fmt.Errorf("chattemplate: template file %s is empty", o.File)
	}
	cfg.Template, cfg.Source = string(src), o.File
	return cfg, compiles(cfg.Template, o.File)
}
