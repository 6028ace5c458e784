package tokenizer

import (
	"slices"
	"testing"
)

func mustParse(t *testing.T, fields map[string]string) *Tokenizer {
	t.Helper()
	tok, err := parse([]byte(tokenizerJSON(fields)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkEncode checks tok.Encode(text, false) against want.
func checkEncode(t *testing.T, tok *Tokenizer, text string, want []int) {
	t.Helper()
	got, err := tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Encode(%q) = %v, want %v", text, got, want)
	}
}

// spanTexts returns the text of each span.
func spanTexts(spans []span) []string {
	var texts []string
	for _, s := range spans {
		texts = append(texts, s.text)
	}
	return texts
}

// TestSplitBehaviors uses the example of the Hugging Face documentation.
func TestSplitBehaviors(t *testing.T) {
	tests := []struct {
		behavior behavior
		invert   bool
		want     []string
	}{
		{removed, false, []string{"the", "final", "countdown"}},
		{isolated, false, []string{"the", "-", "final", "-", "-", "countdown"}},
		{mergedWithPrevious, false, []string{"the-", "final-", "-", "countdown"}},
		{mergedWithNext, false, []string{"the", "-final", "-", "-countdown"}},
		{contiguous, false, []string{"the", "-", "final", "--", "countdown"}},
		{removed, true, []string{"-", "-", "-"}},
	}
	for _, tt := range tests {
		p := &splitPre{m: stringMatcher("-"), behavior: tt.behavior, invert: tt.invert}
		out, err := p.preTokenize([]span{{text: "the-final--countdown", first: true}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i, s := range out {
			got = append(got, s.text)
			if s.first != (i == 0 && !tt.invert) {
				t.Errorf("behavior %d: span %d first = %v", tt.behavior, i, s.first)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("behavior %d invert %v: got %q, want %q", tt.behavior, tt.invert, got, tt.want)
		}
	}
}

func TestMetaspace(t *testing.T) {
	tests := []struct {
		scheme string
		split  bool
		in     []span
		want   []string
	}{
		{"always", true, []span{{"hello world", true}}, []string{"▁hello", "▁world"}},
		{"always", false, []span{{"hello world", false}}, []string{"▁hello▁world"}},
		{"first", false, []span{{"hello", true}, {"there", false}}, []string{"▁hello", "there"}},
		{"first", false, []span{{" hi", true}}, []string{"▁hi"}},
		{"never", true, []span{{"a b", true}}, []string{"a", "▁b"}},
	}
	for _, tt := range tests {
		m := &metaspace{repl: "▁", split: tt.split}
		m.scheme = map[string]prependScheme{"always": prependAlways, "first": prependFirst, "never": prependNever}[tt.scheme]
		out, err := m.preTokenize(slices.Clone(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := spanTexts(out); !slices.Equal(got, tt.want) {
			t.Errorf("%s split=%v %v: got %q, want %q", tt.scheme, tt.split, tt.in, got, tt.want)
		}
	}
}

func TestBPE(t *testing.T) {
	tests := []struct {
		name  string
		model string
		text  string
		want  []int
	}{
		{"lowest rank first", `{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4,"abc":5},"merges":["b c","a b","a bc"]}`,
			"abc", []int{5}},
		{"lowest rank first, other order", `{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"bc":4},"merges":["a b","b c"]}`,
			"abc", []int{3, 2}},
		{"leftmost on ties", `{"type":"BPE","vocab":{"a":0,"aa":1},"merges":[["a","a"]]}`,
			"aaa", []int{1, 0}},
		{"unk not fused", `{"type":"BPE","unk_token":"<unk>","vocab":{"<unk>":0,"a":1},"merges":[]}`,
			"xya", []int{0, 0, 1}},
		{"unk fused", `{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"vocab":{"<unk>":0,"a":1},"merges":[]}`,
			"xyaz", []int{0, 1, 0}},
		{"byte fallback", `{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"vocab":{"<unk>":0,"a":1,"<0xC3>":2,"<0xA9>":3},"merges":[]}`,
			"aé", []int{1, 2, 3}},
		{"byte fallback falls back to unk", `{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"vocab":{"<unk>":0,"a":1,"<0xC3>":2},"merges":[]}`,
			"éa", []int{0, 1}},
		{"no unk drops the character", `{"type":"BPE","vocab":{"a":0},"merges":[]}`,
			"xa", []int{0}},
		{"ignore_merges", `{"type":"BPE","ignore_merges":true,"vocab":{"a":0,"b":1,"c":2,"ab":3,"abc":4},"merges":["a b"]}`,
			"abc", []int{4}},
		{"merges apply without ignore_merges", `{"type":"BPE","vocab":{"a":0,"b":1,"c":2,"ab":3,"abc":4},"merges":["a b"]}`,
			"abc", []int{3, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := mustParse(t, map[string]string{"model": tt.model})
			for range 2 { // the second time comes from the cache
				checkEncode(t, tok, tt.text, tt.want)
			}
		})
	}
}

func TestAddedTokens(t *testing.T) {
	model := `{"type":"BPE","unk_token":"<unk>","vocab":{"<unk>":0," ":1,"a":2,"b":3,"x":4,"_":5,"A":6,"B":7,"▁":8},"merges":[]}`
	// A token with normalized=true is matched in normalized text, and one
	// with normalized=false in raw text.
	const (
		spaceToMeta = `{"type":"Replace","pattern":{"String":" "},"content":"▁"}`
		bothKinds   = `{"id":10,"content":"A B","normalized":true},{"id":11,"content":"B A","normalized":false}`
	)
	tests := []struct {
		name       string
		normalizer string // none if empty
		added      string
		text       string
		want       []int
	}{
		{"plain", "", `{"id":10,"content":"<t>","special":true}`, "a<t>b", []int{2, 10, 3}},
		{"longest wins", "", `{"id":10,"content":"<t"},{"id":11,"content":"<t>"}`, "a<t>", []int{2, 11}},
		{"leftmost wins", "", `{"id":10,"content":"ab"},{"id":11,"content":"bx"}`, "abx", []int{10, 4}},
		{"lstrip", "", `{"id":10,"content":"<t>","lstrip":true}`, "a  <t> b", []int{2, 10, 1, 3}},
		{"rstrip", "", `{"id":10,"content":"<t>","rstrip":true}`, "a  <t>  b", []int{2, 1, 1, 10, 3}},
		{"single_word matches a word", "", `{"id":10,"content":"ab","single_word":true}`, "x ab x", []int{4, 1, 10, 1, 4}},
		{"single_word skips inside a word", "", `{"id":10,"content":"ab","single_word":true}`, "xab _ab", []int{4, 2, 3, 1, 5, 2, 3}},
		{"normalized", "", `{"id":10,"content":"<t>","normalized":true}`, "a<t>", []int{2, 10}},
		{"normalized in normalized text", spaceToMeta, bothKinds, "A B", []int{10}},
		{"not normalized in raw text", spaceToMeta, bothKinds, "B A", []int{11}},
		{"normalized matches its normalized form", spaceToMeta, bothKinds, "A▁B", []int{10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := map[string]string{"model": model, "added_tokens": "[" + tt.added + "]"}
			if tt.normalizer != "" {
				fields["normalizer"] = tt.normalizer
			}
			checkEncode(t, mustParse(t, fields), tt.text, tt.want)
		})
	}
}

func TestNormalizers(t *testing.T) {
	tests := []struct {
		json, in, want string
	}{
		{`{"type":"NFC"}`, "e\u0301", "é"},
		{`{"type":"NFKC"}`, "ﬁ①", "fi1"},
		{`{"type":"Prepend","prepend":"▁"}`, "x", "▁x"},
		{`{"type":"Prepend","prepend":"▁"}`, "", ""},
		{`{"type":"Replace","pattern":{"Regex":"\\s+"},"content":" "}`, "a \t\nb  c", "a b c"},
		{`{"type":"Replace","pattern":{"String":""},"content":"x"}`, "ab", "ab"},
		{`{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},` +
			`{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}`, "a b", "▁a▁b"},
	}
	for _, tt := range tests {
		n, err := parseNormalizer([]byte(tt.json))
		if err != nil {
			t.Fatal(err)
		}
		got, err := n.normalize(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s on %q = %q, want %q", tt.json, tt.in, got, tt.want)
		}
	}
}

func TestDigitsAndRegexSplit(t *testing.T) {
	tests := []struct {
		json, in string
		want     []string
	}{
		{`{"type":"Digits","individual_digits":true}`, "ab123c", []string{"ab", "1", "2", "3", "c"}},
		{`{"type":"Digits","individual_digits":false}`, "ab123c4", []string{"ab", "123", "c", "4"}},
		// regexp2 reports rune offsets; multi-byte text checks the
		// conversion to byte offsets.
		{`{"type":"Split","pattern":{"Regex":"\\s+(?=é)"},"behavior":"Removed","invert":false}`,
			"日本 é  日 é", []string{"日本", "é  日", "é"}},
		{`{"type":"Split","pattern":{"Regex":"\\p{Lo}+"},"behavior":"Isolated","invert":true}`,
			"a日本b", []string{"a", "日本", "b"}},
	}
	for _, tt := range tests {
		p, err := parsePreTokenizer([]byte(tt.json))
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.preTokenize([]span{{text: tt.in}})
		if err != nil {
			t.Fatal(err)
		}
		if got := spanTexts(out); !slices.Equal(got, tt.want) {
			t.Errorf("%s on %q: got %q, want %q", tt.json, tt.in, got, tt.want)
		}
	}
}

func TestTemplateProcessing(t *testing.T) {
	tok := mustParse(t, map[string]string{
		"model": `{"type":"BPE","vocab":{"<s>":0,"</s>":1,"a":2},"merges":[]}`,
		"post_processor": `{"type":"Sequence","processors":[{"type":"ByteLevel"},{"type":"TemplateProcessing",` +
			`"single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],` +
			`"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],` +
			`"special_tokens":{"<s>":{"id":"<s>","ids":[0],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[1],"tokens":["</s>"]}}}]}`,
	})
	for _, tt := range []struct {
		add  bool
		want []int
	}{{true, []int{0, 2, 2, 1}}, {false, []int{2, 2}}} {
		got, err := tok.Encode("aa", tt.add)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Encode(aa, %v) = %v, want %v", tt.add, got, tt.want)
		}
	}
}

func TestDecoders(t *testing.T) {
	llama2 := `{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},` +
		`{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}`
	tests := []struct {
		json   string
		tokens []string
		want   string
	}{
		{llama2, []string{"▁Hello", "▁world", "<0xE2>", "<0x9C>", "<0x85>", "!"}, "Hello world✅!"},
		{llama2, []string{"▁a", "<0xE2>", "<0x9C>", "▁b"}, "a\uFFFD\uFFFD b"},
		{`{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}`,
			[]string{"▁Hello", "▁world"}, "Hello world"},
		{`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`,
			[]string{"Hello", "Ġworld", "Ċ", "<|endoftext|>"}, "Hello world\n<|endoftext|>"},
		// A lone lead byte and a truncated sequence each become one U+FFFD.
		{`{"type":"ByteLevel"}`, []string{"a", "Ã", "âĿ", "b"}, "a\uFFFD\uFFFDb"},
		{`{"type":"Strip","content":" ","start":2,"stop":1}`, []string{"   a  "}, " a "},
	}
	for _, tt := range tests {
		d, err := parseDecoder([]byte(tt.json))
		if err != nil {
			t.Fatal(err)
		}
		out, err := d.decodeChain(tt.tokens)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, s := range out {
			got += s
		}
		if got != tt.want {
			t.Errorf("%s on %q = %q, want %q", tt.json, tt.tokens, got, tt.want)
		}
	}
}

func TestLossyUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ok", "ok"},
		{"a\xffb", "a\uFFFDb"},
		{"\xe2\x82", "\uFFFD"},                 // truncated 3-byte sequence: one replacement
		{"\xe2\x82\xe2\x82", "\uFFFD\uFFFD"},   // two of them
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: each byte
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xc0\xaf", "\uFFFD\uFFFD"},
	}
	for _, tt := range tests {
		if got := lossyUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
