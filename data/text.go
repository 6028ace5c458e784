package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"prism/internal/fsutil"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// TextPair is a preference pair before tokenisation: the conversation so
// far, and the chosen and rejected continuations. The boundary between
// prompt and response is kept so the decomposition can pair any prompt with
// any response.
type TextPair struct {
	ID int
	// Source names the row in its file for per-example outputs: the row's
	// own "id" field when it has one (RewardBench's), else its 0-based
	// position among the file's rows.
	Source string
	// Where is the row's place as the file's errors name it: a line number
	// (JSON Lines) or "row N" (JSON arrays, Parquet).
	Where    string
	Prompt   []Message
	Chosen   []Message
	Rejected []Message
	Margin   float64
	// Subset names a benchmark subset (RewardBench's "subset" column).
	Subset string
	Tags   map[string]string
}

// Keys names the fields of a row (OpenRLHF's prompt_key, chosen_key and
// rejected_key).
type Keys struct {
	Prompt, Chosen, Rejected, Margin string
}

// DefaultKeys are TRL's and OpenRLHF's default field names.
var DefaultKeys = Keys{Prompt: "prompt", Chosen: "chosen", Rejected: "rejected", Margin: "margin"}

// ReadOptions control ReadTextPairs.
type ReadOptions struct {
	Keys Keys
	// SkipInvalid skips bad rows and counts them instead of failing.
	SkipInvalid bool
}

// ReadStats counts what reading skipped.
type ReadStats struct {
	Rows, Skipped int
	// FirstSkipped is the error of the first skipped row, for the log.
	FirstSkipped error
	// Reasons counts the skipped rows by what was wrong with them.
	Reasons map[string]int
	// Examples are the first skipped rows' errors, with file and line.
	Examples []string
}

// maxSkipExamples bounds ReadStats.Examples.
const maxSkipExamples = 10

// Skip records one skipped row: reason says what was wrong, full is the
// whole error (file and line).
func (st *ReadStats) Skip(reason string, full error) {
	if st.Skipped == 0 {
		st.FirstSkipped = full
	}
	st.Skipped++
	if st.Reasons == nil {
		st.Reasons = map[string]int{}
	}
	st.Reasons[reason]++
	if len(st.Examples) < maxSkipExamples {
		st.Examples = append(st.Examples, full.Error())
	}
}

// Merge adds the skips of o (a later stage over the same rows: o.Rows is
// not added).
func (st *ReadStats) Merge(o ReadStats) {
	for r, n := range o.Reasons {
		if st.Reasons == nil {
			st.Reasons = map[string]int{}
		}
		st.Reasons[r] += n
	}
	if st.Skipped == 0 {
		st.FirstSkipped = o.FirstSkipped
	}
	st.Skipped += o.Skipped
	for _, e := range o.Examples {
		if len(st.Examples) < maxSkipExamples {
			st.Examples = append(st.Examples, e)
		}
	}
}

// Summary says what was skipped in one line: "skipped 3 of 100 rows:
// field "chosen" is missing (2), not valid UTF-8 (1)"; "" when nothing was.
func (st ReadStats) Summary() string {
	if st.Skipped == 0 {
		return ""
	}
	reasons := make([]string, 0, len(st.Reasons))
	for r := range st.Reasons {
		reasons = append(reasons, r)
	}
	slices.SortFunc(reasons, func(a, b string) int {
		if d := st.Reasons[b] - st.Reasons[a]; d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%s (%d)", r, st.Reasons[r])
	}
	return fmt.Sprintf("skipped %d of %d rows: %s", st.Skipped, st.Rows, strings.Join(parts, ", "))
}

// ReadTextPairs reads preference pairs from JSON Lines (.jsonl), a JSON
// array (.json) or Parquet (.parquet, the format Hugging Face datasets are
// stored in), streaming: a file larger than memory is read row by row.
// Rows take these shapes (field names per opt.Keys):
//
//	{"prompt": "...", "chosen": "...", "rejected": "..."}
//	{"chosen": [messages], "rejected": [messages]}   (shared leading turns are the prompt)
//	{"prompt": [messages], "chosen": [messages], "rejected": [messages]}
//
// with an optional "margin" number, "subset" string and "tags" object. A
// bad row is an error naming the file, the line (or array index) and the
// field; with SkipInvalid it is skipped and counted.
func ReadTextPairs(path string, opt ReadOptions) ([]TextPair, ReadStats, error) {
	if opt.Keys == (Keys{}) {
		opt.Keys = DefaultKeys
	}
	f, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, ReadStats{}, err
	}
	defer f.Close()
	var st ReadStats
	var pairs []TextPair
	handle := func(where string, raw []byte) error {
		st.Rows++
		p, err := decodeTextRow(raw, opt.Keys)
		if err != nil {
			full := fmt.Errorf("%w: %s:%s: %v", ErrInvalid, path, where, err)
			if !opt.SkipInvalid {
				return full
			}
			st.Skip(err.Error(), full)
			return nil
		}
		p.ID, p.Where = len(pairs), where
		if p.Source == "" {
			p.Source = strconv.Itoa(st.Rows - 1)
		}
		pairs = append(pairs, p)
		return nil
	}
	if strings.HasSuffix(strings.ToLower(path), ".parquet") {
		if err := readParquet(f, path, handle); err != nil {
			return nil, st, err
		}
		if len(pairs) == 0 {
			return nil, st, fmt.Errorf("%w: %s: no valid pairs (%d rows, %d skipped)", ErrInvalid, path, st.Rows, st.Skipped)
		}
		return pairs, st, nil
	}
	br := bufio.NewReaderSize(f, 1<<16)
	first, err := firstByte(br)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %s: %v", ErrInvalid, path, err)
	}
	if first == '[' {
		err = readJSONArray(br, path, handle)
	} else {
		err = readJSONLines(br, path, handle)
	}
	if err != nil {
		return nil, st, err
	}
	if len(pairs) == 0 {
		return nil, st, fmt.Errorf("%w: %s: no valid pairs (%d rows, %d skipped)", ErrInvalid, path, st.Rows, st.Skipped)
	}
	return pairs, st, nil
}

