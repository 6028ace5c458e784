package torch

// #define _GNU_SOURCE
// #include <dlfcn.h>
// #include <stdlib.h>
// typedef int (*prism_int_fn)(void);
// typedef char *(*prism_str_fn)(void);
// static void *prism_sym(const char *name) { return dlsym(RTLD_DEFAULT, name); }
// static int prism_call_int(void *f) { return ((prism_int_fn)f)(); }
// static char *prism_call_str(void *f) { return ((prism_str_fn)f)(); }
import "C"

import (
	"strings"
	"unsafe"
)

func sym(name string) unsafe.Pointer {
	c := C.CString(name)
	defer C.free(unsafe.Pointer(c))
	return C.prism_sym(c)
}

// openBLAS asks the OpenBLAS loaded in this process (if any) how it was
// built and how it threads. The library's own answer is the only reliable
// one: Debian names the pthreads and OpenMP builds' files alike.
func openBLAS() (config, threading string, ok bool) {
	par := sym("openblas_get_parallel")
	if par == nil {
		return "", "", false
	}
	switch C.prism_call_int(par) {
	case 0:
		threading = "single-threaded"
	case 1:
		threading = "pthreads"
	case 2:
		threading = "OpenMP"
	default:
		threading = "unknown threading"
	}
	if f := sym("openblas_get_config"); f != nil {
		if p := C.prism_call_str(f); p != nil {
			config = strings.TrimSpace(C.GoString(p)) // static storage: not freed
		}
	}
	return config, threading, true
}
