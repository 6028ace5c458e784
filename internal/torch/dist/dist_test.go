package dist

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch/ts"

	"prism/internal/launch"
)

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    Env
		ok      bool
		wantErr string
	}{
		{name: "single process", env: nil, want: Env{World: 1, LocalWorld: 1}},
		{name: "torchrun", ok: true,
			env:  map[string]string{"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"},
			want: Env{Rank: 3, World: 4, LocalRank: 1, LocalWorld: 2, Addr: "10.0.0.1", Port: 1234}},
		{name: "defaults", ok: true,
			env:  map[string]string{"WORLD_SIZE": "1", "RANK": "0"},
			want: Env{Rank: 0, World: 1, LocalRank: 0, LocalWorld: 1, Addr: "127.0.0.1", Port: 29500}},
		{name: "no rank", env: map[string]string{"WORLD_SIZE": "2"}, wantErr: "RANK is not set"},
		{name: "rank outside", env: map[string]string{"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "h"}, wantErr: "outside WORLD_SIZE"},
		{name: "bad world", env: map[string]string{"WORLD_SIZE": "two", "RANK": "0"}, wantErr: `WORLD_SIZE="two"`},
		{name: "no master", env: map[string]string{"WORLD_SIZE": "2", "RANK": "0"}, wantErr: "MASTER_ADDR is not set"},
		{name: "bad port", env: map[string]string{"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "70000"}, wantErr: "not a port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := FromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || ok != tt.ok || got != tt.want {
				t.Fatalf("got %+v ok=%v err=%v, want %+v ok=%v", got, ok, err, tt.want, tt.ok)
			}
		})
	}
}

func TestBuckets(t *testing.T) {
	f := []string{"f", "f", "f", "f", "f"}
	tests := []struct {
		name  string
		sizes []int64
		kinds []string
		limit int64
		want  [][2]int
	}{
		{"all fit", []int64{1, 2, 3, 4, 5}, f, 100, [][2]int{{0, 5}}},
		{"split", []int64{4, 4, 4, 4, 4}, f, 8, [][2]int{{0, 2}, {2, 4}, {4, 5}}},
		{"big alone", []int64{1, 20, 1, 1, 1}, f, 8, [][2]int{{0, 1}, {1, 2}, {2, 5}}},
		{"kinds", []int64{1, 1, 1, 1, 1}, []string{"f", "f", "d", "d", "f"}, 100, [][2]int{{0, 2}, {2, 4}, {4, 5}}},
		{"empty", nil, nil, 8, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Buckets(tt.sizes, tt.kinds, tt.limit); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

const childEnv = "PRISM_DIST_TEST_CHILD" // "mode,rank,world,port"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		if err := child(v); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(spec string) error {
	var mode string
	var rank, world, port int
	parts := strings.Split(spec, ",")
	mode = parts[0]
	rank, _ = strconv.Atoi(parts[1])
	world, _ = strconv.Atoi(parts[2])
	port, _ = strconv.Atoi(parts[3])
	// A 16-byte bucket limit splits the tensors below into several
	// collectives.
	timeout := 10 * time.Second
	if mode == "hang" {
		timeout = 2 * time.Second
	}
	g, err := Join(Env{Rank: rank, World: world, Addr: "127.0.0.1", Port: port}, Options{Backend: "gloo", Timeout: timeout, BucketBytes: 16})
	if err != nil {
		return err
	}
	defer g.Close()
	switch mode {
	case "hang":
		if rank == 1 {
			time.Sleep(8 * time.Second) // alive but not answering
			return nil
		}
		start := time.Now()
		err := g.AllReduceSum([]*ts.Tensor{ts.MustOfSlice([]float32{1})})
		if err == nil {
			return fmt.Errorf("allreduce with a hung peer succeeded")
		}
		if d := time.Since(start); d > 6*time.Second {
			return fmt.Errorf("allreduce with a hung peer failed only after %v (timeout 2s)", d)
		}
		fmt.Fprintf(os.Stderr, "hung peer: %v after %v\n", err, time.Since(start).Round(time.Millisecond))
		return nil
	case "die":
		if rank == 1 {
			os.Exit(3) // a crashed peer
		}
		start := time.Now()
		x := ts.MustOfSlice([]float32{1, 2, 3})
		err := g.AllReduceSum([]*ts.Tensor{x})
		if err == nil {
			return fmt.Errorf("allreduce with a dead peer succeeded")
		}
		if d := time.Since(start); d > 30*time.Second {
			return fmt.Errorf("allreduce with a dead peer failed only after %v", d)
		}
		fmt.Fprintf(os.Stderr, "dead peer: %v after %v\n", err, time.Since(start).Round(time.Millisecond))
		return nil
	}
	r := float32(rank + 1)
	a := ts.MustOfSlice([]float32{r, 2 * r, 3 * r})
	b := ts.MustOfSlice([]float32{10 * r, 20 * r, 30 * r, 40 * r, 50 * r}).MustView([]int64{5, 1}, true)
	c := ts.MustOfSlice([]float32{r})
	if err := g.AllReduceSum([]*ts.Tensor{a, b, c}); err != nil {
		return err
	}
	s := float32(world * (world + 1) / 2)
	for _, chk := range []struct {
		t    *ts.Tensor
		want []float32
	}{{a, []float32{s, 2 * s, 3 * s}}, {b, []float32{10 * s, 20 * s, 30 * s, 40 * s, 50 * s}}, {c, []float32{s}}} {
		if got := chk.t.Float64Values(); !close32(got, chk.want) {
			return fmt.Errorf("rank %d: allreduce gave %v, want %v", rank, got, chk.want)
		}
	}
	// Broadcast from the last rank.
	p := ts.MustOfSlice([]float32{r, r, r}).MustSetRequiresGrad(true, true)
	q := ts.MustOfSlice([]float32{-r})
	if err := g.Broadcast([]*ts.Tensor{p, q}, world-1); err != nil {
		return err
	}
	w := float32(world)
	if !close32(p.Float64Values(), []float32{w, w, w}) || !close32(q.Float64Values(), []float32{-w}) {
		return fmt.Errorf("rank %d: broadcast gave %v %v", rank, p.Float64Values(), q.Float64Values())
	}
	// Variable-length allgather: rank k sends k+1 values.
	v := make([]float64, rank+1)
	for i := range v {
		v[i] = float64(100*rank+i) + 0.125
	}
	all, err := g.AllGatherFloat64(v)
	if err != nil {
		return err
	}
	for k := range world {
		if len(all[k]) != k+1 || all[k][k] != float64(100*k+k)+0.125 {
			return fmt.Errorf("rank %d: allgather gave %v", rank, all)
		}
	}
	msg := []byte{}
	if rank == 0 {
		msg = []byte("state of rank 0: \x00\xff\x80 done")
	}
	got, err := g.BroadcastBytes(msg, 0)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, []byte("state of rank 0: \x00\xff\x80 done")) {
		return fmt.Errorf("rank %d: broadcast bytes gave %q", rank, got)
	}
	if g.CommSeconds() <= 0 {
		return fmt.Errorf("rank %d: no time recorded in collectives", rank)
	}
	return g.Barrier()
}

func close32(got []float64, want []float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if float32(got[i]) != want[i] {
			return false
		}
	}
	return true
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := launch.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spawn runs world copies of the test binary as the ranks of mode and
// returns each one's error and stderr.
func spawn(t *testing.T, mode string, world int) ([]error, []string) {
	t.Helper()
	port := freePort(t)
	errs, texts, err := launch.RunTestRanks(world, func(rank int) []string {
		return []string{fmt.Sprintf("%s=%s,%d,%d,%d", childEnv, mode, rank, world, port), "PRISM_THREADS=1"}
	})
	if err != nil {
		t.Fatal(err)
	}
	return errs, texts
}

// TestCollectives: 2 and 3 processes on loopback sum, broadcast and
// gather, with buckets small enough to split the tensors.
func TestCollectives(t *testing.T) {
	for _, world := range []int{2, 3} {
		t.Run(strconv.Itoa(world), func(t *testing.T) {
			errs, outs := spawn(t, "ok", world)
			for rank, err := range errs {
				if err != nil {
					t.Errorf("rank %d: %v\n%s", rank, err, outs[rank])
				}
			}
		})
	}
}

// TestDeadPeer: when a rank dies, the survivor's collective fails with an
// error instead of hanging.
func TestDeadPeer(t *testing.T) {
	errs, outs := spawn(t, "die", 2)
	if errs[0] != nil {
		t.Fatalf("rank 0: %v\n%s", errs[0], outs[0])
	}
	if ee, ok := errs[1].(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("rank 1 should have exited 3: %v", errs[1])
	}
	t.Log(strings.TrimSpace(outs[0]))
}

// TestHungPeerTimesOut: a rank that is alive but never joins the
// collective makes the other fail after the 2s timeout.
func TestHungPeerTimesOut(t *testing.T) {
	errs, outs := spawn(t, "hang", 2)
	if errs[0] != nil {
		t.Fatalf("rank 0: %v\n%s", errs[0], outs[0])
	}
	t.Log(strings.TrimSpace(outs[0]))
}

// TestMissingPeerTimesOut: rank 0 of 2 with no peer gives up with an error
// after the timeout instead of hanging.
func TestMissingPeerTimesOut(t *testing.T) {
	start := time.Now()
	g, err := Join(Env{Rank: 0, World: 2, Addr: "127.0.0.1", Port: freePort(t)}, Options{Backend: "gloo", Timeout: 2 * time.Second})
	if err == nil {
		g.Close()
		t.Fatal("joined a group of 2 alone")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("gave up after %v, want about the 2s timeout", d)
	}
	if !strings.Contains(err.Error(), "rank 0 of 2") {
		t.Errorf("error does not say who failed: %v", err)
	}
	t.Log(err)
}

func TestUnknownBackend(t *testing.T) {
	_, err := Join(Env{Rank: 0, World: 1, Addr: "127.0.0.1", Port: freePort(t)}, Options{Backend: "mpi", Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "unknown backend") {
		t.Fatalf("err = %v, want unknown backend", err)
	}
}
