package data

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadTokenPairs(t *testing.T) {
	p := filepath.Join(t.TempDir(), "pairs.jsonl")
	content := `{"prompt_ids":[1,5],"chosen_ids":[7,8,2],"rejected_ids":[9,2],"margin":0.5,"tags":{"k":"v"}}

{"chosen_ids":[3],"rejected_ids":[4]}
`
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	pairs, err := ReadTokenPairs(p, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != 2 || pairs[0].Margin != 0.5 || pairs[0].Tags["k"] != "v" || pairs[1].ID != 1 {
		t.Fatalf("got %+v", pairs)
	}
	if got := pairs[0].ChosenSeq(); !reflect.DeepEqual(got, []int64{1, 5, 7, 8, 2}) {
		t.Errorf("ChosenSeq = %v", got)
	}
}

func TestReadTokenPairsErrors(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"invalid json", `{"chosen_ids":[1],"rejected_ids":[2]}` + "\n{oops}\n", "pairs.jsonl:2"},
		{"missing field", `{"chosen_ids":[1]}`, `field "rejected_ids" is missing`},
		{"empty field", `{"chosen_ids":[],"rejected_ids":[2]}`, `field "chosen_ids" is empty`},
		{"wrong type", `{"chosen_ids":"abc","rejected_ids":[2]}`, `field "chosen_ids": want a list of token ids, got string`},
		{"fractional id", `{"chosen_ids":[1.5],"rejected_ids":[2]}`, `field "chosen_ids": want an integer token id, got number 1.5`},
		{"unknown field", `{"chosen_ids":[1],"rejected_ids":[2],"chosen":"x"}`, `unknown field "chosen"`},
		{"identical", `{"chosen_ids":[1,2],"rejected_ids":[1,2]}`, "identical"},
		{"out of vocab", `{"chosen_ids":[1,99],"rejected_ids":[2]}`, "outside the vocabulary"},
		{"negative id", `{"chosen_ids":[1],"rejected_ids":[-2]}`, "outside the vocabulary"},
		{"invalid utf8", "{\"chosen_ids\":[1],\"rejected_ids\":[2],\"tags\":{\"a\":\"\xff\"}}", "UTF-8"},
		{"two values", `{"chosen_ids":[1],"rejected_ids":[2]} {}`, "more than one JSON value"},
		{"empty file", "\n\n", "no pairs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "pairs.jsonl")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadTokenPairs(p, 16)
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "pairs.jsonl") {
				t.Fatalf("err = %v, want ErrInvalid naming the file and %q", err, tt.want)
			}
		})
	}
}

func TestLongLineIsAnError(t *testing.T) {
	long := strings.Repeat("1,", MaxLineBytes/2+10)
	content := `{"chosen_ids":[1],"rejected_ids":[2]}` + "\n" + `{"chosen_ids":[` + long + `1],"rejected_ids":[2]}` + "\n"
	_, err := decodeTokenPairs(strings.NewReader(content), "big.jsonl", 16)
	if err == nil || !strings.Contains(err.Error(), "big.jsonl:2: line longer than") {
		t.Fatalf("err = %v", err)
	}
}

func TestFit(t *testing.T) {
	pairs := []Pair{
		{Prompt: []int64{1, 2, 3}, Chosen: []int64{4, 5}, Rejected: []int64{6}},       // 5 and 4 tokens
		{Prompt: []int64{1, 2, 3, 4, 5}, Chosen: []int64{6, 7}, Rejected: []int64{8}}, // 7 and 6
		{Prompt: []int64{1}, Chosen: []int64{9, 9, 9, 9, 9, 6}, Rejected: []int64{8, 8, 9, 9, 9, 6}},
	}
	kept, dropped, truncated := Fit(pairs, 5, Drop)
	if len(kept) != 1 || dropped != 2 || truncated != 0 {
		t.Errorf("drop: kept %d dropped %d truncated %d", len(kept), dropped, truncated)
	}
	kept, dropped, truncated = Fit(pairs, 5, Left)
	if len(kept) != 3 || dropped != 0 || truncated != 2 {
		t.Fatalf("left: kept %d dropped %d truncated %d", len(kept), dropped, truncated)
	}
	if got := kept[1].ChosenSeq(); !reflect.DeepEqual(got, []int64{3, 4, 5, 6, 7}) {
		t.Errorf("left truncation kept %v, want the end [3 4 5 6 7]", got)
	}
	if got := kept[2].ChosenSeq(); len(got) != 5 || got[4] != 6 {
		t.Errorf("over-long response kept %v, want its last 5 tokens", got)
	}
	// Cutting to identical sequences drops the pair.
	same := []Pair{{Chosen: []int64{1, 2, 3}, Rejected: []int64{4, 2, 3}}}
	if kept, dropped, _ := Fit(same, 2, Left); len(kept) != 0 || dropped != 1 {
		t.Errorf("identical after truncation: kept %d dropped %d", len(kept), dropped)
	}
}

