package badinput

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The RLIMIT_DATA every prism run of the corpus gets is the binary's own
// start-up need, measured (startupData), plus dataMargin. Measured on
// linux/amd64 with one BLAS thread: prism with CPU libtorch 1.13.1 needs
// about 350 MiB of data segment to start (libtorch loaded, an input
// refused), a CUDA build of libtorch 2.6 about 1 GiB. The corpus ran for
// months under a fixed 640 MiB with 1.13, that is start-up plus about
// 290 MiB, which covers the controls' one-step training runs (OpenBLAS's
// buffers) and the largest case, a 100 MB line refused after the 64 MiB
// that data.MaxLineBytes allows. The margin keeps that room and still stops
// any allocation the size of a hostile header's claims (gigabytes), which
// TestMemoryLimitBites checks. RLIMIT_AS would be the obvious limit, but it
// counts address space reserved and never used (64 MiB glibc arenas per
// thread, the Go heap's reservations): libtorch does not start under 2 GiB
// of it.
const dataMargin = 320 << 20

// caseTimeout bounds one run; a case that hangs is a failure.
const caseTimeout = 90 * time.Second

// The test binary doubles as the wrapper that applies the memory limit
// before it becomes prism (syscall.Exec keeps the limit), so the test needs
// no prlimit(1).
const (
	execEnv  = "PRISM_BADINPUT_EXEC"
	limitEnv = "PRISM_BADINPUT_DATA_LIMIT"
	// allocProbe, as execEnv, allocates and touches as many bytes as the
	// limit instead.
	allocProbe = "alloc-probe"
)

func TestMain(m *testing.M) {
	if bin := os.Getenv(execEnv); bin != "" {
		os.Exit(limitedExec(bin))
	}
	code := m.Run()
	if prismBin != "" {
		os.RemoveAll(filepath.Dir(prismBin))
	}
	os.Exit(code)
}

func limitedExec(bin string) int {
	n, err := strconv.ParseUint(os.Getenv(limitEnv), 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wrapper:", limitEnv, err)
		return 126
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
		fmt.Fprintln(os.Stderr, "wrapper: setrlimit:", err)
		return 126
	}
	if bin == allocProbe {
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		return 0
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, execEnv+"=") && !strings.HasPrefix(kv, limitEnv+"=") {
			env = append(env, kv)
		}
	}
	err = syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), env)
	fmt.Fprintln(os.Stderr, "wrapper: exec:", err)
	return 127
}

// corpus is testdata/bad/cases.json and cases-*.json.
type corpus struct {
	// Controls are good inputs that must succeed under the same limit: they
	// show the fixtures work, so each case fails for the one thing it
	// breaks, and that the memory limit leaves room for real work.
	Controls []control `json:"controls"`
	Cases    []badCase `json:"cases"`
}

type control struct {
	Name  string   `json:"name"`
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"`
	// Exist are paths the run must create.
	Exist []string `json:"exist,omitempty"`
}

// badCase is one hostile input. Paths are relative to testdata/bad, where
// prism runs; $OUT is a fresh folder of the case's own.
type badCase struct {
	Name string `json:"name"`
	// Input is the offending file or folder; the error must name it as
	// given.
	Input string   `json:"input"`
	Args  []string `json:"args"`
	Stdin string   `json:"stdin,omitempty"`
	// Want are further substrings the error must contain: what is wrong and
	// where (line, row, field, tensor).
	Want []string `json:"want"`
	// Absent are paths that must not exist afterwards: the run folder, a
	// model, an output file.
	Absent []string `json:"absent,omitempty"`
	// Setup makes what cannot be committed: files too large, folders
	// without permissions.
	Setup []setup `json:"setup,omitempty"`
}

type setup struct {
	// Kind is "long-line" (one line of Size bytes: Prefix, then filler),
	// "readonly-dir" (made without write permission; skipped as root) or
	// "sysfs" (skips the case unless Path is a sysfs mount).
	Kind   string `json:"kind"`
	Path   string `json:"path"`
	Size   int64  `json:"size,omitempty"`
	Prefix string `json:"prefix,omitempty"`
}