// firstByte peeks at the first non-space byte.
func firstByte(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return 0, errors.New("empty file")
			}
			return 0, err
		}
		if b == ' ' || b == '\t' || b == '\r' || b == '\n' {
			continue
		}
		return b, br.UnreadByte()
	}
}

func readJSONLines(br *bufio.Reader, name string, handle func(string, []byte) error) error {
	for line := 1; ; line++ {
		b, err := readLine(br)
		if errors.Is(err, errLineTooLong) {
			// A nil row is one too long to read (decodeTextRow says so).
			if herr := handle(fmt.Sprint(line), nil); herr != nil {
				return herr
			}
			continue
		}
		if len(bytes.TrimSpace(b)) > 0 {
			if herr := handle(fmt.Sprint(line), b); herr != nil {
				return herr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
}

// readJSONArray streams the elements of a top-level JSON array.
func readJSONArray(br *bufio.Reader, name string, handle func(string, []byte) error) error {
	// Elements are capped like JSON Lines rows: the decoder holds a whole
	// element in memory, so without a cap one endless element would be
	// read whole.
	cr := &cappedReader{r: br, max: MaxLineBytes}
	dec := json.NewDecoder(cr)
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, name, err)
	}
	for i := 0; dec.More(); i++ {
		cr.max = dec.InputOffset() + MaxLineBytes + 1
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, errElementTooLong) {
				return fmt.Errorf("%w: %s:[%d]: element longer than %d bytes", ErrInvalid, name, i, MaxLineBytes)
			}
			return fmt.Errorf("%w: %s:[%d]: %v", ErrInvalid, name, i, jsonEOF(err))
		}
		if err := handle(fmt.Sprintf("[%d]", i), raw); err != nil {
			return err
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return fmt.Errorf("%w: %s: the JSON array is not closed: %v where ']' should end it", ErrInvalid, name, describeToken(tok, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: %s: data after the closing ']' of the JSON array", ErrInvalid, name)
	}
	return nil
}

// errElementTooLong stops a JSON array's decoder at the element cap.
var errElementTooLong = errors.New("element too long")

// cappedReader fails once its reader is read past byte max (from the
// start): the JSON decoder reads ahead at most a buffer's worth, so
// setting max one cap past an element's start bounds that element.
type cappedReader struct {
	r        io.Reader
	pos, max int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.pos >= c.max {
		return 0, errElementTooLong
	}
	if left := c.max - c.pos; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.r.Read(p)
	c.pos += int64(n)
	return n, err
}

// jsonEOF names a premature end, which the decoder reports as a bare EOF.
func jsonEOF(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("unexpected end of file")
	}
	return err
}

func describeToken(tok json.Token, err error) string {
	if err != nil {
		return jsonEOF(err).Error()
	}
	return fmt.Sprintf("%v", tok)
}

func decodeTextRow(raw []byte, keys Keys) (TextPair, error) {
	if raw == nil {
		return TextPair{}, fmt.Errorf("line longer than %d bytes", MaxLineBytes)
	}
	// encoding/json would replace invalid UTF-8 with U+FFFD silently.
	if !utf8.Valid(raw) {
		return TextPair{}, errors.New("not valid UTF-8")
	}
	var row map[string]json.RawMessage
	if err := json.Unmarshal(raw, &row); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return TextPair{}, fmt.Errorf("want a JSON object with fields %q, %q and %q, got %s %s",
				keys.Prompt, keys.Chosen, keys.Rejected, article(te.Value), short(raw))
		}
		return TextPair{}, err
	}
	var p TextPair
	chosen, err := messagesField(row, keys.Chosen, "assistant", true)
	if err != nil {
		return p, err
	}
	rejected, err := messagesField(row, keys.Rejected, "assistant", true)
	if err != nil {
		return p, err
	}
	prompt, err := messagesField(row, keys.Prompt, "user", false)
	if err != nil {
		return p, err
	}
	if prompt == nil {
		// TRL's implicit prompt: the turns both conversations share.
		n := 0
		for n < len(chosen)-1 && n < len(rejected)-1 && chosen[n] == rejected[n] {
			n++
		}
		prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
	}
	for _, r := range []struct {
		field string
		msgs  []Message
	}{{keys.Chosen, chosen}, {keys.Rejected, rejected}} {
		if len(r.msgs) == 0 {
			return p, fmt.Errorf("field %q: no response after the prompt", r.field)
		}
		for _, m := range r.msgs {
			if strings.TrimSpace(m.Content) == "" {
				return p, fmt.Errorf("field %q: empty response", r.field)
			}
		}
	}
	if slices.Equal(chosen, rejected) {
		return p, fmt.Errorf("fields %q and %q are identical", keys.Chosen, keys.Rejected)
	}
	// A reward model scores a response to a prompt; the decomposition
	// swaps prompts between pairs. A conversation with no user turn has
	// no prompt to score against or swap.
	if !slices.ContainsFunc(prompt, func(m Message) bool { return m.Role == "user" }) {
		return p, fmt.Errorf("no user turn: the prompt (field %q, or the turns %q and %q share) holds no user message", keys.Prompt, keys.Chosen, keys.Rejected)
	}
	if !slices.ContainsFunc(prompt, func(m Message) bool { return m.Role == "user" && strings.TrimSpace(m.Content) != "" }) {
		return p, fmt.Errorf("empty prompt: every user turn of field %q is empty", keys.Prompt)
	}
	p.Prompt, p.Chosen, p.Rejected = prompt, chosen, rejected
	if v, ok := row[keys.Margin]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &p.Margin); err != nil || math.IsNaN(p.Margin) || math.IsInf(p.Margin, 0) {
			return p, fmt.Errorf("field %q: want a finite number, got %s", keys.Margin, short(v))
		}
	}
	if v, ok := row["subset"]; ok {
		if err := json.Unmarshal(v, &p.Subset); err != nil {
			return p, fmt.Errorf("field \"subset\": want a string, got %s", short(v))
		}
	}
	if v, ok := row["id"]; ok && string(v) != "null" {
		var id string
		var n json.Number
		switch {
		case json.Unmarshal(v, &id) == nil:
		case json.Unmarshal(v, &n) == nil:
			id = n.String()
		default:
			return p, fmt.Errorf("field \"id\": want a string or a number, got %s", short(v))
		}
		p.Source = id
	}
	if v, ok := row["tags"]; ok {
		if err := json.Unmarshal(v, &p.Tags); err != nil {
			return p, fmt.Errorf("field \"tags\": want an object of strings, got %s", short(v))
		}
	}
	return p, nil
}

