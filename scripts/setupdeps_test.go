package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stub answers as the system tools setup-deps.sh calls, from FAKE_*
// variables, and logs every call to $FAKE_LOG.
const stub = `#!/bin/sh
name=$(basename "$0")
echo "$name $*" >>"$FAKE_LOG"
case "$name" in
dpkg-query)
  for p in $FAKE_INSTALLED; do
    [ "$p" = "$3" ] && { echo "install ok installed"; exit 0; }
  done
  exit 1 ;;
dpkg-architecture) echo x86_64-linux-gnu ;;
id) echo 0 ;;
readelf) [ "$FAKE_GOMP" = 1 ] && echo " 0x1 (NEEDED) Shared library: [libgomp.so.1]"; exit 0 ;;
update-alternatives)
  if [ "$1" = --query ]; then
    echo "Name: $2"
    echo "Status: $FAKE_ALT_STATUS"
    echo "Value: $FAKE_ALT_VALUE/${2%-x86_64-linux-gnu}"
  fi ;;
esac
exit 0
`

type deps struct {
	log string // every stubbed call, one per line
	out string // the script's output
}

func runSetupDeps(t *testing.T, env map[string]string, files ...string) deps {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dpkg-query", "apt-get", "dpkg-architecture", "id", "readelf", "update-alternatives", "sudo"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	log := filepath.Join(dir, "log")
	cmd := exec.Command("bash", "setup-deps.sh")
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "FAKE_LOG=" + log, "PRISM_SETUP_SYSROOT=" + root}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("setup-deps.sh: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(log)
	return deps{log: string(b), out: string(out)}
}

// installs returns the packages of every apt-get install call, and fails
// the test if one lacks --no-remove.
func (d deps) installs(t *testing.T) []string {
	t.Helper()
	var pkgs []string
	for _, l := range strings.Split(d.log, "\n") {
		if !strings.HasPrefix(l, "apt-get ") || !strings.Contains(l, " install ") {
			continue
		}
		if !strings.Contains(l, "--no-remove") {
			t.Errorf("apt-get install without --no-remove: %s", l)
		}
		for _, f := range strings.Fields(l)[1:] {
			if !strings.HasPrefix(f, "-") && f != "install" {
				pkgs = append(pkgs, f)
			}
		}
	}
	return pkgs
}

func (d deps) sets() []string {
	var out []string
	for _, l := range strings.Split(d.log, "\n") {
		if strings.HasPrefix(l, "update-alternatives ") && strings.Contains(l, "--set") {
			out = append(out, l)
		}
	}
	return out
}

const (
	libtorchCPU = "usr/lib/x86_64-linux-gnu/libtorch_cpu.so"
	torchHeader = "usr/include/torch/csrc/api/include/torch/torch.h"
)

var openmpLibs = []string{
	"usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3",
	"usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3",
	"usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0",
}

func TestSetupDeps(t *testing.T) {
	pthread := "/usr/lib/x86_64-linux-gnu/openblas-pthread"
	tests := []struct {
		name      string
		env       map[string]string
		files     []string
		install   []string // packages that must be installed
		never     []string // packages that must not be
		sets      int      // update-alternatives --set calls
		outHas    string
		noCommand bool // nothing may be called at all
	}{
		{
			name:    "fresh CPU machine",
			env:     map[string]string{"FAKE_GOMP": "1", "FAKE_ALT_STATUS": "auto", "FAKE_ALT_VALUE": pthread},
			files:   append([]string{libtorchCPU}, openmpLibs...),
			install: []string{"libtorch-dev", "libgloo-dev", "g++", "libopenblas0-openmp"},
			sets:    3,
			outHas:  "selected OpenBLAS's openmp variant",
		},
		{
			name: "Debian's CUDA libtorch is kept",
			env: map[string]string{"FAKE_INSTALLED": "libtorch-cuda-dev g++", "FAKE_GOMP": "1",
				"FAKE_ALT_STATUS": "auto", "FAKE_ALT_VALUE": "/usr/lib/x86_64-linux-gnu/openblas-openmp"},
			files:   append([]string{libtorchCPU, torchHeader}, openmpLibs...),
			install: []string{"libgloo-cuda-dev", "libnccl-dev", "libopenblas0-openmp"},
			never:   []string{"libtorch-dev", "libgloo-dev", "g++"},
		},
		{
			name:   "a libtorch no package owns is left alone",
			env:    map[string]string{"FAKE_INSTALLED": "g++ libopenblas0-openmp", "FAKE_GOMP": "1", "FAKE_ALT_STATUS": "auto", "FAKE_ALT_VALUE": pthread},
			files:  append([]string{libtorchCPU, torchHeader}, openmpLibs...),
			never:  []string{"libtorch-dev", "libgloo-dev"},
			sets:   3,
			outHas: "no Debian package owns",
		},
		{
			name:   "a BLAS chosen by hand is not changed",
			env:    map[string]string{"FAKE_INSTALLED": "libtorch-dev libgloo-dev g++ libopenblas0-openmp", "FAKE_GOMP": "1", "FAKE_ALT_STATUS": "manual", "FAKE_ALT_VALUE": pthread},
			files:  append([]string{libtorchCPU}, openmpLibs...),
			never:  []string{"libtorch-dev"},
			outHas: "chosen by hand",
		},
		{
			name:    "a libtorch without OpenMP gets the pthreads variant",
			env:     map[string]string{"FAKE_INSTALLED": "libtorch-dev libgloo-dev g++", "FAKE_GOMP": "0", "FAKE_ALT_STATUS": "auto", "FAKE_ALT_VALUE": pthread},
			files:   []string{libtorchCPU},
			install: []string{"libopenblas0-pthread"},
			never:   []string{"libopenblas0-openmp"},
		},
		{
			name:      "LIBTORCH given",
			env:       map[string]string{"LIBTORCH": "/opt/libtorch"},
			noCommand: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := runSetupDeps(t, tt.env, tt.files...)
			if tt.noCommand {
				if d.log != "" {
					t.Errorf("commands ran:\n%s", d.log)
				}
				return
			}
			got := d.installs(t)
			has := func(p string) bool {
				for _, g := range got {
					if g == p {
						return true
					}
				}
				return false
			}
			for _, p := range tt.install {
				if !has(p) {
					t.Errorf("%s not installed; installs: %v", p, got)
				}
			}
			for _, p := range tt.never {
				if has(p) {
					t.Errorf("%s installed; installs: %v", p, got)
				}
			}
			if s := d.sets(); len(s) != tt.sets {
				t.Errorf("%d update-alternatives --set calls, want %d: %v", len(s), tt.sets, s)
			}
			if !strings.Contains(d.out, tt.outHas) {
				t.Errorf("output lacks %q:\n%s", tt.outHas, d.out)
			}
		})
	}
}
