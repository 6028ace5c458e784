// Package data owns preference data: reading pair files, validating rows,
// the synthetic and toy tasks, splitting and fitting pairs to a length
// limit, and the sequences a reward model scores for a pair (Stack). It
// needs no libtorch. Text goes through data/encode (tokenizer and chat
// template), which every command that reads pairs uses.
package data
