// Package torchpickle reads the tensors of a PyTorch checkpoint written by
// torch.save (the zip format of PyTorch 1.6 and later: pytorch_model.bin,
// model.pt) without running any of its code.
//
// A pickle is a program for a small stack machine whose GLOBAL and REDUCE
// instructions import and call arbitrary Python functions; that is why
// loading an untrusted pickle can run arbitrary code. This package
// interprets the instructions itself and knows only the few callables a
// state dict needs (OrderedDict, the typed storages, _rebuild_tensor_v2,
// _rebuild_parameter), each implemented here as plain data handling. Any
// other global is an error, as in torch.load(weights_only=True).
package torchpickle

import (
	"archive/zip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"path"
	"strings"

	"prism/internal/safetensors"
)

// Tensor is one tensor of a checkpoint: its raw little-endian bytes,
// contiguous in row-major order.
type Tensor struct {
	Name  string
	DType safetensors.DType
	Shape []int64
	Data  []byte
}

// ErrInvalid marks a file that is not a checkpoint this package can read.
var ErrInvalid = errors.New("not a readable PyTorch checkpoint")

// Limits against hostile files: a state dict's pickle is a few hundred
// kilobytes even for 70B models.
const (
	maxPickle = 64 << 20
	maxStack  = 1 << 20
)

// ReadFile reads every tensor of the state dict in path, in pickle order.
func ReadFile(name string) ([]Tensor, error) {
	zr, err := zip.OpenReader(name)
	if err != nil {
		if errors.Is(err, zip.ErrFormat) {
			return nil, fmt.Errorf("%s: %w: not a zip archive (checkpoints from before PyTorch 1.6 use a legacy format prism does not read; re-save with a current torch)", name, ErrInvalid)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	var pkl *zip.File
	for _, f := range zr.File {
		files[f.Name] = f
		if path.Base(f.Name) == "data.pkl" && strings.Count(f.Name, "/") == 1 {
			pkl = f
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%s: %w: no <archive>/data.pkl", name, ErrInvalid)
	}
	prefix := path.Dir(pkl.Name)
	prog, err := readEntry(pkl, maxPickle)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, pkl.Name, err)
	}
	root, err := run(prog)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", name, pkl.Name, err)
	}
	dict, ok := root.(*odict)
	if !ok {
		return nil, fmt.Errorf("%s: %w: the pickle holds a %s, not a state dict", name, ErrInvalid, kind(root))
	}
	storages := map[string][]byte{}
	var out []Tensor
	for _, k := range dict.keys {
		key, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%s: %w: a state-dict key is a %s, not a string", name, ErrInvalid, kind(k))
		}
		t, ok := dict.vals[k].(*tensor)
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q is a %s, not a tensor", name, ErrInvalid, key, kind(dict.vals[k]))
		}
		data, ok := storages[t.storage.key]
		if !ok {
			f := files[prefix+"/data/"+t.storage.key]
			if f == nil {
				return nil, fmt.Errorf("%s: %w: tensor %q: storage %s is missing", name, ErrInvalid, key, t.storage.key)
			}
			want := uint64(t.storage.numel) * uint64(t.storage.dtype.Size())
			if f.UncompressedSize64 != want {
				return nil, fmt.Errorf("%s: %w: storage %s has %d bytes, its %d %s elements need %d", name, ErrInvalid, t.storage.key, f.UncompressedSize64, t.storage.numel, t.storage.dtype, want)
			}
			if data, err = readEntry(f, int64(want)); err != nil {
				return nil, fmt.Errorf("%s: storage %s: %w", name, t.storage.key, err)
			}
			storages[t.storage.key] = data
		}
		raw, err := t.bytes(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: tensor %q: %v", name, ErrInvalid, key, err)
		}
		out = append(out, Tensor{Name: key, DType: t.storage.dtype, Shape: t.shape, Data: raw})
	}
	return out, nil
}

