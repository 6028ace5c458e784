// Package tokenizer encodes and decodes text with Hugging Face tokenizer.json
// files of the BPE family (Llama 3, Mistral, Llama 2, GPT-2, Qwen), matching
// the Hugging Face tokenizers library id for id.
//
// The pipeline follows the library's: added tokens are split out of the raw
// text first, each remaining segment is normalized, pre-tokenized and run
// through the BPE model, and the post-processor adds special tokens when
// asked to. Components that this package does not implement make Load fail
// with an error naming the component; nothing is silently skipped.
//
// Added tokens with normalized=false are matched in the raw text, and those
// with normalized=true in the normalized text of the segments between them,
// as in the library. Encode never truncates or pads, as transformers'
// tokenizers do by default; EncodeLibrary applies the file's truncation
// settings the way the library's own encode does. Padding only shapes
// batches and is ignored.
// Where the library is lax, this package is strict: Encode rejects invalid
// UTF-8 and Decode rejects unknown ids.
package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"prism/internal/fsutil"
	"strings"
	"unicode/utf8"
)

// maxTokenID bounds token ids accepted from a file, so that a corrupt file
// cannot make Load allocate an id table of arbitrary size.
const maxTokenID = 1 << 24

// Tokenizer encodes text to token ids and decodes ids back to text.
// It is safe for concurrent use.
type Tokenizer struct {
	added      *addedVocab
	normalizer normalizer    // nil: identity
	pre        preTokenizer  // nil: the segment is one pre-token
	model      *bpe          // never nil
	post       postProcessor // nil: no special tokens are added
	decoder    decoder       // nil: tokens are joined with spaces

	idToToken []string    // indexed by id
	idKind    []tokenKind // indexed by id

	trunc *truncation // nil: the file sets none
}

// truncation is the file's "truncation" block.
type truncation struct {
	Direction string `json:"direction"`
	MaxLength int    `json:"max_length"`
	Strategy  string `json:"strategy"`
	Stride    int    `json:"stride"`
}

// tokenKind classifies an id for decoding.
type tokenKind uint8

const (
	unusedID tokenKind = iota
	regularID
	specialID // a special added token, dropped by Decode with skipSpecial
)

// fileJSON is the top level of a tokenizer.json file.
type fileJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Truncation    json.RawMessage  `json:"truncation"`
}

// Load reads a tokenizer.json file. path names the file itself or a
// directory that contains one.
func Load(path string) (*Tokenizer, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	data, err := fsutil.ReadFile(path, fsutil.CapTokenizer)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
	}
	return t, nil
}

// parse builds a Tokenizer from the contents of a tokenizer.json file.
func parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if isNull(f.Model) {
		return nil, errors.New("model: missing")
	}
	model, err := parseModel(f.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	t := &Tokenizer{model: model}
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if t.added, err = newAddedVocab(f.AddedTokens, t.normalizer); err != nil {
		return nil, fmt.Errorf("added_tokens: %w", err)
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if t.post, err = parsePostProcessor(f.PostProcessor); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	if !isNull(f.Truncation) {
		var tr truncation
		if err := json.Unmarshal(f.Truncation, &tr); err != nil {
			return nil, fmt.Errorf("truncation: %w", err)
		}
		switch {
		case tr.Direction != "Left" && tr.Direction != "Right":
			return nil, fmt.Errorf("truncation: direction %q is not Left or Right", tr.Direction)
		case tr.MaxLength < 0 || tr.Stride < 0:
			return nil, errors.New("truncation: max_length and stride must not be negative")
		case tr.Strategy != "LongestFirst" && tr.Strategy != "OnlyFirst" && tr.Strategy != "OnlySecond":
			return nil, fmt.Errorf("truncation: strategy %q is not supported", tr.Strategy)
		}
		t.trunc = &tr
	}
	if t.decoder, err = parseDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	t.buildIDTable()
	return t, nil
}

// buildIDTable fills idToToken and special. Added tokens override the
// model's vocabulary, as in the Hugging Face library.
func (t *Tokenizer) buildIDTable() {
	n := 0
	for _, id := range t.model.vocab {
		n = max(n, id+1)
	}
	for _, tok := range t.added.tokens {
		n = max(n, tok.id+1)
	}
	t.idToToken = make([]string, n)
	t.idKind = make([]tokenKind, n)
	for s, id := range t.model.vocab {
		t.idToToken[id] = s
		t.idKind[id] = regularID
	}
	for _, tok := range t.added.tokens {
		t.idToToken[tok.id] = tok.content
		t.idKind[tok.id] = regularID
		if tok.special {
			t.idKind[tok.id] = specialID
		}
	}
}

// isNull reports whether a JSON value is absent or null.
func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// TokenID returns the id of a token (an added token or a vocabulary entry).
func (t *Tokenizer) TokenID(tok string) (int, bool) {
	if id, ok := t.added.byContent[tok]; ok {
		return id, true
	}
	id, ok := t.model.vocab[tok]
	return id, ok
}

// VocabSize returns one more than the largest token id, counting added
// tokens. For the usual dense vocabularies this is the number of tokens.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// Encode tokenizes text. addSpecial applies the post-processor (for
// example, prepending a beginning-of-text token). Special tokens written in
// text are recognised either way, as in the Hugging Face library.
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int, error) {
	ids, err := t.encode(text)
	if err != nil {
		return nil, err
	}
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids, nil
}