func TestSplitAndSampler(t *testing.T) {
	pairs, err := Synthetic(100, 4, 10, 128, 1)
	if err != nil {
		t.Fatal(err)
	}
	train, eval := Split(pairs, 0.1, 3)
	if len(train) != 90 || len(eval) != 10 {
		t.Fatalf("split %d/%d", len(train), len(eval))
	}
	seen := map[int]bool{}
	for _, p := range append(append([]Pair{}, train...), eval...) {
		if seen[p.ID] {
			t.Fatalf("pair %d in both splits", p.ID)
		}
		seen[p.ID] = true
	}
}

func TestSyntheticIsLearnableAndDeterministic(t *testing.T) {
	a, _ := Synthetic(200, 4, 16, 128, 5)
	b, _ := Synthetic(200, 4, 16, 128, 5)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different data")
	}
	good := func(ids []int64) int {
		n := 0
		for _, id := range ids {
			if id >= 3 && id < 19 {
				n++
			}
		}
		return n
	}
	for _, p := range a {
		if good(p.Chosen) <= good(p.Rejected) {
			t.Fatalf("pair %d: chosen has %d good tokens, rejected %d", p.ID, good(p.Chosen), good(p.Rejected))
		}
		if l := len(p.Chosen); l < 4 || l > 16 {
			t.Fatalf("length %d outside [4,16]", l)
		}
	}
	if _, err := Synthetic(10, 4, 16, 20, 1); err == nil {
		t.Error("tiny vocabulary accepted")
	}
}

func TestToyTasks(t *testing.T) {
	share := func(ps []Pair, tag string) float64 {
		n := 0
		for _, p := range ps {
			if p.Tags[tag] == "true" {
				n++
			}
		}
		return float64(n) / float64(len(ps))
	}
	train, test, err := Toy("length_bias", 2000, 128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s := share(train, "longer_chosen"); s < 0.85 || s > 0.9 {
		t.Errorf("training pairs with the longer response chosen: %.3f, want 0.85-0.90", s)
	}
	if s := share(test, "longer_chosen"); s > 0.2 {
		t.Errorf("test pairs with the longer response chosen: %.3f, want the relation reversed", s)
	}
	for _, p := range train {
		if (len(p.Chosen) > len(p.Rejected)) != (p.Tags["longer_chosen"] == "true") {
			t.Fatalf("pair %d: tag %q disagrees with lengths %d, %d", p.ID, p.Tags["longer_chosen"], len(p.Chosen), len(p.Rejected))
		}
		// The chosen response is on the prompt's topic: prompt[1] = 4+topic.
		topic := int(p.Prompt[1] - 4)
		for _, id := range p.Rejected {
			if id >= int64(10+8*topic) && id < int64(18+8*topic) {
				t.Fatalf("pair %d: rejected response uses the prompt's topic words", p.ID)
			}
		}
	}
	adv, advTest, err := Toy("adversarial", 1000, 128, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s := share(adv, "adversarial"); s < 0.3 || s > 0.6 {
		t.Errorf("adversarial share %.3f", s)
	}
	// Adversarial pairs come in twos: same responses, swapped.
	for i := 0; i+1 < len(adv); i++ {
		a, b := adv[i], adv[i+1]
		if a.Tags["adversarial"] == "true" && b.Tags["adversarial"] == "true" && slicesEqual(a.Chosen, b.Rejected) {
			if !slicesEqual(a.Rejected, b.Chosen) || slicesEqual(a.Prompt, b.Prompt) {
				t.Fatalf("pairs %d, %d: not the same responses under two prompts", i, i+1)
			}
			i++
		}
	}
	for _, p := range advTest {
		if !containsID(p.Rejected, 8) || containsID(p.Chosen, 8) {
			t.Fatalf("test pair %d: the style token is not on the rejected side only", p.ID)
		}
	}
	// prompt_decides: mirrored couples, so every response is chosen as
	// often as it is rejected and a prompt-blind model is at chance.
	pd, pdTest, err := Toy("prompt_decides", 1000, 128, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(pd) != 1000 || len(pdTest) != 250 {
		t.Fatalf("%d training and %d test pairs", len(pd), len(pdTest))
	}
	for _, ps := range [][]Pair{pd, pdTest} {
		for i := 0; i+1 < len(ps); i += 2 {
			a, b := ps[i], ps[i+1]
			if !slicesEqual(a.Chosen, b.Rejected) || !slicesEqual(a.Rejected, b.Chosen) || a.Prompt[1] == b.Prompt[1] {
				t.Fatalf("pairs %d, %d: not one couple of responses under prompts of two topics", i, i+1)
			}
			if topic := a.Prompt[1] - 4; !containsTopic(a.Chosen, topic) {
				t.Fatalf("pair %d: the chosen response is not on the prompt's topic", i)
			}
		}
	}
	if s := share(pd, "longer_chosen"); s < 0.35 || s > 0.65 {
		t.Errorf("prompt_decides: the longer response is chosen in %.3f of pairs (want no shortcut)", s)
	}
	if _, _, err := Toy("nope", 10, 128, 1); err == nil {
		t.Error("unknown toy accepted")
	}
}

// containsTopic: some id is one of topic's content words.
func containsTopic(ids []int64, topic int64) bool {
	for _, id := range ids {
		if id >= 10+8*topic && id < 18+8*topic {
			return true
		}
	}
	return false
}

func slicesEqual(a, b []int64) bool { return reflect.DeepEqual(a, b) }

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