func readEntry(f *zip.File, limit int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrInvalid, f.UncompressedSize64, limit)
	}
	r, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit || uint64(len(b)) != f.UncompressedSize64 {
		return nil, fmt.Errorf("%w: %d bytes, the archive says %d", ErrInvalid, len(b), f.UncompressedSize64)
	}
	return b, nil
}

// The values the machine handles besides Go's string, int64 (and *big.Int
// for huge integers), float64, bool and nil.
type (
	mark  struct{}
	tuple []any
	list  struct{ items []any }
	odict struct {
		keys []any
		vals map[any]any
	}
	global  struct{ module, name string }
	storage struct {
		dtype safetensors.DType
		key   string
		numel int64
	}
	tensor struct {
		storage       *storage
		offset        int64
		shape, stride []int64
	}
)

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case string:
		return "string"
	case int64, *big.Int:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case tuple:
		return "tuple"
	case *list:
		return "list"
	case *odict:
		return "dict"
	case *tensor:
		return "tensor"
	case *storage:
		return "storage"
	case global:
		return "global"
	}
	return fmt.Sprintf("%T", v)
}

func newDict() *odict { return &odict{vals: map[any]any{}} }

func (d *odict) set(k, v any) error {
	switch k.(type) {
	case string, int64, bool, nil, float64:
	default:
		return fmt.Errorf("%w: a dict key is a %s", ErrInvalid, kind(k))
	}
	if _, ok := d.vals[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.vals[k] = v
	return nil
}

// storageTypes maps torch's typed storages to dtypes; a reward model's
// weights are floating point.
var storageTypes = map[string]safetensors.DType{
	"FloatStorage":    safetensors.F32,
	"HalfStorage":     safetensors.F16,
	"BFloat16Storage": safetensors.BF16,
	"DoubleStorage":   safetensors.F64,
}

// allowed lists the globals a state dict may name.
func allowed(module, name string) bool {
	switch module + "." + name {
	case "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter":
		return true
	}
	_, ok := storageTypes[name]
	return module == "torch" && ok
}

// run interprets a pickle program and returns the value it builds.
func run(p []byte) (any, error) {
	var stack []any
	var marks []int
	memo := map[uint32]any{}
	pos := 0
	need := func(n int) ([]byte, error) {
		if n < 0 || pos+n > len(p) {
			return nil, fmt.Errorf("%w: the pickle ends inside an instruction at byte %d", ErrInvalid, pos)
		}
		b := p[pos : pos+n]
		pos += n
		return b, nil
	}
	pop := func() (any, error) {
		if len(stack) == 0 || (len(marks) > 0 && len(stack) == marks[len(marks)-1]) {
			return nil, fmt.Errorf("%w: stack underflow at byte %d", ErrInvalid, pos)
		}
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		return v, nil
	}
	popMark := func() ([]any, error) {
		if len(marks) == 0 {
			return nil, fmt.Errorf("%w: no mark at byte %d", ErrInvalid, pos)
		}
		m := marks[len(marks)-1]
		marks = marks[:len(marks)-1]
		items := append([]any(nil), stack[m:]...)
		stack = stack[:m]
		return items, nil
	}
	push := func(v any) error {
		if len(stack) >= maxStack {
			return fmt.Errorf("%w: stack over %d values", ErrInvalid, maxStack)
		}
		stack = append(stack, v)
		return nil
	}
	top := func() (any, error) {
		if len(stack) == 0 {
			return nil, fmt.Errorf("%w: empty stack at byte %d", ErrInvalid, pos)
		}
		return stack[len(stack)-1], nil
	}
	str := func(n int) error {
		b, err := need(n)
		if err != nil {
			return err
		}
		return push(string(b))
	}
	for {
		if pos >= len(p) {
			return nil, fmt.Errorf("%w: the pickle has no STOP", ErrInvalid)
		}
		op := p[pos]
		pos++
		var err error
		switch op {
		case 0x80: // PROTO
			_, err = need(1)
		case 0x95: // FRAME
			_, err = need(8)
		case '.': // STOP
			v, err := pop()
			if err != nil {
				return nil, err
			}
			return v, nil
		case '(':
			marks = append(marks, len(stack))
		case '}':
			err = push(newDict())
		case ']':
			err = push(&list{})
		case ')':
			err = push(tuple{})
		case 'N':
			err = push(nil)
		case 0x88:
			err = push(true)
		case 0x89:
			err = push(false)
		case 'K':
			var b []byte
			if b, err = need(1); err == nil {
				err = push(int64(b[0]))
			}
		case 'M':
			var b []byte
			if b, err = need(2); err == nil {
				err = push(int64(binary.LittleEndian.Uint16(b)))
			}
		case 'J':
			var b []byte
			if b, err = need(4); err == nil {
				err = push(int64(int32(binary.LittleEndian.Uint32(b))))
			}
		case 0x8a: // LONG1
			var b []byte
			if b, err = need(1); err == nil {
				if b, err = need(int(b[0])); err == nil {
					err = push(long(b))
				}
			}
		case 'G':
			var b []byte
			if b, err = need(8); err == nil {
				err = push(math.Float64frombits(binary.BigEndian.Uint64(b)))
			}
		case 'X', 'T': // BINUNICODE, BINSTRING
			var b []byte
			if b, err = need(4); err == nil {
				err = str(int(binary.LittleEndian.Uint32(b)))
			}
		case 0x8c, 'U': // SHORT_BINUNICODE, SHORT_BINSTRING
			var b []byte
			if b, err = need(1); err == nil {
				err = str(int(b[0]))
			}
		case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
			var idx uint32
			switch op {
			case 'q':
				var b []byte
				if b, err = need(1); err == nil {
					idx = uint32(b[0])
				}
			case 'r':
				var b []byte
				if b, err = need(4); err == nil {
					idx = binary.LittleEndian.Uint32(b)
				}
			default:
				idx = uint32(len(memo))
			}
			if err == nil {
				var v any
				if v, err = top(); err == nil {
					memo[idx] = v
				}
			}
		case 'h', 'j': // BINGET, LONG_BINGET
			var idx uint32
			if op == 'h' {
				var b []byte
				if b, err = need(1); err == nil {
					idx = uint32(b[0])
				}
			} else {
				var b []byte
				if b, err = need(4); err == nil {
					idx = binary.LittleEndian.Uint32(b)
				}
			}
			if err == nil {
				v, ok := memo[idx]
				if !ok {
					return nil, fmt.Errorf("%w: memo %d is unset", ErrInvalid, idx)
				}
				err = push(v)
			}
		case 'c': // GLOBAL "module\nname\n"
			end := strings.IndexByte(string(p[pos:min(len(p), pos+512)]), '\n')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated GLOBAL", ErrInvalid)
			}
			module := string(p[pos : pos+end])
			pos += end + 1
			end = strings.IndexByte(string(p[pos:min(len(p), pos+512)]), '\n')
			if end < 0 {
				return nil, fmt.Errorf("%w: unterminated GLOBAL", ErrInvalid)
			}
			name := string(p[pos : pos+end])
			pos += end + 1
			err = pushGlobal(push, module, name)
		case 0x93: // STACK_GLOBAL
			var n, m any
			if n, err = pop(); err == nil {
				if m, err = pop(); err == nil {
					ms, ok1 := m.(string)
					ns, ok2 := n.(string)
					if !ok1 || !ok2 {
						return nil, fmt.Errorf("%w: STACK_GLOBAL of non-strings", ErrInvalid)
					}
					err = pushGlobal(push, ms, ns)
				}
			}
		case 't':
			var items []any
			if items, err = popMark(); err == nil {
				err = push(tuple(items))
			}
		case 0x85, 0x86, 0x87: // TUPLE1-3
			n := int(op - 0x84)
			items := make(tuple, n)
			for i := n - 1; i >= 0 && err == nil; i-- {
				items[i], err = pop()
			}
			if err == nil {
				err = push(items)
			}
		case 'a', 'e': // APPEND, APPENDS
			var items []any
			if op == 'a' {
				var v any
				if v, err = pop(); err == nil {
					items = []any{v}
				}
			} else {
				items, err = popMark()
			}
			if err == nil {
				var t any
				if t, err = top(); err == nil {
					l, ok := t.(*list)
					if !ok {
						return nil, fmt.Errorf("%w: APPEND to a %s", ErrInvalid, kind(t))
					}
					l.items = append(l.items, items...)
				}
			}
		case 's', 'u': // SETITEM, SETITEMS
			var items []any
			if op == 's' {
				var k, v any
				if v, err = pop(); err == nil {
					if k, err = pop(); err == nil {
						items = []any{k, v}
					}
				}
			} else {
				items, err = popMark()
			}
			if err == nil && len(items)%2 != 0 {
				err = fmt.Errorf("%w: SETITEMS with an odd number of values", ErrInvalid)
			}
			if err == nil {
				var t any
				if t, err = top(); err == nil {
					d, ok := t.(*odict)
					if !ok {
						return nil, fmt.Errorf("%w: SETITEM on a %s", ErrInvalid, kind(t))
					}
					for i := 0; i < len(items) && err == nil; i += 2 {
						err = d.set(items[i], items[i+1])
					}
				}
			}
		case 'b': // BUILD: attribute state, such as a state dict's _metadata; dropped
			if _, err = pop(); err == nil {
				_, err = top()
			}
		case 'Q': // BINPERSID
			var pid any
			if pid, err = pop(); err == nil {
				var s *storage
				if s, err = persistent(pid); err == nil {
					err = push(s)
				}
			}
		case 'R': // REDUCE
			var args, fn any
			if args, err = pop(); err == nil {
				if fn, err = pop(); err == nil {
					var v any
					if v, err = call(fn, args); err == nil {
						err = push(v)
					}
				}
			}
		default:
			return nil, fmt.Errorf("%w: pickle opcode 0x%02x at byte %d is not one a state dict uses", ErrInvalid, op, pos-1)
		}
		if err != nil {
			return nil, err
		}
	}
}

