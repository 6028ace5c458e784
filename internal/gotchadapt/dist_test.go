package gotchadapt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDistStubBuildsWithoutLibtorch: the fallback shim compiles with no
// libtorch or Gloo headers at all and carries the reason, quoted safely.
func TestDistStubBuildsWithoutLibtorch(t *testing.T) {
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("no g++")
	}
	dir := t.TempDir()
	reason := `no "gloo/config.h" here \ (test)`
	src := filepath.Join(dir, "stub.cpp")
	if err := os.WriteFile(src, []byte(distVariant{}.source(reason)), 0o644); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "stub.o")
	if out, err := exec.Command(cxx, "-std=c++17", "-c", src, "-o", obj).CombinedOutput(); err != nil {
		t.Fatalf("stub does not compile: %v\n%s", err, out)
	}
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), reason) {
		t.Errorf("the object does not carry the reason %q", reason)
	}
}

func TestDistVariants(t *testing.T) {
	cpu := distVariants(&Libtorch{})
	if len(cpu) == 0 || cpu[0].name != "gloo" {
		t.Fatalf("CPU libtorch: variants %+v, want gloo first", cpu)
	}
	for _, v := range cpu {
		if strings.Contains(v.name, "nccl") {
			t.Errorf("CPU libtorch tries NCCL: %+v", v)
		}
	}
	cuda := distVariants(&Libtorch{CUDA: true})
	if cuda[0].name != "gloo,nccl" || !strings.Contains(strings.Join(cuda[0].defines, " "), "USE_C10D_NCCL") {
		t.Fatalf("CUDA libtorch: variants %+v, want gloo,nccl first", cuda)
	}
	if src := cuda[0].source(""); !strings.HasPrefix(src, "#define PRISM_DIST_NCCL 1\n") {
		t.Errorf("source does not start with the defines: %.80q", src)
	}
}
