// Package gotchadapt prepares a copy of gotch (github.com/sugarme/gotch)
// whose native binding builds and links against the libtorch found on this
// machine.
//
// gotch's C++ binding is generated for one libtorch release and its cgo
// flags name its author's paths. Adapt copies the pristine module into a
// build folder, writes cgo flags for the libtorch found, compiles the C++
// binding (split into units compiled in parallel, with an object cache) into
// a static library, and turns every generated function this libtorch cannot
// compile or link into one that returns an error naming the function and
// the libtorch version.
package gotchadapt

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Version names the adaptation scheme. Build folders are rebuilt when it
// changes, and also whenever the adapter's own sources change (see
// sourceID), so a change to the C++ shim or a patch needs no bump here.
const Version = "8"

// adapterSources is the adapter itself: its Go files and the C++ shim.
//
//go:embed *.go csrc
var adapterSources embed.FS

// sourceID hashes the adapter's sources (tests excluded): any change to
// what the adaptation does changes the build folder's fingerprint.
func sourceID() string {
	h := sha256.New()
	_ = fs.WalkDir(adapterSources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := adapterSources.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// GotchVersion is the gotch release the adaptation is written for.
const GotchVersion = "v0.9.1"

// GotchTarget is the libtorch release gotch's binding was generated for.
const GotchTarget = "2.1.0"

// Options control Adapt.
type Options struct {
	// GotchSrc is the pristine gotch module folder.
	GotchSrc string
	// Out is the build folder; the adapted module goes to Out/gotch.
	Out string
	// CacheDir keeps compiled objects across build folders ("" disables).
	CacheDir string
	// Jobs is the number of compilers run at once.
	Jobs int
	// Units is the number of translation units the generated binding is
	// split into.
	Units int
	// CXX is the C++ compiler.
	CXX string
	// OptFlag is the optimisation flag for the binding, e.g. "-O2".
	OptFlag string
	// Log receives progress lines.
	Log io.Writer
}

// Stamp describes a finished adaptation. It is saved as
// Out/gotch/prism-adapt.json and decides whether a rerun has work to do.
type Stamp struct {
	Fingerprint string    `json:"fingerprint"`
	Libtorch    *Libtorch `json:"libtorch"`
	Compiler    string    `json:"compiler"`
	Generated   int       `json:"generated_functions"`
	Disabled    []string  `json:"disabled_functions"`
	// DisabledOther lists hand-written binding functions that were disabled.
	DisabledOther []string `json:"disabled_other_functions,omitempty"`
	// Dist names the c10d process groups the shim was built with
	// ("gloo", "gloo,nccl"; "" when none), DistLibs the libraries it
	// needed beyond libtorch's and DistNote why it has none.
	Dist     string    `json:"dist_backends"`
	DistLibs []string  `json:"dist_libs,omitempty"`
	DistNote string    `json:"dist_note,omitempty"`
	Seconds  float64   `json:"build_seconds"`
	Built    time.Time `json:"built"`
}

// Result is what Adapt did.
type Result struct {
	Stamp
	UpToDate bool
	Dir      string // the adapted module
}

// Adapt builds (or finds up to date) the adapted gotch module for lt.
func Adapt(ctx context.Context, lt *Libtorch, opt Options) (*Result, error) {
	if opt.CXX == "" {
		opt.CXX = "g++"
	}
	if opt.OptFlag == "" {
		opt.OptFlag = "-O2"
	}
	if opt.Jobs <= 0 {
		opt.Jobs = 1
	}
	if opt.Units <= 0 {
		opt.Units = max(4, 2*opt.Jobs)
	}
	logf := func(format string, args ...any) {
		if opt.Log != nil {
			fmt.Fprintf(opt.Log, format+"\n", args...)
		}
	}
	cxxVersion, err := compilerVersion(ctx, opt.CXX)
	if err != nil {
		return nil, err
	}
	srcID, err := treeID(opt.GotchSrc)
	if err != nil {
		return nil, fmt.Errorf("reading gotch source %s: %w", opt.GotchSrc, err)
	}
	fp := fingerprint(Version, sourceID(), srcID, lt.Fingerprint(), cxxVersion, opt.OptFlag, distProbe(lt))
	dst := filepath.Join(opt.Out, "gotch")
	if st, err := readStamp(dst); err == nil && st.Fingerprint == fp && complete(dst) {
		return &Result{Stamp: *st, UpToDate: true, Dir: dst}, nil
	}

	start := time.Now()
	tmp := dst + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := copyTree(opt.GotchSrc, tmp); err != nil {
		return nil, fmt.Errorf("copying gotch: %w", err)
	}
	lib := filepath.Join(tmp, "libtch")
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(lib, name))
		return string(b), err
	}
	apiCpp, err := read("torch_api.cpp")
	if err != nil {
		return nil, err
	}
	genCpp, err := read("torch_api_generated.cpp.h")
	if err != nil {
		return nil, err
	}
	apiH, err := read("torch_api.h")
	if err != nil {
		return nil, err
	}
	genH, err := read("torch_api_generated.h")
	if err != nil {
		return nil, err
	}
	apiH, err = patchHeader(apiH)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(lib, "torch_api.h"), []byte(apiH), 0o644); err != nil {
		return nil, err
	}
	if err := patchGo(tmp); err != nil {
		return nil, err
	}
	// cgo compiles every C++ file in a package folder; move the binding out
	// so it is built once, here, instead of by every go build.
	for _, f := range []string{"torch_api.cpp", "torch_api_generated.cpp.h"} {
		if err := os.Remove(filepath.Join(lib, f)); err != nil {
			return nil, err
		}
	}

	if genCpp, err = patchOptionalTensors(genCpp); err != nil {
		return nil, err
	}
	units, total, err := makeUnits(apiCpp, genCpp, opt.Units)
	if err != nil {
		return nil, err
	}
	logf("gotch %s: %d generated functions in %d units; compiling with %d jobs against %s", GotchVersion, total, len(units), opt.Jobs, lt.Describe())

	native := filepath.Join(tmp, "native")
	if err := os.MkdirAll(native, 0o755); err != nil {
		return nil, err
	}
	if opt.CacheDir != "" {
		if err := os.MkdirAll(opt.CacheDir, 0o755); err != nil {
			return nil, fmt.Errorf("object cache: %w", err)
		}
	}
	args := []string{"-std=c++17", "-fPIC", opt.OptFlag, "-w", "-fmax-errors=0",
		fmt.Sprintf("-D_GLIBCXX_USE_CXX11_ABI=%d", b2i(lt.CXX11ABI)), "-I../libtch"}
	for _, d := range lt.IncludeDirs {
		args = append(args, "-I"+d)
	}
	headerSum := sha256.Sum256([]byte(apiH + genH))
	c := &compiler{
		cxx:      opt.CXX,
		args:     args,
		identity: strings.Join([]string{cxxVersion, strings.Join(args, " "), hex.EncodeToString(headerSum[:]), lt.Fingerprint()}, "\x00"),
		cacheDir: opt.CacheDir,
		workDir:  native,
	}
	msg := func(name string) string {
		return fmt.Sprintf("%s is not available: it does not build against libtorch %s (gotch %s targets libtorch %s)", name, lt.Version, GotchVersion, GotchTarget)
	}
	archive := filepath.Join(native, "libprismtch.a")
	linkCheck := func(objs []string) (string, error) {
		return linkProbe(ctx, opt.CXX, native, objs, archive, lt)
	}
	api := apiNames(apiH, genH)
	api[probeName] = true
	objs, err := buildUnits(ctx, c, units, api, opt.Jobs, msg, linkCheck, logf)
	if err != nil {
		return nil, err
	}
	distName, distLibs, distNote, err := buildDist(ctx, c, lt, objs, archive, logf)
	if err != nil {
		return nil, err
	}
	if distName != "" {
		logf("c10d shim: %s process groups", distName)
	}

	var disabled, other []string
	probed := false
	for _, u := range units {
		for n := range u.disabled {
			if n == probeName {
				probed = true
				continue
			}
			if strings.HasPrefix(n, "atg_") {
				disabled = append(disabled, n)
			} else {
				other = append(other, n)
			}
		}
	}
	if !probed {
		return nil, fmt.Errorf("%s compiled: the adapter cannot tell functions that do not build from ones that do", probeName)
	}
	sort.Strings(disabled)
	sort.Strings(other)
	st := Stamp{
		Fingerprint:   fp,
		Libtorch:      lt,
		Compiler:      cxxVersion,
		Generated:     total,
		Disabled:      disabled,
		DisabledOther: other,
		Dist:          distName,
		DistLibs:      distLibs,
		DistNote:      distNote,
		Seconds:       time.Since(start).Seconds(),
		Built:         time.Now().UTC(),
	}
	if err := os.WriteFile(filepath.Join(lib, "lib.go"), []byte(libGo(lt, distLibs)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(lib, "prism_adapt.go"), []byte(adaptGo(&st)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(lib, "prism_dist.go"), []byte(distGo(&st)), 0o644); err != nil {
		return nil, err
	}
	list := strings.Join(append(append([]string{}, disabled...), other...), "\n")
	if list != "" {
		list += "\n"
	}
	if err := os.WriteFile(filepath.Join(tmp, "DISABLED.txt"), []byte(list), 0o644); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "prism-adapt.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	// Swap the finished tree in: an interrupted run never leaves a folder
	// that looks complete.
	if err := os.RemoveAll(dst); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return nil, err
	}
	return &Result{Stamp: st, Dir: dst}, nil
}

