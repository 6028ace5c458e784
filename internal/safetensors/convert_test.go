package safetensors

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		name string
		in   uint32 // float32 bits
		want uint16
	}{
		{"one", 0x3F800000, 0x3F80},
		{"minus 2.5", 0xC0200000, 0xC020},
		{"negative zero", 0x80000000, 0x8000},
		{"1.00390625 ties to even (down)", 0x3F808000, 0x3F80},
		{"1.01171875 ties to even (up)", 0x3F818000, 0x3F82},
		{"just above a tie rounds up", 0x3F808001, 0x3F81},
		{"just below a tie rounds down", 0x3F807FFF, 0x3F80},
		{"max float32 rounds to inf", 0x7F7FFFFF, 0x7F80},
		{"inf", 0x7F800000, 0x7F80},
		{"minus inf", 0xFF800000, 0xFF80},
		{"quiet NaN", 0x7FC00000, 0x7FC0},
		{"smallest subnormal", 0x00000001, 0x0000},
	}
	for _, tt := range tests {
		if got := Float32ToBF16(math.Float32frombits(tt.in)); got != tt.want {
			t.Errorf("%s: Float32ToBF16(%#08x) = %#04x, want %#04x", tt.name, tt.in, got, tt.want)
		}
	}
	// NaNs whose payload lies only in the dropped bits must stay NaN.
	for _, bits := range []uint32{0x7F800001, 0xFF800001, 0x7F80FFFF, 0x7FFFFFFF} {
		got := Float32ToBF16(math.Float32frombits(bits))
		if f := BF16ToFloat32(got); !isNaN(f) {
			t.Errorf("Float32ToBF16(NaN %#08x) = %#04x, not a NaN", bits, got)
		}
	}
}

func TestF16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3C00},
		{"minus 2.5", -2.5, 0xC100},
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"one third", 1.0 / 3, 0x3555},
		{"0.1", 0.1, 0x2E66},
		{"max half", 65504, 0x7BFF},
		{"below rounding to inf", 65519, 0x7BFF},
		{"65520 rounds to inf", 65520, 0x7C00},
		{"minus 65520 rounds to minus inf", -65520, 0xFC00},
		{"large", 1e10, 0x7C00},
		{"inf", float32(math.Inf(1)), 0x7C00},
		{"minus inf", float32(math.Inf(-1)), 0xFC00},
		{"1+2^-11 ties to even (down)", 1 + 0x1p-11, 0x3C00},
		{"1+3*2^-11 ties to even (up)", 1 + 3*0x1p-11, 0x3C02},
		{"smallest normal", 0x1p-14, 0x0400},
		{"largest subnormal", 1023 * 0x1p-24, 0x03FF},
		{"smallest subnormal", 0x1p-24, 0x0001},
		{"minus smallest subnormal", -0x1p-24, 0x8001},
		{"2^-25 ties to zero", 0x1p-25, 0x0000},
		{"just above 2^-25", 0x1p-25 * (1 + 0x1p-23), 0x0001},
		{"1.5*2^-24 ties to even (up)", 1.5 * 0x1p-24, 0x0002},
		{"2.5*2^-24 ties to even (down)", 2.5 * 0x1p-24, 0x0002},
		{"subnormal rounds up to normal", 1023.5 * 0x1p-24, 0x0400},
		{"float32 subnormal", 0x1p-140, 0x0000},
		{"tiny negative", -1e-30, 0x8000},
	}
	for _, tt := range tests {
		if got := Float32ToF16(tt.in); got != tt.want {
			t.Errorf("%s: Float32ToF16(%g) = %#04x, want %#04x", tt.name, tt.in, got, tt.want)
		}
	}
	for _, bits := range []uint32{0x7FC00000, 0x7F800001, 0xFF801000} {
		got := Float32ToF16(math.Float32frombits(bits))
		if got&0x7C00 != 0x7C00 || got&0x3FF == 0 {
			t.Errorf("Float32ToF16(NaN %#08x) = %#04x, not a NaN", bits, got)
		}
	}

	widen := []struct {
		in   uint16
		want float32
	}{
		{0x3C00, 1},
		{0xC100, -2.5},
		{0x7BFF, 65504},
		{0x0001, 0x1p-24},
		{0x8001, -0x1p-24},
		{0x03FF, 1023 * 0x1p-24},
		{0x0400, 0x1p-14},
		{0x3555, 0.333251953125},
		{0x7C00, float32(math.Inf(1))},
		{0xFC00, float32(math.Inf(-1))},
	}
	for _, tt := range widen {
		if got := F16ToFloat32(tt.in); got != tt.want {
			t.Errorf("F16ToFloat32(%#04x) = %g, want %g", tt.in, got, tt.want)
		}
	}
	if got := F16ToFloat32(0x8000); got != 0 || !math.Signbit(float64(got)) {
		t.Errorf("F16ToFloat32(0x8000) = %g, want -0", got)
	}
	for _, u := range []uint16{0x7E00, 0x7C01, 0xFE00} {
		if got := F16ToFloat32(u); !isNaN(got) {
			t.Errorf("F16ToFloat32(%#04x) = %g, want NaN", u, got)
		}
	}
}