func loadCorpus(t *testing.T) (string, *corpus) {
	t.Helper()
	root := corpusDir(t)
	// cases.json, then cases-*.json in name order: one file per group of
	// inputs keeps each under the corpus's 64 KiB file limit.
	more, err := filepath.Glob(filepath.Join(root, "cases-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(more)
	var all corpus
	for _, path := range append([]string{filepath.Join(root, "cases.json")}, more...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var c corpus
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("%s: %v", filepath.Base(path), err)
		}
		all.Controls = append(all.Controls, c.Controls...)
		all.Cases = append(all.Cases, c.Cases...)
	}
	return root, &all
}

// TestCorpusManifest checks the case files themselves: unique names, committed
// inputs that exist, at least 60 cases.
func TestCorpusManifest(t *testing.T) {
	root, c := loadCorpus(t)
	if len(c.Cases) < 60 {
		t.Errorf("%d cases, want at least 60", len(c.Cases))
	}
	seen := map[string]bool{}
	for _, bc := range c.Cases {
		if bc.Name == "" || seen[bc.Name] {
			t.Errorf("case name %q is empty or repeated", bc.Name)
		}
		seen[bc.Name] = true
		if bc.Input == "" || len(bc.Want) == 0 || len(bc.Args) == 0 {
			t.Errorf("%s: input, args and want are required", bc.Name)
		}
		// Inputs under $OUT are made at run time, and no-such-* paths are
		// absent by design; any other input exists, or is a file missing
		// from a folder that does.
		if strings.Contains(bc.Input, "$OUT") || strings.Contains(bc.Input, "no-such") {
			continue
		}
		in := bc.Input
		if !filepath.IsAbs(in) {
			in = filepath.Join(root, in)
		}
		if _, err := os.Stat(in); err != nil {
			if _, perr := os.Stat(filepath.Dir(in)); perr != nil {
				t.Errorf("%s: input: %v", bc.Name, err)
			}
		}
	}
}

var (
	buildOnce sync.Once
	prismBin  string
	buildErr  error
	buildSkip string
)

// prism builds bin/prism once into a temporary folder.
func prism(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		repo, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "prism-badinput-")
		if err != nil {
			buildErr = err
			return
		}
		prismBin = filepath.Join(dir, "prism")
		// go test puts its own go first on PATH.
		cmd := exec.Command("go", "build", "-o", prismBin, "./cmd/prism")
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err == nil {
			return
		}
		// Without make setup (go.work and the adapted gotch) or without
		// libtorch there is no binary to test.
		if _, serr := os.Stat(filepath.Join(repo, "go.work")); serr != nil || bytes.Contains(out, []byte("torch")) {
			buildSkip = fmt.Sprintf("cannot build prism without libtorch (run make setup): %s", firstLines(out, 5))
			return
		}
		buildErr = fmt.Errorf("go build ./cmd/prism: %v\n%s", err, out)
	})
	switch {
	case buildSkip != "":
		t.Skip(buildSkip)
	case buildErr != nil:
		t.Fatal(buildErr)
	}
	return prismBin
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// result is one finished run.
type result struct {
	code           int
	stdout, stderr string
	maxRSSKiB      int64
	elapsed        time.Duration
}

var (
	limitOnce sync.Once
	limit     uint64
	limitErr  error
)

// dataLimit is the RLIMIT_DATA of every run: the start-up need of the
// prism binary under test plus dataMargin.
func dataLimit(t *testing.T) uint64 {
	t.Helper()
	bin := prism(t)
	limitOnce.Do(func() {
		var start uint64
		start, limitErr = startupData(bin)
		limit = start + dataMargin
		if limitErr == nil {
			t.Logf("prism starts in %d MiB of data segment; every run gets %d MiB", start>>20, limit>>20)
		}
	})
	if limitErr != nil {
		t.Fatal(limitErr)
	}
	return limit
}

