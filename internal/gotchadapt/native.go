package gotchadapt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// A unit is one C++ translation unit of the binding: a run of top-level
// segments behind a common preamble.
type unit struct {
	name     string // file name, e.g. "gen_03.cpp"
	preamble string
	segs     []segment
	// disabled maps function names to the reason they were disabled.
	disabled map[string]bool
	// strict units may not disable anything: a failure is fatal.
	strict bool
}

func (u *unit) source(msg func(name string) string) string {
	var b strings.Builder
	b.WriteString(u.preamble)
	for _, s := range u.segs {
		if s.name != "" && u.disabled[s.name] {
			b.WriteString(disabledBody(s, msg(s.name)))
			continue
		}
		b.WriteString(s.text)
	}
	return b.String()
}

// funcAt returns the function defined at line (1-based) of the unit's
// source, or "".
func (u *unit) funcAt(line int) string {
	n := 1 + strings.Count(u.preamble, "\n")
	for _, s := range u.segs {
		l := s.lines()
		if line >= n && line < n+l {
			return s.name
		}
		n += l
	}
	return ""
}

// compiler runs the C++ compiler with a content-addressed object cache.
type compiler struct {
	cxx      string
	args     []string // flags shared by every unit
	identity string   // compiler version + flags + header contents
	cacheDir string
	workDir  string
}

type compileResult struct {
	obj    string
	failed []string // functions the compiler rejected
	stderr string
}

// cacheEntry records a failed compile so a rerun need not repeat it.
type cacheEntry struct {
	Failed []string `json:"failed"`
	Stderr string   `json:"stderr"`
}

func (c *compiler) compile(ctx context.Context, u *unit, src string) (compileResult, error) {
	sum := sha256.Sum256([]byte(c.identity + "\x00" + src))
	key := hex.EncodeToString(sum[:16])
	obj := filepath.Join(c.workDir, strings.TrimSuffix(u.name, ".cpp")+".o")
	srcPath := filepath.Join(c.workDir, u.name)
	if err := os.WriteFile(srcPath, []byte(src), 0o644); err != nil {
		return compileResult{}, err
	}
	if c.cacheDir != "" {
		cached := filepath.Join(c.cacheDir, key+".o")
		if err := copyFile(cached, obj); err == nil {
			return compileResult{obj: obj}, nil
		}
		if b, err := os.ReadFile(filepath.Join(c.cacheDir, key+".fail")); err == nil {
			var e cacheEntry
			if json.Unmarshal(b, &e) == nil && len(e.Failed) > 0 {
				return compileResult{failed: e.Failed, stderr: e.Stderr}, nil
			}
		}
	}
	args := append(append([]string{}, c.args...), "-c", u.name, "-o", filepath.Base(obj))
	cmd := exec.CommandContext(ctx, c.cxx, args...)
	cmd.Dir = c.workDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return compileResult{}, ctx.Err()
		}
		failed := failedFunctions(stderr.String(), u)
		if len(failed) == 0 {
			return compileResult{}, fmt.Errorf("compiling %s: %w\n%s", srcPath, err, tail(stderr.String(), 40))
		}
		res := compileResult{failed: failed, stderr: stderr.String()}
		if c.cacheDir != "" {
			b, _ := json.Marshal(cacheEntry{Failed: failed, Stderr: tail(stderr.String(), 200)})
			_ = writeFileAtomic(filepath.Join(c.cacheDir, key+".fail"), b)
		}
		return res, nil
	}
	if c.cacheDir != "" {
		_ = copyFileAtomic(obj, filepath.Join(c.cacheDir, key+".o"))
	}
	return compileResult{obj: obj}, nil
}

var (
	diagRE      = regexp.MustCompile(`^(?:In file included from )?([^:\s]+\.cpp):(\d+):(?:\d+:)?\s*(error|fatal error|required from here|note: in expansion of macro)`)
	inFuncRE    = regexp.MustCompile(`^([^:\s]+\.cpp): In function '[^']*?\b([A-Za-z_]\w*)\(`)
	undefinedRE = regexp.MustCompile("in function [`']([A-Za-z_]\\w*)'")
)