// makeUnits splits the hand-written binding and the generated one into
// translation units.
func makeUnits(apiCpp, genCpp string, n int) ([]*unit, int, error) {
	const genInclude = `#include "torch_api_generated.cpp.h"`
	if !strings.Contains(apiCpp, genInclude) {
		return nil, 0, fmt.Errorf("torch_api.cpp no longer includes the generated binding: not gotch %s?", GotchVersion)
	}
	apiCpp = strings.Replace(apiCpp, genInclude, "", 1)
	apiSegs, err := splitTopLevel(apiCpp)
	if err != nil {
		return nil, 0, fmt.Errorf("torch_api.cpp: %w", err)
	}
	genSegs, err := splitTopLevel(genCpp)
	if err != nil {
		return nil, 0, fmt.Errorf("torch_api_generated.cpp.h: %w", err)
	}
	// The generated units include what torch_api.cpp includes, minus the
	// image library, whose implementation belongs in one unit only.
	var pre strings.Builder
	for _, l := range strings.Split(apiCpp, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#include") && !strings.Contains(t, "stb_image") {
			pre.WriteString(t + "\n")
		}
	}
	pre.WriteString("using namespace std;\n")
	units := []*unit{{name: "torch_api.cpp", segs: apiSegs, disabled: map[string]bool{}}}
	var funcs []segment
	total := 0
	for _, s := range genSegs {
		if s.name != "" {
			total++
		}
		funcs = append(funcs, s)
	}
	per := (len(funcs) + n - 1) / n
	for i := 0; i*per < len(funcs); i++ {
		end := min((i+1)*per, len(funcs))
		units = append(units, &unit{
			name:     fmt.Sprintf("gen_%02d.cpp", i),
			preamble: pre.String(),
			segs:     funcs[i*per : end],
			disabled: map[string]bool{},
		})
	}
	probe, err := splitTopLevel(probeCpp)
	if err != nil {
		return nil, 0, fmt.Errorf("probe: %w", err)
	}
	units = append(units,
		&unit{name: "prism_extra.cpp", segs: []segment{{text: extraCpp}}, disabled: map[string]bool{}, strict: true},
		&unit{name: "prism_probe.cpp", preamble: pre.String(), segs: probe, disabled: map[string]bool{}})
	return units, total, nil
}

