package gotchadapt

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// distSource is prism's C++ shim over libtorch's c10d (TCPStore, Gloo and
// NCCL process groups). It goes into the adapted binding's native library
// so that it is compiled with the same flags against the same libtorch.
//
//go:embed csrc/dist.cpp
var distSource string

// distVariant is one configuration of the shim to try.
type distVariant struct {
	name     string   // "gloo,nccl", "gloo" or "" (unavailable)
	defines  []string // prepended as #define lines
	includes []string // extra include folders
	libs     []string // extra libraries, without "-l"
}

// distVariants lists the configurations to try, best first. The last one
// always builds: its functions return why the others did not.
func distVariants(lt *Libtorch) []distVariant {
	var vs []distVariant
	gloo := []string{"PRISM_DIST_GLOO 1", "USE_C10D_GLOO 1"}
	if lt.CUDA {
		nccl := append([]string{"PRISM_DIST_NCCL 1", "USE_C10D_NCCL 1"}, gloo...)
		inc := siblingIncludes(lt)
		vs = append(vs, distVariant{name: "gloo,nccl", defines: nccl, includes: inc},
			distVariant{name: "gloo,nccl", defines: nccl, includes: inc, libs: []string{"gloo"}})
	}
	// Distribution packages (Debian's libtorch) link Gloo as a shared
	// library of its own; official builds carry it inside libtorch_cpu.
	vs = append(vs, distVariant{name: "gloo", defines: gloo},
		distVariant{name: "gloo", defines: gloo, libs: []string{"gloo"}})
	return vs
}

// siblingIncludes finds the include folders next to the run-time library
// folders (pip's nvidia/*/lib hold the CUDA runtime and NCCL; their
// headers are in nvidia/*/include).
func siblingIncludes(lt *Libtorch) []string {
	var out []string
	for _, r := range lt.RPath {
		inc := filepath.Join(filepath.Dir(r), "include")
		if fi, err := os.Stat(inc); err == nil && fi.IsDir() {
			out = append(out, inc)
		}
	}
	return out
}