// failedFunctions maps compiler diagnostics to the functions of u they
// point into.
func failedFunctions(stderr string, u *unit) []string {
	set := map[string]bool{}
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if m := inFuncRE.FindStringSubmatch(l); m != nil && filepath.Base(m[1]) == u.name {
			set[m[2]] = true
			continue
		}
		m := diagRE.FindStringSubmatch(l)
		if m == nil || filepath.Base(m[1]) != u.name {
			continue
		}
		var line int
		fmt.Sscan(m[2], &line)
		if name := u.funcAt(line); name != "" {
			set[name] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// undefinedFunctions maps linker "undefined reference" errors to the
// functions that made them.
func undefinedFunctions(stderr string) []string {
	set := map[string]bool{}
	for _, m := range undefinedRE.FindAllStringSubmatch(stderr, -1) {
		set[m[1]] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// buildUnits compiles every unit, disabling the C API functions the
// compiler or the linker rejects, until all compile and link. It returns
// the object files.
func buildUnits(ctx context.Context, c *compiler, units []*unit, api map[string]bool, jobs int, msg func(string) string, linkCheck func(objs []string) (string, error), logf func(string, ...any)) ([]string, error) {
	objs := make([]string, len(units))
	pending := make([]int, len(units))
	for i := range units {
		pending[i] = i
	}
	const maxRounds = 6
	for round := 1; len(pending) > 0; round++ {
		if round > maxRounds {
			return nil, fmt.Errorf("the binding still fails to compile after %d rounds of disabling functions", maxRounds)
		}
		results := make([]compileResult, len(units))
		errs := make([]error, len(units))
		sem := make(chan struct{}, max(jobs, 1))
		var wg sync.WaitGroup
		for _, i := range pending {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				results[i], errs[i] = c.compile(ctx, units[i], units[i].source(msg))
			}(i)
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		var next []int
		for _, i := range pending {
			r := results[i]
			if r.obj != "" {
				objs[i] = r.obj
				continue
			}
			u := units[i]
			if err := disable(u, r.failed, api); err != nil {
				return nil, fmt.Errorf("%s: %w\n%s", u.name, err, tail(r.stderr, 40))
			}
			logf("round %d: %s: disabled %d functions this libtorch cannot compile", round, u.name, len(r.failed))
			next = append(next, i)
		}
		pending = next
		if len(pending) > 0 {
			continue
		}
		// Everything compiled; make sure it also links.
		out, err := linkCheck(objs)
		if err == nil {
			break
		}
		undef := undefinedFunctions(out)
		if len(undef) == 0 {
			return nil, fmt.Errorf("link check: %w\n%s", err, tail(out, 40))
		}
		for i, u := range units {
			var mine []string
			for _, n := range undef {
				for _, s := range u.segs {
					if s.name == n {
						mine = append(mine, n)
					}
				}
			}
			if len(mine) == 0 {
				continue
			}
			if err := disable(u, mine, api); err != nil {
				return nil, fmt.Errorf("%s: link check: %w\n%s", u.name, err, tail(out, 40))
			}
			logf("link check: %s: disabled %d functions with undefined references", u.name, len(mine))
			pending = append(pending, i)
		}
		if len(pending) == 0 {
			return nil, fmt.Errorf("link check: undefined references outside the binding's functions: %s\n%s", strings.Join(undef, ", "), tail(out, 40))
		}
	}
	return objs, nil
}

func disable(u *unit, names []string, api map[string]bool) error {
	for _, n := range names {
		if u.strict || !api[n] {
			return fmt.Errorf("%s does not compile against this libtorch and is not a C API function that can be disabled", n)
		}
		if u.disabled[n] {
			return fmt.Errorf("%s still fails after it was disabled", n)
		}
		u.disabled[n] = true
	}
	return nil
}

var declRE = regexp.MustCompile(`(?m)^[^#/\n][^;{}\n]*?\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*;`)

// apiNames lists the functions declared in gotch's C headers.
func apiNames(headers ...string) map[string]bool {
	set := map[string]bool{}
	for _, h := range headers {
		for _, m := range declRE.FindAllStringSubmatch(h, -1) {
			set[m[1]] = true
		}
	}
	return set
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = append([]string{"..."}, ls[len(ls)-lines:]...)
	}
	return strings.Join(ls, "\n")
}
