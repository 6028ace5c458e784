package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"prism/internal/fsutil"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Pair is one preference: a prompt and two responses as token ids, the
// chosen one preferred.
type Pair struct {
	// ID is the pair's position in its source (0-based), stable across
	// shuffles; it names the pair in outputs.
	ID int
	// Source names the pair's row in its file (TextPair.Source) for
	// per-example outputs.
	Source   string
	Prompt   []int64
	Chosen   []int64
	Rejected []int64
	// Margin is the required reward gap when the trainer uses margins.
	Margin float64
	// Tie marks a pair without a preference (SwapTies): its loss pulls
	// the two rewards together instead of apart.
	Tie bool
	// Tags label pairs for analysis (for example "longer_chosen").
	Tags map[string]string
}

// ChosenSeq and RejectedSeq are the full sequences the model scores.
func (p *Pair) ChosenSeq() []int64   { return concat(p.Prompt, p.Chosen) }
func (p *Pair) RejectedSeq() []int64 { return concat(p.Prompt, p.Rejected) }

// Stack returns the sequences a reward model scores for pairs: every
// chosen sequence, then every rejected one, so rewards[:len(pairs)] are
// the chosen rewards and rewards[len(pairs):] the rejected ones.
func Stack(pairs []Pair) [][]int64 {
	seqs := make([][]int64, 0, 2*len(pairs))
	for i := range pairs {
		seqs = append(seqs, pairs[i].ChosenSeq())
	}
	for i := range pairs {
		seqs = append(seqs, pairs[i].RejectedSeq())
	}
	return seqs
}

