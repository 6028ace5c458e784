// Command testreport reads `go test -json` on standard input and prints
// what `go test` prints (a line per package, the output of failing tests),
// followed by a summary of skipped tests: how many, and which of them were
// skipped because the shared fixtures (the real Llama-3 tokenizer files,
// kept out of the repository) were not found. It exits 1 when a package
// failed.
//
//	go test -json ./... | go run ./internal/cmd/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"prism/internal/fixtures"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output events
	Test       string
	Output     string
	Elapsed    float64
}

type pkgState struct {
	out     map[string][]string // output by test ("" for the package)
	failed  map[string]bool
	skipped map[string]bool
	// running holds tests started and not finished: when a package dies
	// (a panic, a timeout), the culprit's output is there.
	running map[string]bool
}

type report struct {
	w        io.Writer
	pkgs     map[string]*pkgState
	failures int
	passed   int
	skips    []string // pkg.Test of every skipped test
	fixture  []string // pkg.Test skipped for want of shared fixtures
	noTests  int
}

func (r *report) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{out: map[string][]string{}, failed: map[string]bool{}, skipped: map[string]bool{}, running: map[string]bool{}}
		r.pkgs[name] = p
	}
	return p
}

func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		fmt.Fprint(r.w, e.Output)
		return
	case "output":
		p := r.pkg(e.Package)
		p.out[e.Test] = append(p.out[e.Test], e.Output)
		return
	}
	if e.Package == "" {
		return
	}
	p := r.pkg(e.Package)
	if e.Test != "" {
		if e.Action == "run" {
			p.running[e.Test] = true
		} else {
			delete(p.running, e.Test)
		}
		switch e.Action {
		case "pass":
			r.passed++
		case "fail":
			p.failed[e.Test] = true
		case "skip":
			// The skip message may follow the event: it is read when
			// the package ends.
			p.skipped[e.Test] = true
		}
		return
	}
	var skipped []string
	for t := range p.skipped {
		skipped = append(skipped, t)
	}
	sort.Strings(skipped)
	for _, t := range skipped {
		id := e.Package + " " + t
		why := skipReason(p.out[t])
		r.skips = append(r.skips, id+": "+why)
		if strings.Contains(why, fixtures.SkipMarker) {
			r.fixture = append(r.fixture, id)
		}
	}
	switch e.Action {
	case "pass":
		fmt.Fprintf(r.w, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		r.noTests++
		fmt.Fprintf(r.w, "?   \t%s\t[no test files]\n", e.Package)
	case "fail":
		r.failures++
		// The failing tests' output, then the package's own (a crash, a
		// timeout, a build failure), as go test shows them.
		var names []string
		for t := range p.failed {
			names = append(names, t)
		}
		for t := range p.running {
			if !p.failed[t] {
				names = append(names, t)
			}
		}
		sort.Strings(names)
		for _, t := range names {
			fmt.Fprint(r.w, strings.Join(p.out[t], ""))
		}
		fmt.Fprint(r.w, strings.Join(p.out[""], ""))
		fmt.Fprintf(r.w, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
	}
	if e.Action == "pass" || e.Action == "fail" || e.Action == "skip" {
		delete(r.pkgs, e.Package)
	}
}

// skipReason is the message a skipped test gave: its output without the
// framing lines, on one line.
func skipReason(out []string) string {
	var msg []string
	for _, l := range out {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		// "file_test.go:12: message": drop the position.
		if i := strings.Index(t, ".go:"); i > 0 && !strings.Contains(t[:i], " ") {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
			}
		}
		msg = append(msg, t)
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " ")
}

func (r *report) summary() {
	fmt.Fprintf(r.w, "\n%d tests passed, %d skipped", r.passed, len(r.skips))
	if r.failures > 0 {
		fmt.Fprintf(r.w, ", %d packages FAILED", r.failures)
	}
	fmt.Fprintln(r.w)
	for _, s := range r.skips {
		fmt.Fprintf(r.w, "  skipped %s\n", s)
	}
	if n := len(r.fixture); n > 0 {
		fmt.Fprintf(r.w, "%d of the skipped tests need the shared fixtures (the real Llama-3 tokenizer files, which Meta's licence keeps out of the repository); set PRISM_FIXTURES to a folder holding tokenizers/ to run them\n", n)
	} else {
		fmt.Fprintln(r.w, "no test was skipped for want of shared fixtures")
	}
}

func run(in io.Reader, w io.Writer) int {
	r := &report{w: w, pkgs: map[string]*pkgState{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			// go test prints some errors (a package that does not
			// compile, a flag it refuses) as plain text.
			fmt.Fprintf(w, "%s\n", line)
			continue
		}
		r.handle(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testreport: reading go test output: %v\n", err)
		return 1
	}
	r.summary()
	if r.failures > 0 || r.passed == 0 {
		return 1
	}
	return 0
}

func main() {
	start := time.Now()
	code := run(os.Stdin, os.Stdout)
	fmt.Printf("(%s)\n", time.Since(start).Round(time.Second))
	os.Exit(code)
}