// startupData finds, to 8 MiB, the smallest RLIMIT_DATA under which
// `prism version` (libtorch loaded and inspected) runs. It halves the
// limit from 8 GiB until a start fails, then bisects: starting from above
// keeps it out of the range where a start does not fail but hangs (seen
// below about 250 MiB with libtorch 1.13), and each try is bounded anyway.
func startupData(bin string) (uint64, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	starts := func(n uint64) (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, self, "version")
		cmd.Dir = os.TempDir()
		cmd.Env = childEnv(bin, n)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return err == nil && ctx.Err() == nil, string(out)
	}
	hi := uint64(8 << 30)
	if ok, out := starts(hi); !ok {
		return 0, fmt.Errorf("prism version does not run even under an RLIMIT_DATA of %d GiB:\n%s", hi>>30, tail(out))
	}
	lo := uint64(0)
	for n := hi / 2; n >= 64<<20; n /= 2 {
		if ok, _ := starts(n); !ok {
			lo = n
			break
		}
		hi = n
	}
	for lo > 0 && hi-lo > 8<<20 {
		mid := lo + (hi-lo)/2
		if ok, _ := starts(mid); ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// runLimited runs prism (or the allocation probe) in dir under dataLimit.
func runLimited(t *testing.T, bin, dir, stdin string, args []string) result {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	n := dataLimit(t)
	ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Dir = dir
	cmd.Env = childEnv(bin, n)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		f, err := os.Open(filepath.Join(dir, stdin))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd.Stdin = f
	}
	start := time.Now()
	err = cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	if ctx.Err() != nil {
		t.Fatalf("still running after %v (killed)\nstderr:\n%s", caseTimeout, tail(res.stderr))
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	res.code = cmd.ProcessState.ExitCode()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSSKiB = ru.Maxrss
	}
	return res
}

// childEnv is the environment of a run: one libtorch and BLAS thread (the
// machine is shared, and fewer threads use less memory), and none of the
// PRISM_ variables that would change a configuration.
func childEnv(bin string, limit uint64) []string {
	env := []string{execEnv + "=" + bin, limitEnv + "=" + strconv.FormatUint(limit, 10),
		"PRISM_THREADS=1", "OMP_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"}
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); {
		case strings.HasPrefix(k, "PRISM_"), k == "OMP_NUM_THREADS", k == "OPENBLAS_NUM_THREADS":
		default:
			env = append(env, kv)
		}
	}
	return env
}

// capped keeps the first 1 MiB written to it: a runaway stream must not
// cost the test its memory.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := 1<<20 - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// crashMarkers are what a panic, a Go runtime abort or a C++ exception
// print.
var crashMarkers = []string{"panic:", "goroutine ", "SIGSEGV", "SIGABRT", "fatal error:", "runtime error",
	"terminate called", "bad_alloc", "out of memory", "wrapper:"}

// errorMessage is prism's error: from the last line that starts with
// "prism: " to the end (a message may span lines).
func errorMessage(stderr string) (string, bool) {
	i := strings.LastIndex("\n"+stderr, "\nprism: ")
	if i < 0 {
		return "", false
	}
	return strings.TrimSpace(stderr[i:]), true
}

func expand(s, out string) string { return strings.ReplaceAll(s, "$OUT", out) }

func expandAll(ss []string, out string) []string {
	r := make([]string, len(ss))
	for i, s := range ss {
		r[i] = expand(s, out)
	}
	return r
}

func TestBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prism about 170 times (2.5 minutes on 2 cores)")
	}
	root, c := loadCorpus(t)
	bin := prism(t)
	corpusFiles := snapshot(t, root)
	var worst int64
	var worstName string
	start := time.Now()
	for _, bc := range c.Cases {
		t.Run(bc.Name, func(t *testing.T) {
			out := t.TempDir()
			for _, s := range bc.Setup {
				if err := s.make(t, expand(s.Path, out)); err != nil {
					t.Fatal(err)
				}
			}
			before := snapshot(t, out)
			res := runLimited(t, bin, root, bc.Stdin, expandAll(bc.Args, out))
			t.Logf("exit %d in %v, max RSS %d MiB", res.code, res.elapsed.Round(time.Millisecond), res.maxRSSKiB>>10)
			if res.maxRSSKiB > worst {
				worst, worstName = res.maxRSSKiB, bc.Name
			}
			for _, m := range crashMarkers {
				if strings.Contains(res.stderr, m) {
					t.Fatalf("crashed (%q in stderr), exit %d:\n%s", m, res.code, tail(res.stderr))
				}
			}
			if res.code != 1 {
				t.Errorf("exit status %d, want 1 (prism's error exit)\nstderr:\n%s", res.code, tail(res.stderr))
			}
			msg, ok := errorMessage(res.stderr)
			if !ok {
				t.Fatalf("no \"prism: \" error line in stderr:\n%s", tail(res.stderr))
			}
			for _, w := range append([]string{expand(bc.Input, out)}, expandAll(bc.Want, out)...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if res.stdout != "" {
				t.Errorf("wrote to stdout: %q", firstLines([]byte(res.stdout), 3))
			}
			for _, p := range bc.Absent {
				p = expand(p, out)
				if !filepath.IsAbs(p) {
					p = filepath.Join(root, p)
				}
				// Under a regular file, a path cannot exist (ENOTDIR).
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
					t.Errorf("%s exists after the failed run (or cannot be checked: %v)", p, err)
				}
			}
			// Nothing written at all: every output of every case goes under
			// $OUT, which holds only what the setup made.
			for p := range snapshot(t, out) {
				if !before[p] {
					t.Errorf("%s left behind", p)
				}
			}
			t.Logf("error: %s", msg)
		})
	}
	t.Logf("%d cases in %v; largest max RSS %d MiB (%s), limit %d MiB", len(c.Cases),
		time.Since(start).Round(time.Second), worst>>10, worstName, dataLimit(t)>>20)
	unchanged(t, root, corpusFiles)
}

