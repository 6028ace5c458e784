package encode

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"prism/data"
)

// Row reads one row to score, {"input_ids": [...]}, {"prompt": ...,
// "response": ...} (strings or message lists) or {"messages": [...]}, and
// returns its token ids: text is rendered with the chat template and
// tokenised by the encoder that enc returns (called only for text rows,
// so token-id input needs no tokenizer). Errors name the field.
func Row(raw []byte, enc func() (*Encoder, error)) ([]int64, error) {
	if !utf8.Valid(raw) {
		return nil, errors.New("not valid UTF-8")
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		return nil, err
	}
	allowed := func(keys ...string) error {
		for k := range row {
			if !slices.Contains(keys, k) {
				return fmt.Errorf("unexpected field %q (want input_ids, prompt+response, or messages)", k)
			}
		}
		return nil
	}
	var msgs []data.Message
	switch {
	case row["input_ids"] != nil:
		if err := allowed("input_ids"); err != nil {
			return nil, err
		}
		var ids []int64
		if err := json.Unmarshal(row["input_ids"], &ids); err != nil || len(ids) == 0 {
			return nil, errors.New(`field "input_ids": want a non-empty list of token ids`)
		}
		return ids, nil
	case row["messages"] != nil:
		if err := allowed("messages"); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(row["messages"], &msgs); err != nil || len(msgs) == 0 {
			return nil, errors.New(`field "messages": want a non-empty list of {"role", "content"}`)
		}
	case row["prompt"] != nil || row["response"] != nil:
		if err := allowed("prompt", "response"); err != nil {
			return nil, err
		}
		p, err := turns(row["prompt"], "prompt", "user")
		if err != nil {
			return nil, err
		}
		r, err := turns(row["response"], "response", "assistant")
		if err != nil {
			return nil, err
		}
		msgs = append(p, r...)
	default:
		return nil, errors.New(`want "input_ids", "prompt" and "response", or "messages"`)
	}
	e, err := enc()
	if err != nil {
		return nil, err
	}
	return e.Conversation(msgs)
}

// turns reads a string (one message of role) or a message list.
func turns(v json.RawMessage, field, role string) ([]data.Message, error) {
	if v == nil {
		return nil, fmt.Errorf("field %q is missing", field)
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s == "" {
			return nil, fmt.Errorf("field %q is empty", field)
		}
		return []data.Message{{Role: role, Content: s}}, nil
	}
	var msgs []data.Message
	if err := json.Unmarshal(v, &msgs); err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("field %q: want a string or a non-empty list of messages", field)
	}
	return msgs, nil
}
