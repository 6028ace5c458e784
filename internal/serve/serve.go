// Package serve answers reward queries over HTTP for an RL loop: the
// remote reward-model protocol of OpenRLHF (POST /get_reward) and prism's
// own rows (POST /score), with requests that arrive together scored
// together in length-bucketed batches, bounds on everything a client
// controls, Prometheus metrics and a graceful shutdown. The model is
// behind a ScoreFunc, so the package builds and tests without libtorch.
package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Encoder turns request text into token ids.
type Encoder interface {
	// Text tokenises a whole text as it is: special tokens written in it
	// are recognised, none are added (OpenRLHF's queries arrive with
	// the chat template already applied).
	Text(s string) ([]int64, error)
	// Row reads one prism row ({"messages"}, {"prompt", "response"} or
	// {"input_ids"}), rendering text with the chat template.
	Row(raw []byte) ([]int64, error)
}

// Options bound and shape the service.
type Options struct {
	// MaxBatchTokens bounds a forward pass: rows × the longest row.
	MaxBatchTokens int
	// MaxQueueRows bounds the rows waiting; a request that would pass it
	// is answered 503 with Retry-After.
	MaxQueueRows int
	// MaxRequestRows bounds the rows of one request.
	MaxRequestRows int
	// MaxLength bounds a row's tokens: longer rows are refused (400), or
	// with Truncate cut to their first MaxLength tokens, as OpenRLHF's
	// server does.
	MaxLength int
	Truncate  bool
	// MaxBodyBytes bounds a request body (413 beyond).
	MaxBodyBytes int64
	// Timeout bounds a request's wait and scoring (504 beyond).
	Timeout time.Duration
	// AppendEOS strips trailing padding and EOS tokens from each OpenRLHF
	// query and appends one EOS, as OpenRLHF's servers before 2025 did to
	// its text; EOS and Pad are the ids (Pad < 0: none).
	AppendEOS bool
	EOS, Pad  int64
	// VocabSize is the model's: ids outside it are refused.
	VocabSize int
}

// DefaultOptions are the defaults of `prism serve`.
func DefaultOptions() Options {
	return Options{MaxBatchTokens: 16384, MaxQueueRows: 4096, MaxRequestRows: 1024, MaxLength: 2048,
		MaxBodyBytes: 32 << 20, Timeout: 120 * time.Second, EOS: -1, Pad: -1}
}

// Server is the HTTP service of one reward model.
type Server struct {
	opt     Options
	enc     Encoder
	log     *slog.Logger
	b       *batcher
	m       *metrics
	handler http.Handler
}

// New builds a server scoring with score and reading text with enc (nil:
// token-id rows only). Call Run to start scoring.
func New(score ScoreFunc, enc Encoder, opt Options, log *slog.Logger) (*Server, error) {
	switch {
	case opt.MaxBatchTokens < 1, opt.MaxQueueRows < 1, opt.MaxRequestRows < 1, opt.MaxLength < 1, opt.MaxBodyBytes < 1, opt.Timeout <= 0, opt.VocabSize < 1:
		return nil, fmt.Errorf("serve: every bound must be positive: %+v", opt)
	case opt.AppendEOS && opt.EOS < 0:
		return nil, errors.New("serve: appending EOS needs the model's EOS token id")
	}
	s := &Server{opt: opt, enc: enc, log: log}
	s.b = newBatcher(score, opt.MaxBatchTokens, opt.MaxQueueRows, nil)
	s.m = newMetrics(s.b.Queued)
	s.b.observe = s.m.observeBatch
	mux := http.NewServeMux()
	mux.HandleFunc("POST /get_reward", s.handle("get_reward", s.openRLHF))
	mux.HandleFunc("POST /score", s.handle("score", s.rows))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{}))
	s.handler = mux
	return s, nil
}

// Handler is the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Run scores batches until Close has been called and every queued row is
// done. Run it on its own goroutine.
func (s *Server) Run() { s.b.run() }

// Close refuses new requests (503); those already queued are still
// scored. Call it after http.Server.Shutdown has drained the handlers.
func (s *Server) Close() { s.b.close() }