// snapshot lists the paths under dir.
func snapshot(t *testing.T, dir string) map[string]bool {
	t.Helper()
	paths := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths[p] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// unchanged checks that no run wrote into the corpus, which is where
// prism runs: before holds its paths from before the runs.
func unchanged(t *testing.T, root string, before map[string]bool) {
	t.Helper()
	for p := range snapshot(t, root) {
		if !before[p] {
			t.Errorf("%s: a run wrote into the corpus", p)
		}
	}
}

// sysfsMagic is sysfs's statfs type (SYSFS_MAGIC in linux/magic.h).
const sysfsMagic = 0x62656572

func (s setup) make(t *testing.T, path string) error {
	switch s.Kind {
	case "long-line":
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.WriteString(s.Prefix); err != nil {
			return err
		}
		chunk := bytes.Repeat([]byte("a"), 1<<20)
		for n := s.Size - int64(len(s.Prefix)); n > 0; n -= int64(len(chunk)) {
			if _, err := f.Write(chunk[:min(n, int64(len(chunk)))]); err != nil {
				return err
			}
		}
		return f.Close()
	case "readonly-dir":
		if os.Geteuid() == 0 {
			t.Skip("root writes into read-only folders; run-dir-in-sysfs and run-dir-under-a-file cover unwritable run folders")
		}
		return os.Mkdir(path, 0o555)
	case "sysfs":
		// sysfs refuses new folders to everyone, root included; anywhere
		// else the case would create one.
		var st syscall.Statfs_t
		if err := syscall.Statfs(path, &st); err != nil || st.Type != sysfsMagic {
			t.Skipf("%s is not sysfs", path)
		}
		return nil
	}
	return fmt.Errorf("unknown setup kind %q", s.Kind)
}

// TestControls runs good inputs under the same limit: they must succeed.
func TestControls(t *testing.T) {
	root, c := loadCorpus(t)
	bin := prism(t)
	corpusFiles := snapshot(t, root)
	for _, ctl := range c.Controls {
		t.Run(ctl.Name, func(t *testing.T) {
			out := t.TempDir()
			res := runLimited(t, bin, root, ctl.Stdin, expandAll(ctl.Args, out))
			t.Logf("exit %d in %v, max RSS %d MiB", res.code, res.elapsed.Round(time.Millisecond), res.maxRSSKiB>>10)
			if res.code != 0 {
				t.Fatalf("exit status %d\nstderr:\n%s", res.code, tail(res.stderr))
			}
			for _, p := range ctl.Exist {
				if _, err := os.Stat(expand(p, out)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	unchanged(t, root, corpusFiles)
}

// TestMemoryLimitBites checks that the limit stops an allocation of its
// own size, so a case that allocated what a hostile size claims (gigabytes)
// would fail.
func TestMemoryLimitBites(t *testing.T) {
	res := runLimited(t, allocProbe, t.TempDir(), "", nil)
	if res.code == 0 {
		t.Fatalf("%d MiB allocated under an RLIMIT_DATA of as much", dataLimit(t)>>20)
	}
	// The Go runtime reports the failed mmap as out of memory, or now and
	// then faults on it; either way the allocation did not happen.
	t.Logf("exit %d: %s", res.code, firstLines([]byte(res.stderr), 1))
}