func concat(a, b []int64) []int64 {
	out := make([]int64, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// ErrInvalid marks a bad input row.
var ErrInvalid = errors.New("invalid preference data")

// MaxLineBytes bounds one JSON Lines row: a longer line is an error, not an
// allocation as large as the line.
const MaxLineBytes = 64 << 20

// tokenRow is the JSON Lines format of pre-tokenised pairs.
type tokenRow struct {
	PromptIDs   []int64           `json:"prompt_ids"`
	ChosenIDs   []int64           `json:"chosen_ids"`
	RejectedIDs []int64           `json:"rejected_ids"`
	Margin      *float64          `json:"margin"`
	Tags        map[string]string `json:"tags"`
}

// ReadTokenPairs reads JSON Lines of pre-tokenised pairs:
//
//	{"prompt_ids": [...], "chosen_ids": [...], "rejected_ids": [...], "margin": 0.5, "tags": {...}}
//
// prompt_ids, margin and tags are optional. Every bad row is an error that
// names the file, the line and the field. vocab bounds the ids (0: no
// bound).
func ReadTokenPairs(path string, vocab int) ([]Pair, error) {
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeTokenPairs(f, path, vocab)
}

func decodeTokenPairs(r io.Reader, name string, vocab int) ([]Pair, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	var pairs []Pair
	for line := 1; ; line++ {
		b, err := readLine(br)
		if errors.Is(err, io.EOF) && len(b) == 0 {
			break
		}
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("%w: %s:%d: line longer than %d bytes", ErrInvalid, name, line, MaxLineBytes)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		p, perr := decodeTokenRow(b, vocab)
		if perr != nil {
			return nil, fmt.Errorf("%w: %s:%d: %v", ErrInvalid, name, line, perr)
		}
		p.ID = len(pairs)
		p.Source = strconv.Itoa(p.ID)
		pairs = append(pairs, p)
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%w: %s: no pairs", ErrInvalid, name)
	}
	return pairs, nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline, refusing lines over
// MaxLineBytes without buffering them whole.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineBytes {
			// Skip the rest of the line so the caller's count stays right.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}

func decodeTokenRow(b []byte, vocab int) (Pair, error) {
	if !utf8.Valid(b) {
		return Pair{}, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var row tokenRow
	if err := dec.Decode(&row); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Pair{}, fmt.Errorf("field %q: want %s, got %s", te.Field, goType(te.Type.String()), te.Value)
		}
		return Pair{}, err
	}
	if dec.More() {
		return Pair{}, errors.New("more than one JSON value on the line")
	}
	check := func(field string, ids []int64, required bool) error {
		if ids == nil && required {
			return fmt.Errorf("field %q is missing", field)
		}
		if required && len(ids) == 0 {
			return fmt.Errorf("field %q is empty", field)
		}
		for i, id := range ids {
			if id < 0 || (vocab > 0 && id >= int64(vocab)) {
				return fmt.Errorf("field %q: id %d at index %d is outside the vocabulary (%d)", field, id, i, vocab)
			}
		}
		return nil
	}
	if err := check("chosen_ids", row.ChosenIDs, true); err != nil {
		return Pair{}, err
	}
	if err := check("rejected_ids", row.RejectedIDs, true); err != nil {
		return Pair{}, err
	}
	if err := check("prompt_ids", row.PromptIDs, false); err != nil {
		return Pair{}, err
	}
	if slices.Equal(row.ChosenIDs, row.RejectedIDs) {
		return Pair{}, errors.New("chosen_ids and rejected_ids are identical")
	}
	p := Pair{Prompt: row.PromptIDs, Chosen: row.ChosenIDs, Rejected: row.RejectedIDs, Tags: row.Tags}
	if row.Margin != nil {
		if math.IsNaN(*row.Margin) || math.IsInf(*row.Margin, 0) {
			return Pair{}, errors.New("field \"margin\" is not finite")
		}
		p.Margin = *row.Margin
	}
	return p, nil
}

// goType names the Go types of tokenRow's fields the way the format
// documents them.
func goType(t string) string {
	switch t {
	case "[]int64":
		return "a list of token ids"
	case "int64":
		return "an integer token id"
	case "float64":
		return "a number"
	case "map[string]string":
		return "an object of strings"
	}
	return t
}

// Truncation says what happens to pairs longer than the maximum length.
type Truncation string

const (
	// Drop skips over-long pairs (TRL's behaviour).
	Drop Truncation = "drop"
	// Left cuts the prompt from the left, keeping the end of each sequence
	// (OpenRLHF's behaviour); responses longer than the limit are cut too.
	Left Truncation = "left"
)

// Fit applies the length limit to every pair and reports how many were
// dropped and truncated. Nothing is dropped or cut silently: the counts go
// to the log and the metrics.
func Fit(pairs []Pair, maxLen int, policy Truncation) (out []Pair, dropped, truncated int) {
	for _, p := range pairs {
		lc, lr := len(p.Prompt)+len(p.Chosen), len(p.Prompt)+len(p.Rejected)
		if lc <= maxLen && lr <= maxLen {
			out = append(out, p)
			continue
		}
		if policy == Drop {
			dropped++
			continue
		}
		over := max(lc, lr) - maxLen
		q := p
		if over <= len(p.Prompt) {
			q.Prompt = p.Prompt[over:]
		} else {
			q.Prompt = nil
			if len(q.Chosen) > maxLen {
				q.Chosen = q.Chosen[len(q.Chosen)-maxLen:]
			}
			if len(q.Rejected) > maxLen {
				q.Rejected = q.Rejected[len(q.Rejected)-maxLen:]
			}
		}
		if slices.Equal(concat(q.Prompt, q.Chosen), concat(q.Prompt, q.Rejected)) {
			dropped++ // cutting made the two sides identical
			continue
		}
		truncated++
		out = append(out, q)
	}
	return out, dropped, truncated
}

// TruncateRight keeps the first n tokens of each of the pair's two
// sequences, as Hugging Face tokenizers truncate by default (and so the
// official RewardBench scorer, with max_length 2048). It reports whether
// anything was cut.
func TruncateRight(p Pair, n int) (Pair, bool) {
	if len(p.Prompt)+len(p.Chosen) <= n && len(p.Prompt)+len(p.Rejected) <= n {
		return p, false
	}
	q := p
	if len(p.Prompt) >= n {
		q.Prompt, q.Chosen, q.Rejected = p.Prompt[:n], nil, nil
		return q, true
	}
	room := n - len(p.Prompt)
	q.Chosen = p.Chosen[:min(len(p.Chosen), room)]
	q.Rejected = p.Rejected[:min(len(p.Rejected), room)]
	return q, true
}

// Split shuffles pairs with the seed and holds out a fraction for
// evaluation (at least one pair when fraction > 0).
func Split(pairs []Pair, fraction float64, seed uint64) (train, eval []Pair) {
	idx := rand.New(rand.NewPCG(seed, 0x5eed5b17)).Perm(len(pairs))
	n := int(math.Round(fraction * float64(len(pairs))))
	if fraction > 0 && n == 0 {
		n = 1
	}
	if n >= len(pairs) {
		n = len(pairs) - 1
	}
	for i, j := range idx {
		if i < n {
			eval = append(eval, pairs[j])
		} else {
			train = append(train, pairs[j])
		}
	}
	return train, eval
}
