// Package launch starts the ranks of a data-parallel job on one machine,
// the way torchrun does: N copies of a command, each with RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT
// set. It forwards SIGINT and SIGTERM to every rank, prefixes the output
// of ranks other than 0, and when one rank fails it stops the others.
package launch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Options describe a job.
type Options struct {
	// NProc is the number of ranks.
	NProc int
	// Command and Args are what each rank runs.
	Command string
	Args    []string
	// MasterAddr and MasterPort are the rendezvous; port 0 picks a free
	// one.
	MasterAddr string
	MasterPort int
	// Threads, when positive, is each rank's libtorch thread count
	// (PRISM_THREADS); otherwise `prism train` shares the cores between
	// the LOCAL_WORLD_SIZE ranks itself.
	Threads int
	// Grace is how long the other ranks get to exit after one fails or
	// the job is interrupted, before they are killed.
	Grace time.Duration
	// Stdout and Stderr receive the ranks' output; rank 0's as is, the
	// others' line by line behind "[rank N] ".
	Stdout, Stderr io.Writer
}

// RankError says which rank failed first and how.
type RankError struct {
	Rank int
	Err  error
}

func (e *RankError) Error() string { return fmt.Sprintf("rank %d: %v", e.Rank, e.Err) }
func (e *RankError) Unwrap() error { return e.Err }

// ExitCode is the failed rank's exit status (1 when it has none).
func (e *RankError) ExitCode() int {
	var ee *exec.ExitError
	if errors.As(e.Err, &ee) && ee.ExitCode() > 0 {
		return ee.ExitCode()
	}
	return 1
}

// FreePort asks the kernel for a free TCP port on addr.
func FreePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Env is the environment of one rank.
func Env(base []string, rank, nproc int, addr string, port, threads int) []string {
	env := append([]string{}, base...)
	env = append(env,
		"RANK="+strconv.Itoa(rank), "WORLD_SIZE="+strconv.Itoa(nproc),
		"LOCAL_RANK="+strconv.Itoa(rank), "LOCAL_WORLD_SIZE="+strconv.Itoa(nproc),
		"MASTER_ADDR="+addr, "MASTER_PORT="+strconv.Itoa(port))
	if threads > 0 {
		env = append(env, "PRISM_THREADS="+strconv.Itoa(threads))
	}
	return env
}

// Run starts the ranks and waits for them. Cancelling ctx sends SIGINT to
// every rank (a clean stop: they finish the step and checkpoint) and kills
// those still running after Grace. The error is a *RankError for the
// first rank that failed.
func Run(ctx context.Context, o Options) error {
	if o.NProc < 1 {
		return fmt.Errorf("--nproc %d: want at least 1", o.NProc)
	}
	if o.MasterAddr == "" {
		o.MasterAddr = "127.0.0.1"
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.MasterPort == 0 {
		p, err := FreePort(o.MasterAddr)
		if err != nil {
			return fmt.Errorf("finding a free port on %s: %w", o.MasterAddr, err)
		}
		o.MasterPort = p
	}
	var outMu sync.Mutex // one write at a time into shared writers
	// Rank 0 writes straight into a file (a terminal keeps its progress
	// bar); any other writer is shared with the prefixed ranks' lines
	// under the lock.
	direct := func(w io.Writer) io.Writer {
		if _, ok := w.(*os.File); ok {
			return w
		}
		return &lockedWriter{mu: &outMu, w: w}
	}
	cmds := make([]*exec.Cmd, o.NProc)
	var pipes sync.WaitGroup
	for rank := range o.NProc {
		cmd := exec.Command(o.Command, o.Args...)
		cmd.Env = Env(os.Environ(), rank, o.NProc, o.MasterAddr, o.MasterPort, o.Threads)
		// Own process group: a Ctrl-C at the terminal reaches the ranks
		// once, through the launcher, not twice.
		// A launcher killed outright (SIGKILL, a second Ctrl-C) takes the
		// ranks with it instead of leaving them orphaned.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if rank == 0 {
			cmd.Stdout, cmd.Stderr = direct(o.Stdout), direct(o.Stderr)
		} else {
			for _, s := range []struct {
				w   io.Writer
				set func(io.Writer)
			}{{o.Stdout, func(w io.Writer) { cmd.Stdout = w }}, {o.Stderr, func(w io.Writer) { cmd.Stderr = w }}} {
				pr, pw := io.Pipe()
				s.set(pw)
				pipes.Add(1)
				go func(w io.Writer, prefix string) {
					defer pipes.Done()
					sc := bufio.NewScanner(pr)
					sc.Buffer(make([]byte, 64<<10), 1<<20)
					for sc.Scan() {
						outMu.Lock()
						fmt.Fprintf(w, "%s%s\n", prefix, sc.Text())
						outMu.Unlock()
					}
					io.Copy(io.Discard, pr)
				}(s.w, fmt.Sprintf("[rank %d] ", rank))
			}
		}
		if err := cmd.Start(); err != nil {
			for _, c := range cmds[:rank] {
				c.Process.Kill()
				c.Wait()
			}
			return fmt.Errorf("starting rank %d (%s): %w", rank, o.Command, err)
		}
		cmds[rank] = cmd
	}

	type exit struct {
		rank int
		err  error
	}
	done := make(chan exit, o.NProc)
	for rank, cmd := range cmds {
		go func() {
			err := cmd.Wait()
			for _, w := range []io.Writer{cmd.Stdout, cmd.Stderr} {
				if pw, ok := w.(*io.PipeWriter); ok {
					pw.Close()
				}
			}
			done <- exit{rank, err}
		}()
	}
	var first *RankError
	var kill <-chan time.Time
	exited := make([]bool, o.NProc)
	signalAll := func(sig os.Signal) {
		for rank, c := range cmds {
			if !exited[rank] {
				c.Process.Signal(sig)
			}
		}
	}
	ctxDone := ctx.Done()
	for left := o.NProc; left > 0; {
		select {
		case e := <-done:
			left--
			exited[e.rank] = true
			if e.err != nil && first == nil {
				first = &RankError{Rank: e.rank, Err: e.err}
				// The others fail on their own when a collective finds the
				// peer gone; this bounds the wait if one is stuck.
				kill = time.After(o.Grace)
			}
		case <-ctxDone:
			ctxDone = nil
			signalAll(os.Interrupt)
			kill = time.After(o.Grace)
		case <-kill:
			signalAll(os.Kill)
		}
	}
	pipes.Wait()
	if first != nil {
		return first
	}
	return nil
}

// lockedWriter serialises writes into a writer shared between ranks.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
