package tokenizer

import (
	"encoding/json"
	"fmt"
	"reflect"

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

// parseComponent parses a pipeline component of kind T (normalizer,
// pre-tokenizer, post-processor or decoder), doing what all kinds share: a
// null component is nil, and a "Sequence" is the components listed under
// key, less those that parse to nil, made one by chain. Other types go to
// parseType.
func parseComponent[T any](raw json.RawMessage, key string, chain func([]T) T,
	parseType func(typ string, raw json.RawMessage) (T, error)) (T, error) {
	var zero T
	if isNull(raw) {
		return zero, nil
	}
	typ, err := componentType(raw)
	if err != nil {
		return zero, err
	}
	if typ != "Sequence" {
		return parseType(typ, raw)
	}
	// The list is decoded through a struct with one field tagged key, like
	// every other field of a component: keys match case-insensitively, a
	// missing list is empty, and errors name the field.
	field := reflect.StructField{
		Name: "List",
		Type: reflect.TypeFor[[]json.RawMessage](),
		Tag:  reflect.StructTag(`json:"` + key + `"`),
	}
	c := reflect.New(reflect.StructOf([]reflect.StructField{field}))
	if err := json.Unmarshal(raw, c.Interface()); err != nil {
		return zero, fmt.Errorf("%s: %w", typ, err)
	}
	var seq []T
	for i, r := range c.Elem().Field(0).Interface().([]json.RawMessage) {
		v, err := parseComponent(r, key, chain, parseType)
		if err != nil {
			return zero, fmt.Errorf("%s[%d]: %w", typ, i, err)
		}
		if any(v) != nil {
			seq = append(seq, v)
		}
	}
	return chain(seq), nil
}

// runSequence passes x through each step of seq in turn with apply,
// stopping at the first error.
func runSequence[T, X any](seq []T, x X, apply func(T, X) (X, error)) (X, error) {
	for _, step := range seq {
		var err error
		if x, err = apply(step, x); err != nil {
			var zero X
			return zero, err
		}
	}
	return x, nil
}

// parseNormalizer returns nil for a null normalizer.
func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	return parseComponent(raw, "normalizers", func(ns []normalizer) normalizer { return sequenceNormalizer(ns) }, parseNormalizerType)
}

// parseNormalizerType parses a normalizer of a type other than Sequence.
func parseNormalizerType(typ string, raw json.RawMessage) (normalizer, error) {
	switch typ {
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
	return runSequence(seq, s, normalizer.normalize)
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
