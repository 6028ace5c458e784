package gotchadapt

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
)

// Libtorch describes one libtorch installation: where its headers and
// libraries are and how it was built.
type Libtorch struct {
	// Source says how it was found: "system" (a distribution package such as
	// Debian's libtorch-dev), "folder" (an official libtorch zip, named by
	// LIBTORCH=/path) or "python" (an installed PyTorch).
	Source string `json:"source"`
	// Root is the folder, the Python executable or "/usr".
	Root        string   `json:"root"`
	Version     string   `json:"version"`
	IncludeDirs []string `json:"include_dirs"`
	LibDir      string   `json:"lib_dir"`
	// RPath lists folders the binary must search at run time (empty for
	// libraries in the system's default search path).
	RPath []string `json:"rpath,omitempty"`
	// Libs are the libraries to link, in link order, without "-l".
	Libs     []string `json:"libs"`
	CUDA     bool     `json:"cuda"`
	CXX11ABI bool     `json:"cxx11_abi"`
}

// ErrNotFound is returned when no usable libtorch is found.
var ErrNotFound = errors.New("libtorch not found")

// Locate finds the libtorch named by spec, the value of LIBTORCH:
//   - "": the system's libtorch (Debian/Ubuntu libtorch-dev);
//   - "python": the PyTorch of the first python3 that imports torch;
//   - a path to a python executable: that Python's PyTorch;
//   - a folder holding include/ and lib/: an official libtorch.
func Locate(ctx context.Context, spec string) (*Libtorch, error) {
	switch {
	case spec == "":
		return locateSystem()
	case spec == "python" || spec == "python3":
		return locatePython(ctx, "")
	}
	fi, err := os.Stat(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: LIBTORCH=%s: %v\n%s", ErrNotFound, spec, err, hint)
	}
	if fi.IsDir() {
		return locateFolder(spec)
	}
	return locatePython(ctx, spec)
}

const hint = `Point LIBTORCH at one:
  make setup LIBTORCH=/path/to/libtorch      (an official libtorch zip, unpacked: include/ and lib/)
  make setup LIBTORCH=python                 (the PyTorch of the first python3 that imports torch)
  make setup LIBTORCH=/path/to/bin/python3   (the PyTorch of that Python)
or, on Debian/Ubuntu, leave LIBTORCH unset and install libtorch-dev.`

// systemLibDirs are the folders a distribution puts shared libraries in.
func systemLibDirs() []string {
	dirs := []string{}
	switch runtime.GOARCH {
	case "amd64":
		dirs = append(dirs, "/usr/lib/x86_64-linux-gnu")
	case "arm64":
		dirs = append(dirs, "/usr/lib/aarch64-linux-gnu")
	}
	return append(dirs, "/usr/lib64", "/usr/lib", "/usr/local/lib")
}

func locateSystem() (*Libtorch, error) {
	const apiInc = "/usr/include/torch/csrc/api/include"
	var looked []string
	torchH := filepath.Join(apiInc, "torch", "torch.h")
	looked = append(looked, torchH)
	if !exists(torchH) {
		return nil, fmt.Errorf("%w: no system libtorch (looked for %s)\n%s", ErrNotFound, strings.Join(looked, ", "), hint)
	}
	for _, dir := range systemLibDirs() {
		so := filepath.Join(dir, "libtorch.so")
		looked = append(looked, so)
		if !exists(so) {
			continue
		}
		lt := &Libtorch{
			Source:      "system",
			Root:        "/usr",
			IncludeDirs: []string{apiInc},
			LibDir:      dir,
		}
		if err := lt.inspect(); err != nil {
			return nil, err
		}
		lt.Version = systemVersion(apiInc)
		return lt, nil
	}
	return nil, fmt.Errorf("%w: headers at /usr/include but no libtorch.so (looked for %s)\n%s", ErrNotFound, strings.Join(looked, ", "), hint)
}

// systemVersion prefers the package manager's version: Debian's 1.13.1
// headers say 1.13.0.
func systemVersion(apiInc string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "libtorch-dev").Output()
	if err == nil {
		v := strings.TrimSpace(string(out))
		if i := strings.IndexAny(v, "+~-"); i > 0 {
			v = v[:i]
		}
		if i := strings.Index(v, ":"); i >= 0 { // epoch
			v = v[i+1:]
		}
		if v != "" {
			return v
		}
	}
	return headerVersion(apiInc)
}

var versionRE = regexp.MustCompile(`#define\s+TORCH_VERSION\s*\\?\s*"([^"]+)"`)

func headerVersion(apiInc string) string {
	b, err := os.ReadFile(filepath.Join(apiInc, "torch", "version.h"))
	if err != nil {
		return "unknown"
	}
	if m := versionRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return "unknown"
}

func locateFolder(root string) (*Libtorch, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	inc := filepath.Join(root, "include")
	apiInc := filepath.Join(inc, "torch", "csrc", "api", "include")
	lib := filepath.Join(root, "lib")
	for _, f := range []string{filepath.Join(apiInc, "torch", "torch.h"), filepath.Join(lib, "libtorch.so")} {
		if !exists(f) {
			return nil, fmt.Errorf("%w: LIBTORCH=%s is not a libtorch folder: %s is missing\n%s", ErrNotFound, root, f, hint)
		}
	}
	lt := &Libtorch{
		Source:      "folder",
		Root:        root,
		IncludeDirs: []string{inc, apiInc},
		LibDir:      lib,
		RPath:       []string{lib},
	}
	if err := lt.inspect(); err != nil {
		return nil, err
	}
	lt.Version = headerVersion(apiInc)
	if b, err := os.ReadFile(filepath.Join(root, "build-version")); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			lt.Version = v
		}
	}
	return lt, nil
}