func pushGlobal(push func(any) error, module, name string) error {
	if !allowed(module, name) {
		return fmt.Errorf("%w: the pickle imports %s.%s; prism's reader accepts only tensors and never runs code from a checkpoint", ErrInvalid, module, name)
	}
	return push(global{module, name})
}

// long decodes LONG1's little-endian two's-complement integer.
func long(b []byte) any {
	if len(b) == 0 {
		return int64(0)
	}
	if len(b) <= 8 {
		var u uint64
		for i := len(b) - 1; i >= 0; i-- {
			u = u<<8 | uint64(b[i])
		}
		shift := 64 - 8*uint(len(b))
		return int64(u<<shift) >> shift
	}
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	n := new(big.Int).SetBytes(be)
	if b[len(b)-1]&0x80 != 0 {
		n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(8*len(b))))
	}
	return n
}

// persistent resolves torch's storage reference
// ('storage', <storage type>, key, location, numel).
func persistent(pid any) (*storage, error) {
	t, ok := pid.(tuple)
	if !ok || len(t) != 5 || t[0] != "storage" {
		return nil, fmt.Errorf("%w: persistent id %v is not a storage reference", ErrInvalid, pid)
	}
	g, ok := t[1].(global)
	if !ok {
		return nil, fmt.Errorf("%w: storage type is a %s", ErrInvalid, kind(t[1]))
	}
	dt, ok := storageTypes[g.name]
	if !ok {
		return nil, fmt.Errorf("%w: storage type %s is not a floating-point weight", ErrInvalid, g.name)
	}
	key, ok1 := t[2].(string)
	numel, ok2 := t[4].(int64)
	if !ok1 || !ok2 || numel < 0 || strings.ContainsAny(key, "/\\") || key == "" || key == "." || key == ".." {
		return nil, fmt.Errorf("%w: bad storage reference %v", ErrInvalid, pid)
	}
	return &storage{dtype: dt, key: key, numel: numel}, nil
}

