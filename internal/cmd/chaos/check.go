package main

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"prism/internal/safetensors"
)

// The checkpoint layout of trainer/checkpoint.go. The checks below read it
// independently of the trainer, so a bug in the trainer's own verification
// cannot hide from them.
const (
	checkpointsDir   = "checkpoints"
	checkpointPrefix = "step-"
	manifestFile     = "MANIFEST.json"
)

// checkpointFiles are the files every checkpoint must list and hold.
var checkpointFiles = []string{"model/config.json", "model/model.safetensors", "optimizer.safetensors", "state.json"}

type manifest struct {
	Step  int `json:"step"`
	Files map[string]struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

// checkpoint is a checkpoint folder of a run.
type checkpoint struct {
	Name string // step-NNNNNNNN
	Step int
}

// verifyCheckpoint checks a checkpoint folder as --resume auto must: the
// manifest lists every file, each file has the listed size and SHA-256, and
// the manifest, state.json and folder name agree on the step.
func verifyCheckpoint(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %w", manifestFile, err)
	}
	for _, name := range checkpointFiles {
		want, ok := m.Files[name]
		if !ok {
			return fmt.Errorf("%s does not list %s", manifestFile, name)
		}
		size, sum, err := hashFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if size != want.Size || sum != want.SHA256 {
			return fmt.Errorf("%s: size %d sha256 %.12s, manifest says %d %.12s", name, size, sum, want.Size, want.SHA256)
		}
	}
	sb, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return err
	}
	var st struct {
		Step int `json:"step"`
	}
	if err := json.Unmarshal(sb, &st); err != nil {
		return fmt.Errorf("state.json: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), checkpointPrefix))
	if err != nil || st.Step != m.Step || n != m.Step {
		return fmt.Errorf("folder, manifest and state.json disagree on the step (%s, %d, %d)", filepath.Base(dir), m.Step, st.Step)
	}
	return nil
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// newestValid returns the checkpoint --resume auto must load (nil when no
// checkpoint verifies) and the checkpoint folders that do not verify,
// newest first.
func newestValid(runDir string) (*checkpoint, []string, error) {
	entries, err := os.ReadDir(filepath.Join(runDir, checkpointsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var cks []checkpoint
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), checkpointPrefix))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), checkpointPrefix) || err != nil {
			continue
		}
		cks = append(cks, checkpoint{e.Name(), n})
	}
	slices.SortFunc(cks, func(a, b checkpoint) int { return b.Step - a.Step })
	var invalid []string
	for _, c := range cks {
		if err := verifyCheckpoint(filepath.Join(runDir, checkpointsDir, c.Name)); err != nil {
			invalid = append(invalid, c.Name)
			continue
		}
		return &c, invalid, nil
	}
	return nil, invalid, nil
}

// isWriteTemp says whether rel, a path relative to the run folder, is
// the temporary folder of a checkpoint or of the final model being written
// (fsutil.WriteDirAtomic's naming: .NAME.tmp-X), not the .old name a
// replaced one passes through.
func isWriteTemp(rel string) bool {
	name := filepath.Base(rel)
	if strings.HasSuffix(name, ".old") {
		return false
	}
	switch filepath.Dir(rel) {
	case checkpointsDir:
		return strings.HasPrefix(name, "."+checkpointPrefix) && strings.Contains(name, ".tmp-")
	case ".":
		return strings.HasPrefix(name, ".model.tmp-")
	}
	return false
}

func isCheckpointTemp(rel string) bool {
	return filepath.Dir(rel) == checkpointsDir && isWriteTemp(rel)
}

func isModelTemp(rel string) bool { return filepath.Dir(rel) == "." && isWriteTemp(rel) }