// httpError is an error with its status code.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func bad(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// handle wraps an endpoint: body bound, timeout, the answer or the error
// as JSON, and the request's metrics.
func (s *Server) handle(name string, f func(ctx context.Context, body []byte) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		code, rows := http.StatusOK, 0
		defer func() {
			s.m.requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
			s.m.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
			if rows > 0 {
				s.m.rows.WithLabelValues(name).Add(float64(rows))
			}
		}()
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, s.opt.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				code = http.StatusRequestEntityTooLarge
				writeJSON(w, code, map[string]string{"error": fmt.Sprintf("the body is over the limit of %d bytes (--max-body-bytes)", s.opt.MaxBodyBytes)})
				return
			}
			code = http.StatusBadRequest
			writeJSON(w, code, map[string]string{"error": "reading the body: " + err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), s.opt.Timeout)
		defer cancel()
		out, n, err := f(ctx, body)
		if err != nil {
			var he *httpError
			switch {
			case errors.As(err, &he):
				code = he.code
			case errors.Is(err, ErrBusy):
				code = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", "1")
			case errors.Is(err, ErrClosed):
				code = http.StatusServiceUnavailable
			case errors.Is(err, context.DeadlineExceeded):
				code = http.StatusGatewayTimeout
				err = fmt.Errorf("not scored within %v (--timeout)", s.opt.Timeout)
			case errors.Is(err, context.Canceled):
				code = 499 // the client went away; nobody reads this
			default:
				code = http.StatusInternalServerError
			}
			if code >= 500 {
				s.log.Warn("request failed", "endpoint", name, "status", code, "err", err)
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		rows = n
		writeJSON(w, code, out)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// decode reads a JSON object into v, naming what is wrong.
func decode(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(v); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return bad("malformed JSON at byte %d: %v", syn.Offset, err)
		case errors.As(err, &typ) && typ.Field != "":
			return bad("field %q: want %s, got JSON %s", typ.Field, typ.Type, typ.Value)
		case errors.As(err, &typ):
			return bad("want a JSON object, got %s", typ.Value)
		case errors.Is(err, io.EOF):
			return bad("empty body: want a JSON object")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return bad("malformed JSON: the body ends before the object does (%d bytes)", len(body))
		}
		return bad("malformed JSON: %v", err)
	}
	if d.More() {
		return bad("malformed JSON: more after the object")
	}
	return nil
}

// openRLHF answers OpenRLHF's remote reward-model request: {"query":
// [full texts], "prompts": [...], "labels": [...]} (prompts and labels are
// accepted and not used) → {"rewards": [...], "scores": [...],
// "extra_logs": {}}, in query order.
func (s *Server) openRLHF(ctx context.Context, body []byte) (any, int, error) {
	var req struct {
		Query   []json.RawMessage `json:"query"`
		Prompts json.RawMessage   `json:"prompts"`
		Labels  json.RawMessage   `json:"labels"`
	}
	if err := decode(body, &req); err != nil {
		return nil, 0, err
	}
	if req.Query == nil {
		return nil, 0, bad(`field "query": missing; want a list of texts`)
	}
	if err := s.checkCount("query", len(req.Query)); err != nil {
		return nil, 0, err
	}
	if s.enc == nil {
		return nil, 0, bad(`field "query": this server has no tokenizer (--tokenizer) for text`)
	}
	rows := make([][]int64, len(req.Query))
	for i, raw := range req.Query {
		var text string
		if err := json.Unmarshal(raw, &text); err != nil {
			return nil, 0, bad(`field "query[%d]": want a string`, i)
		}
		ids, err := s.enc.Text(text)
		if err != nil {
			return nil, 0, bad(`field "query[%d]": %v`, i, err)
		}
		if s.opt.AppendEOS {
			for len(ids) > 0 && (ids[len(ids)-1] == s.opt.EOS || ids[len(ids)-1] == s.opt.Pad) {
				ids = ids[:len(ids)-1]
			}
			for len(ids) > 0 && (ids[0] == s.opt.EOS || ids[0] == s.opt.Pad) {
				ids = ids[1:]
			}
			ids = append(ids, s.opt.EOS)
		}
		if rows[i], err = s.fit(ids, "query", i); err != nil {
			return nil, 0, err
		}
	}
	r, err := s.score(ctx, rows)
	if err != nil {
		return nil, 0, err
	}
	return map[string]any{"rewards": r, "scores": r, "extra_logs": map[string]any{}}, len(rows), nil
}

// rows answers prism's request {"rows": [row, ...]}, each row as `prism
// score` reads it, → {"rewards": [...]} in row order.
func (s *Server) rows(ctx context.Context, body []byte) (any, int, error) {
	var req struct {
		Rows []json.RawMessage `json:"rows"`
	}
	if err := decode(body, &req); err != nil {
		return nil, 0, err
	}
	if req.Rows == nil {
		return nil, 0, bad(`field "rows": missing; want a list of {"messages"}, {"prompt", "response"} or {"input_ids"} rows`)
	}
	if err := s.checkCount("rows", len(req.Rows)); err != nil {
		return nil, 0, err
	}
	rows := make([][]int64, len(req.Rows))
	for i, raw := range req.Rows {
		var ids []int64
		var err error
		if s.enc == nil {
			ids, err = idsOnly(raw)
		} else {
			ids, err = s.enc.Row(raw)
		}
		if err != nil {
			return nil, 0, bad(`field "rows[%d]": %v`, i, err)
		}
		if rows[i], err = s.fit(ids, "rows", i); err != nil {
			return nil, 0, err
		}
	}
	r, err := s.score(ctx, rows)
	if err != nil {
		return nil, 0, err
	}
	return map[string]any{"rewards": r}, len(rows), nil
}

