package torch

import (
	"fmt"
	"runtime"

	"github.com/sugarme/gotch/ts"
)

// Pin locks the calling goroutine to its OS thread until the returned
// function runs. libtorch keeps the autograd mode and gotch its last error
// per OS thread, so every entry point that runs tensor operations pins
// for its duration:
//
//	defer torch.Pin()()
//
// Pins nest: Go counts LockOSThread calls.
func Pin() (unpin func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// opError carries a libtorch error out of a chain of tensor operations;
// see Scope.
type opError struct{ err error }

// Scope owns the intermediate tensors of a computation. Every gotch tensor
// holds C memory that Go's collector does not see, so each temporary is
// registered here and freed when the computation ends (Release); the
// autograd graph keeps what backward needs alive on the C++ side.
//
// Operations go through T, which turns a libtorch error into a panic that
// Catch converts back into an error at the function boundary: tensor code
// then reads as the math it implements. The idiom:
//
//	s := &torch.Scope{}
//	defer s.Release()
//	defer torch.Catch(&err, "what this computes")
//	y := s.T(x.Mul(w, false))
type Scope struct {
	tensors []*ts.Tensor
}

// T registers the result of a gotch operation, or panics with its error
// for Catch.
func (s *Scope) T(x *ts.Tensor, err error) *ts.Tensor {
	if err != nil {
		panic(opError{err})
	}
	s.tensors = append(s.tensors, x)
	return x
}

// Check panics with err for Catch when it is not nil (for operations
// without a tensor result).
func Check(err error) {
	if err != nil {
		panic(opError{err})
	}
}

// Release frees every registered tensor except those in keep.
func (s *Scope) Release(keep ...*ts.Tensor) {
	for _, x := range s.tensors {
		kept := false
		for _, k := range keep {
			if x == k {
				kept = true
				break
			}
		}
		if !kept {
			_ = x.Drop()
		}
	}
	s.tensors = s.tensors[:0]
}

// Catch converts a panic raised by Scope.T or Check into *err, prefixed
// with context; other panics propagate. Defer it after the Scope's
// Release, so it runs first.
func Catch(err *error, context string) {
	if r := recover(); r != nil {
		oe, ok := r.(opError)
		if !ok {
			panic(r)
		}
		*err = fmt.Errorf("%s: %w", context, oe.err)
	}
}

// DropAll frees tensors, skipping nil entries.
func DropAll(tensors []*ts.Tensor) {
	for _, t := range tensors {
		if t != nil {
			t.Drop()
		}
	}
}
