package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"prism/data"
	"prism/internal/fixtures"
)

// readJSON decodes the fixture file at path into v, failing the test if it
// is missing or malformed.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("fixture %s: %v", path, err)
	}
}

// goldenTools is the tool list the reference passed with the "tools"
// conversation (see tokenizers/golden/README.md).
var goldenTools = []json.RawMessage{json.RawMessage(`{"type": "function", "function": {"name": "get_weather", "description": "Get weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}`)}

// undefinedTrim holds the one place where the reference, @huggingface/jinja,
// differs from transformers, whose Jinja2 this package follows: the llama3
// templates apply "trim" to message['content'], which the tools
// conversation's tool-call message lacks. @huggingface/jinja fails with
// `Cannot apply filter "trim" to type: UndefinedValue`; Jinja2 (and so
// transformers' apply_chat_template) trims an undefined value to "", and so
// does ardanlabs/jinja. These are the Jinja2 3.1.6 renders, in the
// environment transformers sets up, of those rows (llama3-orig always adds
// the generation prompt).
// The llama3-shape fixture's template trims the content the same way.
var undefinedTrim = map[string]string{
	"llama3-instruct/tools":     llama3Tools,
	"llama3-instruct/tools+gen": llama3Tools + llama3Gen,
	"llama3-orig/tools":         llama3Tools + llama3Gen,
	"llama3-orig/tools+gen":     llama3Tools + llama3Gen,
	"llama3-shape/tools":        llama3Tools,
	"llama3-shape/tools+gen":    llama3Tools + llama3Gen,
}

const (
	llama3Tools = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat's the weather in Paris?<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n<|eot_id|>" +
		"<|start_header_id|>tool<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\nIt is 21°C in Paris.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|>"
	llama3Gen = "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

// goldenRender is one reference render: the text, or the error message.
type goldenRender struct {
	OK  *string `json:"ok"`
	Err *string `json:"err"`
}

// TestGolden renders fixture templates for every fixture conversation, with
// and without the generation prompt, and compares with @huggingface/jinja's
// renders: the committed llama3-shape template (golden made by
// scripts/fixtures/make-fixtures.mjs) always, and the shared set of real
// Llama-3 and Mistral templates when the shared fixtures are present.
func TestGolden(t *testing.T) {
	t.Run("committed", func(t *testing.T) {
		var convs map[string]json.RawMessage
		readJSON(t, fixtures.Golden(t, "convs.json"), &convs)
		var cfg struct {
			Template string `json:"chat_template"`
		}
		readJSON(t, filepath.Join(fixtures.Tokenizer(t, "llama3-shape"), "tokenizer_config.json"), &cfg)
		var golden struct {
			Renders map[string]goldenRender `json:"renders"`
		}
		readJSON(t, fixtures.Golden(t, "llama3-shape.renders.json"), &golden)
		checkGolden(t, map[string]string{"llama3-shape": cfg.Template}, convs, map[string]map[string]goldenRender{"llama3-shape": golden.Renders})
	})
	t.Run("shared", func(t *testing.T) {
		dir := fixtures.SharedPath(t, "golden")
		var (
			templates map[string]string
			convs     map[string]json.RawMessage
			renders   map[string]map[string]goldenRender
		)
		readJSON(t, filepath.Join(dir, "templates.json"), &templates)
		readJSON(t, filepath.Join(dir, "convs.json"), &convs)
		readJSON(t, filepath.Join(dir, "renders_hfjinja.json"), &renders)
		checkGolden(t, templates, convs, renders)
	})
}

func checkGolden(t *testing.T, templates map[string]string, convs map[string]json.RawMessage, renders map[string]map[string]goldenRender) {
	t.Helper()
	if len(templates) == 0 || len(convs) == 0 {
		t.Fatal("fixtures: no templates or conversations")
	}

	var total, exact int
	for _, name := range sortedKeys(templates) {
		src := templates[name]
		cfg := &Config{Template: src, BOS: "<s>", EOS: "</s>"}
		if strings.HasPrefix(name, "llama3") {
			cfg.BOS, cfg.EOS = "<|begin_of_text|>", "<|eot_id|>"
		}
		for _, conv := range sortedKeys(convs) {
			for _, gen := range []bool{false, true} {
				key := conv
				if gen {
					key += "+gen"
				}
				want, ok := renders[name][key]
				if !ok {
					t.Errorf("%s/%s: no reference render", name, key)
					continue
				}
				total++
				opt := Options{AddGenerationPrompt: gen}
				if conv == "tools" {
					opt.Tools = goldenTools
				}
				got, err := RenderJSON(cfg, convs[conv], opt)

				// Conversations of plain role and content turns must render
				// the same through Render.
				var msgs []data.Message
				if conv != "tools" {
					if err := json.Unmarshal(convs[conv], &msgs); err != nil {
						t.Fatalf("convs.json %s: %v", conv, err)
					}
					got2, err2 := Render(cfg, msgs, opt)
					if got2 != got || (err2 == nil) != (err == nil) {
						t.Errorf("%s/%s: Render gave %q, %v; RenderJSON gave %q, %v", name, key, got2, err2, got, err)
					}
				}

				if w, ok := undefinedTrim[name+"/"+key]; ok {
					if want.Err == nil || !strings.Contains(*want.Err, `filter "trim"`) {
						t.Errorf("%s/%s: reference is %+v, not the undefined-trim error documented", name, key, want)
					}
					if err != nil {
						t.Errorf("%s/%s: %v, want the Jinja2 render", name, key, err)
					} else if got != w {
						t.Errorf("%s/%s:\n got %q\nwant %q (Jinja2)", name, key, got, w)
					}
					continue
				}
				switch {
				case want.OK != nil:
					if err != nil {
						t.Errorf("%s/%s: %v, want %q", name, key, err, *want.OK)
					} else if got != *want.OK {
						t.Errorf("%s/%s:\n got %q\nwant %q", name, key, got, *want.OK)
					} else {
						exact++
					}
				case want.Err != nil:
					if err == nil {
						t.Errorf("%s/%s: rendered %q, want error %q", name, key, got, *want.Err)
						continue
					}
					// A message the template itself raises must come
					// through; the engine's own wording may differ.
					if strings.Contains(src, *want.Err) {
						var te *TemplateError
						if !errors.As(err, &te) || te.Message != *want.Err {
							t.Errorf("%s/%s: error %v, want TemplateError %q", name, key, err, *want.Err)
							continue
						}
					}
					exact++
				default:
					t.Errorf("%s/%s: reference has neither ok nor err", name, key)
				}
			}
		}
	}
	t.Logf("%d/%d renders match the reference exactly (the rest: the undefined-trim rows, which match Jinja2)", exact, total)
}

// sortedKeys returns m's keys in order, for a stable test order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
