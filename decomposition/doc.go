// Package decomposition owns the paper's reward decomposition: the
// prompt-free part of a reward gap (decomposition.go), its
// importance-sampled estimate over prompts (estimate.go, weights.go), and
// the priority sampler built on it (priority.go: candidate pool, selection
// strategies, the epoch order of each phase and its checkpoint state), with
// its tables and plots (report.go). It is pure Go: the reward model enters
// as a ScoreFunc, and it needs no libtorch.
//
// For a response pair (y1, y2) scored under prompts x_1..x_M, with gaps
// Δ_i = r(x_i, y1) − r(x_i, y2) and self-normalised weights w_i, the
// prompt-free gap Δr2 is the c solving Σ_i w_i σ(Δ_i − c) = 1/2 (see
// PromptFreeGap), and the prompt-related gap is Δr1 = Δr − Δr2 under the
// pair's own prompt (see Decompose).
package decomposition
