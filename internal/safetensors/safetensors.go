// Package safetensors reads and writes the Hugging Face safetensors format,
// validating headers strictly before allocating anything.
//
// A file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON
// describing the tensors, then the data buffer the tensors' byte ranges
// point into. Tensors are stored row-major and little-endian.
package safetensors

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// ErrInvalid is wrapped by every error that reports a malformed file, so
// callers can tell bad input from I/O failures with errors.Is.
var ErrInvalid = errors.New("invalid safetensors file")

// MaxHeaderSize bounds the JSON header. Real headers are kilobytes to a few
// megabytes; the limit (the one Hugging Face's reader uses) keeps a hostile
// length prefix from forcing a huge allocation.
const MaxHeaderSize = 100 << 20

// DType names a tensor element type as spelled in the header.
type DType string

// The element types this package understands.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the number of bytes per element, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// TensorInfo describes one tensor of a file. Begin and End are byte offsets
// relative to the start of the data buffer.
type TensorInfo struct {
	Name       string
	DType      DType
	Shape      []int64
	Begin, End int64
}

// Header is a parsed and validated safetensors header.
type Header struct {
	// Tensors is sorted by Begin.
	Tensors []TensorInfo
	// Metadata is the optional "__metadata__" map; nil when absent.
	Metadata map[string]string
	// DataStart is the file offset of the data buffer: 8 plus the header length.
	DataStart int64
}

// invalidError reports a malformed input. Its message is "<file>: <what is
// wrong>"; it wraps both ErrInvalid and the detailed cause, so the sentinel's
// own text does not clutter the message.
type invalidError struct {
	file string
	err  error
}

func (e *invalidError) Error() string   { return e.file + ": " + e.err.Error() }
func (e *invalidError) Unwrap() []error { return []error{ErrInvalid, e.err} }

func invalidf(file, format string, args ...any) error {
	return &invalidError{file: file, err: fmt.Errorf(format, args...)}
}

// byteSize returns how many bytes a tensor of dtype d and the given shape
// occupies. It fails on an unknown dtype, a negative dimension, or a size
// that does not fit in int64.
func byteSize(d DType, shape []int64) (int64, error) {
	size := d.Size()
	if size == 0 {
		return 0, fmt.Errorf("unknown dtype %q", d)
	}
	zero := false
	for _, dim := range shape {
		if dim < 0 {
			return 0, fmt.Errorf("shape %v has negative dimension %d", shape, dim)
		}
		zero = zero || dim == 0
	}
	// A zero anywhere makes the product zero, whatever the other dimensions;
	// checking first keeps the result independent of their order.
	if zero {
		return 0, nil
	}
	n := uint64(size)
	for _, dim := range shape {
		hi, lo := bits.Mul64(n, uint64(dim))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("shape %v of %s overflows int64 bytes", shape, d)
		}
		n = lo
	}
	return int64(n), nil
}