// tempEntries lists, relative to root, the files and folders whose names
// start with a dot: prism writes everything under a temporary dot-name and
// renames it into place, so these are writes a kill interrupted.
func tempEntries(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err != nil {
			return err
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			rel, _ := filepath.Rel(root, path)
			out[rel] = true
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	return out, err
}

// logRecord parses a line of slog's text format (key=value, values quoted
// when needed) into its keys and values; other lines give an empty map.
func logRecord(line string) map[string]string {
	out := map[string]string{}
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return out
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return out
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		out[key] = val
		s = strings.TrimLeft(s, " ")
	}
	return out
}

// trainerLog is what one trainer process said about its start.
type trainerLog struct {
	SetupDone   bool   // it logged the model line that ends setup
	ResumedFrom string // the checkpoint folder it resumed from ("" none)
	ResumedStep int
	Skipped     []string // checkpoints it refused as damaged
}

func readTrainerLog(path string) (*trainerLog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tl := &trainerLog{}
	lines := strings.Split(string(b), "\n")
	// The last element is "" or a line the kill cut short.
	for _, line := range lines[:len(lines)-1] {
		rec := logRecord(line)
		switch rec["msg"] {
		case "model":
			tl.SetupDone = true
		case "resumed":
			tl.ResumedFrom = rec["checkpoint"]
			tl.ResumedStep, err = strconv.Atoi(rec["step"])
			if err != nil {
				return nil, fmt.Errorf("%s: resumed at step %q", path, rec["step"])
			}
		case "skipping a checkpoint that does not verify":
			tl.Skipped = append(tl.Skipped, filepath.Base(rec["checkpoint"]))
		}
	}
	return tl, nil
}

// checkRestart says whether a trainer started with --resume auto did what
// it must: load want (the newest checkpoint that verifies, nil for none),
// and refuse only checkpoints that are damaged. determinate is false when
// the process died before it got that far.
func checkRestart(tl *trainerLog, want *checkpoint, invalid []string) (outcome string, determinate bool, err error) {
	for _, s := range tl.Skipped {
		if !slices.Contains(invalid, s) {
			return "", true, fmt.Errorf("the trainer refused %s, which verifies against its manifest", s)
		}
	}
	got := filepath.Base(tl.ResumedFrom)
	switch {
	case tl.ResumedFrom == "" && !tl.SetupDone:
		return "killed before it had loaded anything", false, nil
	case tl.ResumedFrom == "" && want == nil:
		return "started afresh: no checkpoint to resume from", true, nil
	case tl.ResumedFrom == "":
		return "", true, fmt.Errorf("started afresh although %s verifies", want.Name)
	case want == nil:
		return "", true, fmt.Errorf("resumed from %s, but no checkpoint verified before the start", tl.ResumedFrom)
	case got != want.Name || tl.ResumedStep != want.Step:
		return "", true, fmt.Errorf("resumed from %s (step %d), want %s, the newest checkpoint that verifies", tl.ResumedFrom, tl.ResumedStep, want.Name)
	}
	return fmt.Sprintf("resumed from %s (manifest verified before the start)", got), true, nil
}

// volatileMetrics are the metric fields that measure time, not training.
var volatileMetrics = []string{"tokens_per_s", "wall_s", "seconds", "pairs_per_s", "decomposition_seconds_total", "share_of_wall_time"}

// metricRecords reads metrics.jsonl as canonical JSON lines without the
// timing fields; bad counts lines that do not parse.
func metricRecords(path string) (recs []string, bad int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			bad++
			continue
		}
		for _, k := range volatileMetrics {
			delete(m, k)
		}
		c, err := json.Marshal(m) // sorted keys
		if err != nil {
			return nil, 0, err
		}
		recs = append(recs, string(c))
	}
	return recs, bad, nil
}

