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
// its pinned versions are the Makefile's, it verifies the libtorch
// checksum, and it builds through the same `make setup` as everyone else.
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
		{"LIBTORCH_CUDA_VERSION", "LIBTORCH_VERSION"},
		{"LIBTORCH_CUDA_VARIANT", "LIBTORCH_VARIANT"},
		{"GO_VERSION", "GO_VERSION"},
	}
	for _, p := range pairs {
		if m, d := makeVar(p[0]), dockerArg(p[1]); m != d {
			t.Errorf("Makefile %s = %s but Dockerfile.cuda %s = %s", p[0], m, p[1], d)
		}
	}
	if v := makeVar("LIBTORCH_CUDA_VERSION"); v != GotchTarget {
		t.Errorf("the CUDA image pins libtorch %s but gotch %s targets %s", v, GotchVersion, GotchTarget)
	}
	s := string(df)
	for _, want := range []string{
		"sha256sum -c",                        // the download is verified
		"libtorch-cxx11-abi-shared-with-deps", // the cxx11 ABI build
		"make setup LIBTORCH=/opt/libtorch",   // the same setup path
		`ENTRYPOINT ["prism"]`,
		"nvidia/cuda:12.1",
		"cudnn",
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
	if !regexp.MustCompile(`(?m)^ARG LIBTORCH_SHA256\s*$`).MatchString(s) || !strings.Contains(s, `test -n "${LIBTORCH_SHA256}"`) {
		t.Error("Dockerfile.cuda must require the libtorch checksum as an input")
	}
}
