package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proc is one trainer process; its stdout and stderr go to a log file.
type proc struct {
	cmd   *exec.Cmd
	log   string
	start time.Time
	done  chan struct{} // closed once the process has exited and been reaped
	err   error         // from Wait, once done is closed
	steps *progressTail
	// killedAt is when kill sent SIGKILL, since start (0: never).
	killedAt time.Duration
}

func startTrainer(ctx context.Context, prism string, args []string, logPath string, env []string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, prism, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(trainerEnv(), env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", prism, err)
	}
	p := &proc{cmd: cmd, log: logPath, start: time.Now(), done: make(chan struct{})}
	p.steps = tailProgress(logPath, p.start, p.done)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// trainerEnv is this process's environment without PRISM_ variables: they
// would override the experiment's keys behind the test's back.
func trainerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PRISM_") {
			env = append(env, kv)
		}
	}
	return env
}

// kill sends SIGKILL unless the process has been reaped already.
func (p *proc) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	p.killedAt = time.Since(p.start)
	return nil
}

// killed says whether the process died of a signal; call it after done.
func (p *proc) killed() bool { return p.cmd.ProcessState.ExitCode() == -1 }

// sleep waits for d, the process's exit or ctx's end, and says whether
// the whole of d passed.
func (p *proc) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
	case <-ctx.Done():
	}
	return false
}

// tail returns the last n lines of the process's output.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// progressTail follows a trainer's output and notes when each progress
// line ("step N/T ...") appears. The trainer runs with run.log_every=1, so
// there is one a step.
type progressTail struct {
	mu   sync.Mutex
	last int
	at   map[int]time.Duration // since the process started
	wake chan struct{}         // closed and replaced at every new step
}

func tailProgress(path string, start time.Time, done <-chan struct{}) *progressTail {
	t := &progressTail{at: map[int]time.Duration{}, wake: make(chan struct{})}
	go t.follow(path, start, done)
	return t
}

func (t *progressTail) follow(path string, start time.Time, done <-chan struct{}) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var off int64
	var partial []byte
	for {
		exited := false
		select {
		case <-done:
			exited = true
		case <-tick.C:
		}
		off, partial = t.read(path, off, partial, time.Since(start))
		if exited {
			return
		}
	}
}

// read consumes the output past off and returns the new offset and the
// incomplete last line.
func (t *progressTail) read(path string, off int64, partial []byte, now time.Duration) (int64, []byte) {
	f, err := os.Open(path)
	if err != nil {
		return off, partial
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, off, 1<<40))
	if err != nil || len(b) == 0 {
		return off, partial
	}
	off += int64(len(b))
	data := append(partial, b...)
	for {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return off, data
		}
		var step, total int
		if _, err := fmt.Sscanf(string(data[:nl]), "step %d/%d", &step, &total); err == nil {
			t.record(step, now)
		}
		data = data[nl+1:]
	}
}

func (t *progressTail) record(step int, now time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.at[step]; !ok {
		t.at[step] = now
	}
	if step > t.last {
		t.last = step
		close(t.wake)
		t.wake = make(chan struct{})
	}
}

// lastStep is the last step the process reported.
func (t *progressTail) lastStep() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// waitStep waits until the process reports step (true), exits or ctx ends.
func (t *progressTail) waitStep(ctx context.Context, step int, done <-chan struct{}) bool {
	for {
		t.mu.Lock()
		last, wake := t.last, t.wake
		t.mu.Unlock()
		if last >= step {
			return true
		}
		select {
		case <-wake:
		case <-done:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// timeline is when an uninterrupted run reported each step, and how long
// it ran in all.
type timeline struct {
	at    []time.Duration // at[k]: step k; at[0] = 0
	total time.Duration
}

func (t *progressTail) timeline(steps int, total time.Duration) (*timeline, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tl := &timeline{at: make([]time.Duration, steps+1), total: total}
	for k := 1; k <= steps; k++ {
		d, ok := t.at[k]
		if !ok {
			return nil, fmt.Errorf("no progress line for step %d", k)
		}
		tl.at[k] = d
	}
	return tl, nil
}

// stepAt is the last step the run had reported at moment d (0: none).
func (tl *timeline) stepAt(d time.Duration) int {
	k := 0
	for k+1 < len(tl.at) && tl.at[k+1] <= d {
		k++
	}
	return k
}
