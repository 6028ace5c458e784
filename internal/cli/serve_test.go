package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"prism/data"
	"prism/data/chattemplate"
	"prism/data/encode"
)

// startServe runs `prism serve` in this process on a free loopback port
// and returns its base URL and a channel that yields the command's error
// when it returns.
func startServe(t *testing.T, args ...string) (string, <-chan error) {
	t.Helper()
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	root := NewRoot(pw, &errb)
	root.SetArgs(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...))
	done := make(chan error, 1)
	go func() {
		err := root.ExecuteContext(context.Background())
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("prism serve did not start: %v\n%s", <-done, errb.String())
	}
	go io.Copy(io.Discard, pr)
	_, rest, ok := strings.Cut(line, "on http://")
	if !ok {
		t.Fatalf("unexpected first line %q", line)
	}
	return "http://" + strings.Fields(rest)[0], done
}

// serveCase is one conversation, sent as a prism row and, rendered with
// the chat template, as an OpenRLHF query.
type serveCase struct {
	row   json.RawMessage
	query string
	want  float64
}

// serveCases builds n conversations of mixed lengths and their `prism
// score` rewards.
func serveCases(t *testing.T, model string, n int) []serveCase {
	t.Helper()
	e, err := encode.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	words := strings.Fields("the reward model reads a prompt and a response and says how good the answer is for that question here now")
	text := func(k int) string {
		w := make([]string, k)
		for i := range w {
			w[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(w, " ")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "rows.jsonl")
	var lines []string
	cases := make([]serveCase, n)
	for i := range cases {
		msgs := []data.Message{{Role: "user", Content: text(1 + rng.IntN(20))}, {Role: "assistant", Content: text(1 + rng.IntN(120))}}
		row, _ := json.Marshal(map[string]any{"messages": msgs})
		rendered, err := chattemplate.Render(e.Chat, msgs, chattemplate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		cases[i] = serveCase{row: row, query: rendered}
		lines = append(lines, string(row))
	}
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	out, _, err := run(t, "score", "--model", model, "--input", in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range parseRewards(t, out) {
		cases[i].want = r
	}
	return cases
}

// ask sends cases to path and returns the rewards, or an error for any
// failure or non-200 answer.
func ask(client *http.Client, url, path string, cs []serveCase) ([]float64, int, error) {
	var body []byte
	if path == "/get_reward" {
		q := make([]string, len(cs))
		for i, c := range cs {
			q[i] = c.query
		}
		// The exact shape OpenRLHF's client sends.
		body, _ = json.Marshal(map[string]any{"query": q, "prompts": q, "labels": make([]any, len(q))})
	} else {
		rows := make([]json.RawMessage, len(cs))
		for i, c := range cs {
			rows[i] = c.row
		}
		body, _ = json.Marshal(map[string]any{"rows": rows})
	}
	resp, err := client.Post(url+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Rewards []float64 `json:"rewards"`
		Scores  []float64 `json:"scores"`
		Error   string    `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != 200 {
		return nil, resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, out.Error)
	}
	if path == "/get_reward" && fmt.Sprint(out.Scores) != fmt.Sprint(out.Rewards) {
		return nil, 200, fmt.Errorf("scores %v differ from rewards %v", out.Scores, out.Rewards)
	}
	return out.Rewards, 200, nil
}

func checkRewards(cs []serveCase, got []float64) error {
	if len(got) != len(cs) {
		return fmt.Errorf("%d rewards for %d rows", len(got), len(cs))
	}
	for i, c := range cs {
		if math.Abs(got[i]-c.want) > 1e-6 {
			return fmt.Errorf("row %d: served %v, prism score %v", i, got[i], c.want)
		}
	}
	return nil
}

// TestServeMatchesScore: under 200 concurrent clients sending requests of
// 1 to 8 conversations of mixed lengths, interleaved across both
// endpoints, every reward served equals `prism score`'s for the same
// conversation to 1e-6: as a prism row, and as the rendered text an
// OpenRLHF client sends.
func TestServeMatchesScore(t *testing.T) {
	model := llama3Model(t)
	cases := serveCases(t, model, 60)
	url, done := startServe(t, "--model", model, "--max-batch-tokens", "4096")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for c := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 9))
			for k := range 2 {
				cs := make([]serveCase, 1+rng.IntN(8))
				for i := range cs {
					cs[i] = cases[rng.IntN(len(cases))]
				}
				path := []string{"/get_reward", "/score"}[(c+k)%2]
				got, _, err := ask(client, url, path, cs)
				if err == nil {
					err = checkRewards(cs, got)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d %s: %w", c, path, err)
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
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`prism_serve_requests_total{code="200",endpoint="get_reward"} 200`, `prism_serve_requests_total{code="200",endpoint="score"} 200`, "prism_serve_batch_rows_bucket"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("prism serve after SIGTERM: %v", err)
	}
}

// TestServeSIGTERMUnderLoad: a SIGTERM while 40 clients send requests
// without pause ends prism serve with no error; every answer given is 200
// and correct (requests are either answered or never accepted: the
// client sees its connection refused or closed unread), and the server
// stops accepting.
func TestServeSIGTERMUnderLoad(t *testing.T) {
	model := llama3Model(t)
	cases := serveCases(t, model, 20)
	url, done := startServe(t, "--model", model)
	var answered, refused atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for c := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{}}
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				cs := []serveCase{cases[(c+k)%len(cases)], cases[(3*c+k)%len(cases)]}
				got, code, err := ask(client, url, []string{"/get_reward", "/score"}[k%2], cs)
				switch {
				case err != nil && code == 0:
					refused.Add(1) // not accepted: the server had stopped listening or closed the idle connection
					time.Sleep(5 * time.Millisecond)
					continue
				case err == nil:
					err = checkRewards(cs, got)
				}
				if err != nil {
					errs <- fmt.Errorf("client %d: %w", c, err)
					return
				}
				answered.Add(1)
			}
		}()
	}
	for answered.Load() < 50 {
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("prism serve after SIGTERM: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("prism serve did not stop within 60 s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, err := http.Get(url + "/healthz"); err == nil {
		t.Error("the server still accepts connections after the shutdown")
	}
	t.Logf("%d requests answered, %d not accepted", answered.Load(), refused.Load())
}

// TestPlotCommand overlays two runs (same names, told apart by path),
// and refuses a folder that is not a run and an output that is a folder.
func TestPlotCommand(t *testing.T) {
	root := t.TempDir()
	for _, seed := range []string{"seed-1", "seed-2"} {
		d := filepath.Join(root, seed, "vanilla")
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "metrics.jsonl"), []byte(`{"kind":"train","step":1,"loss":0.7,"accuracy":0.5,"lr":0.001,"grad_norm":1}
{"kind":"train","step":2,"loss":0.6,"accuracy":0.6,"lr":0.001,"grad_norm":1}
`), 0o644)
	}
	out := filepath.Join(root, "both.png")
	stdout, _, err := run(t, "plot", filepath.Join(root, "seed-1", "vanilla"), filepath.Join(root, "seed-2", "vanilla"), "--out", out)
	if err != nil || !strings.Contains(stdout, "2 runs") {
		t.Fatalf("%v %s", err, stdout)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() < 1000 {
		t.Errorf("plot: %v", err)
	}
	if _, _, err := run(t, "plot", root, "--out", out); err == nil || !strings.Contains(err.Error(), "not a run folder") {
		t.Errorf("a folder that is not a run: %v", err)
	}
	if _, _, err := run(t, "plot", filepath.Join(root, "seed-1", "vanilla"), "--out", root); err == nil {
		t.Error("--out naming a folder was accepted")
	}
}
