package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// byteEncoder tokenises text as its bytes (ids 1..255), and reads prism
// rows as {"text": ...} or {"input_ids": [...]}.
type byteEncoder struct{}

func (byteEncoder) Text(s string) ([]int64, error) {
	ids := make([]int64, len(s))
	for i := range len(s) {
		ids[i] = int64(s[i])
	}
	return ids, nil
}

func (e byteEncoder) Row(raw []byte) ([]int64, error) {
	var r struct {
		Text string  `json:"text"`
		IDs  []int64 `json:"input_ids"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, err
	}
	if r.IDs != nil {
		return r.IDs, nil
	}
	return e.Text(r.Text)
}

// reward is the fake model: it depends on every id and its position, so
// a row given another row's reward, or a reordered batch, shows.
func reward(ids []int64) float64 {
	var h float64
	for i, id := range ids {
		h = h*1.000003 + float64(id)*float64(i%7+1)
	}
	return h / 1000
}

// fakeModel scores batches, recording their sizes; delay slows each batch
// so that concurrent requests meet in the queue.
type fakeModel struct {
	delay   time.Duration
	mu      sync.Mutex
	batches [][2]int // rows, padded tokens
}

func (f *fakeModel) score(rows [][]int64) ([]float64, error) {
	time.Sleep(f.delay)
	out := make([]float64, len(rows))
	long := 0
	for i, r := range rows {
		out[i] = reward(r)
		long = max(long, len(r))
	}
	f.mu.Lock()
	f.batches = append(f.batches, [2]int{len(rows), len(rows) * long})
	f.mu.Unlock()
	return out, nil
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start serves on a loopback port and returns its base URL.
func start(t *testing.T, score ScoreFunc, opt Options) (*Server, string, *http.Server) {
	t.Helper()
	s, err := New(score, byteEncoder{}, opt, quiet())
	if err != nil {
		t.Fatal(err)
	}
	go s.Run()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		hs.Close()
		s.Close()
	})
	return s, "http://" + ln.Addr().String(), hs
}

func testOptions() Options {
	o := DefaultOptions()
	o.VocabSize = 256
	o.MaxLength = 400
	return o
}

func post(t *testing.T, url, body string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s: the answer is not JSON: %v", url, err)
	}
	return resp.StatusCode, resp.Header, out
}

// fire posts body and discards the answer (for goroutines, which must not
// end the test).
func fire(url, body string) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func floats(t *testing.T, v any) []float64 {
	t.Helper()
	list, ok := v.([]any)
	if !ok {
		t.Fatalf("want a list of numbers, got %T %v", v, v)
	}
	out := make([]float64, len(list))
	for i, x := range list {
		out[i] = x.(float64)
	}
	return out
}

// TestOpenRLHFRequest replays the request body OpenRLHF's
// SingleTurnAgentExecutor posts (openrlhf/utils/agent.py,
// _fetch_rewards_via_http: {"query", "prompts", "labels"} with a null
// label) and checks the fields its client reads: "rewards" and "scores"
// in query order, and "extra_logs" an object.
func TestOpenRLHFRequest(t *testing.T) {
	_, url, _ := start(t, (&fakeModel{}).score, testOptions())
	body := `{"query": ["<|begin_of_text|>Hi there, how are you?", "short", "a third query"], "prompts": ["Hi there", "s", null], "labels": [null, "x", 3]}`
	code, _, out := post(t, url+"/get_reward", body)
	if code != http.StatusOK {
		t.Fatalf("status %d: %v", code, out)
	}
	want := []float64{}
	for _, q := range []string{"<|begin_of_text|>Hi there, how are you?", "short", "a third query"} {
		ids, _ := byteEncoder{}.Text(q)
		want = append(want, reward(ids))
	}
	for _, key := range []string{"rewards", "scores"} {
		got := floats(t, out[key])
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", key, got, want)
		}
	}
	if _, ok := out["extra_logs"].(map[string]any); !ok {
		t.Errorf("extra_logs = %v, want an object", out["extra_logs"])
	}
}

// TestBadRequests: every malformed or over-limit request gets its status
// and a message naming what is wrong.
func TestBadRequests(t *testing.T) {
	opt := testOptions()
	opt.MaxRequestRows = 3
	opt.MaxBodyBytes = 4096
	opt.MaxLength = 10
	_, url, _ := start(t, (&fakeModel{}).score, opt)
	tests := []struct {
		path, body string
		code       int
		want       string
	}{
		{"/get_reward", `{"query": ["a", "b"`, 400, "the body ends before the object does"},
		{"/get_reward", `{"query": ["a", "b"]]`, 400, "malformed JSON at byte 21"},
		{"/get_reward", ``, 400, "empty body"},
		{"/get_reward", `[1, 2]`, 400, "want a JSON object"},
		{"/get_reward", `{"query": "a text"}`, 400, `field "query"`},
		{"/get_reward", `{"prompts": ["a"]}`, 400, `field "query": missing`},
		{"/get_reward", `{"query": []}`, 400, `field "query": empty`},
		{"/get_reward", `{"query": ["a", "b", 3]}`, 400, `field "query[2]": want a string`},
		{"/get_reward", `{"query": ["a", "b", "c", "d"]}`, 400, "over the limit of 3 per request"},
		{"/get_reward", `{"query": ["a", ""]}`, 400, `row 1 has no tokens`},
		{"/get_reward", `{"query": ["01234567890"]}`, 400, "11 tokens, over the limit of 10"},
		{"/get_reward", `{"query": ["` + strings.Repeat("x", 5000) + `"]}`, 413, "over the limit of 4096 bytes"},
		{"/get_reward", `{"query": ["a"]} {"query": ["b"]}`, 400, "more after the object"},
		{"/score", `{"rows": [{"input_ids": [1, 999]}]}`, 400, "outside the model's vocabulary (256)"},
		{"/score", `{"rows": [{"input_ids": [1]}, 5]}`, 400, `field "rows[1]"`},
		{"/score", `{"row": []}`, 400, `field "rows": missing`},
	}
	for _, tt := range tests {
		code, _, out := post(t, url+tt.path, tt.body)
		msg, _ := out["error"].(string)
		if code != tt.code || !strings.Contains(msg, tt.want) {
			t.Errorf("%s %.60s: status %d %q, want %d with %q", tt.path, tt.body, code, msg, tt.code, tt.want)
		}
	}
	// A GET where a POST belongs, and an unknown path.
	if resp, err := http.Get(url + "/get_reward"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /get_reward: %v %v", resp.StatusCode, err)
	}
}

// TestTruncate: with Truncate, an over-long row is scored as its first
// MaxLength tokens (OpenRLHF's truncation) and counted in the metrics.
func TestTruncate(t *testing.T) {
	opt := testOptions()
	opt.MaxLength, opt.Truncate = 5, true
	_, url, _ := start(t, (&fakeModel{}).score, opt)
	code, _, out := post(t, url+"/get_reward", `{"query": ["abcdefgh"]}`)
	ids, _ := byteEncoder{}.Text("abcde")
	if got := floats(t, out["rewards"]); code != 200 || got[0] != reward(ids) {
		t.Errorf("status %d, rewards %v, want [%v]", code, got, reward(ids))
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "prism_serve_truncated_rows_total 1") {
		t.Errorf("metrics do not count the truncated row:\n%s", b)
	}
}

// TestAppendEOS: trailing and leading EOS/padding are stripped and one EOS
// appended, on tokens.
func TestAppendEOS(t *testing.T) {
	opt := testOptions()
	opt.AppendEOS, opt.EOS, opt.Pad = true, '!', '_'
	_, url, _ := start(t, (&fakeModel{}).score, opt)
	_, _, out := post(t, url+"/get_reward", `{"query": ["__ab!c!!__", "abc"]}`)
	got := floats(t, out["rewards"])
	a, _ := byteEncoder{}.Text("ab!c!")
	b, _ := byteEncoder{}.Text("abc!")
	if got[0] != reward(a) || got[1] != reward(b) {
		t.Errorf("rewards %v, want %v %v", got, reward(a), reward(b))
	}
}

// TestConcurrentClients: hundreds of concurrent clients, each sending
// requests of rows of mixed lengths to both endpoints, get exactly their
// own rows' rewards; requests arriving together share forward passes, and
// no pass exceeds the token budget unless it holds a single row.
func TestConcurrentClients(t *testing.T) {
	fm := &fakeModel{delay: 2 * time.Millisecond}
	opt := testOptions()
	opt.MaxBatchTokens = 2048
	s, url, _ := start(t, fm.score, opt)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 300}}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for c := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for k := range 3 {
				n := 1 + rng.IntN(6)
				var texts []string
				var want []float64
				for range n {
					b := make([]byte, 1+rng.IntN(300))
					for i := range b {
						b[i] = byte('a' + rng.IntN(26))
					}
					texts = append(texts, string(b))
					ids, _ := byteEncoder{}.Text(string(b))
					want = append(want, reward(ids))
				}
				var body []byte
				path := "/get_reward"
				if k%2 == 1 {
					path = "/score"
					var rows []map[string]string
					for _, x := range texts {
						rows = append(rows, map[string]string{"text": x})
					}
					body, _ = json.Marshal(map[string]any{"rows": rows})
				} else {
					body, _ = json.Marshal(map[string]any{"query": texts, "prompts": texts, "labels": make([]any, n)})
				}
				resp, err := client.Post(url+path, "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				var out struct {
					Rewards []float64 `json:"rewards"`
				}
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || fmt.Sprint(out.Rewards) != fmt.Sprint(want) {
					errs <- fmt.Errorf("client %d request %d: status %d, rewards %v, want %v (%v)", c, k, resp.StatusCode, out.Rewards, want, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	most := 0
	for _, b := range fm.batches {
		most = max(most, b[0])
		if b[0] > 1 && b[1] > opt.MaxBatchTokens {
			t.Errorf("a batch of %d rows holds %d padded tokens, over the budget of %d", b[0], b[1], opt.MaxBatchTokens)
		}
	}
	if most < 4 {
		t.Errorf("the largest batch has %d rows: concurrent requests are not scored together", most)
	}
	if q := s.b.Queued(); q != 0 {
		t.Errorf("%d rows still queued", q)
	}
	t.Logf("%d batches, the largest %d rows", len(fm.batches), most)
}

// TestNoStarvation: a request of many long rows queued first does not
// hold the model until it is done: short requests that come after it are
// answered while it still has most of its rows to go.
func TestNoStarvation(t *testing.T) {
	fm := &fakeModel{delay: 3 * time.Millisecond}
	opt := testOptions()
	opt.MaxBatchTokens = 400 // one long row per pass
	_, url, _ := start(t, fm.score, opt)
	huge := make([]string, 200)
	for i := range huge {
		huge[i] = strings.Repeat("y", 390)
	}
	body, _ := json.Marshal(map[string]any{"query": huge})
	var hugeDone atomic.Bool
	go func() {
		fire(url+"/get_reward", string(body))
		hugeDone.Store(true)
	}()
	time.Sleep(20 * time.Millisecond) // the huge request is queued first
	for i := range 5 {
		code, _, _ := post(t, url+"/get_reward", fmt.Sprintf(`{"query": ["small %d"]}`, i))
		if code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	if hugeDone.Load() {
		t.Error("the small requests waited for the whole huge request")
	}
}

// TestQueueFullAndTimeout: a request that would overfill the queue gets
// 503 with Retry-After at once; one not scored in time gets 504, and its
// rows leave the queue.
func TestQueueFullAndTimeout(t *testing.T) {
	block := make(chan struct{})
	slow := func(rows [][]int64) ([]float64, error) {
		<-block
		return make([]float64, len(rows)), nil
	}
	opt := testOptions()
	opt.MaxQueueRows, opt.Timeout, opt.MaxBatchTokens = 4, 300*time.Millisecond, 1
	s, url, _ := start(t, slow, opt)
	defer close(block)
	// The first row goes into a pass that blocks; three more fill the
	// queue to 3 of 4.
	go fire(url+"/get_reward", `{"query": ["a"]}`)
	time.Sleep(50 * time.Millisecond)
	go fire(url+"/get_reward", `{"query": ["b", "c", "d"]}`)
	time.Sleep(50 * time.Millisecond)
	code, h, out := post(t, url+"/get_reward", `{"query": ["e", "f"]}`)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(out["error"].(string), "queue is full") {
		t.Errorf("overfilled queue: status %d, Retry-After %q, %v", code, h.Get("Retry-After"), out)
	}
	code, _, out = post(t, url+"/get_reward", `{"query": ["g"]}`)
	if code != http.StatusGatewayTimeout || !strings.Contains(out["error"].(string), "not scored within") {
		t.Errorf("timeout: status %d, %v", code, out)
	}
	time.Sleep(400 * time.Millisecond) // the queued request times out too
	if q := s.b.Queued(); q != 0 {
		t.Errorf("%d rows of timed-out requests still queued", q)
	}
}

// TestModelErrorFailsItsRequests: an error of the model fails the
// requests whose rows were in the pass, with 500, and the server goes on.
func TestModelErrorFailsItsRequests(t *testing.T) {
	var calls atomic.Int32
	score := func(rows [][]int64) ([]float64, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("CUDA out of memory")
		}
		out := make([]float64, len(rows))
		for i, r := range rows {
			out[i] = reward(r)
		}
		return out, nil
	}
	_, url, _ := start(t, score, testOptions())
	code, _, out := post(t, url+"/get_reward", `{"query": ["a"]}`)
	if code != 500 || !strings.Contains(out["error"].(string), "out of memory") {
		t.Errorf("status %d %v", code, out)
	}
	if code, _, _ := post(t, url+"/get_reward", `{"query": ["a"]}`); code != 200 {
		t.Errorf("after a model error: status %d", code)
	}
	nan := func(rows [][]int64) ([]float64, error) { return []float64{0, nan()}, nil }
	_, url2, _ := start(t, nan, testOptions())
	if code, _, out := post(t, url2+"/get_reward", `{"query": ["a", "b"]}`); code != 500 || !strings.Contains(out["error"].(string), "row 1") {
		t.Errorf("NaN reward: status %d %v", code, out)
	}
}

func nan() float64 { var z float64; return z / z }

// TestGracefulShutdown: with clients sending requests without pause,
// Shutdown then Close lets every request that reached a handler finish
// with its correct answer; later requests are refused, and Run returns.
func TestGracefulShutdown(t *testing.T) {
	fm := &fakeModel{delay: 3 * time.Millisecond}
	s, err := New(fm.score, byteEncoder{}, testOptions(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { s.Run(); close(ran) }()
	var entered, answered atomic.Int64
	inner := s.Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		inner.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(ln)
	url := "http://" + ln.Addr().String() + "/get_reward"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for c := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				q := fmt.Sprintf("client %d request %d %s", c, k, strings.Repeat("z", k%50))
				ids, _ := byteEncoder{}.Text(q)
				body, _ := json.Marshal(map[string]any{"query": []string{q}})
				resp, err := http.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					return // refused: the server stopped accepting
				}
				var out struct{ Rewards []float64 }
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode != 200 || len(out.Rewards) != 1 || out.Rewards[0] != reward(ids) {
					wrong.Add(1)
					continue
				}
				answered.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	close(stop)
	wg.Wait()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if wrong.Load() != 0 || answered.Load() != entered.Load() || answered.Load() == 0 {
		t.Errorf("%d requests reached a handler, %d were answered correctly, %d wrongly", entered.Load(), answered.Load(), wrong.Load())
	}
	t.Logf("%d requests answered before the shutdown completed", answered.Load())
}
