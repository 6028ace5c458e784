package data

import (
	"testing"
)

// FuzzDecodeTokenRow: no input panics; an accepted row satisfies the
// decoder's promises.
func FuzzDecodeTokenRow(f *testing.F) {
	for _, s := range []string{
		`{"chosen_ids":[1,2],"rejected_ids":[3]}`,
		`{"prompt_ids":[1],"chosen_ids":[1,2],"rejected_ids":[3],"margin":0.5,"tags":{"a":"b"}}`,
		`{"chosen_ids":[],"rejected_ids":[3]}`,
		`{"chosen_ids":"x"}`,
		"\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeTokenRow(b, 64)
		if err != nil {
			return
		}
		if len(p.Chosen) == 0 || len(p.Rejected) == 0 || slicesEqual(p.Chosen, p.Rejected) {
			t.Fatalf("accepted an invalid pair: %+v", p)
		}
		for _, ids := range [][]int64{p.Prompt, p.Chosen, p.Rejected} {
			for _, id := range ids {
				if id < 0 || id >= 64 {
					t.Fatalf("accepted id %d", id)
				}
			}
		}
	})
}

// FuzzDecodeTextRow: no input panics; an accepted row has non-empty,
// different responses.
func FuzzDecodeTextRow(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"a","chosen":"b","rejected":"c"}`,
		`{"chosen":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"rejected":[{"role":"user","content":"x"},{"role":"assistant","content":"z"}]}`,
		`{"prompt":[{"role":"user","content":"q"}],"chosen":"a","rejected":"b","margin":1}`,
		`[1,2]`, `null`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeTextRow(b, DefaultKeys)
		if err != nil {
			return
		}
		if len(p.Chosen) == 0 || len(p.Rejected) == 0 {
			t.Fatalf("accepted a pair without responses: %+v", p)
		}
		if len(p.Chosen) == len(p.Rejected) {
			same := true
			for i := range p.Chosen {
				if p.Chosen[i] != p.Rejected[i] {
					same = false
				}
			}
			if same {
				t.Fatalf("accepted identical responses: %+v", p)
			}
		}
	})
}
