package decomposition

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalidInput is wrapped by every error this package returns for
// malformed arguments: empty or mismatched slices, non-finite values,
// negative weights and out-of-range parameters.
var ErrInvalidInput = errors.New("decomposition: invalid input")

// maxBisectIter bounds the bisection loop. Halving a float64 interval can
// only shrink it about 2100 times (from the widest finite span down to one
// ulp), so the bound is never what stops a well-formed search; it guards
// against a loop that would otherwise never terminate.
const maxBisectIter = 2200

// Sigmoid returns the logistic function 1/(1+exp(-x)). It never evaluates
// exp of a large positive argument, so it neither overflows nor loses the
// tail for large |x|.
func Sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// PromptFreeGap estimates the prompt-free reward gap Δr2(y1, y2) from the
// gaps deltas[i] = r(x_i, y1) − r(x_i, y2) observed under M prompts x_i. It
// returns the c that solves
//
//	Σ_i w_i σ(deltas[i] − c) = 1/2
//
// where w are weights normalised to sum to one. The left side is strictly
// decreasing in c, and the root lies in [min Δ_i, max Δ_i] taken over the
// entries with positive weight, so the root is found by bisection on that
// interval until it is no wider than tol or stops shrinking. When all those
// Δ_i are equal the result is that value; for M = 1 it is deltas[0].
//
// weights need not sum to one: they are normalised here, and only a sum
// that is not positive (or overflows) is an error. Weights must be finite
// and non-negative, deltas finite, the slices non-empty and of equal
// length, and tol positive; violations return an error wrapping
// ErrInvalidInput.
//
// The estimate is antisymmetric: swapping y1 and y2 negates every Δ_i and
// negates the result exactly.
func PromptFreeGap(deltas, weights []float64, tol float64) (float64, error) {
	c, _, err := solve(deltas, weights, tol)
	return c, err
}

// solve validates its arguments and returns the prompt-free gap together
// with the normalised weights it used.
func solve(deltas, weights []float64, tol float64) (float64, []float64, error) {
	w, err := normalise(deltas, weights)
	if err != nil {
		return 0, nil, err
	}
	if !(tol > 0) || math.IsInf(tol, 1) {
		return 0, nil, fmt.Errorf("%w: tolerance %v is not a positive finite number", ErrInvalidInput, tol)
	}
	return bisect(deltas, w, tol), w, nil
}

// bisect solves Σ w_i σ(Δ_i − c) = 1/2 for validated inputs with w summing
// to one.
func bisect(deltas, w []float64, tol float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, d := range deltas {
		if w[i] > 0 {
			lo = min(lo, d)
			hi = max(hi, d)
		}
	}
	if lo == hi {
		return lo
	}
	for range maxBisectIter {
		if hi-lo <= tol {
			break
		}
		// Halving each end separately cannot overflow, and it keeps the
		// midpoint of a negated interval the exact negation of this one.
		mid := lo/2 + hi/2
		if mid <= lo || mid >= hi {
			break // adjacent floats: the interval cannot shrink further
		}
		switch s := excess(deltas, w, mid); {
		case s > 0:
			lo = mid
		case s < 0:
			hi = mid
		default:
			return mid
		}
	}
	return lo/2 + hi/2
}

// excess returns a positive multiple of Σ w_i σ(Δ_i − c) − 1/2. It uses
// σ(x) − 1/2 = tanh(x/2)/2, which avoids cancelling against 1/2 near the
// root and, tanh being exactly odd, makes the search exactly antisymmetric
// in Δ.
func excess(deltas, w []float64, c float64) float64 {
	var s float64
	for i, d := range deltas {
		s += w[i] * math.Tanh((d-c)/2)
	}
	return s
}

// normalise validates a (deltas, weights) pair and returns the weights
// scaled to sum to one.
func normalise(deltas, weights []float64) ([]float64, error) {
	if len(deltas) == 0 {
		return nil, fmt.Errorf("%w: no deltas", ErrInvalidInput)
	}
	if len(deltas) != len(weights) {
		return nil, fmt.Errorf("%w: %d deltas but %d weights", ErrInvalidInput, len(deltas), len(weights))
	}
	var sum float64
	for i, d := range deltas {
		if math.IsNaN(d) || math.IsInf(d, 0) {
			return nil, fmt.Errorf("%w: delta %d is %v", ErrInvalidInput, i, d)
		}
		wi := weights[i]
		if math.IsNaN(wi) || math.IsInf(wi, 0) {
			return nil, fmt.Errorf("%w: weight %d is %v", ErrInvalidInput, i, wi)
		}
		if wi < 0 {
			return nil, fmt.Errorf("%w: weight %d is negative (%v)", ErrInvalidInput, i, wi)
		}
		sum += wi
	}
	if !(sum > 0) || math.IsInf(sum, 1) {
		return nil, fmt.Errorf("%w: weights sum to %v, want a positive finite sum", ErrInvalidInput, sum)
	}
	w := make([]float64, len(weights))
	for i, wi := range weights {
		w[i] = wi / sum
	}
	return w, nil
}

// Estimate is the decomposition of one pair's reward gap.
type Estimate struct {
	// Gap is Δr(x, y1, y2) under the pair's own prompt.
	Gap float64
	// PromptFree is the estimated prompt-free part Δr2(y1, y2).
	PromptFree float64
	// PromptRelated is Gap − PromptFree, the prompt-related part Δr1.
	PromptRelated float64
	// ESS is the effective sample size of the weights behind PromptFree,
	// between 1 and M.
	ESS float64
}

// Decompose splits ownGap, the reward gap under the pair's own prompt, into
// its prompt-free part, estimated by PromptFreeGap from deltas and weights,
// and the remaining prompt-related part. It reports the effective sample
// size of the normalised weights alongside. Errors are those of
// PromptFreeGap, plus a non-finite ownGap.
func Decompose(ownGap float64, deltas, weights []float64, tol float64) (Estimate, error) {
	if math.IsNaN(ownGap) || math.IsInf(ownGap, 0) {
		return Estimate{}, fmt.Errorf("%w: own-prompt gap is %v", ErrInvalidInput, ownGap)
	}
	free, w, err := solve(deltas, weights, tol)
	if err != nil {
		return Estimate{}, err
	}
	return Estimate{
		Gap:           ownGap,
		PromptFree:    free,
		PromptRelated: ownGap - free,
		ESS:           ESS(w),
	}, nil
}