// EncodeLibrary is Encode with the file's truncation applied the way the
// Hugging Face library's encode applies it: the sequence is cut to
// max_length less the special tokens the post-processor will add, from the
// right or the left, before they are added. (For a single sequence every
// strategy cuts the same way; a stride only produces overflow encodings,
// which carry no ids of the main encoding.)
func (t *Tokenizer) EncodeLibrary(text string, addSpecial bool) ([]int, error) {
	ids, err := t.encode(text)
	if err != nil {
		return nil, err
	}
	if tr := t.trunc; tr != nil {
		limit := tr.MaxLength
		if addSpecial && t.post != nil {
			limit -= len(t.post.process(nil))
		}
		limit = max(limit, 0)
		if len(ids) > limit {
			if tr.Direction == "Left" {
				ids = ids[len(ids)-limit:]
			} else {
				ids = ids[:limit]
			}
		}
	}
	if addSpecial && t.post != nil {
		ids = t.post.process(ids)
	}
	return ids, nil
}

// encode runs everything but the post-processor.
func (t *Tokenizer) encode(text string) ([]int, error) {
	if !utf8.ValidString(text) {
		return nil, errors.New("tokenizer: encode: input is not valid UTF-8")
	}
	ids := make([]int, 0, len(text)/3+4)
	var pieces []span
	for _, seg := range t.added.split(text, t.added.raw, nil) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		norm := seg.text
		if t.normalizer != nil {
			var err error
			if norm, err = t.normalizer.normalize(norm); err != nil {
				return nil, fmt.Errorf("tokenizer: encode: normalizer: %w", err)
			}
		}
		for _, part := range t.added.split(norm, t.added.norm, nil) {
			if part.id >= 0 {
				ids = append(ids, part.id)
				continue
			}
			// Metaspace's prepend_scheme "first" needs to know whether a
			// pre-token starts the input.
			first := seg.start == 0 && part.start == 0
			pieces = append(pieces[:0], span{text: part.text, first: first})
			if t.pre != nil {
				var err error
				if pieces, err = t.pre.preTokenize(pieces); err != nil {
					return nil, fmt.Errorf("tokenizer: encode: pre_tokenizer: %w", err)
				}
			}
			for _, p := range pieces {
				ids = t.model.tokenize(ids, p.text)
			}
		}
	}
	return ids, nil
}

// Decode turns ids back into text. skipSpecial drops special added tokens
// (such as <s> or <|eot_id|>). Unlike the Hugging Face library, which skips
// unknown ids silently, an id outside the vocabulary is an error.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) (string, error) {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idKind) || t.idKind[id] == unusedID {
			return "", fmt.Errorf("tokenizer: decode: unknown token id %d", id)
		}
		if skipSpecial && t.idKind[id] == specialID {
			continue
		}
		tokens = append(tokens, t.idToToken[id])
	}
	if t.decoder == nil {
		return strings.Join(tokens, " "), nil
	}
	out, err := t.decoder.decodeChain(tokens)
	if err != nil {
		return "", fmt.Errorf("tokenizer: decode: %w", err)
	}
	return strings.Join(out, ""), nil
}