// messagesField reads a field holding a string (one message of the given
// role) or a list of {"role", "content"} messages.
func messagesField(row map[string]json.RawMessage, key, role string, required bool) ([]Message, error) {
	v, ok := row[key]
	if !ok || string(v) == "null" {
		if required {
			return nil, fmt.Errorf("field %q is missing", key)
		}
		return nil, nil
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return []Message{{Role: role, Content: s}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, fmt.Errorf("field %q: want a string or a list of messages, got %s", key, short(v))
	}
	msgs := make([]Message, 0, len(items))
	for i, it := range items {
		dec := json.NewDecoder(bytes.NewReader(it))
		dec.DisallowUnknownFields()
		var m Message
		if err := dec.Decode(&m); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field == "" {
				return nil, fmt.Errorf("field %q: message %d: want an object {\"role\", \"content\"}, got %s %s", key, i, article(te.Value), short(it))
			}
			return nil, fmt.Errorf("field %q: message %d: want {\"role\", \"content\"} strings: %v", key, i, err)
		}
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return nil, fmt.Errorf("field %q: message %d: role %q is not system, user or assistant", key, i, m.Role)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 && required {
		return nil, fmt.Errorf("field %q is an empty list", key)
	}
	return msgs, nil
}

// article puts "a" or "an" before a JSON kind ("array", "string").
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// short quotes a JSON value for an error message, cut to a readable length.
func short(v []byte) string {
	s := string(v)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}
