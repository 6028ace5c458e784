package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
)

// postProcessor adds special tokens around an encoded sequence.
type postProcessor interface {
	process(ids []int) []int
}

// parsePostProcessor returns nil for a null post-processor.
func parsePostProcessor(raw json.RawMessage) (postProcessor, error) {
	return parseComponent(raw, "processors", func(ps []postProcessor) postProcessor { return sequencePost(ps) }, parsePostProcessorType)
}

// parsePostProcessorType parses a post-processor of a type other than
// Sequence.
func parsePostProcessorType(typ string, raw json.RawMessage) (postProcessor, error) {
	switch typ {
	case "ByteLevel":
		// ByteLevel only trims offsets, which Encode does not return.
		return nil, nil
	case "TemplateProcessing":
		p, err := parseTemplate(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("unsupported type %q", typ)
	}
}

type sequencePost []postProcessor

func (seq sequencePost) process(ids []int) []int {
	for _, p := range seq {
		ids = p.process(ids)
	}
	return ids
}

// templatePiece is one element of a TemplateProcessing template.
type templatePiece struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID string `json:"id"`
	} `json:"Sequence"`
}

// template is TemplateProcessing reduced to what a single sequence needs:
// the ids to put before and after it.
type template struct {
	before, after []int
}

func parseTemplate(raw json.RawMessage) (*template, error) {
	var c struct {
		Single        []templatePiece `json:"single"`
		Pair          []templatePiece `json:"pair"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	check := func(name string, pieces []templatePiece, allowB bool) error {
		for i, p := range pieces {
			switch {
			case p.SpecialToken != nil && p.Sequence == nil:
				tok, ok := c.SpecialTokens[p.SpecialToken.ID]
				if !ok {
					return fmt.Errorf("%s[%d]: special token %q is not in special_tokens", name, i, p.SpecialToken.ID)
				}
				for _, id := range tok.IDs {
					if id < 0 || id >= maxTokenID {
						return fmt.Errorf("special token %q: id %d out of range", p.SpecialToken.ID, id)
					}
				}
			case p.Sequence != nil && p.SpecialToken == nil:
				if p.Sequence.ID != "A" && !(allowB && p.Sequence.ID == "B") {
					return fmt.Errorf("%s[%d]: unsupported sequence %q", name, i, p.Sequence.ID)
				}
			default:
				return fmt.Errorf("%s[%d]: want a SpecialToken or a Sequence", name, i)
			}
		}
		return nil
	}
	if err := check("single", c.Single, false); err != nil {
		return nil, err
	}
	if err := check("pair", c.Pair, true); err != nil {
		return nil, err
	}
	t := &template{}
	seen := false
	for _, p := range c.Single {
		if p.Sequence != nil {
			if seen {
				return nil, errors.New("single: sequence A appears twice")
			}
			seen = true
			continue
		}
		ids := c.SpecialTokens[p.SpecialToken.ID].IDs
		if seen {
			t.after = append(t.after, ids...)
		} else {
			t.before = append(t.before, ids...)
		}
	}
	if !seen {
		return nil, errors.New("single: sequence A is missing")
	}
	return t, nil
}

func (t *template) process(ids []int) []int {
	out := make([]int, 0, len(t.before)+len(ids)+len(t.after))
	out = append(out, t.before...)
	out = append(out, ids...)
	return append(out, t.after...)
}
