package models

import (
	"fmt"

	"github.com/sugarme/gotch/ts"
)

// opError carries a libtorch error out of a chain of tensor operations; see
// scope.
type opError struct{ err error }

// scope owns the intermediate tensors of a computation. Every gotch tensor
// holds C memory that Go's collector does not see, so each temporary is
// registered here and freed when the computation ends; the autograd graph
// keeps what backward needs alive on the C++ side.
//
// Operations go through t, which turns a libtorch error into a panic that
// catch converts back into an error at the function boundary: model code
// then reads as the math it implements.
type scope struct {
	tensors []*ts.Tensor
}

// t registers the result of a gotch operation.
func (s *scope) t(x *ts.Tensor, err error) *ts.Tensor {
	if err != nil {
		panic(opError{err})
	}
	s.tensors = append(s.tensors, x)
	return x
}

// check panics with err when it is not nil (for operations without a
// tensor result).
func check(err error) {
	if err != nil {
		panic(opError{err})
	}
}

// release frees every registered tensor except those in keep.
func (s *scope) release(keep ...*ts.Tensor) {
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

// catch converts a panic raised by scope.t or check into *err; other
// panics propagate.
func catch(err *error, context string) {
	if r := recover(); r != nil {
		oe, ok := r.(opError)
		if !ok {
			panic(r)
		}
		*err = fmt.Errorf("%s: %w", context, oe.err)
	}
}

func f(x float64) *ts.Scalar { return ts.FloatScalar(x) }
