package tokenizer

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decoder turns tokens back into text. Like the Hugging Face library's
// decode_chain, each step maps a list of strings to another; the results of
// the last step are concatenated.
type decoder interface {
	decodeChain(tokens []string) ([]string, error)
}

// parseDecoder returns nil for a null decoder.
func parseDecoder(raw json.RawMessage) (decoder, error) {
	return parseComponent(raw, "decoders", func(ds []decoder) decoder { return sequenceDecoder(ds) }, parseDecoderType)
}

// parseDecoderType parses a decoder of a type other than Sequence.
func parseDecoderType(typ string, raw json.RawMessage) (decoder, error) {
	wrap := func(err error) error { return fmt.Errorf("%s: %w", typ, err) }
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		m, err := parseMetaspace(raw)
		if err != nil {
			return nil, wrap(err)
		}
		return metaspaceDecoder{m}, nil
	case "Replace":
		var c struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, wrap(err)
		}
		m, err := compilePattern(c.Pattern)
		if err != nil {
			return nil, wrap(err)
		}
		return replaceDecoder{m, c.Content}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var c struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, wrap(err)
		}
		if utf8.RuneCountInString(c.Content) != 1 {
			return nil, wrap(fmt.Errorf("content %q is not one character", c.Content))
		}
		if c.Start < 0 || c.Stop < 0 {
			return nil, wrap(fmt.Errorf("negative start %d or stop %d", c.Start, c.Stop))
		}
		r, _ := utf8.DecodeRuneInString(c.Content)
		return stripDecoder{r, c.Start, c.Stop}, nil
	default:
		return nil, fmt.Errorf("unsupported type %q", typ)
	}
}

type sequenceDecoder []decoder

func (seq sequenceDecoder) decodeChain(tokens []string) ([]string, error) {
	return runSequence(seq, tokens, decoder.decodeChain)
}

// byteLevelDecoder maps byte-level characters back to bytes. A token with a
// character outside the byte alphabet (such as an added token) is kept as
// is, and invalid UTF-8 becomes U+FFFD.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) ([]string, error) {
	var buf []byte
	for _, tok := range tokens {
		start := len(buf)
		ok := true
		for _, r := range tok {
			b, found := runeBytes[r]
			if !found {
				ok = false
				break
			}
			buf = append(buf, b)
		}
		if !ok {
			buf = append(buf[:start], tok...)
		}
	}
	return []string{lossyUTF8(buf)}, nil
}

// lossyUTF8 converts b to a string, replacing each maximal invalid
// subsequence with one U+FFFD, as Rust's String::from_utf8_lossy does (Go's
// strings.ToValidUTF8 would merge adjacent invalid sequences).
func lossyUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			sb.Write(b[i : i+n])
			i += n
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += invalidPrefixLen(b[i:])
	}
	return sb.String()
}

// invalidPrefixLen returns the length of the maximal prefix of b that could
// start a valid UTF-8 sequence but does not complete one (at least 1).
func invalidPrefixLen(b []byte) int {
	c := b[0]
	var size int
	lo, hi := byte(0x80), byte(0xBF) // range of the second byte
	switch {
	case c >= 0xC2 && c <= 0xDF:
		size = 2
	case c == 0xE0:
		size, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		size = 3
	case c == 0xED:
		size, hi = 3, 0x9F
	case c == 0xF0:
		size, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		size = 4
	case c == 0xF4:
		size, hi = 4, 0x8F
	default:
		return 1
	}
	n := 1
	for ; n < size && n < len(b); n++ {
		if n == 1 && (b[1] < lo || b[1] > hi) {
			break
		}
		if n > 1 && (b[n] < 0x80 || b[n] > 0xBF) {
			break
		}
	}
	return n
}

// metaspaceDecoder turns the replacement character back into spaces,
// dropping it from the first token unless prepend_scheme is "never".
type metaspaceDecoder struct{ m *metaspace }

func (d metaspaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		repl := " "
		if i == 0 && d.m.scheme != prependNever {
			repl = ""
		}
		out[i] = strings.ReplaceAll(tok, d.m.repl, repl)
	}
	return out, nil
}

type replaceDecoder struct {
	m       matcher
	content string
}

func (d replaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		var err error
		if out[i], err = replaceAll(d.m, tok, d.content); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// byteFallbackDecoder turns runs of <0xNN> tokens back into text; a run that
// is not valid UTF-8 becomes one U+FFFD per byte.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, 0, len(tokens))
	var pending []byte
	flush := func() {
		if len(pending) == 0 {
			return
		}
		if utf8.Valid(pending) {
			out = append(out, string(pending))
		} else {
			for range pending {
				out = append(out, "\uFFFD")
			}
		}
		pending = pending[:0]
	}
	for _, tok := range tokens {
		if b, ok := parseByteToken(tok); ok {
			pending = append(pending, b)
			continue
		}
		flush()
		out = append(out, tok)
	}
	flush()
	return out, nil
}

// parseByteToken parses a token of the form <0xNN>.
func parseByteToken(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(tok[3:5], 16, 8)
	if err != nil {
		return 0, false
	}
	return byte(v), true
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) ([]string, error) {
	return []string{strings.Join(tokens, "")}, nil
}

// stripDecoder removes up to start copies of content from the front of each
// token and up to stop from the back.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, tok := range tokens {
		for n := 0; n < d.start; n++ {
			r, size := utf8.DecodeRuneInString(tok)
			if size == 0 || r != d.content {
				break
			}
			tok = tok[size:]
		}
		for n := 0; n < d.stop; n++ {
			r, size := utf8.DecodeLastRuneInString(tok)
			if size == 0 || r != d.content {
				break
			}
			tok = tok[:len(tok)-size]
		}
		out[i] = tok
	}
	return out, nil
}