// TestHalfRoundTrip checks every 16-bit pattern survives widening and
// narrowing, since widening is exact and narrowing rounds to nearest.
func TestHalfRoundTrip(t *testing.T) {
	for i := range 1 << 16 {
		u := uint16(i)
		if f := F16ToFloat32(u); isNaN(f) {
			if !isNaN(F16ToFloat32(Float32ToF16(f))) {
				t.Errorf("F16 NaN %#04x did not stay NaN", u)
			}
		} else if got := Float32ToF16(f); got != u {
			t.Errorf("F16 %#04x -> %g -> %#04x", u, f, got)
		}
		if f := BF16ToFloat32(u); isNaN(f) {
			if !isNaN(BF16ToFloat32(Float32ToBF16(f))) {
				t.Errorf("BF16 NaN %#04x did not stay NaN", u)
			}
		} else if got := Float32ToBF16(f); got != u {
			t.Errorf("BF16 %#04x -> %g -> %#04x", u, f, got)
		}
	}
}

func TestToFloat32(t *testing.T) {
	vals := []float32{1, -2.5, 0.5, 65504, 0x1p-24, 0}
	for _, d := range []DType{F32, F16, BF16} {
		raw, err := EncodeFloat32(d, vals)
		if err != nil {
			t.Fatal(err)
		}
		want := vals
		if d == BF16 {
			want = []float32{1, -2.5, 0.5, 65536, 0x1p-24, 0} // 65504 rounds
		}
		got, err := ToFloat32(TensorInfo{Name: "x", DType: d, Shape: []int64{2, 3}}, raw)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", d, got, want)
		}
	}

	f64 := []byte{0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0, 0, 0, 0, 0, 0, 0x04, 0xC0} // 1, -2.5
	got, err := ToFloat32(TensorInfo{Name: "d", DType: F64, Shape: []int64{2}}, f64)
	if err != nil || !slices.Equal(got, []float32{1, -2.5}) {
		t.Errorf("F64: got %v, %v; want [1 -2.5]", got, err)
	}

	errs := []struct {
		name string
		info TensorInfo
		raw  []byte
		want string
	}{
		{"integer dtype", TensorInfo{Name: "i", DType: I32, Shape: []int64{1}}, make([]byte, 4), `tensor "i": cannot convert I32 to float32`},
		{"unknown dtype", TensorInfo{Name: "u", DType: "F8", Shape: []int64{1}}, make([]byte, 1), "cannot convert F8"},
		{"short data", TensorInfo{Name: "s", DType: F32, Shape: []int64{2}}, make([]byte, 7), "needs 8 bytes, got 7"},
		{"negative dim", TensorInfo{Name: "n", DType: F16, Shape: []int64{-1}}, nil, "negative dimension"},
		{"overflow", TensorInfo{Name: "o", DType: F32, Shape: []int64{1 << 62, 4}}, nil, "overflows int64"},
	}
	for _, tt := range errs {
		if _, err := ToFloat32(tt.info, tt.raw); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	if _, err := EncodeFloat32(I8, vals); err == nil {
		t.Error("EncodeFloat32(I8) succeeded, want an error")
	}
}

func isNaN(f float32) bool { return f != f }
