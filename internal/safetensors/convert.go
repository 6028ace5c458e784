package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// ToFloat32 decodes raw, the bytes of the tensor that info describes, into
// float32 values. It handles F32, F16, BF16 and F64 (rounded to nearest);
// integer and boolean tensors are an error.
func ToFloat32(info TensorInfo, raw []byte) ([]float32, error) {
	switch info.DType {
	case F32, F16, BF16, F64:
	default:
		return nil, fmt.Errorf("tensor %q: cannot convert %s to float32", info.Name, info.DType)
	}
	want, err := byteSize(info.DType, info.Shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	if int64(len(raw)) != want {
		return nil, fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, got %d",
			info.Name, info.Shape, info.DType, want, len(raw))
	}
	out := make([]float32, len(raw)/info.DType.Size())
	le := binary.LittleEndian
	for i := range out {
		switch info.DType {
		case F32:
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		case F16:
			out[i] = F16ToFloat32(le.Uint16(raw[2*i:]))
		case BF16:
			out[i] = BF16ToFloat32(le.Uint16(raw[2*i:]))
		case F64:
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	}
	return out, nil
}

// EncodeFloat32 encodes v as little-endian F32, BF16 or F16, rounding to
// nearest even for the 16-bit types.
func EncodeFloat32(dtype DType, v []float32) ([]byte, error) {
	le := binary.LittleEndian
	switch dtype {
	case F32:
		out := make([]byte, 4*len(v))
		for i, x := range v {
			le.PutUint32(out[4*i:], math.Float32bits(x))
		}
		return out, nil
	case BF16, F16:
		conv := Float32ToBF16
		if dtype == F16 {
			conv = Float32ToF16
		}
		out := make([]byte, 2*len(v))
		for i, x := range v {
			le.PutUint16(out[2*i:], conv(x))
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot encode float32 values as %s", dtype)
}

// BF16ToFloat32 widens a bfloat16 bit pattern; the conversion is exact.
func BF16ToFloat32(u uint16) float32 {
	return math.Float32frombits(uint32(u) << 16)
}

// Float32ToBF16 rounds v to the nearest bfloat16, ties to even. Values
// beyond the bfloat16 range become infinities; NaNs stay NaN.
func Float32ToBF16(v float32) uint16 {
	b := math.Float32bits(v)
	if v != v {
		// Truncating could clear every payload bit left and turn the NaN
		// into an infinity; setting the quiet bit prevents that.
		return uint16(b>>16) | 0x0040
	}
	// Adding just under half an ulp, plus one when the kept part is odd,
	// carries into the kept bits exactly when rounding to nearest even
	// rounds up; a carry out of the mantissa correctly bumps the exponent.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToFloat32 widens an IEEE 754 half-precision bit pattern, including
// subnormals, infinities and NaNs; the conversion is exact.
func F16ToFloat32(u uint16) float32 {
	sign := uint32(u&0x8000) << 16
	exp := uint32(u>>10) & 0x1f
	mant := uint32(u) & 0x3ff
	switch exp {
	case 0:
		// Zero or subnormal: mant × 2^-24, exact in float32.
		f := float32(mant) * 0x1p-24
		return math.Float32frombits(sign | math.Float32bits(f))
	case 0x1f:
		// Infinity, or NaN with its payload kept.
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToF16 rounds v to the nearest IEEE 754 half, ties to even. Values
// of magnitude 65520 or more become infinities, tiny values become
// subnormals or zero, and NaNs stay NaN.
func Float32ToF16(v float32) uint16 {
	b := math.Float32bits(v)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff

	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		// Keep the top of the payload; the quiet bit keeps it a NaN.
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15 // biased half exponent
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e <= 0:
		// Below half's normal range: a subnormal m × 2^-24. Anything under
		// 2^-25 rounds to zero (2^-25 itself ties to the even zero).
		if e < -10 {
			return sign
		}
		m := mant | 0x800000 // restore the implicit leading bit
		shift := uint32(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && h&1 == 1 {
			h++ // may carry into the smallest normal, 0x0400, which is right
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
		h++ // a carry out of the mantissa bumps the exponent, up to infinity
	}
	return sign | uint16(h)
}

// F32Bytes is v's memory as little-endian F32 data, without a copy (every
// platform prism builds for is little-endian). The bytes alias v.
func F32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}