// distProbe describes the headers the shim's configurations depend on
// beyond libtorch's own (Gloo's, the CUDA runtime's and NCCL's), so that
// installing them later (apt-get install libgloo-dev) rebuilds the shim.
func distProbe(lt *Libtorch) string {
	var b strings.Builder
	for _, d := range append(append([]string{}, lt.IncludeDirs...), siblingIncludes(lt)...) {
		for _, h := range []string{"gloo/config.h", "nccl.h", "cuda_runtime_api.h"} {
			if fi, err := os.Stat(filepath.Join(d, h)); err == nil {
				fmt.Fprintf(&b, "%s:%d:%d|", filepath.Join(d, h), fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	return b.String()
}

func (v distVariant) source(unavailable string) string {
	var b strings.Builder
	for _, d := range v.defines {
		b.WriteString("#define " + d + "\n")
	}
	if unavailable != "" {
		fmt.Fprintf(&b, "#define PRISM_DIST_UNAVAILABLE %s\n", cString(unavailable))
	}
	b.WriteString(distSource)
	return b.String()
}

// buildDist compiles the shim in the first configuration that compiles and
// links with objs, and leaves the archive linked with it. It returns the
// configuration's name ("" when none works), the extra libraries it needs
// and, when it fell back, why.
func buildDist(ctx context.Context, c *compiler, lt *Libtorch, objs []string, archive string, logf func(string, ...any)) (name string, libs []string, note string, err error) {
	var why []string
	for _, v := range distVariants(lt) {
		obj, reason, err := compileDist(ctx, c, v, "")
		if err != nil {
			return "", nil, "", err
		}
		if reason == "" {
			out, lerr := linkProbeLibs(ctx, c.cxx, filepath.Dir(archive), append(append([]string{}, objs...), obj), archive, lt, v.libs)
			if lerr == nil {
				return v.name, v.libs, "", nil
			}
			reason = "link: " + firstErrorLine(out)
		}
		why = append(why, fmt.Sprintf("%s (libs %v): %s", v.name, v.libs, reason))
	}
	note = "distributed training is not available with " + lt.Describe() + ": the c10d shim did not build (" + strings.Join(why, "; ") + ")"
	logf("%s", note)
	obj, reason, err := compileDist(ctx, c, distVariant{}, note)
	if err != nil {
		return "", nil, "", err
	}
	if reason != "" {
		return "", nil, "", fmt.Errorf("compiling the c10d stub: %s", reason)
	}
	if out, err := linkProbe(ctx, c.cxx, filepath.Dir(archive), append(append([]string{}, objs...), obj), archive, lt); err != nil {
		return "", nil, "", fmt.Errorf("linking the c10d stub: %w\n%s", err, tail(out, 20))
	}
	return "", nil, note, nil
}

// compileDist compiles one configuration of the shim; reason says why it
// did not compile.
func compileDist(ctx context.Context, c *compiler, v distVariant, unavailable string) (obj, reason string, err error) {
	cc := *c
	cc.args = append([]string{}, c.args...)
	for _, d := range v.includes {
		cc.args = append(cc.args, "-I"+d)
	}
	cc.identity = c.identity + "\x00" + strings.Join(v.includes, ":")
	u := &unit{name: "prism_dist.cpp", disabled: map[string]bool{}, strict: true}
	res, err := cc.compile(ctx, u, v.source(unavailable))
	if err != nil {
		// A compile error no function can be blamed for: this
		// configuration does not build here.
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		return "", firstErrorLine(err.Error()), nil
	}
	if len(res.failed) > 0 || res.obj == "" {
		return "", firstErrorLine(res.stderr), nil
	}
	return res.obj, "", nil
}

// firstErrorLine picks the first compiler or linker error of out.
func firstErrorLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "error") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(firstLine.FindString(out))
}

// distGo is the Go side of the shim, generated into gotch's libtch
// package (cgo functions cannot be called from another package).
func distGo(st *Stamp) string {
	return fmt.Sprintf(`// Code generated by prism's gotch adapter; DO NOT EDIT.

package libtch

// #include <stdlib.h>
// #include <stdint.h>
// const char *prism_dist_backends();
// char *prism_dist_init(const char *backend, const char *host, int port, int rank, int world, int64_t timeout_ms, void **out);
// char *prism_dist_allreduce_sum(void *g, void **ts, int n);
// char *prism_dist_broadcast(void *g, void **ts, int n, int root);
// char *prism_dist_allgather_f64(void *g, const double *in, int64_t n, double *out, int world);
// char *prism_dist_barrier(void *g);
// void prism_dist_free(void *g);
import "C"

import (
	"errors"
	"unsafe"
)

// PrismDistNote says why this build has no process group ("" when it has).
const PrismDistNote = %q

// PrismDistBackends lists the process groups this build has: "gloo",
// "gloo,nccl" or "".
func PrismDistBackends() string { return C.GoString(C.prism_dist_backends()) }

func prismErr(p *C.char) error {
	if p == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(p))
	return errors.New(C.GoString(p))
}

// PrismDistInit joins a process group of world ranks whose rank 0 hosts
// the rendezvous at host:port.
func PrismDistInit(backend, host string, port, rank, world int, timeoutMs int64) (unsafe.Pointer, error) {
	cb, ch := C.CString(backend), C.CString(host)
	defer C.free(unsafe.Pointer(cb))
	defer C.free(unsafe.Pointer(ch))
	var g unsafe.Pointer
	if err := prismErr(C.prism_dist_init(cb, ch, C.int(port), C.int(rank), C.int(world), C.int64_t(timeoutMs), &g)); err != nil {
		return nil, err
	}
	return g, nil
}

// cTensors copies tensor handles (C pointers) into C memory for the call.
func cTensors(ts []unsafe.Pointer) (*unsafe.Pointer, func()) {
	p := C.malloc(C.size_t(len(ts)) * C.size_t(unsafe.Sizeof(uintptr(0))))
	copy(unsafe.Slice((*unsafe.Pointer)(p), len(ts)), ts)
	return (*unsafe.Pointer)(p), func() { C.free(p) }
}

// PrismDistAllReduceSum sums the tensors over every rank, in place, in one
// collective.
func PrismDistAllReduceSum(g unsafe.Pointer, ts []unsafe.Pointer) error {
	if len(ts) == 0 {
		return nil
	}
	p, free := cTensors(ts)
	defer free()
	return prismErr(C.prism_dist_allreduce_sum(g, p, C.int(len(ts))))
}

// PrismDistBroadcast copies root's tensors to every rank, in place.
func PrismDistBroadcast(g unsafe.Pointer, ts []unsafe.Pointer, root int) error {
	if len(ts) == 0 {
		return nil
	}
	p, free := cTensors(ts)
	defer free()
	return prismErr(C.prism_dist_broadcast(g, p, C.int(len(ts)), C.int(root)))
}

// PrismDistAllGatherF64 gathers every rank's in (the same length on every
// rank) into out, rank after rank; len(out) is world*len(in).
func PrismDistAllGatherF64(g unsafe.Pointer, in, out []float64, world int) error {
	if len(out) != world*len(in) {
		return errors.New("allgather: output length is not world size times input length")
	}
	if len(in) == 0 {
		return nil
	}
	return prismErr(C.prism_dist_allgather_f64(g, (*C.double)(unsafe.Pointer(&in[0])), C.int64_t(len(in)), (*C.double)(unsafe.Pointer(&out[0])), C.int(world)))
}

// PrismDistBarrier waits for every rank.
func PrismDistBarrier(g unsafe.Pointer) error { return prismErr(C.prism_dist_barrier(g)) }

// PrismDistFree leaves the group.
func PrismDistFree(g unsafe.Pointer) { C.prism_dist_free(g) }
`, st.DistNote)
}
