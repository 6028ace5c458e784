package chattemplate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ardanlabs/jinja"

	"prism/data"
)

// Options control rendering.
type Options struct {
	// AddGenerationPrompt asks the template to end with the header that
	// opens the assistant's reply (add_generation_prompt).
	AddGenerationPrompt bool
	// Tools are the tool (function) definitions passed to the template as
	// tools, each a JSON object such as
	//
	//	{"type": "function", "function": {"name": ..., "description": ..., "parameters": {...}}}
	//
	// They are JSON rather than Go maps so that their keys keep their
	// order: templates print tools with tojson or by iterating their items,
	// and transformers keeps the order the definition was written in.
	Tools []json.RawMessage
	// Limits bound the rendering (nil: DefaultLimits).
	Limits *Limits
}

// TemplateError is the error a template raises by calling
// raise_exception(message), typically to reject a conversation it cannot
// format (for example roles that do not alternate).
type TemplateError struct {
	Message string
}

func (e *TemplateError) Error() string { return e.Message }

// Render renders cfg's chat template for messages, each passed to the
// template as an object {"role": ..., "content": ...}. An error the
// template raises with raise_exception is a *TemplateError.
//
// The engine is more lenient than Jinja2 in places: an undefined value in
// an expression (undefined + "x", undefined.attr) renders as empty where
// Jinja2 fails, and none prints as "" rather than "None". Rendering runs
// within opt.Limits (macro depth, steps, output, memory, time): a
// template that reaches one fails with a *LimitError naming it.
func Render(cfg *Config, messages []data.Message, opt Options) (string, error) {
	list := make([]jinja.Value, len(messages))
	for i, m := range messages {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		list[i] = d
	}
	return render(cfg, jinja.NewList(list), opt)
}

// RenderJSON is Render for a conversation given as a JSON array of message
// objects, for messages that carry more than a role and a content, such as
// an assistant's tool_calls or a tool result's tool_call_id. A field absent
// from a message is undefined in the template, as in transformers.
func RenderJSON(cfg *Config, messages []byte, opt Options) (string, error) {
	msgs, err := decodeJSON(messages)
	if err != nil {
		return "", fmt.Errorf("chattemplate: messages: %w", err)
	}
	if !msgs.IsList() {
		return "", errors.New("chattemplate: messages: not a JSON array")
	}
	for i, m := range msgs.AsList().Items {
		if !m.IsDict() {
			return "", fmt.Errorf("chattemplate: messages[%d]: not a JSON object", i)
		}
	}
	return render(cfg, msgs, opt)
}

// render renders cfg's template with messages and the other variables
// transformers provides.
func render(cfg *Config, messages jinja.Value, opt Options) (out string, err error) {
	if cfg == nil {
		return "", errors.New("chattemplate: nil config")
	}
	// The template engine is third-party code run on arbitrary templates
	// and data; turn any panic in it into an error.
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chattemplate: template engine failed: %v", r)
		}
	}()

	lim := DefaultLimits()
	if opt.Limits != nil {
		lim = *opt.Limits
	}
	if err := checkLiterals(cfg.Template, lim); err != nil {
		err.(*LimitError).Source = cfg.Source
		return "", err
	}
	tmpl, err := jinja.Compile(guardSource(cfg.Template))
	if err != nil {
		// The guards only add tags after tags that compiled: report the
		// template's own error.
		if _, err2 := jinja.Compile(cfg.Template); err2 != nil {
			err = err2
		}
		return "", fmt.Errorf("chattemplate: compiling template: %w", err)
	}
	b := newBudget(lim)

	// transformers always passes tools and documents, as None when absent.
	tools := jinja.None()
	if opt.Tools != nil {
		list := make([]jinja.Value, len(opt.Tools))
		for i, raw := range opt.Tools {
			if list[i], err = decodeJSON(raw); err != nil {
				return "", fmt.Errorf("chattemplate: tools[%d]: %w", i, err)
			}
		}
		tools = jinja.NewList(list)
	}
	vars := map[string]jinja.Value{
		"messages":              messages,
		"tools":                 tools,
		"documents":             jinja.None(),
		"add_generation_prompt": jinja.NewBool(opt.AddGenerationPrompt),
		"bos_token":             jinja.NewString(cfg.BOS),
		"eos_token":             jinja.NewString(cfg.EOS),
		"raise_exception":       jinja.NewCallable("raise_exception", raiseException),
	}
	for k, v := range b.vars() {
		vars[k] = v
	}

	out, err = tmpl.RenderValues(vars)
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			le.Source = cfg.Source
			return "", le
		}
		return "", fmt.Errorf("chattemplate: rendering template: %w", err)
	}
	if len(out) > lim.Output {
		return "", &LimitError{Limit: "output", Msg: fmt.Sprintf("%d bytes of output, more than the %d-byte limit", len(out), lim.Output), Source: cfg.Source}
	}
	return out, nil
}

// raiseException implements the template function raise_exception(message).
func raiseException(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Undefined(), &TemplateError{Message: "raise_exception called without a message"}
	}
	msg := args[0].String()
	if args[0].IsString() {
		msg = args[0].AsString()
	}
	return jinja.Undefined(), &TemplateError{Message: msg}
}

// maxDepth bounds the nesting of decoded JSON, so that hostile input cannot
// exhaust the stack.
const maxDepth = 1000

// decodeJSON decodes one JSON value into a template value. Objects become
// dicts that keep their keys in the order written; a repeated key keeps its
// first position and its last value, as Python's json module does.
// Integers stay integers.
func decodeJSON(raw []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return jinja.Value{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return jinja.Value{}, errors.New("invalid JSON: data after the value")
	}
	return v, nil
}

// decodeValue decodes the next JSON value from dec, at nesting depth depth.
func decodeValue(dec *json.Decoder, depth int) (jinja.Value, error) {
	if depth > maxDepth {
		return jinja.Value{}, fmt.Errorf("invalid JSON: nested deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return jinja.Value{}, errors.New("invalid JSON: unexpected end of input")
	}
	if err != nil {
		return jinja.Value{}, fmt.Errorf("invalid JSON: %w", err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := jinja.NewDict()
			d := v.AsDict()
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return jinja.Value{}, fmt.Errorf("invalid JSON: %w", err)
				}
				k, ok := key.(string)
				if !ok {
					return jinja.Value{}, errors.New("invalid JSON: object key is not a string")
				}
				val, err := decodeValue(dec, depth+1)
				if err != nil {
					return jinja.Value{}, err
				}
				d.Set(k, val)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return jinja.Value{}, fmt.Errorf("invalid JSON: %w", err)
			}
			return v, nil
		case '[':
			var items []jinja.Value
			for dec.More() {
				val, err := decodeValue(dec, depth+1)
				if err != nil {
					return jinja.Value{}, err
				}
				items = append(items, val)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return jinja.Value{}, fmt.Errorf("invalid JSON: %w", err)
			}
			return jinja.NewList(items), nil
		}
		return jinja.Value{}, fmt.Errorf("invalid JSON: unexpected %v", t)
	case string, bool, nil, json.Number:
		return jinja.FromGoValue(t), nil
	}
	return jinja.Value{}, fmt.Errorf("invalid JSON: unexpected token %v", tok)
}
