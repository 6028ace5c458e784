// Package checkpoint owns the on-disk format of a run's checkpoints: the
// state a run resumes from, the manifest of checksums that tells a
// complete checkpoint from a damaged one, and writing, finding, verifying
// and pruning them. It is pure Go: what writes the model folder is passed
// in.
package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"prism/decomposition"
	"prism/internal/fsutil"
	"prism/internal/safetensors"
)

// A checkpoint is a folder checkpoints/step-NNNNNNNN holding
//
//	model/                   the weights as a Hugging Face model folder
//	optimizer.safetensors    AdamW's moments
//	state.json               step, sampler position, counters, config
//	MANIFEST.json            size and SHA-256 of every file above
//
// It is built in a temporary folder, fsynced and renamed into place, so a
// crash leaves either a complete checkpoint or none; the manifest is
// checked on load, so a damaged one is refused.

// The layout: Dir/Prefix<step, 8 digits>/{ModelDir/, OptimizerFile,
// StateFile, ManifestFile}, below the run folder; Format versions
// state.json.
const (
	Dir           = "checkpoints"
	ManifestFile  = "MANIFEST.json"
	StateFile     = "state.json"
	OptimizerFile = "optimizer.safetensors"
	ModelDir      = "model"
	Format        = 1
	Prefix        = "step-"
)

// State is the trainer's position, saved in state.json.
type State struct {
	Format int `json:"format"`
	Step   int `json:"step"`
	// The priority sampler's position and phase: each phase's draws and
	// each epoch's order are functions of DataSeed, the phase and the
	// epoch.
	decomposition.SamplerState
	DataSeed uint64 `json:"data_seed"`
	// Counters carried across resumes.
	Tokens   int64   `json:"tokens"`
	ElapsedS float64 `json:"elapsed_s"`
	BadSteps int     `json:"bad_steps"`
	// BadRun counts the non-finite steps in a row up to Step, and
	// FirstBad is the first of them (0: none).
	BadRun   int `json:"bad_run,omitempty"`
	FirstBad int `json:"first_bad_step,omitempty"`
	// OptimizerStep is AdamW's own step count, the applied updates: Step
	// less the skipped steps. Its bias corrections use it, so a resumed
	// run must restore it, not Step. Checkpoints written before it was
	// saved lack it; for them it is Step - BadSteps.
	OptimizerStep *int `json:"optimizer_step,omitempty"`
	// MetricsBytes is the length of metrics.jsonl when the checkpoint was
	// written; a run resumed from it cuts the file back to that.
	MetricsBytes  int64   `json:"metrics_bytes,omitempty"`
	DecompSeconds float64 `json:"decomposition_seconds"`
	// FirstTagShare is, at the first recompute, the share of pairs with a
	// positive prompt-free gap that carry the plot tag (-1: none yet).
	FirstTagShare float64 `json:"first_tag_share"`
	// Config is the resolved configuration the run was started with.
	Config string `json:"config"`
	// Device is where the run computed when it wrote the checkpoint (cpu,
	// cuda:N); the checkpoint itself loads onto any device.
	Device string `json:"device,omitempty"`
}

// AdamStep is the AdamW step count to resume with.
func (s *State) AdamStep() int {
	if s.OptimizerStep != nil {
		return *s.OptimizerStep
	}
	return s.Step - s.BadSteps
}

// Manifest lists a checkpoint's files with their sizes and checksums.
type Manifest struct {
	Step  int                  `json:"step"`
	Files map[string]FileEntry `json:"files"`
}

// FileEntry is one file of a manifest.
type FileEntry struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ErrInvalid marks a checkpoint that cannot be used.
var ErrInvalid = errors.New("invalid checkpoint")

// ModelWriter writes the model's files into dir (the checkpoint's model
// folder) and returns their names relative to it, for the manifest.
type ModelWriter func(dir string) ([]string, error)

