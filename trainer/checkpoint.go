package trainer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"prism/internal/fsutil"
	"prism/internal/safetensors"
	"prism/models"
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

const (
	checkpointDir  = "checkpoints"
	manifestFile   = "MANIFEST.json"
	stateFile      = "state.json"
	optimizerFile  = "optimizer.safetensors"
	modelSubdir    = "model"
	stateFormat    = 1
	checkpointGlob = "step-"
)

// State is the trainer's position, saved in state.json.
type State struct {
	Format int `json:"format"`
	Step   int `json:"step"`
	// Sampler position: the epoch's order is a function of seed and epoch.
	Epoch    int    `json:"epoch"`
	EpochPos int    `json:"epoch_pos"`
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
	MetricsBytes int64 `json:"metrics_bytes,omitempty"`
	// Prioritised training: the phase (number of recomputes so far), the
	// training pairs it selected and their prompt-free gaps. Each phase's
	// random draws derive from the seed and the phase number.
	Phase         int       `json:"phase"`
	Selected      []int     `json:"selected,omitempty"`
	Priorities    []float64 `json:"priorities,omitempty"`
	DecompSeconds float64   `json:"decomposition_seconds"`
	// FirstTagShare is, at the first recompute, the share of pairs with a
	// positive prompt-free gap that carry the plot tag (-1: none yet).
	FirstTagShare float64 `json:"first_tag_share"`
	// Config is the resolved configuration the run was started with.
	Config string `json:"config"`
}

// optimizerStep is the AdamW step count to resume with.
func (s *State) optimizerStep() int {
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

// ErrCheckpoint marks a checkpoint that cannot be used.
var ErrCheckpoint = errors.New("invalid checkpoint")

// saveCheckpoint writes a checkpoint for st and prunes old ones, keeping
// the newest keep.
// adapter, when set, writes the LoRA adapter files into the model folder.
func saveCheckpoint(runDir string, st *State, cfg *models.Config, weights, opt map[string][]float32, adapter func(dir string) error, keep int) (string, error) {
	dir := filepath.Join(runDir, checkpointDir, fmt.Sprintf("%s%08d", checkpointGlob, st.Step))
	err := fsutil.WriteDirAtomic(dir, func(tmp string) error {
		if err := os.Mkdir(filepath.Join(tmp, modelSubdir), 0o755); err != nil {
			return err
		}
		if err := models.WriteFolder(filepath.Join(tmp, modelSubdir), cfg, weights, nil); err != nil {
			return err
		}
		files := []string{modelSubdir + "/config.json", modelSubdir + "/model.safetensors", optimizerFile, stateFile}
		if adapter != nil {
			if err := adapter(filepath.Join(tmp, modelSubdir)); err != nil {
				return err
			}
			files = append(files, modelSubdir+"/"+models.AdapterFile, modelSubdir+"/adapter_config.json")
		}
		if err := fsutil.SyncDir(filepath.Join(tmp, modelSubdir)); err != nil {
			return err
		}
		if err := safetensors.Write(filepath.Join(tmp, optimizerFile), floatTensors(opt), nil); err != nil {
			return err
		}
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileSync(filepath.Join(tmp, stateFile), append(b, '\n')); err != nil {
			return err
		}
		man := Manifest{Step: st.Step, Files: map[string]FileEntry{}}
		for _, f := range files {
			e, err := hashFile(filepath.Join(tmp, f))
			if err != nil {
				return err
			}
			man.Files[f] = e
		}
		mb, err := json.MarshalIndent(man, "", "  ")
		if err != nil {
			return err
		}
		return fsutil.WriteFileSync(filepath.Join(tmp, manifestFile), append(mb, '\n'))
	})
	if err != nil {
		return "", fmt.Errorf("writing checkpoint %s: %w", dir, err)
	}
	return dir, pruneCheckpoints(runDir, keep)
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
		out = append(out, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: []int64{int64(len(v))}, Data: models.Float32Bytes(v)})
	}
	return out
}