// idsOnly reads a {"input_ids": [...]} row (a server without a tokenizer).
func idsOnly(raw []byte) ([]int64, error) {
	var row struct {
		IDs []int64 `json:"input_ids"`
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&row); err != nil || len(row.IDs) == 0 {
		return nil, errors.New(`this server has no tokenizer (--tokenizer): want {"input_ids": [non-empty list of token ids]}`)
	}
	return row.IDs, nil
}

func (s *Server) checkCount(field string, n int) error {
	switch {
	case n == 0:
		return bad("field %q: empty; want at least one row", field)
	case n > s.opt.MaxRequestRows:
		return bad("field %q: %d rows, over the limit of %d per request (--max-request-rows)", field, n, s.opt.MaxRequestRows)
	}
	return nil
}

// fit checks a row's ids and applies the length limit.
func (s *Server) fit(ids []int64, field string, i int) ([]int64, error) {
	if len(ids) == 0 {
		return nil, bad("field %q: row %d has no tokens", field, i)
	}
	for _, id := range ids {
		if id < 0 || id >= int64(s.opt.VocabSize) {
			return nil, bad("field %q: row %d: token id %d is outside the model's vocabulary (%d)", field, i, id, s.opt.VocabSize)
		}
	}
	if len(ids) > s.opt.MaxLength {
		if !s.opt.Truncate {
			return nil, bad("field %q: row %d has %d tokens, over the limit of %d (--max-length; --over-length truncate scores the first %d, as OpenRLHF does)", field, i, len(ids), s.opt.MaxLength, s.opt.MaxLength)
		}
		s.m.truncated.Inc()
		ids = ids[:s.opt.MaxLength]
	}
	return ids, nil
}

// score queues rows and returns their rewards; a reward that is not a
// finite number is an error, never an answer.
func (s *Server) score(ctx context.Context, rows [][]int64) ([]float64, error) {
	r, err := s.b.submit(ctx, rows)
	if err != nil {
		return nil, err
	}
	for i, x := range r {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("row %d: the reward is %v (the model's weights or config overflow)", i, x)
		}
	}
	return r, nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	s.b.mu.Lock()
	closed := s.b.closed
	s.b.mu.Unlock()
	if closed {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "queued_rows": s.b.Queued()})
}

// metrics are the service's Prometheus series, in a registry of its own.
type metrics struct {
	reg                  *prometheus.Registry
	requests             *prometheus.CounterVec
	rows                 *prometheus.CounterVec
	latency              *prometheus.HistogramVec
	batchRows, batchToks prometheus.Histogram
	forward              prometheus.Histogram
	queue                prometheus.GaugeFunc
	truncated            prometheus.Counter
}

func newMetrics(queued func() int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_serve_requests_total",
			Help: "Requests answered, by endpoint and HTTP status."}, []string{"endpoint", "code"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_serve_rows_total",
			Help: "Rows scored and answered, by endpoint."}, []string{"endpoint"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prism_serve_request_seconds",
			Help: "Time from a request's arrival to its answer.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"endpoint"}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "prism_serve_batch_rows",
			Help: "Rows per forward pass.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)}),
		batchToks: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "prism_serve_batch_tokens",
			Help: "Padded tokens (rows × longest row) per forward pass.", Buckets: prometheus.ExponentialBuckets(16, 2, 14)}),
		forward: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "prism_serve_forward_seconds",
			Help: "Time of one forward pass.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "prism_serve_queued_rows",
			Help: "Rows waiting to be scored."}, func() float64 { return float64(queued()) }),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "prism_serve_truncated_rows_total",
			Help: "Rows cut to --max-length (--over-length truncate)."}),
	}
	m.reg.MustRegister(m.requests, m.rows, m.latency, m.batchRows, m.batchToks, m.forward, m.queue, m.truncated)
	return m
}

func (m *metrics) observeBatch(rows, tokens int, seconds float64) {
	m.batchRows.Observe(float64(rows))
	m.batchToks.Observe(float64(tokens))
	m.forward.Observe(seconds)
}