// Save writes a checkpoint for st, with the model written by model and
// the optimizer state opt, and prunes old ones, keeping the newest keep.
func Save(runDir string, st *State, model ModelWriter, opt map[string][]float32, keep int) (string, error) {
	dir := filepath.Join(runDir, Dir, fmt.Sprintf("%s%08d", Prefix, st.Step))
	err := fsutil.WriteDirAtomic(dir, func(tmp string) error {
		mdir := filepath.Join(tmp, ModelDir)
		if err := os.Mkdir(mdir, 0o755); err != nil {
			return err
		}
		names, err := model(mdir)
		if err != nil {
			return err
		}
		if err := fsutil.SyncDir(mdir); err != nil {
			return err
		}
		files := []string{OptimizerFile, StateFile}
		for _, n := range names {
			files = append(files, ModelDir+"/"+n)
		}
		if err := safetensors.Write(filepath.Join(tmp, OptimizerFile), floatTensors(opt), nil); err != nil {
			return err
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileSync(filepath.Join(tmp, StateFile), append(b, '\n')); err != nil {
			return err
		}
		return writeManifest(tmp, st.Step, files)
	})
	if err != nil {
		return "", fmt.Errorf("writing checkpoint %s: %w", dir, err)
	}
	return dir, Prune(runDir, keep)
}

// writeManifest lists files (relative to dir) with their sizes and
// checksums in dir's manifest.
func writeManifest(dir string, step int, files []string) error {
	man := Manifest{Step: step, Files: map[string]FileEntry{}}
	for _, f := range files {
		e, err := HashFile(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		man.Files[f] = e
	}
	mb, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileSync(filepath.Join(dir, ManifestFile), append(mb, '\n'))
}

// floatTensors lays out named float32 values (sorted by name) for
// safetensors; shapes are flat, the model's shapes come from the model.
func floatTensors(vals map[string][]float32) []safetensors.Tensor {
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]safetensors.Tensor, 0, len(names))
	for _, n := range names {
		v := vals[n]
		out = append(out, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: []int64{int64(len(v))}, Data: safetensors.F32Bytes(v)})
	}
	return out
}

// HashFile is the manifest entry of the file at path.
func HashFile(path string) (FileEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileEntry{}, err
	}
	return FileEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Verify checks a checkpoint folder against its manifest and
// returns its state.
func Verify(dir string) (*State, error) {
	mb, err := fsutil.ReadFile(filepath.Join(dir, ManifestFile), fsutil.CapConfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: no manifest: %v", ErrInvalid, dir, err)
	}
	var man Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, filepath.Join(dir, ManifestFile), err)
	}
	for _, f := range []string{ModelDir + "/config.json", ModelDir + "/model.safetensors", OptimizerFile, StateFile} {
		want, ok := man.Files[f]
		if !ok {
			return nil, fmt.Errorf("%w: %s: manifest does not list %s", ErrInvalid, dir, f)
		}
		got, err := HashFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, dir, err)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s: %s does not match its checksum (size %d, want %d): the file is damaged", ErrInvalid, dir, f, got.Size, want.Size)
		}
	}
	sb, err := fsutil.ReadFile(filepath.Join(dir, StateFile), fsutil.CapState)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, dir, err)
	}
	var st State
	dec := json.NewDecoder(strings.NewReader(string(sb)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, filepath.Join(dir, StateFile), err)
	}
	if st.Format != Format || st.Step != man.Step {
		return nil, fmt.Errorf("%w: %s: state format %d step %d, manifest step %d", ErrInvalid, dir, st.Format, st.Step, man.Step)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, filepath.Join(dir, StateFile), err)
	}
	return &st, nil
}

// Validate checks what a state can say on its own: counts are not
// negative, the optimizer has not stepped more than the run, a later phase
// has pairs to train on and a priority for each. (A checksum only proves
// the file is what was written; an edited state with a recomputed
// manifest gets here.) Whether the positions fit the training set is the
// sampler's to check when it is restored.
func (s *State) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"step", float64(s.Step)}, {"epoch", float64(s.Epoch)}, {"epoch_pos", float64(s.EpochPos)}, {"phase", float64(s.Phase)},
		{"tokens", float64(s.Tokens)}, {"elapsed_s", s.ElapsedS}, {"bad_steps", float64(s.BadSteps)}, {"bad_run", float64(s.BadRun)},
		{"first_bad_step", float64(s.FirstBad)}, {"metrics_bytes", float64(s.MetricsBytes)}, {"decomposition_seconds", s.DecompSeconds}} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return fmt.Errorf("%s = %v: want a finite number, at least 0", f.name, f.v)
		}
	}
	if s.BadSteps > s.Step || s.BadRun > s.BadSteps {
		return fmt.Errorf("bad_steps = %d, bad_run = %d at step %d: more bad steps than steps", s.BadSteps, s.BadRun, s.Step)
	}
	if o := s.OptimizerStep; o != nil && (*o < 0 || *o > s.Step) {
		return fmt.Errorf("optimizer_step = %d at step %d: want 0 to the step", *o, s.Step)
	}
	if s.Phase > 0 && len(s.Selected) == 0 {
		return fmt.Errorf("phase %d has no selected pairs: nothing to train on", s.Phase)
	}
	if s.Phase == 0 && len(s.Selected) > 0 {
		return fmt.Errorf("phase 0 (before the first recompute) with %d selected pairs", len(s.Selected))
	}
	if len(s.Priorities) != len(s.Selected) {
		return fmt.Errorf("%d priorities for %d selected pairs", len(s.Priorities), len(s.Selected))
	}
	return nil
}

