package data

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// The toy tasks reproduce the paper's synthetic settings: the right
// preference depends on the prompt (a response should be on the prompt's
// topic), and a response-only shortcut predicts the training labels most
// of the time. Their test splits break the shortcut.
//
// Token ids (vocabulary of at least 128): 0 pad, 1 BOS, 2 EOS, 3 separator,
// 4..7 the prompt's topic marker, 8 a "style" token, 10+8t..17+8t the
// content words of topic t, 48.. filler.
const (
	toyTopics   = 4
	toyStyle    = 8
	toyFiller0  = 48
	toyMinVocab = 128
)

// ToyNames lists the toy tasks.
var ToyNames = []string{"length_bias", "adversarial"}

// Toy generates a toy task's training and test pairs from a seed.
func Toy(name string, n, vocab int, seed uint64) (train, test []Pair, err error) {
	if vocab < toyMinVocab {
		return nil, nil, fmt.Errorf("toy task %s needs a vocabulary of at least %d tokens, have %d", name, toyMinVocab, vocab)
	}
	g := &toyGen{rng: rand.New(rand.NewPCG(seed, 0x70e)), vocab: vocab}
	switch name {
	case "length_bias":
		return g.lengthBias(n, 0.875), g.lengthBias(n/4, 0.125), nil
	case "adversarial":
		return g.adversarial(n), g.adversarialTest(n / 4), nil
	}
	return nil, nil, fmt.Errorf("unknown toy task %q (have %s)", name, strings.Join(ToyNames, ", "))
}

type toyGen struct {
	rng   *rand.Rand
	vocab int
}

func (g *toyGen) filler() int64 { return int64(toyFiller0 + g.rng.IntN(g.vocab-toyFiller0)) }

func (g *toyGen) prompt(topic int) []int64 {
	return []int64{1, int64(4 + topic), g.filler(), g.filler(), 3}
}

// response writes about a topic: about half content words, the rest
// filler, optionally one style token, then EOS.
func (g *toyGen) response(topic, length int, style bool) []int64 {
	ids := make([]int64, length)
	for i := range ids[:length-1] {
		if g.rng.IntN(3) == 0 {
			ids[i] = int64(10 + 8*topic + g.rng.IntN(8))
		} else {
			ids[i] = g.filler()
		}
	}
	if style {
		ids[g.rng.IntN(length-1)] = toyStyle
	}
	ids[length-1] = 2
	return ids
}

func (g *toyGen) otherTopic(k int) int { return (k + 1 + g.rng.IntN(toyTopics-1)) % toyTopics }

// lengthBias: the chosen response is on the prompt's topic, the rejected
// one is not; the chosen one is the longer with probability pLonger.
func (g *toyGen) lengthBias(n int, pLonger float64) []Pair {
	pairs := make([]Pair, n)
	for i := range pairs {
		k := g.rng.IntN(toyTopics)
		short, long := 4+g.rng.IntN(5), 12+g.rng.IntN(9)
		lc, lr := long, short
		if g.rng.Float64() >= pLonger {
			lc, lr = short, long
		}
		pairs[i] = Pair{ID: i, Prompt: g.prompt(k), Chosen: g.response(k, lc, false), Rejected: g.response(g.otherTopic(k), lr, false),
			Tags: map[string]string{"longer_chosen": fmt.Sprint(lc > lr)}}
	}
	return pairs
}

// adversarial: ordinary pairs where the chosen response carries the style
// token 90% of the time (the shortcut), mixed with adversarial pairs: the
// same two responses under two prompts with opposite preferences.
func (g *toyGen) adversarial(n int) []Pair {
	var pairs []Pair
	add := func(p Pair, adv bool) {
		p.ID = len(pairs)
		p.Tags = map[string]string{"adversarial": fmt.Sprint(adv)}
		pairs = append(pairs, p)
	}
	for len(pairs) < n {
		if g.rng.Float64() < 0.3 && len(pairs)+2 <= n {
			a := g.rng.IntN(toyTopics)
			b := g.otherTopic(a)
			ya := g.response(a, 6+g.rng.IntN(9), true)
			yb := g.response(b, 6+g.rng.IntN(9), false)
			add(Pair{Prompt: g.prompt(a), Chosen: ya, Rejected: yb}, true)
			add(Pair{Prompt: g.prompt(b), Chosen: yb, Rejected: ya}, true)
			continue
		}
		k := g.rng.IntN(toyTopics)
		style := g.rng.Float64() < 0.9
		add(Pair{Prompt: g.prompt(k), Chosen: g.response(k, 6+g.rng.IntN(9), style),
			Rejected: g.response(g.otherTopic(k), 6+g.rng.IntN(9), !style)}, false)
	}
	return pairs
}

// adversarialTest puts the style token on the rejected side of every
// pair: a model that learnt the shortcut ranks them backwards.
func (g *toyGen) adversarialTest(n int) []Pair {
	pairs := make([]Pair, n)
	for i := range pairs {
		k := g.rng.IntN(toyTopics)
		pairs[i] = Pair{ID: i, Prompt: g.prompt(k), Chosen: g.response(k, 6+g.rng.IntN(9), false),
			Rejected: g.response(g.otherTopic(k), 6+g.rng.IntN(9), true), Tags: map[string]string{"adversarial": "false"}}
	}
	return pairs
}
