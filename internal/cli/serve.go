package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"prism/data/encode"
	"prism/internal/serve"
	"prism/models"
)

// serveOptions are `prism serve`'s flags.
type serveOptions struct {
	model, tokenizer, addr string
	opt                    serve.Options
	eos                    int64
	drain                  time.Duration
	length                 lengthFlags
	template               templateFlags
	place                  modelFlags
}

func newServeCmd(g *globals) *cobra.Command {
	o := serveOptions{opt: serve.DefaultOptions()}
	cmd := &cobra.Command{
		Use:   "serve --model DIR [--tokenizer DIR] [--addr 127.0.0.1:5000]",
		Short: "Serve a reward model over HTTP (OpenRLHF's remote reward-model protocol and prism's rows)",
		Long: `Serve a reward model to an RL loop over HTTP:

  POST /get_reward  OpenRLHF's remote reward model: {"query": [full texts],
                    "prompts": [...], "labels": [...]} (prompts and labels
                    unused) → {"rewards": [...], "scores": [...],
                    "extra_logs": {}}. Texts are tokenised as they are, the
                    chat template already applied by the client, special
                    tokens recognised and none added.
  POST /score       {"rows": [...]}, each row as prism score reads it
                    ({"messages"}, {"prompt", "response"} or
                    {"input_ids"}), rendered with the model's chat
                    template → {"rewards": [...]}.
  GET  /healthz     200 while serving, 503 once shutting down.
  GET  /metrics     Prometheus metrics.

Requests that arrive together are scored together, in batches of similar
length of at most --max-batch-tokens padded tokens; each batch starts from
the next request in turn, so a large request cannot hold the model. On
SIGTERM or SIGINT prism stops accepting, answers every request already
accepted, and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, g, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "reward model folder (Hugging Face format)")
	f.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer folder for text (default: --model; without one, only token-id rows are served)")
	f.StringVar(&o.addr, "addr", "127.0.0.1:5000", "listen address (host:port; port 0 picks a free one)")
	f.IntVar(&o.opt.MaxBatchTokens, "max-batch-tokens", o.opt.MaxBatchTokens, "padded tokens (rows × longest row) per forward pass")
	f.IntVar(&o.opt.MaxQueueRows, "max-queue-rows", o.opt.MaxQueueRows, "rows that may wait; a request past it is answered 503 with Retry-After")
	f.IntVar(&o.opt.MaxRequestRows, "max-request-rows", o.opt.MaxRequestRows, "rows per request")
	f.Int64Var(&o.opt.MaxBodyBytes, "max-body-bytes", o.opt.MaxBodyBytes, "request body size limit (413 beyond)")
	f.DurationVar(&o.opt.Timeout, "timeout", o.opt.Timeout, "per-request limit on queueing and scoring (504 beyond)")
	f.DurationVar(&o.drain, "drain-timeout", 5*time.Minute, "on SIGTERM, how long accepted requests may take to finish")
	f.BoolVar(&o.opt.AppendEOS, "append-eos", false, "strip trailing padding and EOS tokens from each /get_reward query and append one EOS (OpenRLHF's servers before 2025 did this to the text)")
	f.Int64Var(&o.eos, "eos-token-id", -1, "EOS id for --append-eos (default: the model config's eos_token_id, the first if a list)")
	o.length.register(cmd, overRefuse, " (OpenRLHF's server truncates)")
	o.template.register(cmd)
	o.place.register(cmd)
	return cmd
}

// runServe is `prism serve`: it returns nil after a clean shutdown.
func runServe(ctx context.Context, g *globals, o serveOptions, stdout io.Writer) error {
	if o.model == "" {
		return errors.New("--model is required")
	}
	m, err := o.place.load(g, o.model)
	if err != nil {
		return err
	}
	defer m.Drop()
	if o.opt.MaxLength, err = o.length.limit(g, m); err != nil {
		return err
	}
	o.opt.Truncate = o.length.policy == overTruncate
	o.opt.VocabSize = m.Config.VocabSize
	o.opt.Pad = -1
	if m.Config.PadTokenID != nil {
		o.opt.Pad = int64(*m.Config.PadTokenID)
	}
	if o.opt.AppendEOS {
		if o.opt.EOS = o.eos; o.opt.EOS < 0 {
			if o.opt.EOS, err = configEOS(m.Config); err != nil {
				return fmt.Errorf("--append-eos: %w; give --eos-token-id", err)
			}
		}
	}
	var enc serve.Encoder
	if dir := tokenizerDir(o.tokenizer, o.model); hasTokenizer(dir) {
		e, err := encode.LoadWith(dir, o.template.options())
		if err != nil {
			return err
		}
		enc = textEncoder{e}
	} else if o.tokenizer != "" {
		return fmt.Errorf("--tokenizer %s: no tokenizer.json there", o.tokenizer)
	} else {
		g.logger.Warn("no tokenizer beside the model: only token-id rows are served", "model", o.model)
	}
	batch := func(rows [][]int64) ([]float64, error) { return m.Score(rows, len(rows)) }
	srv, err := serve.New(batch, enc, o.opt, g.logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 30 * time.Second}
	ran := make(chan struct{})
	go func() { srv.Run(); close(ran) }()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	g.logger.Info("serving", "addr", ln.Addr().String(), "model", o.model, "max_length", o.opt.MaxLength, "max_batch_tokens", o.opt.MaxBatchTokens)
	fmt.Fprintf(stdout, "serving %s on http://%s (POST /get_reward, POST /score, GET /healthz, GET /metrics)\n", o.model, ln.Addr())
	select {
	case err := <-served:
		srv.Close()
		<-ran
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	g.logger.Info("shutting down: finishing accepted requests", "drain_timeout", o.drain)
	dctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	err = hs.Shutdown(dctx)
	srv.Close()
	<-ran
	if err != nil {
		return fmt.Errorf("shutting down: %w (requests still running after --drain-timeout were cut)", err)
	}
	g.logger.Info("stopped")
	return nil
}

// textEncoder reads request text with a model's tokenizer and chat
// template.
type textEncoder struct{ e *encode.Encoder }

func (t textEncoder) Text(s string) ([]int64, error) { return t.e.Text(s) }

func (t textEncoder) Row(raw []byte) ([]int64, error) {
	return encode.Row(raw, func() (*encode.Encoder, error) { return t.e, nil })
}

func hasTokenizer(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "tokenizer.json"))
	return err == nil && fi.Mode().IsRegular()
}

// configEOS is config.json's eos_token_id: a number, or the first of a
// list.
func configEOS(c *models.Config) (int64, error) {
	switch v := c.EOSTokenID.(type) {
	case float64:
		return int64(v), nil
	case int:
		return int64(v), nil
	case []any:
		if len(v) > 0 {
			if f, ok := v[0].(float64); ok {
				return int64(f), nil
			}
		}
	}
	return 0, fmt.Errorf("the model config's eos_token_id is %v, not a token id", c.EOSTokenID)
}
