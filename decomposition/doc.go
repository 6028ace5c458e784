// Package decomposition owns the paper's reward decomposition: the
// prompt-free part of a reward gap, its importance-sampled estimate and the
// priority sampler built on it. It is pure Go over float64 slices and needs
// no libtorch.
package decomposition
