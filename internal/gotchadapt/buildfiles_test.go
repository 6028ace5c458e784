package gotchadapt

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerfileMatchesMakefile: Dockerfile.cuda cannot be built on the
// development machines (no Docker engine), so check what can be checked:
// its pinned versions are the Makefile's, its PyTorch is the libtorch 2.6
// that the Debian 13 lane tests, and it builds through the same `make
// setup` as everyone else, against that PyTorch's libtorch.
func TestDockerfileMatchesMakefile(t *testing.T) {
	root := filepath.Join("..", "..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile.cuda"))
	if err != nil {
		t.Fatal(err)
	}
	makeVar := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `\s*:=\s*(\S+)\s*$`).FindSubmatch(mk)
		if m == nil {
			t.Fatalf("Makefile has no %s := ...", name)
		}
		return string(m[1])
	}
	dockerArg := func(name string) string {
		m := regexp.MustCompile(`(?m)^ARG ` + name + `=(\S+)\s*$`).FindSubmatch(df)
		if m == nil {
			t.Fatalf("Dockerfile.cuda has no ARG %s=...", name)
		}
		return string(m[1])
	}
	pairs := [][2]string{
		{"PYTORCH_CUDA_IMAGE", "PYTORCH_IMAGE"},
		{"GO_VERSION", "GO_VERSION"},
	}
	for _, p := range pairs {
		if m, d := makeVar(p[0]), dockerArg(p[1]); m != d {
			t.Errorf("Makefile %s = %s but Dockerfile.cuda %s = %s", p[0], m, p[1], d)
		}
	}
	img := regexp.MustCompile(`^pytorch/pytorch:(\d+\.\d+)\.\d+-cuda[0-9.]+-cudnn\d+$`).FindStringSubmatch(makeVar("PYTORCH_CUDA_IMAGE"))
	if img == nil || img[1] != "2.6" {
		t.Errorf("PYTORCH_CUDA_IMAGE %s: want PyTorch's own pytorch/pytorch:2.6.x-cudaX-cudnnY (the libtorch the Debian 13 lane tests)", makeVar("PYTORCH_CUDA_IMAGE"))
	}
	s := string(df)
	for _, want := range []string{
		"FROM ${PYTORCH_IMAGE}-devel AS build",
		"FROM ${PYTORCH_IMAGE}-runtime",
		"make setup LIBTORCH=python", // the same setup path, against the image's PyTorch
		"RUN prism version",          // the binary loads its libtorch in the final image
		`ENTRYPOINT ["prism"]`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile.cuda lacks %q", want)
		}
	}
	// The last USER of the final stage must not be root.
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(s, -1)
	if len(users) == 0 || users[len(users)-1][1] == "root" || users[len(users)-1][1] == "0" {
		t.Error("Dockerfile.cuda runs prism as root")
	}
}
