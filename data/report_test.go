package data

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSkipReport: a lenient read counts skipped rows by reason, keeps the
// first errors with their lines, and names each kept row's source.
func TestSkipReport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.jsonl")
	rows := `{"id": 7, "prompt": "q", "chosen": "a", "rejected": "b"}
{"prompt": "q", "chosen": "a"}
{"prompt": "q", "chosen": "a", "rejected": "b"}
not json
{"prompt": "q", "rejected": "b"}
{"id": "x-1", "prompt": "q", "chosen": "a", "rejected": "c"}
`
	if err := os.WriteFile(path, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	pairs, st, err := ReadTextPairs(path, ReadOptions{SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 6 || st.Skipped != 3 || len(pairs) != 3 {
		t.Fatalf("rows %d skipped %d kept %d, want 6, 3, 3", st.Rows, st.Skipped, len(pairs))
	}
	if st.Reasons[`field "rejected" is missing`] != 1 || st.Reasons[`field "chosen" is missing`] != 1 || len(st.Reasons) != 3 {
		t.Errorf("reasons %v", st.Reasons)
	}
	if len(st.Examples) != 3 || !strings.Contains(st.Examples[0], "p.jsonl:2") {
		t.Errorf("examples %q", st.Examples)
	}
	sum := st.Summary()
	if !strings.HasPrefix(sum, "skipped 3 of 6 rows: ") || !strings.Contains(sum, `field "chosen" is missing (1)`) {
		t.Errorf("summary %q", sum)
	}
	var src []string
	for _, p := range pairs {
		src = append(src, p.Source)
	}
	if !slices.Equal(src, []string{"7", "2", "x-1"}) {
		t.Errorf("sources %q, want the id field or the row's position", src)
	}
	if (ReadStats{Rows: 4}).Summary() != "" {
		t.Error("a read that skipped nothing has a summary")
	}
}

func TestTruncateRight(t *testing.T) {
	p := Pair{Prompt: []int64{1, 2, 3}, Chosen: []int64{4, 5, 6}, Rejected: []int64{7}}
	tests := []struct {
		n                int
		cut              bool
		chosen, rejected []int64
	}{
		{6, false, []int64{1, 2, 3, 4, 5, 6}, []int64{1, 2, 3, 7}},
		{5, true, []int64{1, 2, 3, 4, 5}, []int64{1, 2, 3, 7}},
		{3, true, []int64{1, 2, 3}, []int64{1, 2, 3}},
		{2, true, []int64{1, 2}, []int64{1, 2}},
	}
	for _, tt := range tests {
		q, cut := TruncateRight(p, tt.n)
		if cut != tt.cut || !slices.Equal(q.ChosenSeq(), tt.chosen) || !slices.Equal(q.RejectedSeq(), tt.rejected) {
			t.Errorf("n=%d: cut %v, %v / %v; want %v, %v / %v", tt.n, cut, q.ChosenSeq(), q.RejectedSeq(), tt.cut, tt.chosen, tt.rejected)
		}
	}
	if !slices.Equal(p.Chosen, []int64{4, 5, 6}) {
		t.Error("the original pair was changed")
	}
}