// probeName is a function that never compiles: it goes through the same
// disabling as a generated function this libtorch lacks, on every libtorch,
// so the mechanism is tested even where nothing real is disabled.
const probeName = "prism_disabled_probe"

const probeCpp = `extern "C" void prism_disabled_probe(tensor *out__);
void prism_disabled_probe(tensor *out__) {
  PROTECT(
    out__[0] = new torch::Tensor(torch::prism_no_such_operator());
  )
}
`

// extraCpp adds what prism needs from libtorch beyond gotch's binding.
const extraCpp = `#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <cstring>
#include <string>

extern "C" {
char *prism_show_config() {
  try {
    return strdup(at::show_config().c_str());
  } catch (...) {
    return nullptr;
  }
}
char *prism_parallel_info() {
  try {
    return strdup(at::get_parallel_info().c_str());
  } catch (...) {
    return nullptr;
  }
}
}
`

var optionalTensor = regexp.MustCompile(`\((\w+) \? \*(\w+) : torch::Tensor\(\)\)`)

// patchOptionalTensors makes the generated binding pass an optional tensor
// argument (Tensor? in ATen's schema) as absent when gotch's handle is null
// or holds an undefined tensor. gotch passes an undefined tensor inside the
// optional instead, which most operators treat as absent but some check
// with has_value(): scaled_dot_product_attention with is_causal and no mask
// fails with "Expected attn_mask dtype to be bool or float".
func patchOptionalTensors(gen string) (string, error) {
	n := 0
	var bad string
	gen = optionalTensor.ReplaceAllStringFunc(gen, func(m string) string {
		sub := optionalTensor.FindStringSubmatch(m)
		if sub[1] != sub[2] {
			bad = m
			return m
		}
		n++
		v := sub[1]
		return fmt.Sprintf("((%s && %s->defined()) ? c10::optional<at::Tensor>(*%s) : c10::optional<at::Tensor>())", v, v, v)
	})
	if bad != "" {
		return "", fmt.Errorf("torch_api_generated.cpp.h: unexpected optional tensor argument %q (not gotch %s?)", bad, GotchVersion)
	}
	if n < 100 {
		return "", fmt.Errorf("torch_api_generated.cpp.h: only %d optional tensor arguments found (not gotch %s?)", n, GotchVersion)
	}
	return gen, nil
}