// compareMetrics describes how got differs from ref, record by record.
func compareMetrics(ref, got []string) []string {
	if slices.Equal(ref, got) {
		return nil
	}
	count := func(recs []string) map[string]int {
		m := map[string]int{}
		for _, r := range recs {
			m[r]++
		}
		return m
	}
	rc, gc := count(ref), count(got)
	var extra, missing []string
	for _, r := range byLabel(gc) {
		if n := gc[r] - rc[r]; n > 0 {
			extra = append(extra, fmt.Sprintf("%s x%d", label(r), n))
		}
	}
	for _, r := range byLabel(rc) {
		if n := rc[r] - gc[r]; n > 0 {
			missing = append(missing, fmt.Sprintf("%s x%d", label(r), n))
		}
	}
	var out []string
	if len(extra) > 0 {
		out = append(out, "extra or duplicated records: "+short(extra))
	}
	if len(missing) > 0 {
		out = append(out, "records missing or different: "+short(missing))
	}
	if len(extra) == 0 && len(missing) == 0 {
		out = append(out, "the same records in another order")
	}
	out[0] = fmt.Sprintf("%d records, the reference %d; %s", len(got), len(ref), out[0])
	return out
}

// kindStep returns a metric record's kind and step (-1: none).
func kindStep(rec string) (string, int) {
	var m struct {
		Kind string `json:"kind"`
		Step *int   `json:"step"`
	}
	_ = json.Unmarshal([]byte(rec), &m)
	if m.Step == nil {
		return m.Kind, -1
	}
	return m.Kind, *m.Step
}

// label names a metric record by its kind and step.
func label(rec string) string {
	kind, step := kindStep(rec)
	if step < 0 {
		return kind
	}
	return fmt.Sprintf("%s@%d", kind, step)
}

// byLabel returns the records of a count in order of kind, then step.
func byLabel(count map[string]int) []string {
	return slices.SortedFunc(maps.Keys(count), func(a, b string) int {
		ka, sa := kindStep(a)
		kb, sb := kindStep(b)
		return cmp.Or(strings.Compare(ka, kb), sa-sb, strings.Compare(a, b))
	})
}

func short(items []string) string {
	const max = 8
	if len(items) <= max {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:max], ", ") + fmt.Sprintf(", and %d more", len(items)-max)
}

// Files whose content depends on time or on the run folder's path, and how
// to compare them instead of byte for byte.
var (
	skipFiles = map[string]bool{"run.log": true, "config.yaml": true}
	// Fields of state.json: timings, the resolved config (it holds
	// run.dir) and a length of metrics.jsonl, whose timing fields vary in
	// length.
	volatileState = []string{"elapsed_s", "decomposition_seconds", "config", "metrics_bytes"}
)

// compareRuns lists every way the deterministic outputs of the run in got
// differ from those of the reference run in ref.
func compareRuns(ref, got string) ([]string, error) {
	rf, err := runFiles(ref)
	if err != nil {
		return nil, err
	}
	gf, err := runFiles(got)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for _, f := range slices.Sorted(maps.Keys(rf)) {
		if !gf[f] {
			diffs = append(diffs, f+": missing")
		}
	}
	for _, f := range slices.Sorted(maps.Keys(gf)) {
		if !rf[f] {
			diffs = append(diffs, f+": not in the reference run")
		}
	}
	for _, f := range slices.Sorted(maps.Keys(rf)) {
		if !gf[f] {
			continue
		}
		a, b := filepath.Join(ref, f), filepath.Join(got, f)
		var d []string
		switch filepath.Base(f) {
		case "metrics.jsonl":
			d, err = compareMetricFiles(a, b)
		case "state.json":
			d, err = compareJSON(a, b, volatileState...)
		case manifestFile:
			// state.json's entry hashes timings; the others must agree.
			d, err = compareManifests(a, b)
		default:
			d, err = compareBytes(a, b)
		}
		if err != nil {
			return nil, err
		}
		for _, s := range d {
			diffs = append(diffs, f+": "+s)
		}
	}
	return diffs, nil
}

// runFiles lists the regular files of a run folder, relative to it,
// without temporary entries (reported apart) and files of skipFiles.
func runFiles(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && !skipFiles[d.Name()] {
			rel, _ := filepath.Rel(root, path)
			out[rel] = true
		}
		return nil
	})
	return out, err
}

