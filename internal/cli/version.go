package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"prism/internal/torch"
)

// versionReport is what `prism version` prints.
type versionReport struct {
	Prism    string     `json:"prism"`
	Commit   string     `json:"commit,omitempty"`
	Go       string     `json:"go"`
	Platform string     `json:"platform"`
	Torch    torch.Info `json:"libtorch"`
}

// versionOptions are `prism version`'s flags.
type versionOptions struct {
	json bool
}

func newVersionCmd(g *globals) *cobra.Command {
	var o versionOptions
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print prism's version and the libtorch it runs on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersion(g, o, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print as JSON")
	return cmd
}

// runVersion is `prism version`.
func runVersion(g *globals, o versionOptions, stdout io.Writer) error {
	r := versionReport{
		Prism:    Version,
		Commit:   commit(),
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Torch:    torch.Inspect(),
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	if r.Torch.SlowBLAS {
		g.logger.Warn("libtorch is using the reference BLAS: matrix products run tens of times slower; install OpenBLAS (make setup does)")
	}
	if r.Torch.BLASThreadClash {
		g.logger.Warn("OpenBLAS runs its own pthreads beside libtorch's OpenMP threads and they fight over the cores; select OpenBLAS's OpenMP variant (make setup does, or: apt-get install libopenblas0-openmp and update-alternatives --set for libblas.so.3, liblapack.so.3 and libopenblas.so.0)")
	}
	return r.write(stdout)
}

// write prints the report as a table.
func (r versionReport) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	prism := r.Prism
	if r.Commit != "" {
		prism += " (" + r.Commit + ")"
	}
	fmt.Fprintf(tw, "prism\t%s\n", prism)
	fmt.Fprintf(tw, "go\t%s %s\n", r.Go, r.Platform)
	fmt.Fprintf(tw, "libtorch\t%s (%s, %s)\n", r.Torch.LibtorchVersion, r.Torch.LibtorchSource, r.Torch.LibtorchRoot)
	fmt.Fprintf(tw, "cuda\t%s\n", r.cuda())
	fmt.Fprintf(tw, "blas\t%s\n", r.blas())
	fmt.Fprintf(tw, "threads\t%d intra-op, %d inter-op\n", r.Torch.Threads, r.Torch.InteropThreads)
	fmt.Fprintf(tw, "gotch\t%d of %d generated functions disabled for this libtorch\n", r.Torch.Disabled, r.Torch.Generated)
	if r.Torch.Dist != "" {
		fmt.Fprintf(tw, "distributed\t%s\n", r.Torch.Dist)
	} else {
		fmt.Fprintf(tw, "distributed\tnot available: %s\n", r.Torch.DistNote)
	}
	return tw.Flush()
}

// cuda is the report's cuda line.
func (r versionReport) cuda() string {
	switch {
	case r.Torch.CUDAAvailable:
		return fmt.Sprintf("available, %d device(s)", r.Torch.CUDADevices)
	case r.Torch.CUDABuild:
		return "not available (CUDA build, no usable device)"
	default:
		return "not available (CPU build)"
	}
}

// blas is the report's blas line: the library, its threading, and how
// that sits with libtorch's.
func (r versionReport) blas() string {
	blas := r.Torch.BLAS
	if r.Torch.BLASThreading != "" {
		blas += "; threads: " + r.Torch.BLASThreading
		switch {
		case r.Torch.BLASThreadClash:
			blas += ", clashing with libtorch's " + r.Torch.ParallelBackend
		case r.Torch.BLASThreading == r.Torch.ParallelBackend:
			blas += ", as libtorch's"
		}
	}
	return blas
}

// commit returns the VCS revision the binary was built from, if recorded.
func commit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return "commit " + rev + dirty
}
