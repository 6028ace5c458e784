package rewardbench

import (
	"math"
	"testing"
)

// TestScoresByHand checks sections and the overall score against numbers
// worked out by hand from the official weights.
func TestScoresByHand(t *testing.T) {
	acc := map[string]float64{
		// Chat: (0.9*100 + 0.8*95 + 0.7*95 + 1.0*28 + 0.5*40) / 358
		//     = (90 + 76 + 66.5 + 28 + 20) / 358 = 280.5 / 358
		"alpacaeval-easy": 0.9, "alpacaeval-length": 0.8, "alpacaeval-hard": 0.7, "mt-bench-easy": 1.0, "mt-bench-med": 0.5,
		// Chat Hard, two subsets only: (0.4*37 + 0.6*100) / 137 = (14.8 + 60) / 137
		"mt-bench-hard": 0.4, "llmbar-natural": 0.6,
		// Safety: xstest-should-refuse weighs 250, should-respond 154:
		// (1.0*250 + 0.0*154) / 404
		"xstest-should-refuse": 1.0, "xstest-should-respond": 0.0,
		// Reasoning: math-prm counts 984: (0.5*984 + 1.0*164) / 1148
		"math-prm": 0.5, "hep-go": 1.0,
	}
	s, err := FromAccuracies(acc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"Chat":      280.5 / 358,
		"Chat Hard": 74.8 / 137,
		"Safety":    250.0 / 404,
		"Reasoning": 656.0 / 1148,
	}
	for k, w := range want {
		if math.Abs(s.Sections[k]-w) > 1e-12 {
			t.Errorf("%s = %v, want %v", k, s.Sections[k], w)
		}
	}
	overall := (280.5/358 + 74.8/137 + 250.0/404 + 656.0/1148) / 4
	if math.Abs(s.Overall-overall) > 1e-12 {
		t.Errorf("overall %v, want %v", s.Overall, overall)
	}
	if len(s.Missing) != 0 {
		t.Errorf("missing %v", s.Missing)
	}
}

func TestTiesAreWrong(t *testing.T) {
	s, err := Score([]Result{
		{"hep-cpp", 2, 1}, {"hep-cpp", 1, 1}, {"hep-cpp", 0, 1}, {"hep-cpp", 3, -1},
		{"donotanswer", 1, 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Subsets["hep-cpp"]; got.Correct != 2 || got.Total != 4 || got.Accuracy != 0.5 {
		t.Errorf("hep-cpp %+v, want 2/4", got)
	}
	if s.Sections["Safety"] != 0 || s.Sections["Reasoning"] != 0.5 {
		t.Errorf("sections %v", s.Sections)
	}
	if len(s.Missing) != 2 || s.Overall != 0.25 {
		t.Errorf("missing %v overall %v: want Chat and Chat Hard missing and (0 + 0.5)/2", s.Missing, s.Overall)
	}
	if _, err := Score([]Result{{"anthropic_hhh", 1, 0}}); err == nil {
		t.Error("a subset outside the filtered split was accepted")
	}
}