func compareBytes(a, b string) ([]string, error) {
	ab, err := os.ReadFile(a)
	if err != nil {
		return nil, err
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(ab, bb) {
		return nil, nil
	}
	if strings.HasSuffix(a, ".safetensors") {
		if d, err := tensorDiff(a, b); err == nil {
			return []string{d}, nil
		}
	}
	return []string{fmt.Sprintf("bytes differ (%d bytes, the reference %d)", len(bb), len(ab))}, nil
}

func compareMetricFiles(a, b string) ([]string, error) {
	ra, _, err := metricRecords(a)
	if err != nil {
		return nil, err
	}
	rb, bad, err := metricRecords(b)
	if err != nil {
		return nil, err
	}
	d := compareMetrics(ra, rb)
	if bad > 0 {
		d = append(d, fmt.Sprintf("%d lines are not JSON", bad))
	}
	return d, nil
}

// compareJSON compares two JSON objects without the fields in skip.
func compareJSON(a, b string, skip ...string) ([]string, error) {
	read := func(path string) (map[string]any, error) {
		bs, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(bs, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, k := range skip {
			delete(m, k)
		}
		return m, nil
	}
	ma, err := read(a)
	if err != nil {
		return nil, err
	}
	mb, err := read(b)
	if err != nil {
		return nil, err
	}
	var d []string
	for _, k := range slices.Sorted(maps.Keys(ma)) {
		ja, _ := json.Marshal(ma[k])
		jb, _ := json.Marshal(mb[k])
		if !bytes.Equal(ja, jb) {
			d = append(d, fmt.Sprintf("%s is %.60s, the reference %.60s", k, jb, ja))
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			d = append(d, k+" is not in the reference")
		}
	}
	return d, nil
}

func compareManifests(a, b string) ([]string, error) {
	read := func(path string) (*manifest, error) {
		bs, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var m manifest
		if err := json.Unmarshal(bs, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		delete(m.Files, "state.json")
		return &m, nil
	}
	ma, err := read(a)
	if err != nil {
		return nil, err
	}
	mb, err := read(b)
	if err != nil {
		return nil, err
	}
	if ma.Step != mb.Step || !maps.Equal(ma.Files, mb.Files) {
		return []string{"lists other files or checksums than the reference"}, nil
	}
	return nil, nil
}

// tensorDiff describes how two safetensors files differ, weight by weight.
func tensorDiff(a, b string) (string, error) {
	fa, err := safetensors.Open(a)
	if err != nil {
		return "", err
	}
	defer fa.Close()
	fb, err := safetensors.Open(b)
	if err != nil {
		return "", err
	}
	defer fb.Close()
	var differ []string
	worst := 0.0
	for _, ti := range fa.Header().Tensors {
		tb, ok := fb.Lookup(ti.Name)
		if !ok {
			differ = append(differ, ti.Name+" (missing)")
			continue
		}
		ra, err := fa.ReadRaw(ti.Name)
		if err != nil {
			return "", err
		}
		rb, err := fb.ReadRaw(ti.Name)
		if err != nil {
			return "", err
		}
		if bytes.Equal(ra, rb) {
			continue
		}
		va, err := safetensors.ToFloat32(ti, ra)
		if err != nil {
			return "", err
		}
		vb, err := safetensors.ToFloat32(tb, rb)
		if err != nil || len(va) != len(vb) {
			differ = append(differ, ti.Name+" (other shape or dtype)")
			continue
		}
		n, maxd := 0, 0.0
		for i := range va {
			if math.Float32bits(va[i]) != math.Float32bits(vb[i]) {
				n++
				maxd = max(maxd, math.Abs(float64(va[i])-float64(vb[i])))
			}
		}
		worst = max(worst, maxd)
		differ = append(differ, fmt.Sprintf("%s (%d of %d values)", ti.Name, n, len(va)))
	}
	return fmt.Sprintf("%d of %d tensors differ, max |difference| %.3g: %s", len(differ), len(fa.Header().Tensors), worst, short(differ)), nil
}