func ints(v any, what string) ([]int64, error) {
	t, ok := v.(tuple)
	if !ok {
		return nil, fmt.Errorf("%w: %s is a %s, not a tuple", ErrInvalid, what, kind(v))
	}
	out := make([]int64, len(t))
	for i, x := range t {
		n, ok := x.(int64)
		if !ok || n < 0 {
			return nil, fmt.Errorf("%w: %s holds %v", ErrInvalid, what, x)
		}
		out[i] = n
	}
	return out, nil
}

// call applies one of the allowed callables.
func call(fn, args any) (any, error) {
	g, ok := fn.(global)
	if !ok {
		return nil, fmt.Errorf("%w: REDUCE calls a %s", ErrInvalid, kind(fn))
	}
	a, ok := args.(tuple)
	if !ok {
		return nil, fmt.Errorf("%w: %s called with a %s", ErrInvalid, g.name, kind(args))
	}
	switch g.module + "." + g.name {
	case "collections.OrderedDict":
		if len(a) != 0 {
			return nil, fmt.Errorf("%w: OrderedDict called with arguments", ErrInvalid)
		}
		return newDict(), nil
	case "torch._utils._rebuild_parameter":
		if len(a) < 1 {
			return nil, fmt.Errorf("%w: _rebuild_parameter without data", ErrInvalid)
		}
		if _, ok := a[0].(*tensor); !ok {
			return nil, fmt.Errorf("%w: _rebuild_parameter of a %s", ErrInvalid, kind(a[0]))
		}
		return a[0], nil
	case "torch._utils._rebuild_tensor_v2":
		// (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
		if len(a) < 4 {
			return nil, fmt.Errorf("%w: _rebuild_tensor_v2 with %d arguments", ErrInvalid, len(a))
		}
		s, ok := a[0].(*storage)
		if !ok {
			return nil, fmt.Errorf("%w: tensor storage is a %s", ErrInvalid, kind(a[0]))
		}
		off, ok := a[1].(int64)
		if !ok || off < 0 {
			return nil, fmt.Errorf("%w: storage offset %v", ErrInvalid, a[1])
		}
		shape, err := ints(a[2], "tensor size")
		if err != nil {
			return nil, err
		}
		stride, err := ints(a[3], "tensor stride")
		if err != nil {
			return nil, err
		}
		if len(stride) != len(shape) {
			return nil, fmt.Errorf("%w: size %v and stride %v differ in rank", ErrInvalid, shape, stride)
		}
		return &tensor{storage: s, offset: off, shape: shape, stride: stride}, nil
	}
	return nil, fmt.Errorf("%w: %s.%s cannot be called", ErrInvalid, g.module, g.name)
}

// bytes returns the tensor's elements from its storage's bytes. Saved
// weights are contiguous views; others are refused.
func (t *tensor) bytes(data []byte) ([]byte, error) {
	n := int64(1)
	for _, d := range t.shape {
		if d != 0 && n > math.MaxInt64/d {
			return nil, fmt.Errorf("size %v overflows", t.shape)
		}
		n *= d
	}
	want := int64(1)
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.stride[i] != want {
			return nil, fmt.Errorf("size %v with stride %v is not contiguous", t.shape, t.stride)
		}
		want *= t.shape[i]
	}
	if t.offset > t.storage.numel || n > t.storage.numel-t.offset {
		return nil, fmt.Errorf("%d elements at offset %d do not fit a storage of %d", n, t.offset, t.storage.numel)
	}
	es := int64(t.storage.dtype.Size())
	return data[t.offset*es : (t.offset+n)*es], nil
}
