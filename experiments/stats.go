package experiments

import (
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/stat/distuv"
)

// Paired summarises paired differences d_s = treatment − control, one per
// seed (the two arms of a seed share data, initialisation and batch
// order, so their difference cancels what the seed alone decides).
type Paired struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_difference"`
	// SD is the sample standard deviation of the differences.
	SD float64 `json:"sd_difference"`
	// TLow, THigh: the 95% interval of the mean difference from Student's
	// t with N−1 degrees of freedom (assumes roughly normal differences).
	TLow  float64 `json:"t95_low"`
	THigh float64 `json:"t95_high"`
	// BootLow, BootHigh: the 95% percentile interval of the mean over
	// 10,000 resamples of the seeds with replacement (no normality
	// assumed; too narrow for very few seeds).
	BootLow  float64 `json:"bootstrap95_low"`
	BootHigh float64 `json:"bootstrap95_high"`
	// Wins, Ties, Losses count seeds where the treatment is ahead, level
	// (|d| < TieTol) or behind.
	Wins   int `json:"wins"`
	Ties   int `json:"ties"`
	Losses int `json:"losses"`
}

// TieTol is the difference below which two accuracies count as level:
// half a test pair's worth on the toy test splits of 500 pairs.
const TieTol = 1e-3

// PairedDiff summarises d. The bootstrap uses a fixed seed, so the same
// differences always give the same interval.
func PairedDiff(d []float64) Paired {
	p := Paired{N: len(d)}
	if len(d) == 0 {
		return p
	}
	for _, x := range d {
		p.Mean += x
		switch {
		case x > TieTol:
			p.Wins++
		case x < -TieTol:
			p.Losses++
		default:
			p.Ties++
		}
	}
	p.Mean /= float64(len(d))
	if len(d) < 2 {
		p.TLow, p.THigh, p.BootLow, p.BootHigh = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return p
	}
	var ss float64
	for _, x := range d {
		ss += (x - p.Mean) * (x - p.Mean)
	}
	p.SD = math.Sqrt(ss / float64(len(d)-1))
	q := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(len(d) - 1)}.Quantile(0.975)
	half := q * p.SD / math.Sqrt(float64(len(d)))
	p.TLow, p.THigh = p.Mean-half, p.Mean+half
	const resamples = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	means := make([]float64, resamples)
	for i := range means {
		var s float64
		for range d {
			s += d[rng.IntN(len(d))]
		}
		means[i] = s / float64(len(d))
	}
	slices.Sort(means)
	p.BootLow, p.BootHigh = means[int(0.025*resamples)], means[int(0.975*resamples)-1]
	return p
}
