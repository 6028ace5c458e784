// Package machine describes the machine a benchmark ran on and measures
// its matmul peak, the denominator of model FLOPs utilisation.
package machine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/fsutil"
	"prism/internal/torch"
)

// Info is what a results file records about the machine.
type Info struct {
	CPU     string     `json:"cpu"`
	Cores   int        `json:"cores"`
	Go      string     `json:"go"`
	Torch   torch.Info `json:"libtorch"`
	Kernel  string     `json:"kernel,omitempty"`
	MemGiB  float64    `json:"mem_gib,omitempty"`
	Started string     `json:"date"`
}

// Describe reports on this machine and the running libtorch.
func Describe() Info {
	in := Info{CPU: cpuModel(), Cores: runtime.NumCPU(), Go: runtime.Version(), Torch: torch.Inspect(),
		Started: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		in.Kernel = strings.TrimSpace(string(b))
	}
	if kib := meminfo("MemTotal:"); kib > 0 {
		in.MemGiB = float64(kib) / (1 << 20)
	}
	return in
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func meminfo(key string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// MatmulPeak measures GFLOP/s of an n×n×n matmul of the given element
// type on dev (on the CPU with libtorch's current thread count): the best
// of reps after one warm-up. The best, not the median, because it stands
// for what the hardware can do; the training step is then judged against
// it. Each product is reduced to a host scalar inside the timing, so on a
// GPU the time covers the kernel and not only its launch.
func MatmulPeak(dev torch.Device, dt torch.DType, n int64, reps int) (gflops float64, err error) {
	defer torch.Pin()()
	a, err := ts.Randn([]int64{n, n}, dt, dev)
	if err != nil {
		return 0, err
	}
	defer a.Drop()
	b, err := ts.Randn([]int64{n, n}, dt, dev)
	if err != nil {
		return 0, err
	}
	defer b.Drop()
	var secs []float64
	for i := 0; i <= reps; i++ {
		t0 := time.Now()
		c, err := a.Matmul(b, false)
		if err != nil {
			return 0, err
		}
		s, err := c.Sum(gotch.Float, true)
		if err != nil {
			return 0, err
		}
		_ = s.Float64Values(true) // waits for the product
		d := time.Since(t0).Seconds()
		if i > 0 {
			secs = append(secs, d)
		}
	}
	best := slices.Min(secs)
	return 2 * float64(n*n*n) / best / 1e9, nil
}

// WriteJSON writes v as indented JSON to path, atomically, creating the
// folder; with an empty path it does nothing.
func WriteJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(j, '\n'))
}
