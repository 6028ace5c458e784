package decomposition

import (
	"fmt"
	"math"
)

// UniformWeights returns m weights of 1/m each, or nil if m ≤ 0.
func UniformWeights(m int) []float64 {
	if m <= 0 {
		return nil
	}
	w := make([]float64, m)
	for i := range w {
		w[i] = 1 / float64(m)
	}
	return w
}

// PolicyWeights returns self-normalised importance weights
//
//	w_i ∝ exp(τ·(ℓ1_i + ℓ2_i))
//
// where loglik1[i] and loglik2[i] are the length-normalised
// log-likelihoods of y1 and y2 under prompt x_i. The exponent is shifted by
// its maximum before exponentiating (log-sum-exp), so the weights stay
// finite for very negative log-likelihoods and large τ. τ = 0 gives uniform
// weights.
//
// The slices must be non-empty, of equal length and finite, and τ must be
// finite and non-negative (a negative τ would favour prompts under which
// the responses are unlikely); otherwise the error wraps ErrInvalidInput.
func PolicyWeights(loglik1, loglik2 []float64, tau float64) ([]float64, error) {
	if len(loglik1) == 0 {
		return nil, fmt.Errorf("%w: no log-likelihoods", ErrInvalidInput)
	}
	if len(loglik1) != len(loglik2) {
		return nil, fmt.Errorf("%w: %d log-likelihoods for y1 but %d for y2", ErrInvalidInput, len(loglik1), len(loglik2))
	}
	if math.IsNaN(tau) || math.IsInf(tau, 0) || tau < 0 {
		return nil, fmt.Errorf("%w: tau %v is not a finite non-negative number", ErrInvalidInput, tau)
	}
	logits := make([]float64, len(loglik1))
	peak := math.Inf(-1)
	for i := range loglik1 {
		z := tau * (loglik1[i] + loglik2[i])
		if math.IsNaN(z) || math.IsInf(z, 0) {
			return nil, fmt.Errorf("%w: log-weight %d is %v (log-likelihoods %v, %v)", ErrInvalidInput, i, z, loglik1[i], loglik2[i])
		}
		logits[i] = z
		peak = max(peak, z)
	}
	// The peak term contributes exp(0) = 1, so the sum is at least 1.
	var sum float64
	for i, z := range logits {
		logits[i] = math.Exp(z - peak)
		sum += logits[i]
	}
	for i := range logits {
		logits[i] /= sum
	}
	return logits, nil
}

// ESS returns the effective sample size (Σw)²/Σw² of the weights w: M for
// M equal weights and 1 when a single weight carries all the mass. It
// returns 0 for an empty or all-zero w.
func ESS(w []float64) float64 {
	var s, s2 float64
	for _, x := range w {
		s += x
		s2 += x * x
	}
	if s2 == 0 {
		return 0
	}
	return s * s / s2
}