// List returns the checkpoint folders of a run, newest first.
func List(runDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(runDir, Dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type ck struct {
		step int
		path string
	}
	var cks []ck
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, Prefix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(name, Prefix))
		if err != nil {
			continue
		}
		cks = append(cks, ck{n, filepath.Join(runDir, Dir, name)})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step > cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// Prune removes all but the newest keep checkpoints, and what
// writes interrupted by a crash left behind (RemoveLeftovers).
func Prune(runDir string, keep int) error {
	cks, err := List(runDir)
	if err != nil {
		return err
	}
	for i, c := range cks {
		if i >= keep {
			if err := os.RemoveAll(c); err != nil {
				return err
			}
		}
	}
	RemoveLeftovers(runDir)
	return nil
}

// leftoverPatterns name, folder by folder, the temporary files and folders
// of the run folder's atomic writes: fsutil's ".NAME.tmp-*" (and ".old"
// for a replaced folder) for checkpoints, the final model, the rewritten
// metrics and config, the decomposition tables and the comparison's
// per-run results, report's ".plot-*.png" for plots (curves.png in the
// run folder, quadrant plots in decomposition/), and openRunDir's write
// probe. A crash leaves them; nothing reads them.
var leftoverPatterns = map[string][]string{
	"":              {".model.tmp-*", ".metrics.jsonl.tmp-*", ".config.yaml.tmp-*", ".write-test", ".plot-*.png", ".compare-*.json.tmp-*"},
	Dir:             {"." + Prefix + "*"},
	"decomposition": {".*.tmp-*", ".plot-*.png"},
}

// RemoveLeftovers removes, as best it can, the leftovers of interrupted
// writes from the run folder: a run resumed after a crash during its final
// save would otherwise keep the half-written model folder next to the
// complete one for good. The trainer writes one thing at a time and calls
// it between writes, so no write in progress is among them.
func RemoveLeftovers(runDir string) {
	for dir, patterns := range leftoverPatterns {
		entries, _ := os.ReadDir(filepath.Join(runDir, dir))
		for _, e := range entries {
			for _, p := range patterns {
				if ok, _ := filepath.Match(p, e.Name()); ok {
					_ = os.RemoveAll(filepath.Join(runDir, dir, e.Name()))
					break
				}
			}
		}
	}
}

// Find resolves --resume: "auto" is the newest valid checkpoint of
// the run ("" when there is none), anything else a checkpoint folder that
// must be valid. Invalid checkpoints skipped by "auto" are reported
// through warn.
func Find(runDir, resume string, warn func(string, ...any)) (string, *State, error) {
	if resume != "auto" {
		st, err := Verify(resume)
		if err != nil {
			return "", nil, err
		}
		return resume, st, nil
	}
	cks, err := List(runDir)
	if err != nil {
		return "", nil, err
	}
	for _, c := range cks {
		st, err := Verify(c)
		if err != nil {
			warn("skipping a checkpoint that does not verify", "checkpoint", c, "error", err)
			continue
		}
		return c, st, nil
	}
	return "", nil, nil
}

// ReadOptimizer loads optimizer.safetensors.
func ReadOptimizer(dir string) (map[string][]float32, error) {
	f, err := safetensors.Open(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, ti := range f.Header().Tensors {
		raw, err := f.ReadRaw(ti.Name)
		if err != nil {
			return nil, err
		}
		v, err := safetensors.ToFloat32(ti, raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ti.Name, err)
		}
		out[ti.Name] = v
	}
	return out, nil
}
