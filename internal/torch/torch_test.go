package torch

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// TestMatmulBackward checks gotch end to end: a small matmul, a scalar loss
// and its gradient, against values worked out by hand.
func TestMatmulBackward(t *testing.T) {
	defer Pin()() // gotch reports errors through thread-local state
	if _, err := Setup(0); err != nil {
		t.Fatal(err)
	}
	// a = [[1 2] [3 4]], b = [[5 6] [7 8]] (requires grad).
	a, err := ts.NewTensorFromData([]float32{1, 2, 3, 4}, []int64{2, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer a.MustDrop()
	b0, err := ts.NewTensorFromData([]float32{5, 6, 7, 8}, []int64{2, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b0.MustDrop()
	b := b0.MustSetRequiresGrad(true, false)
	defer b.MustDrop()

	c, err := a.Matmul(b, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.MustDrop()
	if got, want := c.Float64Values(), []float64{19, 22, 43, 50}; !slices.Equal(got, want) {
		t.Fatalf("a@b = %v, want %v", got, want)
	}
	// loss = sum((a@b)^2); d loss / d b = a^T (2 a@b).
	sq, err := c.Square(false)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.MustDrop()
	loss, err := sq.Sum(gotch.Float, false)
	if err != nil {
		t.Fatal(err)
	}
	defer loss.MustDrop()
	if got := loss.Float64Values()[0]; got != 19*19+22*22+43*43+50*50 {
		t.Fatalf("loss = %v", got)
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	g, err := b.Grad(false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.MustDrop()
	// a^T = [[1 3] [2 4]], 2c = [[38 44] [86 100]].
	want := []float64{1*38 + 3*86, 1*44 + 3*100, 2*38 + 4*86, 2*44 + 4*100}
	got := g.Float64Values()
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-4 {
			t.Fatalf("grad = %v, want %v", got, want)
		}
	}
}

// TestDisabledFunctionErrors calls functions the adapter disabled and
// expects an error that names the function and the libtorch, not a crash:
// the probe the adapter disables on every libtorch, and
// scaled_dot_product_attention where this libtorch lacks it (1.13).
func TestDisabledFunctionErrors(t *testing.T) {
	defer Pin()() // gotch reports errors through thread-local state
	check := func(t *testing.T, name, msg string) {
		t.Helper()
		if msg == "" {
			t.Fatalf("disabled %s returned no error", name)
		}
		for _, want := range []string{name, "not available", Inspect().LibtorchVersion} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		if strings.Contains(msg, "goroutine") || strings.Contains(msg, "frame #") {
			t.Errorf("error carries a stack trace: %q", msg)
		}
	}
	t.Run("probe", func(t *testing.T) {
		check(t, "prism_disabled_probe", libtch.PrismDisabledProbe())
		// The probe is the adapter's, not libtorch's: it is not counted.
		if slices.Contains(DisabledFunctions(), "prism_disabled_probe") {
			t.Error("the probe is listed among the disabled functions")
		}
	})
	t.Run("sdpa", func(t *testing.T) {
		if !slices.Contains(DisabledFunctions(), "atg_scaled_dot_product_attention") {
			t.Skip("scaled_dot_product_attention builds against this libtorch")
		}
		q := ts.MustOnes([]int64{1, 1, 2, 4}, gotch.Float, gotch.CPU)
		defer q.MustDrop()
		_, err := ts.ScaledDotProductAttention(q, q, q, ts.NewTensor(), 0, false, []float64{})
		if err == nil {
			t.Fatal("disabled scaled_dot_product_attention returned no error")
		}
		check(t, "atg_scaled_dot_product_attention", err.Error())
	})
}

// TestSDPAOptionalMask calls scaled_dot_product_attention with is_causal
// and no mask (an undefined tensor, which the adapter passes as absent)
// and compares it with attention written out: softmax(QK^T/sqrt(d) + causal
// mask) V.
func TestSDPAOptionalMask(t *testing.T) {
	defer Pin()() // gotch reports errors through thread-local state
	if slices.Contains(DisabledFunctions(), "atg_scaled_dot_product_attention") {
		t.Skipf("scaled_dot_product_attention is not in libtorch %s", Inspect().LibtorchVersion)
	}
	const seqLen, dim = 5, 8
	mk := func(seed uint64) *ts.Tensor {
		r := rand.New(rand.NewPCG(seed, 7))
		v := make([]float32, 2*seqLen*dim)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return ts.MustOfSlice(v).MustView([]int64{1, 2, seqLen, dim}, true)
	}
	q, k, v := mk(1), mk(2), mk(3)
	defer q.MustDrop()
	defer k.MustDrop()
	defer v.MustDrop()
	none := ts.NewTensor()
	defer none.MustDrop()
	got, err := ts.ScaledDotProductAttention(q, k, v, none, 0, true, []float64{})
	if err != nil {
		t.Fatalf("causal attention with no mask: %v", err)
	}
	defer got.MustDrop()

	scores := q.MustMatmul(k.MustTranspose(-1, -2, false), false).MustDivScalar(ts.FloatScalar(math.Sqrt(dim)), true)
	defer scores.MustDrop()
	upper := ts.MustOnes([]int64{seqLen, seqLen}, gotch.Bool, gotch.CPU).MustTriu(1, true)
	defer upper.MustDrop()
	masked := scores.MustMaskedFill(upper, ts.FloatScalar(math.Inf(-1)), false)
	defer masked.MustDrop()
	want := masked.MustSoftmax(-1, gotch.Float, false).MustMatmul(v, true)
	defer want.MustDrop()
	g, w := got.Float64Values(), want.Float64Values()
	if len(g) != len(w) {
		t.Fatalf("%d values, want %d", len(g), len(w))
	}
	for i := range g {
		if math.Abs(g[i]-w[i]) > 1e-5 {
			t.Fatalf("value %d: %g, want %g", i, g[i], w[i])
		}
	}
}

// TestLibtorchErrorIsClean checks that an ordinary libtorch error (a shape
// mismatch) comes back as a short message without C++ or Go backtraces.
func TestLibtorchErrorIsClean(t *testing.T) {
	defer Pin()() // gotch reports errors through thread-local state
	a := ts.MustOnes([]int64{2, 3}, gotch.Float, gotch.CPU)
	defer a.MustDrop()
	_, err := a.Matmul(a, false)
	if err == nil {
		t.Fatal("2x3 @ 2x3 returned no error")
	}
	msg := err.Error()
	if !strings.Contains(msg, "cannot be multiplied") {
		t.Errorf("unexpected message %q", msg)
	}
	if strings.Contains(msg, "goroutine") || strings.Contains(msg, "frame #") || strings.Count(msg, "\n") > 2 {
		t.Errorf("error carries a stack trace: %q", msg)
	}
}

func TestSetupThreads(t *testing.T) {
	n, err := Setup(1)
	if err != nil || n != 1 {
		t.Fatalf("Setup(1) = %d, %v", n, err)
	}
	n, err = Setup(0)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 || Inspect().Threads != n {
		t.Fatalf("Setup(0) = %d, Inspect().Threads = %d", n, Inspect().Threads)
	}
	t.Setenv("PRISM_THREADS", "zero")
	if _, err := Setup(0); err == nil {
		t.Fatal("PRISM_THREADS=zero accepted")
	}
}

func TestBLASName(t *testing.T) {
	tests := []struct {
		config string
		loaded []string
		want   string
		slow   bool
	}{
		{"BLAS_INFO=mkl, LAPACK_INFO=mkl", nil, "MKL", false},
		{"BLAS_INFO=open", []string{"/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"}, "OpenBLAS (/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3)", false},
		{"BLAS_INFO=blas", []string{"/lib/libc.so.6", "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0"}, "reference BLAS", true},
		{"BLAS_INFO=open", nil, "open", false},
		{"", nil, "unknown", false},
	}
	for _, tt := range tests {
		got, slow := blas(tt.config, tt.loaded)
		if !strings.HasPrefix(got, tt.want) || slow != tt.slow {
			t.Errorf("blas(%q, %v) = %q, %v; want %q..., %v", tt.config, tt.loaded, got, slow, tt.want, tt.slow)
		}
	}
}

func TestInspectOnThisMachine(t *testing.T) {
	info := Inspect()
	if info.LibtorchVersion == "" || info.Generated == 0 {
		t.Fatalf("adapter facts missing: %+v", info)
	}
	if info.Disabled > info.Generated {
		t.Fatalf("more disabled (%d) than generated (%d)", info.Disabled, info.Generated)
	}
	if info.SlowBLAS {
		t.Errorf("libtorch runs on the reference BLAS: %s", info.BLAS)
	}
}

// TestResolveDevice: run.device on machines with and without cards.
func TestResolveDevice(t *testing.T) {
	for _, tt := range []struct {
		name      string
		cards     int
		cudaBuild bool
		want      string // "" for an error
		errHas    string
	}{
		{"cpu", 0, false, "cpu", ""},
		{"", 2, true, "cpu", ""},
		{"auto", 0, false, "cpu", ""},
		{"auto", 0, true, "cpu", ""},
		{"auto", 2, true, "cuda:0", ""},
		{"cuda", 1, true, "cuda:0", ""},
		{"cuda:1", 2, true, "cuda:1", ""},
		{"cuda", 0, false, "", "CPU build"},
		{"cuda:0", 0, true, "", "no usable card"},
		{"cuda:2", 2, true, "", "cuda:0 to cuda:1"},
		{"cuda:-1", 2, true, "", "card number"},
		{"cuda:x", 2, true, "", "card number"},
		{"gpu", 2, true, "", "want auto, cpu, cuda or cuda:N"},
	} {
		d, err := resolveDevice(tt.name, tt.cards, tt.cudaBuild)
		switch {
		case tt.want == "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)):
			t.Errorf("%q with %d cards: %v, want an error saying %q", tt.name, tt.cards, err, tt.errHas)
		case tt.want != "" && (err != nil || DeviceName(d) != tt.want):
			t.Errorf("%q with %d cards: %s, %v; want %s", tt.name, tt.cards, DeviceName(d), err, tt.want)
		}
	}
}
