// Package torch is prism's boundary with gotch and libtorch. It sets
// libtorch up for this machine (thread counts) and reports what libtorch
// was built with and what it found (BLAS, CUDA, disabled functions); it
// resolves the device (device.go), pins goroutines to OS threads (Pin),
// frees intermediate tensors (Scope) and defines the process group of a
// data-parallel run (Comm; dist implements it over c10d, Single is one
// process). Only this package, its dist subpackage and models use gotch; a
// test enforces it.
//
// It needs the gotch copy that `make setup` adapts to the local libtorch.
package torch

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/sugarme/gotch/libtch"
)

// Setup configures libtorch's thread pools. threads <= 0 means "use every
// core": libtorch starts with one intra-op thread on some machines (seen on
// 2-core Debian boxes), which halves matmul throughput there. PRISM_THREADS
// overrides the default when threads <= 0.
func Setup(threads int) (int, error) {
	if threads <= 0 {
		threads = runtime.NumCPU()
		if s := os.Getenv("PRISM_THREADS"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("PRISM_THREADS=%q: want a positive integer", s)
			}
			threads = n
			if most := MaxThreads(); n > most {
				return 0, fmt.Errorf("PRISM_THREADS=%d: at most %d threads (4 × this machine's %d cores)", n, most, runtime.NumCPU())
			}
		}
	}
	if most := MaxThreads(); threads > most {
		return 0, fmt.Errorf("%d threads: at most %d (4 × this machine's %d cores; more only adds contention, and tens of thousands deadlock libtorch)", threads, most, runtime.NumCPU())
	}
	libtch.AtSetNumThreads(threads)
	return libtch.AtGetNumThreads(), nil
}

// MaxThreads is the most intra-op threads Setup accepts.
func MaxThreads() int { return 4 * runtime.NumCPU() }

// Info describes the libtorch prism runs on.
type Info struct {
	LibtorchVersion string `json:"libtorch_version"`
	LibtorchSource  string `json:"libtorch_source"`
	LibtorchRoot    string `json:"libtorch_root"`
	CUDABuild       bool   `json:"cuda_build"`
	CUDAAvailable   bool   `json:"cuda_available"`
	CUDADevices     int    `json:"cuda_devices"`
	BLAS            string `json:"blas"`
	// SlowBLAS is set when the reference (unoptimised) BLAS is loaded.
	SlowBLAS bool `json:"slow_blas"`
	// BLASThreading is how the loaded OpenBLAS threads ("OpenMP",
	// "pthreads", "single-threaded"; "" for other BLAS libraries) and
	// ParallelBackend libtorch's own intra-op threading ("OpenMP",
	// "native thread pool", "TBB"). BLASThreadClash is set when OpenBLAS's
	// pthreads run beside libtorch's OpenMP threads: both pools then fight
	// over the cores (toy training twice as slow on 2 cores).
	BLASThreading   string `json:"blas_threading,omitempty"`
	ParallelBackend string `json:"parallel_backend,omitempty"`
	BLASThreadClash bool   `json:"blas_thread_clash,omitempty"`
	Threads         int    `json:"threads"`
	InteropThreads  int    `json:"interop_threads"`
	Generated       int    `json:"gotch_generated_functions"`
	Disabled        int    `json:"gotch_disabled_functions"`
	// Dist lists the process groups multi-process training can use
	// ("gloo", "gloo,nccl"); DistNote says why there are none.
	Dist     string `json:"dist_backends"`
	DistNote string `json:"dist_note,omitempty"`
}

// Inspect reports on the running libtorch.
func Inspect() Info {
	info := Info{
		LibtorchVersion: libtch.PrismLibtorchVersion,
		LibtorchSource:  libtch.PrismLibtorchSource,
		LibtorchRoot:    libtch.PrismLibtorchRoot,
		CUDABuild:       libtch.PrismLibtorchCUDA,
		Threads:         libtch.AtGetNumThreads(),
		InteropThreads:  libtch.AtGetNumInteropThreads(),
		Generated:       libtch.PrismGenerated,
		Disabled:        len(libtch.PrismDisabled),
		Dist:            libtch.PrismDistBackends(),
		DistNote:        libtch.PrismDistNote,
	}
	info.CUDAAvailable = libtch.AtcCudaIsAvailable()
	if info.CUDAAvailable {
		info.CUDADevices = int(libtch.AtcCudaDeviceCount())
	}
	info.BLAS, info.SlowBLAS = blas(libtch.PrismShowConfig(), loadedLibraries())
	info.ParallelBackend = parallelBackend(libtch.PrismParallelInfo())
	if cfg, threading, ok := openBLAS(); ok && strings.HasPrefix(info.BLAS, "OpenBLAS") {
		info.BLASThreading = threading
		if v := strings.Fields(cfg); len(v) >= 2 && v[0] == "OpenBLAS" {
			info.BLAS = "OpenBLAS " + v[1] + strings.TrimPrefix(info.BLAS, "OpenBLAS")
		}
		info.BLASThreadClash = threading == "pthreads" && info.ParallelBackend == "OpenMP"
	}
	return info
}

// parallelBackend reads libtorch's intra-op backend from
// at::get_parallel_info() ("ATen parallel backend: OpenMP").
func parallelBackend(info string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ATen parallel backend:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// DisabledFunctions lists the gotch functions this libtorch cannot build.
func DisabledFunctions() []string {
	return append([]string(nil), libtch.PrismDisabled...)
}

// blas names the BLAS libtorch uses. libtorch says what it was built
// against (BLAS_INFO); with a generic "blas" build (Debian's), the library
// actually loaded decides, so the loaded libraries are read too.
func blas(config string, loaded []string) (name string, slow bool) {
	built := ""
	for _, f := range strings.FieldsFunc(config, func(r rune) bool { return r == ',' || r == '\n' }) {
		f = strings.TrimSpace(f)
		if v, ok := strings.CutPrefix(f, "BLAS_INFO="); ok {
			built = v
		}
	}
	if built == "mkl" {
		return "MKL", false
	}
	for _, l := range loaded {
		base := filepath.Base(l)
		switch {
		case strings.Contains(l, "openblas"):
			return "OpenBLAS (" + l + ")", false
		case strings.Contains(base, "mkl"):
			return "MKL (" + l + ")", false
		case strings.Contains(base, "blis"):
			return "BLIS (" + l + ")", false
		case strings.Contains(base, "atlas") || strings.Contains(l, "/atlas/"):
			return "ATLAS (" + l + ")", false
		case strings.HasPrefix(base, "libblas.so"):
			return "reference BLAS (" + l + "): slow, install OpenBLAS (make setup does)", true
		}
	}
	if built != "" {
		return built, false
	}
	return "unknown", false
}

// loadedLibraries lists the shared libraries mapped into this process with
// symlinks resolved (Debian selects its BLAS through alternatives links).
func loadedLibraries() []string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil
	}
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.Contains(fields[5], ".so") {
			continue
		}
		p := fields[5]
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}