// pythonProbe prints what locatePython needs as one JSON object.
const pythonProbe = `
import json, os, sys, glob
import torch
d = os.path.dirname(torch.__file__)
site = os.path.dirname(d)
print(json.dumps({
  "torch_dir": d,
  "version": torch.__version__,
  "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
  "cuda": torch.version.cuda,
  "nvidia_libs": sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib"))),
}))
`

type pythonInfo struct {
	TorchDir   string   `json:"torch_dir"`
	Version    string   `json:"version"`
	CXX11ABI   bool     `json:"cxx11_abi"`
	CUDA       *string  `json:"cuda"`
	NvidiaLibs []string `json:"nvidia_libs"`
}

func locatePython(ctx context.Context, python string) (*Libtorch, error) {
	candidates := []string{python}
	if python == "" {
		candidates = nil
		if p := os.Getenv("PYTHON"); p != "" {
			candidates = append(candidates, p)
		}
		if p, err := exec.LookPath("python3"); err == nil {
			candidates = append(candidates, p)
		}
		candidates = append(candidates, "/usr/bin/python3", "/usr/local/bin/python3")
	}
	var tried []string
	for _, py := range candidates {
		if py == "" {
			continue
		}
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, py, "-c", pythonProbe)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if i := strings.LastIndex(msg, "\n"); i >= 0 {
				msg = msg[i+1:]
			}
			if msg == "" {
				msg = err.Error()
			}
			tried = append(tried, fmt.Sprintf("%s (%s)", py, msg))
			continue
		}
		var info pythonInfo
		if err := json.Unmarshal(out, &info); err != nil {
			return nil, fmt.Errorf("%s: unexpected output from the torch probe: %w", py, err)
		}
		return fromPython(py, info)
	}
	return nil, fmt.Errorf("%w: no python3 that imports torch; tried: %s\n%s", ErrNotFound, strings.Join(tried, "; "), hint)
}

func fromPython(py string, info pythonInfo) (*Libtorch, error) {
	inc := filepath.Join(info.TorchDir, "include")
	apiInc := filepath.Join(inc, "torch", "csrc", "api", "include")
	lib := filepath.Join(info.TorchDir, "lib")
	for _, f := range []string{filepath.Join(apiInc, "torch", "torch.h"), filepath.Join(lib, "libtorch.so")} {
		if !exists(f) {
			return nil, fmt.Errorf("%w: the PyTorch of %s (%s) lacks %s: it ships no C++ headers or libraries\n%s", ErrNotFound, py, info.TorchDir, f, hint)
		}
	}
	lt := &Libtorch{
		Source:      "python",
		Root:        py,
		Version:     info.Version,
		IncludeDirs: []string{inc, apiInc},
		LibDir:      lib,
		RPath:       append([]string{lib}, info.NvidiaLibs...),
	}
	if err := lt.inspect(); err != nil {
		return nil, err
	}
	// The interpreter knows its ABI for sure; the symbol scan is a guess.
	lt.CXX11ABI = info.CXX11ABI
	return lt, nil
}

// inspect fills in CUDA, the link list and the C++ ABI from the libraries.
func (lt *Libtorch) inspect() error {
	has := func(name string) bool { return exists(filepath.Join(lt.LibDir, name)) }
	lt.Libs = []string{"torch", "torch_cpu", "c10"}
	switch {
	case has("libtorch_cuda.so"):
		lt.CUDA = true
		lt.Libs = append(lt.Libs, "torch_cuda", "c10_cuda")
	case has("libtorch_cuda_cu.so") && has("libtorch_cuda_cpp.so"): // split builds, 1.9-1.12
		lt.CUDA = true
		lt.Libs = append(lt.Libs, "torch_cuda_cu", "torch_cuda_cpp", "c10_cuda")
	}
	for _, l := range lt.Libs {
		if !has("lib" + l + ".so") {
			return fmt.Errorf("%w: %s/lib%s.so is missing", ErrNotFound, lt.LibDir, l)
		}
	}
	abi, err := cxx11ABI(filepath.Join(lt.LibDir, "libc10.so"))
	if err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Join(lt.LibDir, "libc10.so"), err)
	}
	lt.CXX11ABI = abi
	return nil
}

// cxx11ABI reports whether a library exports symbols of libstdc++'s new
// (C++11) ABI, whose mangled names carry the tag "cxx11".
func cxx11ABI(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return false, err
	}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF && strings.Contains(s.Name, "B5cxx11") {
			return true, nil
		}
	}
	return false, nil
}

// Fingerprint identifies the installation for build caching: it changes
// when the libraries or headers are replaced.
func (lt *Libtorch) Fingerprint() string {
	var b strings.Builder
	j, _ := json.Marshal(lt)
	b.Write(j)
	files := []string{}
	for _, l := range lt.Libs {
		files = append(files, filepath.Join(lt.LibDir, "lib"+l+".so"))
	}
	files = append(files, filepath.Join(lt.IncludeDirs[len(lt.IncludeDirs)-1], "torch", "version.h"))
	sort.Strings(files)
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "|%s:%d:%d", f, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// Describe is a one-line summary for people.
func (lt *Libtorch) Describe() string {
	dev := "CPU"
	if lt.CUDA {
		dev = "CUDA"
	}
	abi := "pre-cxx11 ABI"
	if lt.CXX11ABI {
		abi = "cxx11 ABI"
	}
	return fmt.Sprintf("libtorch %s (%s, %s, %s) at %s", lt.Version, lt.Source, dev, abi, lt.Root)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
