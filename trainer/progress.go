package trainer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress shows training progress: a bar on a terminal, a plain line
// every N steps otherwise (logs, CI, nohup), so output stays readable in
// a file.
type progress struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	every int
	total int
	start time.Time
	first int
}

func newProgress(w io.Writer, total, done, every int) *progress {
	p := &progress{w: w, every: max(every, 1), total: total, start: time.Now(), first: done}
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("train"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
		_ = p.bar.Set(done)
	}
	return p
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(s StepInfo) {
	step := s.Step
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("loss %.4f acc %.3f lr %.2e %.0f tok/s", s.Loss, s.Accuracy, s.LR, s.TokensPerS))
		_ = p.bar.Set(step)
		return
	}
	if step%p.every != 0 && step != p.total {
		return
	}
	eta := "?"
	if done := step - p.first; done > 0 {
		left := time.Duration(float64(time.Since(p.start)) / float64(done) * float64(p.total-step))
		eta = left.Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "step %d/%d  loss %.4f  acc %.3f  lr %.3e  grad %.3f  %.0f tok/s  eta %s\n",
		step, p.total, s.Loss, s.Accuracy, s.LR, s.GradNorm, s.TokensPerS, eta)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// teeHandler sends records to two handlers (the console and run.log).
type teeHandler struct{ a, b slog.Handler }

func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.a.Enabled(ctx, l) || t.b.Enabled(ctx, l)
}

func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	if t.a.Enabled(ctx, r.Level) {
		err = t.a.Handle(ctx, r.Clone())
	}
	if t.b.Enabled(ctx, r.Level) {
		if e := t.b.Handle(ctx, r.Clone()); err == nil {
			err = e
		}
	}
	return err
}

func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.a.WithAttrs(as), t.b.WithAttrs(as)}
}

func (t teeHandler) WithGroup(name string) slog.Handler {
	return teeHandler{t.a.WithGroup(name), t.b.WithGroup(name)}
}
