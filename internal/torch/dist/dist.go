// Package dist runs the collectives of data-parallel training on libtorch's
// c10d: a TCPStore rendezvous hosted by rank 0 and a Gloo (CPU) or NCCL
// (CUDA) process group, through a C++ shim compiled into the adapted gotch.
// Ranks and the rendezvous come from torchrun's environment variables, so
// torchrun, Slurm and Kubernetes launchers work unchanged. Errors and
// timeouts come back as Go errors; nothing aborts the process.
package dist

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// Env is a process's place in a job, as torchrun describes it.
type Env struct {
	Rank, World           int
	LocalRank, LocalWorld int
	// Addr and Port are where rank 0 hosts the rendezvous.
	Addr string
	Port int
}

// FromEnv reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT. ok is false when WORLD_SIZE is unset: a
// single process.
func FromEnv(getenv func(string) string) (env Env, ok bool, err error) {
	if getenv("WORLD_SIZE") == "" {
		return Env{World: 1, LocalWorld: 1}, false, nil
	}
	num := func(key string, def, min int) (int, error) {
		s := getenv(key)
		if s == "" {
			if def < 0 {
				return 0, fmt.Errorf("%s is not set (WORLD_SIZE is, so this looks like a distributed launch)", key)
			}
			return def, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < min {
			return 0, fmt.Errorf("%s=%q: want an integer of at least %d", key, s, min)
		}
		return n, nil
	}
	if env.World, err = num("WORLD_SIZE", -1, 1); err != nil {
		return env, false, err
	}
	if env.Rank, err = num("RANK", -1, 0); err != nil {
		return env, false, err
	}
	if env.LocalRank, err = num("LOCAL_RANK", env.Rank, 0); err != nil {
		return env, false, err
	}
	if env.LocalWorld, err = num("LOCAL_WORLD_SIZE", env.World, 1); err != nil {
		return env, false, err
	}
	if env.Rank >= env.World {
		return env, false, fmt.Errorf("RANK=%d is outside WORLD_SIZE=%d", env.Rank, env.World)
	}
	if env.LocalRank >= env.LocalWorld {
		return env, false, fmt.Errorf("LOCAL_RANK=%d is outside LOCAL_WORLD_SIZE=%d", env.LocalRank, env.LocalWorld)
	}
	env.Addr = getenv("MASTER_ADDR")
	if env.Addr == "" {
		if env.World > 1 {
			return env, false, errors.New("MASTER_ADDR is not set: the address of the rank-0 machine")
		}
		env.Addr = "127.0.0.1"
	}
	if env.Port, err = num("MASTER_PORT", 29500, 1); err != nil {
		return env, false, err
	}
	if env.Port > 65535 {
		return env, false, fmt.Errorf("MASTER_PORT=%d is not a port", env.Port)
	}
	return env, true, nil
}

// Backends lists the process groups this build has ("gloo", "gloo,nccl"
// or "").
func Backends() string { return libtch.PrismDistBackends() }

// Options tune a Group.
type Options struct {
	// Backend is "gloo" or "nccl".
	Backend string
	// Timeout bounds the rendezvous and every collective: a rank that
	// does not arrive in time (dead, hung) makes the others fail.
	Timeout time.Duration
	// BucketBytes caps the size of one allreduce: tensors are packed into
	// buckets of at most this many bytes (one tensor larger than that
	// goes alone). 0 means 25 MiB, PyTorch DDP's default.
	BucketBytes int64
}

// DefaultBucketBytes is the allreduce bucket size when none is given.
const DefaultBucketBytes = 25 << 20

// Group is one process's membership of a process group.
type Group struct {
	g           unsafe.Pointer
	rank, world int
	opt         Options
	// commSeconds accumulates the time spent in collectives.
	commSeconds float64
}

// Join meets the other ranks of env's job and forms a process group.
func Join(env Env, opt Options) (*Group, error) {
	if env.World < 1 || env.Rank < 0 || env.Rank >= env.World {
		return nil, fmt.Errorf("rank %d of world size %d", env.Rank, env.World)
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Minute
	}
	if opt.BucketBytes <= 0 {
		opt.BucketBytes = DefaultBucketBytes
	}
	if Backends() == "" {
		return nil, errors.New(libtch.PrismDistNote)
	}
	g, err := libtch.PrismDistInit(opt.Backend, env.Addr, env.Port, env.Rank, env.World, opt.Timeout.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("joining the %s process group at %s:%d as rank %d of %d (timeout %v): %w", opt.Backend, env.Addr, env.Port, env.Rank, env.World, opt.Timeout, err)
	}
	return &Group{g: g, rank: env.Rank, world: env.World, opt: opt}, nil
}

// Rank is this process's rank.
func (g *Group) Rank() int { return g.rank }

// World is the number of ranks.
func (g *Group) World() int { return g.world }

// CommSeconds is the time spent in collectives so far.
func (g *Group) CommSeconds() float64 { return g.commSeconds }

func (g *Group) wrap(op string, f func() error) error {
	if g == nil || g.g == nil {
		return fmt.Errorf("%s: the process group is closed", op)
	}
	start := time.Now()
	err := f()
	g.commSeconds += time.Since(start).Seconds()
	if err != nil {
		return fmt.Errorf("%s (rank %d of %d): %w", op, g.rank, g.world, err)
	}
	return nil
}

// Buckets splits tensors of the given sizes (bytes) and kinds into
// consecutive runs of one kind of at most limit bytes each; a tensor
// larger than limit is a run of its own. It returns the runs' [start, end)
// indices.
func Buckets(sizes []int64, kinds []string, limit int64) [][2]int {
	var out [][2]int
	start, total := 0, int64(0)
	for i, s := range sizes {
		if i > start && (total+s > limit || kinds[i] != kinds[start]) {
			out = append(out, [2]int{start, i})
			start, total = i, 0
		}
		total += s
	}
	if start < len(sizes) {
		out = append(out, [2]int{start, len(sizes)})
	}
	return out
}

func (g *Group) buckets(tensors []*ts.Tensor) [][2]int {
	sizes := make([]int64, len(tensors))
	kinds := make([]string, len(tensors))
	for i, t := range tensors {
		k := t.DType()
		sizes[i] = int64(t.Numel()) * int64(k.Size())
		kinds[i] = k.String()
	}
	return Buckets(sizes, kinds, g.opt.BucketBytes)
}

func handles(tensors []*ts.Tensor) []unsafe.Pointer {
	out := make([]unsafe.Pointer, len(tensors))
	for i, t := range tensors {
		out[i] = t.Ctensor()
	}
	return out
}

// AllReduceSum replaces every tensor with its sum over the ranks, one
// bucket per collective.
func (g *Group) AllReduceSum(tensors []*ts.Tensor) error {
	return g.wrap("allreduce", func() error {
		for _, b := range g.buckets(tensors) {
			if err := libtch.PrismDistAllReduceSum(g.g, handles(tensors[b[0]:b[1]])); err != nil {
				return err
			}
		}
		return nil
	})
}

// Broadcast copies root's tensors into every rank's, in place.
func (g *Group) Broadcast(tensors []*ts.Tensor, root int) error {
	return g.wrap("broadcast", func() error {
		for _, b := range g.buckets(tensors) {
			if err := libtch.PrismDistBroadcast(g.g, handles(tensors[b[0]:b[1]]), root); err != nil {
				return err
			}
		}
		return nil
	})
}

// AllGatherFloat64 returns every rank's v, in rank order; the lengths may
// differ between ranks.
func (g *Group) AllGatherFloat64(v []float64) ([][]float64, error) {
	var out [][]float64
	err := g.wrap("allgather", func() error {
		lens := make([]float64, g.world)
		if err := libtch.PrismDistAllGatherF64(g.g, []float64{float64(len(v))}, lens, g.world); err != nil {
			return err
		}
		n := 0
		for _, l := range lens {
			n = max(n, int(l))
		}
		in := make([]float64, n)
		copy(in, v)
		all := make([]float64, n*g.world)
		if err := libtch.PrismDistAllGatherF64(g.g, in, all, g.world); err != nil {
			return err
		}
		out = make([][]float64, g.world)
		for r := range out {
			out[r] = all[r*n : r*n+int(lens[r])]
		}
		return nil
	})
	return out, err
}

// BroadcastBytes returns root's b on every rank.
func (g *Group) BroadcastBytes(b []byte, root int) ([]byte, error) {
	// Six bytes per float64, as an integer below 2^48: exact, and it rides
	// on the allgather the shim already has.
	const per = 6
	words := make([]float64, (len(b)+per-1)/per+1)
	words[0] = float64(len(b))
	for i := 0; i < len(b); i += per {
		var w uint64
		for k := min(i+per, len(b)) - 1; k >= i; k-- {
			w = w<<8 | uint64(b[k])
		}
		words[1+i/per] = float64(w)
	}
	if g.rank != root {
		words = nil
	}
	all, err := g.AllGatherFloat64(words)
	if err != nil {
		return nil, err
	}
	src := all[root]
	if len(src) == 0 {
		return nil, fmt.Errorf("broadcast: rank %d sent nothing", root)
	}
	n := int(src[0])
	if n < 0 || (n+per-1)/per+1 > len(src) {
		return nil, fmt.Errorf("broadcast: rank %d sent a malformed message", root)
	}
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(uint64(src[1+i/per]) >> (8 * (i % per)))
	}
	return out, nil
}

// Barrier waits until every rank reaches it.
func (g *Group) Barrier() error {
	return g.wrap("barrier", func() error { return libtch.PrismDistBarrier(g.g) })
}

// Close leaves the group.
func (g *Group) Close() {
	if g != nil && g.g != nil {
		libtch.PrismDistFree(g.g)
		g.g = nil
	}
}