// patchHeader makes torch_api.h usable from several translation units and
// keeps libtorch's C++ backtraces out of error messages.
func patchHeader(h string) (string, error) {
	r := []struct{ old, new string }{
		{"thread_local char *torch_last_err = nullptr;", "inline thread_local char *torch_last_err = nullptr;"},
		{"  } catch (const exception &e) {                                               \\\n",
			"  } catch (const c10::Error &e) {                                                \\\n" +
				"    torch_last_err = strdup(e.what_without_backtrace());                     \\\n" +
				"  } catch (const exception &e) {                                               \\\n"},
	}
	for _, x := range r {
		if !strings.Contains(h, x.old) {
			return "", fmt.Errorf("torch_api.h: expected text not found (not gotch %s?): %q", GotchVersion, x.old)
		}
		h = strings.Replace(h, x.old, x.new, 1)
	}
	return h, nil
}

// patchGo drops the Go stack trace gotch appends to every libtorch error:
// errors are for people, and they carry their own context.
func patchGo(root string) error {
	p := filepath.Join(root, "ts", "error.go")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	s := string(b)
	r := []struct{ old, new string }{
		{"\t\ttrace := string(debug.Stack())\n\t\treturn fmt.Errorf(\"Libtorch API Error: %v\\n%v\\n\", errStr, trace)",
			"\t\treturn fmt.Errorf(\"libtorch: %v\", strings.TrimSpace(errStr))"},
		{"\t\"runtime/debug\"\n", "\t\"strings\"\n"},
	}
	for _, x := range r {
		if !strings.Contains(s, x.old) {
			return fmt.Errorf("%s: expected text not found (not gotch %s?): %q", p, GotchVersion, x.old)
		}
		s = strings.Replace(s, x.old, x.new, 1)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		return err
	}
	// AtGradSetEnabled reads its 4-byte C int result as an 8-byte Go int,
	// so the previous grad mode it reports is garbage and GradSetEnabled
	// says "disabled" whatever the state was: nothing could restore it.
	p = filepath.Join(root, "libtch", "tensor.go")
	if b, err = os.ReadFile(p); err != nil {
		return err
	}
	s = string(b)
	old := "\tcretVal := C.at_grad_set_enabled(cbool)\n\treturn *(*int)(unsafe.Pointer(&cretVal))\n"
	if !strings.Contains(s, old) {
		return fmt.Errorf("%s: expected text not found (not gotch %s?): %q", p, GotchVersion, old)
	}
	s = strings.Replace(s, old, "\tcretVal := C.at_grad_set_enabled(cbool)\n\treturn int(cretVal)\n", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		return err
	}
	return patchOutputs(root)
}