func hashFile(path string) (FileEntry, error) {
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

// verifyCheckpoint checks a checkpoint folder against its manifest and
// returns its state.
func verifyCheckpoint(dir string) (*State, error) {
	mb, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: no manifest: %v", ErrCheckpoint, dir, err)
	}
	var man Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, filepath.Join(dir, manifestFile), err)
	}
	for _, f := range []string{modelSubdir + "/config.json", modelSubdir + "/model.safetensors", optimizerFile, stateFile} {
		want, ok := man.Files[f]
		if !ok {
			return nil, fmt.Errorf("%w: %s: manifest does not list %s", ErrCheckpoint, dir, f)
		}
		got, err := hashFile(filepath.Join(dir, f))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, dir, err)
		}
		if got != want {
			return nil, fmt.Errorf("%w: %s: %s does not match its checksum (size %d, want %d): the file is damaged", ErrCheckpoint, dir, f, got.Size, want.Size)
		}
	}
	sb, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, dir, err)
	}
	var st State
	dec := json.NewDecoder(strings.NewReader(string(sb)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCheckpoint, filepath.Join(dir, stateFile), err)
	}
	if st.Format != stateFormat || st.Step != man.Step {
		return nil, fmt.Errorf("%w: %s: state format %d step %d, manifest step %d", ErrCheckpoint, dir, st.Format, st.Step, man.Step)
	}
	return &st, nil
}

// listCheckpoints returns the checkpoint folders of a run, newest first.
func listCheckpoints(runDir string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(runDir, checkpointDir))
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
		if !e.IsDir() || !strings.HasPrefix(name, checkpointGlob) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(name, checkpointGlob))
		if err != nil {
			continue
		}
		cks = append(cks, ck{n, filepath.Join(runDir, checkpointDir, name)})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step > cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// pruneCheckpoints removes all but the newest keep checkpoints, and what
// writes interrupted by a crash left behind (removeLeftovers).
func pruneCheckpoints(runDir string, keep int) error {
	cks, err := listCheckpoints(runDir)
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
	removeLeftovers(runDir)
	return nil
}

// leftoverPatterns name, folder by folder, the temporary files and folders
// of the run folder's atomic writes: fsutil's ".NAME.tmp-*" (and ".old"
// for a replaced folder) for checkpoints, the final model, the rewritten
// metrics and config and the decomposition tables, report's ".plot-*.png"
// for plots, and openRunDir's write probe. A crash leaves them; nothing
// reads them.
var leftoverPatterns = map[string][]string{
	"":              {".model.tmp-*", ".metrics.jsonl.tmp-*", ".config.yaml.tmp-*", ".write-test"},
	checkpointDir:   {"." + checkpointGlob + "*"},
	"decomposition": {".*.tmp-*", ".plot-*.png"},
}

// removeLeftovers removes, as best it can, the leftovers of interrupted
// writes from the run folder: a run resumed after a crash during its final
// save would otherwise keep the half-written model folder next to the
// complete one for good. The trainer writes one thing at a time and calls
// it between writes, so no write in progress is among them.
func removeLeftovers(runDir string) {
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

// findResume resolves --resume: "auto" is the newest valid checkpoint of
// the run ("" when there is none), anything else a checkpoint folder that
// must be valid. Invalid checkpoints skipped by "auto" are reported
// through warn.
func findResume(runDir, resume string, warn func(string, ...any)) (string, *State, error) {
	if resume != "auto" {
		st, err := verifyCheckpoint(resume)
		if err != nil {
			return "", nil, err
		}
		return resume, st, nil
	}
	cks, err := listCheckpoints(runDir)
	if err != nil {
		return "", nil, err
	}
	for _, c := range cks {
		st, err := verifyCheckpoint(c)
		if err != nil {
			warn("skipping a checkpoint that does not verify", "checkpoint", c, "error", err)
			continue
		}
		return c, st, nil
	}
	return "", nil, nil
}

// readOptimizer loads optimizer.safetensors.
func readOptimizer(dir string) (map[string][]float32, error) {
	f, err := safetensors.Open(filepath.Join(dir, optimizerFile))
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
