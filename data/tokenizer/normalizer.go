package tokenizer

import (
	"encoding/json"
	"fmt"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites a segment of text before pre-tokenization.
type normalizer interface {
	normalize(s string) (string, error)
}

// componentType reads the "type" field of a component.
func componentType(raw json.RawMessage) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("invalid JSON: %w", err)
	}
	if head.Type == "" {
		return "", fmt.Errorf("missing type")
	}
	return head.Type, nil
}

// parseNormalizer returns nil for a null normalizer.
func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var c struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		var seq sequenceNormalizer
		for i, r := range c.Normalizers {
			n, err := parseNormalizer(r)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", typ, i, err)
			}
			if n != nil {
				seq = append(seq, n)
			}
		}
		return seq, nil
	case "Prepend":
		var c struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		return prependNormalizer(c.Prepend), nil
	case "Replace":
		var c struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		m, err := compilePattern(c.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", typ, err)
		}
		return replaceNormalizer{m, c.Content}, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	default:
		return nil, fmt.Errorf("unsupported type %q", typ)
	}
}

type sequenceNormalizer []normalizer

func (seq sequenceNormalizer) normalize(s string) (string, error) {
	for _, n := range seq {
		var err error
		if s, err = n.normalize(s); err != nil {
			return "", err
		}
	}
	return s, nil
}

// prependNormalizer adds a prefix to non-empty text.
type prependNormalizer string

func (p prependNormalizer) normalize(s string) (string, error) {
	if s == "" {
		return s, nil
	}
	return string(p) + s, nil
}

type replaceNormalizer struct {
	m       matcher
	content string
}

func (r replaceNormalizer) normalize(s string) (string, error) {
	return replaceAll(r.m, s, r.content)
}

type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) (string, error) {
	return u.form.String(s), nil
}
