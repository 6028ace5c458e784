package torch

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// gotchAllowed are the folders (with everything below them) whose code may
// use gotch: this package, which is the boundary, the models built on it,
// the tools that adapt gotch to the local libtorch, and the benchmarks,
// which time libtorch itself.
var gotchAllowed = []string{"internal/torch", "models", "internal/gotchadapt", "internal/cmd/gotch-adapt", "bench"}

// TestGotchStaysBehindTheBoundary reads every Go file of the module and
// fails where a package outside gotchAllowed imports gotch, or where
// anything but Pin locks an OS thread, or product code names gotch's CPU
// device: device, dtype and thread pinning are decided here, once.
func TestGotchStaysBehindTheBoundary(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			// build/ holds the adapted gotch itself; testdata and hidden
			// folders hold no package code.
			if rel == "build" || rel == "vendor" || d.Name() == "testdata" || (strings.HasPrefix(d.Name(), ".") && rel != ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files++
		allowed := false
		for _, dir := range gotchAllowed {
			if rel == dir || strings.HasPrefix(rel, dir+"/") {
				allowed = true
			}
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "github.com/sugarme/gotch") && !allowed {
				t.Errorf("%s imports %s: only %v may use gotch; go through internal/torch or models", rel, p, gotchAllowed)
			}
		}
		// The device is resolved in one place (device.go): product code
		// never names the CPU device itself. Tests and benchmarks may.
		namesCPU := !strings.HasSuffix(rel, "_test.go") && !strings.HasPrefix(rel, "bench/") &&
			!strings.HasPrefix(rel, "internal/gotchadapt/") && !strings.HasPrefix(rel, "internal/cmd/gotch-adapt/") && rel != "internal/torch/device.go"
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			x, ok := sel.X.(*ast.Ident)
			switch {
			case !ok:
			case sel.Sel.Name == "LockOSThread" && x.Name == "runtime" && rel != "internal/torch/scope.go":
				t.Errorf("%s: runtime.LockOSThread: pin with torch.Pin", fset.Position(sel.Pos()))
			case sel.Sel.Name == "CPU" && x.Name == "gotch" && namesCPU:
				t.Errorf("%s: gotch.CPU: the device comes from torch.ResolveDevice (torch.CPU() for host copies)", fset.Position(sel.Pos()))
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d Go files under %s: the module root was not found", files, root)
	}
}
