// Package configs owns experiment configuration: the YAML schema, its
// defaults, strict decoding and overrides. It needs no libtorch.
package configs
