package models

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostValuesGoThroughOnDevice stands in for running on a second device
// (these machines have no GPU, and libtorch's meta device is not reachable
// through gotch's device type): it reads this package's code and fails
// where a tensor could be made anywhere but on the model's device. Host
// memory becomes a tensor through onDevice alone, and the constructors
// that take a device are never given the CPU.
func TestHostValuesGoThroughOnDevice(t *testing.T) {
	fromHost := map[string]bool{"OfDataSize": true, "OfSlice": true, "MustOfSlice": true, "OfData": true, "MustOfDataSize": true, "TensorFrom": true}
	withDevice := map[string]bool{"Arange": true, "ArangeStart": true, "Ones": true, "Zeros": true, "Full": true, "Empty": true,
		"Randn": true, "Rand": true, "Eye": true, "Linspace": true, "MustOnes": true, "MustZeros": true, "MustArange": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "ts" {
				return true
			}
			fn := sel.Sel.Name
			switch {
			case fromHost[fn] && name != "host.go":
				t.Errorf("%s: ts.%s makes a tensor from host memory on the CPU: use onDevice", fset.Position(call.Pos()), fn)
			case withDevice[fn]:
				checked++
				dev := call.Args[len(call.Args)-1]
				if s := exprString(dev); strings.Contains(s, "CPU") {
					t.Errorf("%s: ts.%s on %s: give it the model's device", fset.Position(call.Pos()), fn, s)
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("found no tensor constructor that takes a device: the check reads nothing")
	}
}

func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	case *ast.CallExpr:
		return exprString(x.Fun) + "()"
	}
	return ""
}
