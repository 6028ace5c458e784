// Package configs owns experiment configuration: the YAML schema, its
// defaults, strict decoding and overrides, validation, and the typed
// values derived from it that the trainer dispatches on (the data source,
// total steps, the recompute cadence, the selection strategy). It also
// decides which keys may change when a run resumes (ResumeChanges). It
// needs no libtorch.
package configs
