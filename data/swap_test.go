package data

import (
	"slices"
	"testing"
)

func TestSwapTies(t *testing.T) {
	train, _, err := Toy("length_bias", 200, 128, 3)
	if err != nil {
		t.Fatal(err)
	}
	out, err := SwapTies(train, 0.25, 9)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 250 || !slices.EqualFunc(out[:200], train, func(a, b Pair) bool { return a.ID == b.ID && !a.Tie }) {
		t.Fatalf("%d pairs; the originals must come first, unchanged", len(out))
	}
	byResponses := map[string]Pair{}
	for _, p := range train {
		byResponses[string(fmtIDs(p.Chosen))+"|"+string(fmtIDs(p.Rejected))] = p
	}
	ids := map[int]bool{}
	for _, p := range out[200:] {
		src, ok := byResponses[string(fmtIDs(p.Chosen))+"|"+string(fmtIDs(p.Rejected))]
		if !p.Tie || !ok || slices.Equal(p.Prompt, src.Prompt) || p.Tags["swap_tie"] != "true" || p.ID < 200 || ids[p.ID] {
			t.Errorf("tie pair %+v (from %+v)", p, src)
		}
		ids[p.ID] = true
	}
	again, _ := SwapTies(train, 0.25, 9)
	for i := range again {
		if !slices.Equal(again[i].Prompt, out[i].Prompt) {
			t.Fatal("the same seed drew other pairs")
		}
	}
	if same, _ := SwapTies(train, 0, 9); len(same) != 200 {
		t.Errorf("fraction 0 added pairs")
	}
	if _, err := SwapTies(train, 1.5, 9); err == nil {
		t.Error("fraction 1.5 accepted")
	}
	one := []Pair{{Prompt: []int64{1}, Chosen: []int64{2}, Rejected: []int64{3}}, {ID: 1, Prompt: []int64{1}, Chosen: []int64{4}, Rejected: []int64{5}}}
	if got, _ := SwapTies(one, 1, 1); len(got) != 2 {
		t.Errorf("one prompt: %d pairs, want no tie (no other prompt to swap in)", len(got))
	}
}

func fmtIDs(ids []int64) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, byte(id), byte(id>>8), ',')
	}
	return b
}
