package serve

import (
	"context"
	"errors"
	"math/bits"
	"sync"
	"time"
)

// ScoreFunc scores one batch of token sequences in a single forward pass,
// returning one reward per row in order. The batcher calls it from one
// goroutine at a time.
type ScoreFunc func(rows [][]int64) ([]float64, error)

var (
	// ErrBusy: the queue cannot take the request's rows now.
	ErrBusy = errors.New("the queue is full")
	// ErrClosed: the server is shutting down.
	ErrClosed = errors.New("the server is shutting down")
)

// job is one row of a request waiting to be scored.
type job struct {
	ids    []int64
	i      int // the row's index in its request
	bucket int
}

// request is a submitted request: its rows still queued (by length
// bucket, in arrival order within one), and what has come back.
type request struct {
	queued map[int][]job
	n      int // rows still queued
	out    []float64
	left   int // rows not yet scored
	err    error
	done   chan struct{}
}

// batcher collects the rows of concurrent requests into batches of
// similar length, at most maxTokens padded tokens each, and scores them
// one batch at a time. Each batch starts from the oldest queued row of
// the next request in turn (round robin over requests), and is filled
// with rows of the same length bucket, one request at a time: a request
// of many rows or long rows shares the model with the others instead of
// holding it until it is done.
type batcher struct {
	score     ScoreFunc
	maxTokens int
	maxQueue  int
	observe   func(rows, tokens int, seconds float64) // after each batch; may be nil

	mu     sync.Mutex
	wake   chan struct{} // a send means there may be work
	reqs   []*request    // requests with queued rows, in arrival order
	rr     int
	queued int
	closed bool
}

func newBatcher(score ScoreFunc, maxTokens, maxQueue int, observe func(rows, tokens int, seconds float64)) *batcher {
	return &batcher{score: score, maxTokens: maxTokens, maxQueue: maxQueue, observe: observe, wake: make(chan struct{}, 1)}
}

// bucket groups lengths within about 19% of each other (quarter octaves).
func bucket(n int) int {
	if n < 8 {
		return n
	}
	hi := bits.Len(uint(n)) - 1
	return 8 + 4*hi + int((n>>(hi-2))&3)
}

// Queued is how many rows wait to be scored.
func (b *batcher) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queued
}

// submit queues rows and waits for their rewards, ctx's end, or a
// scoring error. It returns ErrBusy at once if the queue would exceed its
// bound, and ErrClosed after close.
func (b *batcher) submit(ctx context.Context, rows [][]int64) ([]float64, error) {
	r := &request{queued: map[int][]job{}, n: len(rows), out: make([]float64, len(rows)), left: len(rows), done: make(chan struct{})}
	for i, ids := range rows {
		k := bucket(len(ids))
		r.queued[k] = append(r.queued[k], job{ids: ids, i: i, bucket: k})
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return nil, ErrClosed
	case b.queued+len(rows) > b.maxQueue:
		b.mu.Unlock()
		return nil, ErrBusy
	}
	b.reqs = append(b.reqs, r)
	b.queued += len(rows)
	b.mu.Unlock()
	b.poke()
	select {
	case <-r.done:
		return r.out, r.err
	case <-ctx.Done():
		b.mu.Lock()
		defer b.mu.Unlock()
		select {
		case <-r.done: // finished meanwhile: the answer stands
			return r.out, r.err
		default:
		}
		b.drop(r)
		return nil, ctx.Err()
	}
}

// drop removes r's queued rows (mu held); rows already in a batch finish
// and are discarded.
func (b *batcher) drop(r *request) {
	b.queued -= r.n
	r.queued, r.n = nil, 0
	for i, q := range b.reqs {
		if q == r {
			b.reqs = append(b.reqs[:i], b.reqs[i+1:]...)
			break
		}
	}
}

func (b *batcher) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// close stops new submissions; run returns once the queue is empty.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.poke()
}

// run scores batches until close has been called and the queue is empty.
func (b *batcher) run() {
	for {
		batch, owners, stop := b.next()
		if stop {
			return
		}
		if batch == nil {
			<-b.wake
			continue
		}
		rows := make([][]int64, len(batch))
		long := 0
		for i, j := range batch {
			rows[i] = j.ids
			long = max(long, len(j.ids))
		}
		start := time.Now()
		v, err := b.score(rows)
		if err == nil && len(v) != len(rows) {
			err = errors.New("the model returned a wrong number of rewards")
		}
		if b.observe != nil {
			b.observe(len(rows), len(rows)*long, time.Since(start).Seconds())
		}
		b.deliver(batch, owners, v, err)
	}
}

// next takes the next batch off the queue: nil when it is empty (stop
// when it is also closed).
func (b *batcher) next() (batch []job, owners []*request, stop bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.reqs) == 0 {
		return nil, nil, b.closed
	}
	// The anchor is the next request in turn; the batch takes the length
	// bucket of its earliest row still queued.
	b.rr %= len(b.reqs)
	anchor := b.reqs[b.rr]
	b.rr++
	k, first := -1, -1
	for bk, js := range anchor.queued {
		if len(js) > 0 && (first < 0 || js[0].i < first) {
			k, first = bk, js[0].i
		}
	}
	long := 0
	take := func(r *request) bool {
		js := r.queued[k]
		if len(js) == 0 {
			return false
		}
		j := js[0]
		l := max(long, len(j.ids))
		if len(batch) > 0 && (len(batch)+1)*l > b.maxTokens {
			return false
		}
		long = l
		batch, owners = append(batch, j), append(owners, r)
		r.queued[k] = js[1:]
		if len(r.queued[k]) == 0 {
			delete(r.queued, k)
		}
		r.n--
		b.queued--
		return true
	}
	take(anchor)
	// Fill from every request in turn, one row each per pass, starting
	// with the anchor's.
	start := b.rr - 1
	for more := true; more; {
		more = false
		for d := range len(b.reqs) {
			if take(b.reqs[(start+d)%len(b.reqs)]) {
				more = true
			}
		}
	}
	kept := b.reqs[:0]
	for _, r := range b.reqs {
		if r.n > 0 {
			kept = append(kept, r)
		}
	}
	b.reqs = kept
	return batch, owners, false
}

// deliver hands a batch's rewards (or its error) to their requests.
func (b *batcher) deliver(batch []job, owners []*request, v []float64, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, j := range batch {
		r := owners[i]
		if r.left == 0 {
			continue
		}
		if err != nil {
			if r.err == nil {
				r.err = err
				if r.n > 0 {
					b.drop(r)
				}
				close(r.done)
			}
			r.left = 0
			continue
		}
		r.out[j.i] = v[i]
		if r.left--; r.left == 0 {
			close(r.done)
		}
	}
}
