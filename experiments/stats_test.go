package experiments

import (
	"math"
	"testing"
)

func TestPairedDiff(t *testing.T) {
	// The committed length-bias differences (prioritised − vanilla, seeds
	// 1-5): mean 0.0064, sd 0.0734; t(4) 0.975 quantile 2.776445.
	d := []float64{0.036, 0.036, -0.112, -0.004, 0.076}
	p := PairedDiff(d)
	if p.N != 5 || math.Abs(p.Mean-0.0064) > 1e-12 {
		t.Errorf("mean %v", p.Mean)
	}
	sd := math.Sqrt((2*math.Pow(0.0296, 2) + math.Pow(0.1184, 2) + math.Pow(0.0104, 2) + math.Pow(0.0696, 2)) / 4)
	if math.Abs(p.SD-sd) > 1e-12 {
		t.Errorf("sd %v, want %v", p.SD, sd)
	}
	half := 2.776445105 * sd / math.Sqrt(5)
	if math.Abs(p.TLow-(0.0064-half)) > 1e-8 || math.Abs(p.THigh-(0.0064+half)) > 1e-8 {
		t.Errorf("t interval [%v, %v], want 0.0064 ± %v", p.TLow, p.THigh, half)
	}
	if p.Wins != 3 || p.Losses != 2 || p.Ties != 0 {
		t.Errorf("wins/ties/losses %d/%d/%d", p.Wins, p.Ties, p.Losses)
	}
	// The bootstrap interval sits inside the sample's range, around the
	// mean, and repeats exactly.
	if !(p.BootLow >= -0.112 && p.BootLow < p.Mean && p.BootHigh > p.Mean && p.BootHigh <= 0.076) {
		t.Errorf("bootstrap interval [%v, %v]", p.BootLow, p.BootHigh)
	}
	if q := PairedDiff(d); q != p {
		t.Errorf("not repeatable: %+v then %+v", p, q)
	}
	// A level seed is a tie; one seed has no interval.
	one := PairedDiff([]float64{0.0004})
	if one.Ties != 1 || !math.IsNaN(one.TLow) {
		t.Errorf("one seed: %+v", one)
	}
	if z := PairedDiff(nil); z.N != 0 {
		t.Errorf("no seeds: %+v", z)
	}
}
