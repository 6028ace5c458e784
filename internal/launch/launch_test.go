package launch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const helperEnv = "PRISM_LAUNCH_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

// helper is one rank: it prints its environment, then behaves as mode
// says.
func helper(mode string) int {
	rank := os.Getenv("RANK")
	fmt.Printf("rank=%s world=%s local=%s/%s master=%s:%s threads=%s\n", rank, os.Getenv("WORLD_SIZE"),
		os.Getenv("LOCAL_RANK"), os.Getenv("LOCAL_WORLD_SIZE"), os.Getenv("MASTER_ADDR"), os.Getenv("MASTER_PORT"), os.Getenv("PRISM_THREADS"))
	switch mode {
	case "fail1":
		if rank == "1" {
			fmt.Fprintln(os.Stderr, "rank 1 gives up")
			return 7
		}
		time.Sleep(time.Minute) // a rank stuck waiting for the dead one
	case "wait":
		time.Sleep(time.Minute)
	}
	return 0
}

func run(t *testing.T, ctx context.Context, mode string, nproc int) (string, string, error) {
	t.Helper()
	t.Setenv(helperEnv, mode)
	var out, errb bytes.Buffer
	err := Run(ctx, Options{NProc: nproc, Command: os.Args[0], Args: []string{"-test.run=^$"}, Threads: 1,
		Grace: 500 * time.Millisecond, Stdout: &out, Stderr: &errb})
	return out.String(), errb.String(), err
}

func TestRanksGetTorchrunEnvironment(t *testing.T) {
	out, _, err := run(t, context.Background(), "ok", 3)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	slices.Sort(lines) // "[rank 1] ...", "[rank 2] ...", "rank=0 ..."
	lines = append(lines[len(lines)-1:], lines[:len(lines)-1]...)
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got:\n%s", out)
	}
	var port string
	for i, l := range lines {
		prefix := ""
		if i > 0 {
			prefix = fmt.Sprintf("[rank %d] ", i)
		}
		want := fmt.Sprintf("%srank=%d world=3 local=%d/3 master=127.0.0.1:", prefix, i, i)
		if !strings.HasPrefix(l, want) || !strings.HasSuffix(l, " threads=1") {
			t.Errorf("line %d = %q, want prefix %q and threads=1", i, l, want)
		}
		p := l[strings.LastIndex(l, ":")+1 : strings.Index(l, " threads")]
		if port == "" {
			port = p
		} else if p != port {
			t.Errorf("ranks got different ports %s and %s", port, p)
		}
	}
}

func TestFailedRankStopsTheJob(t *testing.T) {
	start := time.Now()
	_, errOut, err := run(t, context.Background(), "fail1", 2)
	var re *RankError
	if !errors.As(err, &re) || re.Rank != 1 || re.ExitCode() != 7 {
		t.Fatalf("err = %v, want rank 1 exiting 7", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the stuck rank was stopped only after %v", d)
	}
	if !strings.Contains(errOut, "[rank 1] rank 1 gives up") {
		t.Errorf("stderr lacks rank 1's prefixed message:\n%q", errOut)
	}
}

func TestCancelStopsEveryRank(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	start := time.Now()
	_, _, err := run(t, ctx, "wait", 2)
	if err == nil {
		t.Fatal("interrupted ranks reported success")
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("ranks still running %v after the cancel", d)
	}
}
