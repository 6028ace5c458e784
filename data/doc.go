// Package data owns preference data: reading pair files, validating rows,
// tokenising them once and serving batches. It needs no libtorch.
package data
