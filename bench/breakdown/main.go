// Command breakdown times the phases of one training step of a tiny
// Llama-style reward model (zero-grad, forward with the loss, backward,
// gradient norm and clipping, AdamW update), averaged over steps. It uses
// only the models and trainer APIs, so it builds at older commits too and
// measures a change against its parent.
//
//	go run ./bench/breakdown -threads 1
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"

	"prism/internal/torch"
	"prism/models"
)

func main() {
	torch.Pin() // for the whole process: libtorch state is per OS thread
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "breakdown:", err)
		os.Exit(1)
	}
}

func run() error {
	threads := flag.Int("threads", 0, "libtorch threads (0: every core)")
	hidden := flag.Int("hidden", 64, "hidden size (4 heads, 2 key/value heads, 2 layers)")
	seq := flag.Int("seq", 64, "tokens per sequence")
	pairs := flag.Int("pairs", 32, "pairs per step")
	steps := flag.Int("steps", 30, "timed steps (after 3 warm-up steps)")
	flag.Parse()
	if _, err := torch.Setup(*threads); err != nil {
		return err
	}
	pad := 0
	c := &models.Config{ModelType: "llama", VocabSize: 1024, HiddenSize: *hidden, IntermediateSize: *hidden * 11 / 4,
		NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2, RMSNormEps: 1e-5, RopeTheta: 10000,
		MaxPositionEmbeddings: 4096, PadTokenID: &pad, InitializerRange: 0.02, HeadDim: *hidden / 4, HiddenAct: "silu"}
	rng := rand.New(rand.NewPCG(1, 2))
	m, err := models.FromValues(c, models.RandomInit(c, rng), gotch.CPU)
	if err != nil {
		return err
	}
	seqs := make([][]int64, 2**pairs)
	for i := range seqs {
		seqs[i] = make([]int64, *seq)
		for j := range seqs[i] {
			seqs[i][j] = int64(3 + rng.IntN(1000))
		}
	}
	adam, err := models.NewAdamW(m.Params, 0.9, 0.999, 1e-8, 0.01)
	if err != nil {
		return err
	}
	var tz, tf, tb, tn, tu time.Duration
	P := int64(*pairs)
	for it := 0; it < *steps+3; it++ {
		t0 := time.Now()
		if err := adam.ZeroGrad(); err != nil {
			return err
		}
		t1 := time.Now()
		r, err := m.Forward(models.Collate(seqs, 0))
		if err != nil {
			return err
		}
		a := r.MustNarrow(0, 0, P, false)
		b := r.MustNarrow(0, P, P, false)
		d := a.MustSub(b, false)
		ls := d.MustLogSigmoid(false)
		mean := ls.MustMean(gotch.Float, false)
		l := mean.MustNeg(false)
		if _, err := models.Float64s(l); err != nil {
			return err
		}
		t2 := time.Now()
		if err := l.Backward(); err != nil {
			return err
		}
		t3 := time.Now()
		gn, err := adam.GradNorm()
		if err != nil {
			return err
		}
		if err := adam.ClipGradNorm(gn, 1); err != nil {
			return err
		}
		t4 := time.Now()
		if err := adam.Update(1e-4); err != nil {
			return err
		}
		t5 := time.Now()
		for _, x := range []*ts.Tensor{r, a, b, d, ls, mean, l} {
			x.Drop()
		}
		if it >= 3 {
			tz += t1.Sub(t0)
			tf += t2.Sub(t1)
			tb += t3.Sub(t2)
			tn += t4.Sub(t3)
			tu += t5.Sub(t4)
		}
	}
	n := time.Duration(*steps)
	ms := func(d time.Duration) float64 { return float64(d/n) / 1e6 }
	fmt.Printf("forward %.1f ms  backward %.1f ms  zero-grad %.2f ms  norm+clip %.2f ms  update %.2f ms  step %.1f ms\n",
		ms(tf), ms(tb), ms(tz), ms(tn), ms(tu), ms(tz+tf+tb+tn+tu))
	return nil
}
