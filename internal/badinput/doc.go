// Package badinput holds no code of its own: its tests run the prism binary
// on the corpus of hostile inputs in testdata/bad (listed in
// testdata/bad/cases.json and cases-*.json) and check that every one ends
// in a clean error that names the file and the problem, with exit status 1,
// no crash, no output left behind, and under a memory limit.
//
// The binary files of the corpus (safetensors, Parquet, checkpoints) and
// the files derived from other files (manifests with checksums, a state
// whose configuration must match the experiment file) are produced by
// gen_test.go; regenerate them with
//
//	go test ./internal/badinput -run TestCorpusFiles -update
package badinput