var mallocZero = regexp.MustCompile(`(?m)^([ \t]*)(\w+) := \(\*lib\.Ctensor\)\(unsafe\.Pointer\(C\.malloc\(0\)\)\)[ \t]*$`)

// outSlots is how many output pointers a call may write: gotch's
// multi-output functions write up to a handful.
const outSlots = 16

// patchOutputs fixes how gotch allocates the array a C call writes its
// output tensors to. gotch asks for malloc(0), which glibc rounds up to a
// 24-byte chunk, and never frees it: every tensor operation leaks a chunk,
// and functions with four or more outputs write past it. Each allocation
// gets room for outSlots pointers and is freed when the call returns (the
// pointers are copied out before that).
//
// A memory leak per operation makes resident memory grow for as long as a
// run lasts; the 100 kB Go allocation gotch attaches to every tensor (to
// make the garbage collector run often) is dropped too, since prism frees
// tensors explicitly.
func patchOutputs(root string) error {
	for _, f := range []string{"tensor-generated.go", "patch.go", "tensor.go"} {
		p := filepath.Join(root, "ts", f)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		n := 0
		for i, l := range lines {
			m := mallocZero.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			free := fmt.Sprintf("defer C.free(unsafe.Pointer(%s))", m[2])
			lines[i] = fmt.Sprintf("%s%s := (*lib.Ctensor)(C.malloc(C.size_t(%d * unsafe.Sizeof(uintptr(0)))))", m[1], m[2], outSlots)
			if i+1 < len(lines) && strings.Contains(lines[i+1], free) {
				continue // already freed
			}
			lines[i] += "\n" + m[1] + free
			n++
		}
		if f == "tensor-generated.go" && n < 1000 {
			return fmt.Errorf("%s: only %d output allocations patched (not gotch %s?)", p, n, GotchVersion)
		}
		if f == "tensor-generated.go" {
			// In-place operations return a new handle to the same tensor
			// and gotch swaps it in without freeing the old one. The old
			// handle holds a reference, so a temporary modified in place
			// was never freed: about a megabyte per step of a tiny model.
			k := 0
			for i, l := range lines {
				if strings.TrimSpace(l) == "ts.ctensor = *ptr" {
					lines[i] = strings.Replace(l, "ts.ctensor = *ptr", "lib.AtFree(ts.ctensor)\n  ts.ctensor = *ptr", 1)
					k++
				}
			}
			if k < 100 {
				return fmt.Errorf("%s: only %d in-place operations patched (not gotch %s?)", p, k, GotchVersion)
			}
		}
		s := strings.Join(lines, "\n")
		if f == "tensor.go" {
			// Float64Values leaves its float64 copy to the finalizer; the
			// copy of a tensor inside an autograd graph keeps the whole
			// graph (every saved activation) alive until the collector
			// happens to run.
			for _, r := range [][2]string{
				{"\tx.d = new(bigStruct)\n", ""},
				{"\t// float64Ts.MustDrop()\n", "\tfloat64Ts.MustDrop()\n"},
			} {
				if !strings.Contains(s, r[0]) {
					return fmt.Errorf("%s: expected text not found (not gotch %s?): %q", p, GotchVersion, r[0])
				}
				s = strings.Replace(s, r[0], r[1], 1)
			}
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// linkProbe archives the objects and links them into a throwaway shared
// library with --no-undefined, which finds functions whose libtorch symbols
// exist in the headers but not in the libraries.
func linkProbe(ctx context.Context, cxx, dir string, objs []string, archive string, lt *Libtorch) (string, error) {
	return linkProbeLibs(ctx, cxx, dir, objs, archive, lt, nil)
}

// linkProbeLibs is linkProbe with extra libraries after libtorch's.
func linkProbeLibs(ctx context.Context, cxx, dir string, objs []string, archive string, lt *Libtorch, extra []string) (string, error) {
	_ = os.Remove(archive)
	arArgs := append([]string{"rcs", archive}, objs...)
	if out, err := exec.CommandContext(ctx, "ar", arArgs...).CombinedOutput(); err != nil {
		return string(out), fmt.Errorf("ar: %w", err)
	}
	probe := filepath.Join(dir, "linkprobe.so")
	args := []string{"-shared", "-o", probe, "-Wl,--whole-archive", archive, "-Wl,--no-whole-archive",
		"-L" + lt.LibDir, "-Wl,--no-undefined"}
	for _, l := range append(append([]string{}, lt.Libs...), extra...) {
		args = append(args, "-l"+l)
	}
	args = append(args, "-lstdc++", "-lm", "-lpthread")
	out, err := exec.CommandContext(ctx, cxx, args...).CombinedOutput()
	_ = os.Remove(probe)
	return string(out), err
}

func libGo(lt *Libtorch, extra []string) string {
	var ld []string
	ld = append(ld, "-L${SRCDIR}/../native", "-lprismtch", "-L"+lt.LibDir)
	for _, r := range lt.RPath {
		ld = append(ld, "-Wl,-rpath,"+r)
	}
	// The CUDA libraries register their backend from static initialisers:
	// nothing references them directly, so keep the linker from dropping them.
	ld = append(ld, "-Wl,--no-as-needed")
	for _, l := range append(append([]string{}, lt.Libs...), extra...) {
		ld = append(ld, "-l"+l)
	}
	ld = append(ld, "-Wl,--as-needed", "-lstdc++", "-lm")
	return fmt.Sprintf(`// Code generated by prism's gotch adapter for %s; DO NOT EDIT.

package libtch

// #cgo CFLAGS: -I${SRCDIR} -O2 -Wno-deprecated-declarations
// #cgo LDFLAGS: %s
import "C"
`, lt.Describe(), strings.Join(ld, " "))
}

func adaptGo(st *Stamp) string {
	var names strings.Builder
	for _, n := range append(append([]string{}, st.Disabled...), st.DisabledOther...) {
		fmt.Fprintf(&names, "\t%q,\n", n)
	}
	return fmt.Sprintf(`// Code generated by prism's gotch adapter; DO NOT EDIT.

package libtch

// #include <stdlib.h>
// #include <stdbool.h>
// #include "torch_api.h"
// char *prism_show_config();
// char *prism_parallel_info();
// void prism_disabled_probe(tensor *out__);
import "C"

import "unsafe"

// Facts about the libtorch this copy of gotch was adapted to.
const (
	PrismLibtorchVersion = %q
	PrismLibtorchSource  = %q
	PrismLibtorchRoot    = %q
	PrismLibtorchCUDA    = %v
	PrismCXX11ABI        = %v
	PrismGenerated       = %d
	PrismAdapterVersion  = %q
)

// PrismDisabled lists the binding's functions that this libtorch cannot
// build; each returns an error when called.
var PrismDisabled = []string{
%s}

func prismString(p *C.char) string {
	if p == nil {
		return ""
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoString(p)
}

// PrismShowConfig returns at::show_config(): how libtorch was built.
func PrismShowConfig() string { return prismString(C.prism_show_config()) }

// PrismParallelInfo returns at::get_parallel_info(): the thread settings.
func PrismParallelInfo() string { return prismString(C.prism_parallel_info()) }

// PrismDisabledProbe calls a function the adapter disabled on purpose
// (it never compiles) and returns the error libtorch's binding left, as
// every disabled function does.
func PrismDisabledProbe() string {
	out := (*Ctensor)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)))))
	defer C.free(unsafe.Pointer(out))
	C.prism_disabled_probe((*C.tensor)(unsafe.Pointer(out)))
	return prismString(GetAndResetLastErr())
}

// AtGetNumThreads returns libtorch's intra-op thread count.
func AtGetNumThreads() int { return int(C.at_get_num_threads()) }

// AtSetNumThreads sets libtorch's intra-op thread count.
func AtSetNumThreads(n int) { C.at_set_num_threads(C.int(n)) }

// AtGetNumInteropThreads returns libtorch's inter-op thread count.
func AtGetNumInteropThreads() int { return int(C.at_get_num_interop_threads()) }
`, st.Libtorch.Version, st.Libtorch.Source, st.Libtorch.Root, st.Libtorch.CUDA, st.Libtorch.CXX11ABI, st.Generated, Version, names.String())
}

var firstLine = regexp.MustCompile(`^[^\n]*`)

func compilerVersion(ctx context.Context, cxx string) (string, error) {
	out, err := exec.CommandContext(ctx, cxx, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("the C++ compiler %q does not run (install g++, or set CXX): %w", cxx, err)
	}
	return firstLine.FindString(string(out)), nil
}

// treeID identifies a source tree by its file names, sizes and contents of
// the binding's sources.
func treeID(dir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"libtch/torch_api.cpp", "libtch/torch_api_generated.cpp.h", "libtch/torch_api.h", "ts/error.go", "go.mod"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		h.Write([]byte(f))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fingerprint(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

func readStamp(dir string) (*Stamp, error) {
	b, err := os.ReadFile(filepath.Join(dir, "prism-adapt.json"))
	if err != nil {
		return nil, err
	}
	var st Stamp
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ReadStamp returns the stamp of an adapted module folder.
func ReadStamp(dir string) (*Stamp, error) { return readStamp(dir) }

func complete(dir string) bool {
	for _, f := range []string{"libtch/lib.go", "libtch/prism_adapt.go", "libtch/prism_dist.go", "native/libprismtch.a", "go.mod"} {
		if !exists(filepath.Join(dir, f)) {
			return false
		}
	}
	return true
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// copyTree copies a module folder; files come out writable (the module
// cache is read-only).
// CopyTree copies the regular files and folders under src into dst.
func CopyTree(src, dst string) error { return copyTree(src, dst) }

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func copyFileAtomic(src, dst string) error {
	tmp := fmt.Sprintf("%s.%d.tmp", dst, os.Getpid())
	if err := copyFile(src, tmp); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

func writeFileAtomic(dst string, b []byte) error {
	tmp := fmt.Sprintf("%s.%d.tmp", dst, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// ErrNoGotch is returned when the pristine gotch source cannot be found.
var ErrNoGotch = errors.New("gotch source not found")
