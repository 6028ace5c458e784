package gotchadapt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestBuildUnitsDisables compiles a small fake binding with the real C++
// compiler: a function that calls something missing must be disabled, the
// rest kept, and the disabled one must report its error when called.
func TestBuildUnitsDisables(t *testing.T) {
	cxx := "g++"
	if _, err := exec.LookPath(cxx); err != nil {
		t.Fatalf("g++ is needed to build prism: %v", err)
	}
	dir := t.TempDir()
	pre := "#include <cstring>\n#include <cstdint>\ninline thread_local char *torch_last_err = nullptr;\nnamespace torch { inline int64_t ok(int64_t x) { return 2 * x; } }\nextern \"C\" {\nint64_t atg_good(int64_t x);\nint64_t atg_bad(int64_t x);\nvoid atg_bad_void(int64_t *out);\n}\n"
	src := "int64_t atg_good(int64_t x) {\n  return torch::ok(x);\n}\n\nint64_t atg_bad(int64_t x) {\n  return torch::missing(x);\n}\n\nvoid atg_bad_void(int64_t *out) {\n  *out = torch::also_missing();\n}\n"
	segs, err := splitTopLevel(src)
	if err != nil {
		t.Fatal(err)
	}
	u := &unit{name: "gen_00.cpp", preamble: pre, segs: segs, disabled: map[string]bool{}}
	c := &compiler{cxx: cxx, args: []string{"-std=c++17", "-fPIC", "-O0", "-w"}, identity: "test", cacheDir: filepath.Join(dir, "cache"), workDir: dir}
	if err := os.MkdirAll(c.cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	api := map[string]bool{"atg_good": true, "atg_bad": true, "atg_bad_void": true}
	msg := func(n string) string { return n + " is not available" }
	noLink := func([]string) (string, error) { return "", nil }
	objs, err := buildUnits(context.Background(), c, []*unit{u}, api, 1, msg, noLink, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]bool{"atg_bad": true, "atg_bad_void": true}; !mapsEqual(u.disabled, want) {
		t.Fatalf("disabled = %v, want %v", u.disabled, want)
	}
	// Link the object into a program that calls all three.
	main := filepath.Join(dir, "main.cpp")
	prog := `#include <cstdio>
#include <cstdint>
inline thread_local char *torch_last_err = nullptr;
extern "C" { int64_t atg_good(int64_t); int64_t atg_bad(int64_t); void atg_bad_void(int64_t *); }
int main() {
  std::printf("%ld\n", (long)atg_good(21));
  std::printf("[%s]\n", torch_last_err ? torch_last_err : "");
  long r = (long)atg_bad(1);
  std::printf("%ld %s\n", r, torch_last_err);
  torch_last_err = nullptr;
  int64_t v = 7; atg_bad_void(&v);
  std::printf("%ld %s\n", (long)v, torch_last_err);
}
`
	if err := os.WriteFile(main, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "prog")
	if out, err := exec.Command(cxx, append([]string{"-std=c++17", "-o", bin, main}, objs...)...).CombinedOutput(); err != nil {
		t.Fatalf("link: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "42\n[]\n0 atg_bad is not available\n7 atg_bad_void is not available\n"
	if string(out) != want {
		t.Fatalf("program printed %q, want %q", out, want)
	}

	// A second build of the same sources comes from the object cache.
	u2 := &unit{name: "gen_00.cpp", preamble: pre, segs: segs, disabled: map[string]bool{}}
	c.cxx = "/nonexistent/compiler"
	if _, err := buildUnits(context.Background(), c, []*unit{u2}, api, 1, msg, noLink, t.Logf); err != nil {
		t.Fatalf("rebuild did not come from the cache: %v", err)
	}
}

// TestBuildUnitsRefusesNonAPI: a failure in a function that is not part of
// the C API (a C++ helper) cannot be papered over.
func TestBuildUnitsRefusesNonAPI(t *testing.T) {
	dir := t.TempDir()
	segs, err := splitTopLevel("int helper(int x) {\n  return missing(x);\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	u := &unit{name: "torch_api.cpp", segs: segs, disabled: map[string]bool{}}
	c := &compiler{cxx: "g++", args: []string{"-std=c++17", "-w"}, identity: "test", workDir: dir}
	_, err = buildUnits(context.Background(), c, []*unit{u}, map[string]bool{}, 1, func(string) string { return "" }, func([]string) (string, error) { return "", nil }, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "helper") {
		t.Fatalf("err = %v, want one naming helper", err)
	}
}

func mapsEqual(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// fakeLibtorch lays out a libtorch folder whose libraries are copies of a
// real shared library (for the ELF ABI check).
func fakeLibtorch(t *testing.T, cuda bool, elfLib string) string {
	t.Helper()
	root := t.TempDir()
	api := filepath.Join(root, "include", "torch", "csrc", "api", "include", "torch")
	lib := filepath.Join(root, "lib")
	for _, d := range []string{api, lib} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(api, "torch.h"), "")
	write(filepath.Join(api, "version.h"), "#define TORCH_VERSION \\\n  \"2.1.0\"\n")
	libs := []string{"torch", "torch_cpu", "c10"}
	if cuda {
		libs = append(libs, "torch_cuda", "c10_cuda")
	}
	for _, l := range libs {
		if err := copyFile(elfLib, filepath.Join(lib, "lib"+l+".so")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func libstdcxx(t *testing.T) string {
	out, err := exec.Command("g++", "-print-file-name=libstdc++.so").Output()
	if err != nil {
		t.Fatal(err)
	}
	p, err := filepath.EvalSymlinks(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLocateFolder(t *testing.T) {
	root := fakeLibtorch(t, true, libstdcxx(t))
	lt, err := Locate(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if lt.Source != "folder" || lt.Version != "2.1.0" || !lt.CUDA {
		t.Fatalf("got %+v", lt)
	}
	// libstdc++ exports new-ABI symbols.
	if !lt.CXX11ABI {
		t.Error("CXX11ABI = false for a library with cxx11 symbols")
	}
	if !slices.Contains(lt.Libs, "torch_cuda") || !slices.Contains(lt.RPath, filepath.Join(root, "lib")) {
		t.Errorf("libs %v rpath %v", lt.Libs, lt.RPath)
	}
	if err := os.WriteFile(filepath.Join(root, "build-version"), []byte("2.1.0+cu121\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if lt, err = Locate(context.Background(), root); err != nil || lt.Version != "2.1.0+cu121" {
		t.Fatalf("with build-version: %+v, %v", lt, err)
	}
	libs := lt.libFlags()
	if !strings.Contains(libs, "-Wl,-rpath,"+filepath.Join(root, "lib")) || !strings.Contains(libs, "-ltorch_cuda") {
		t.Errorf("lib.go flags miss rpath or CUDA: %s", libs)
	}
}

func (lt *Libtorch) libFlags() string { return libGo(lt, nil) }

func TestLocateErrors(t *testing.T) {
	ctx := context.Background()
	empty := t.TempDir()
	tests := []struct {
		spec string
		want string
	}{
		{filepath.Join(empty, "nope"), "no such file"},
		{empty, "not a libtorch folder"},
	}
	for _, tt := range tests {
		_, err := Locate(ctx, tt.spec)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "LIBTORCH=") {
			t.Errorf("Locate(%q) = %v; want ErrNotFound mentioning %q and how to set LIBTORCH", tt.spec, err, tt.want)
		}
	}
	// A python without torch.
	py := filepath.Join(empty, "python3")
	if err := os.WriteFile(py, []byte("#!/bin/sh\necho 'ModuleNotFoundError: No module named torch' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Locate(ctx, py)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "No module named torch") {
		t.Errorf("python without torch: %v", err)
	}
}

// TestLocatePython uses a stand-in interpreter that answers the probe the
// way a pip-installed CUDA PyTorch does.
func TestLocatePython(t *testing.T) {
	root := fakeLibtorch(t, true, libstdcxx(t))
	site := t.TempDir()
	torchDir := filepath.Join(site, "torch")
	if err := os.Rename(root, torchDir); err != nil {
		t.Fatal(err)
	}
	info := map[string]any{
		"torch_dir": torchDir, "version": "2.11.0+cu130", "cxx11_abi": true, "cuda": "13.0",
		"nvidia_libs": []string{filepath.Join(site, "nvidia", "cublas", "lib")},
	}
	j, _ := json.Marshal(info)
	py := filepath.Join(t.TempDir(), "python3")
	if err := os.WriteFile(py, []byte("#!/bin/sh\ncat <<'EOF'\n"+string(j)+"\nEOF\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lt, err := Locate(context.Background(), py)
	if err != nil {
		t.Fatal(err)
	}
	if lt.Source != "python" || lt.Version != "2.11.0+cu130" || !lt.CUDA || !lt.CXX11ABI {
		t.Fatalf("got %+v", lt)
	}
	if !slices.Contains(lt.RPath, filepath.Join(site, "nvidia", "cublas", "lib")) || !slices.Contains(lt.RPath, filepath.Join(torchDir, "lib")) {
		t.Errorf("rpath %v lacks torch/lib or the nvidia wheels", lt.RPath)
	}
}

// pristineGotch returns the module-cache copy of gotch.
func pristineGotch(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/sugarme/gotch@"+GotchVersion)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download gotch: %v", err)
	}
	var info struct{ Dir string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("go mod download gotch: %s", out)
	}
	return info.Dir
}

// TestPatchesApplyToGotch checks the text patches against the real gotch
// release: they must all apply, and the generated units must cover every
// generated function exactly once.
func TestPatchesApplyToGotch(t *testing.T) {
	src := pristineGotch(t)
	h, err := os.ReadFile(filepath.Join(src, "libtch", "torch_api.h"))
	if err != nil {
		t.Fatal(err)
	}
	ph, err := patchHeader(string(h))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ph, "what_without_backtrace") || !strings.Contains(ph, "inline thread_local") {
		t.Error("header patch incomplete")
	}
	dst := t.TempDir()
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	if err := patchGo(dst); err != nil {
		t.Fatal(err)
	}
	e, _ := os.ReadFile(filepath.Join(dst, "ts", "error.go"))
	if bytes.Contains(e, []byte("debug.Stack")) {
		t.Error("ts/error.go still appends a stack trace")
	}
	if out, err := exec.Command("gofmt", "-l", filepath.Join(dst, "ts", "error.go")).CombinedOutput(); err != nil {
		t.Errorf("patched error.go does not parse: %v %s", err, out)
	}

	api, _ := os.ReadFile(filepath.Join(src, "libtch", "torch_api.cpp"))
	gen, _ := os.ReadFile(filepath.Join(src, "libtch", "torch_api_generated.cpp.h"))
	units, total, err := makeUnits(string(api), string(gen), 7)
	if err != nil {
		t.Fatal(err)
	}
	defs := regexp.MustCompile(`(?m)^[a-z].*\b(atg_\w+)\(.*\{$`).FindAllStringSubmatch(string(gen), -1)
	if total != len(defs) {
		t.Errorf("units count %d functions, the file defines %d", total, len(defs))
	}
	seen := map[string]int{}
	for _, u := range units {
		for _, s := range u.segs {
			if strings.HasPrefix(s.name, "atg_") {
				seen[s.name]++
			}
		}
	}
	for _, d := range defs {
		if seen[d[1]] != 1 {
			t.Errorf("%s appears %d times in the units", d[1], seen[d[1]])
		}
	}
}

// TestPatchOptionalTensors: every optional tensor argument of the real
// binding is rewritten so that a null or undefined handle is passed as
// absent, and text that is not the expected pattern is refused.
func TestPatchOptionalTensors(t *testing.T) {
	gen, err := os.ReadFile(filepath.Join(pristineGotch(t), "libtch", "torch_api_generated.cpp.h"))
	if err != nil {
		t.Fatal(err)
	}
	before := strings.Count(string(gen), ": torch::Tensor())")
	out, err := patchOptionalTensors(string(gen))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, ": torch::Tensor())"); n != 0 || before < 100 {
		t.Errorf("%d of %d optional tensor arguments left unpatched", n, before)
	}
	if n := strings.Count(out, "->defined()) ? c10::optional<at::Tensor>("); n != before {
		t.Errorf("%d arguments patched, want %d", n, before)
	}
	const sdpa = "torch::scaled_dot_product_attention(*query, *key, *value, ((attn_mask && attn_mask->defined()) ? c10::optional<at::Tensor>(*attn_mask) : c10::optional<at::Tensor>()), dropout_p"
	if !strings.Contains(out, sdpa) {
		t.Error("scaled_dot_product_attention's attn_mask is not passed as optional")
	}
	if _, err := patchOptionalTensors("f((a ? *b : torch::Tensor()));"); err == nil {
		t.Error("an argument that tests one handle and passes another was accepted")
	}
	if _, err := patchOptionalTensors("nothing here"); err == nil {
		t.Error("a binding with no optional tensors was accepted")
	}
}

// TestSourceIDCoversTheShim: the build fingerprint hashes the adapter's own
// sources, C++ shim included, so editing them rebuilds old build folders.
func TestSourceIDCoversTheShim(t *testing.T) {
	for _, f := range []string{"csrc/dist.cpp", "adapt.go", "dist.go", "native.go"} {
		if _, err := adapterSources.ReadFile(f); err != nil {
			t.Errorf("%s is not among the fingerprinted sources: %v", f, err)
		}
	}
	id := sourceID()
	if len(id) != 64 || id != sourceID() {
		t.Errorf("sourceID %q is not a stable sha256", id)
	}
}
