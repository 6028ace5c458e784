package data

import (
	"fmt"
	"math"
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
var ToyNames = []string{"length_bias", "adversarial", "prompt_decides"}

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
	case "prompt_decides":
		return g.promptDecides(n), g.promptDecides(n / 4), nil
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

// promptDecides: pairs come in mirrored couples, the same two responses
// (on topics a and b, lengths drawn alike) under a prompt on a, where the
// one on a wins, and under a prompt on b, where the other wins. Every
// response is chosen exactly as often as it is rejected, so a model that
// ignores the prompt is at chance: only reading the prompt helps. Tagged
// with whether the chosen response is the longer (no shortcut: about half).
func (g *toyGen) promptDecides(n int) []Pair {
	var pairs []Pair
	add := func(p Pair) {
		p.ID = len(pairs)
		p.Tags = map[string]string{"longer_chosen": fmt.Sprint(len(p.Chosen) > len(p.Rejected))}
		pairs = append(pairs, p)
	}
	for len(pairs) < n {
		a := g.rng.IntN(toyTopics)
		b := g.otherTopic(a)
		ya := g.onTopic(a, 6+g.rng.IntN(9))
		yb := g.onTopic(b, 6+g.rng.IntN(9))
		add(Pair{Prompt: g.prompt(a), Chosen: ya, Rejected: yb})
		if len(pairs) < n {
			add(Pair{Prompt: g.prompt(b), Chosen: yb, Rejected: ya})
		}
	}
	return pairs
}

// onTopic is a response with at least one of topic's content words (a
// response of filler alone says nothing about its topic).
func (g *toyGen) onTopic(topic, length int) []int64 {
	for {
		y := g.response(topic, length, false)
		for _, id := range y {
			if id >= int64(10+8*topic) && id < int64(18+8*topic) {
				return y
			}
		}
	}
}

// ToyPolicy is the policy π(y | x) of the toy tasks' importance weights:
// the generator's own distribution of a response's tokens given the
// prompt's topic (a third content words of that topic, the rest filler,
// EOS last), mixed with 10% of the uniform distribution over the
// vocabulary so that a response on another topic, or with the style
// token, keeps a finite likelihood. It returns each response's mean
// log-probability per token, as a causal LM's length-normalised
// log-likelihood; a prompt that is not a toy prompt is an error.
func ToyPolicy(vocab int) func(prompts, responses [][]int64) ([]float64, error) {
	const mix = 0.1
	uniform := 1 / float64(vocab)
	return func(prompts, responses [][]int64) ([]float64, error) {
		out := make([]float64, len(prompts))
		for i, x := range prompts {
			if len(x) != 5 || x[0] != 1 || x[1] < 4 || x[1] >= 4+toyTopics {
				return nil, fmt.Errorf("row %d: prompt %v is not a toy prompt (the toy policy only reads toy tasks)", i, x)
			}
			topic := x[1] - 4
			y := responses[i]
			var s float64
			for t, id := range y {
				var p float64
				switch {
				case t == len(y)-1:
					if id == 2 {
						p = 1
					}
				case id >= 10+8*topic && id < 18+8*topic:
					p = 1.0 / 3 / 8
				case id >= toyFiller0 && id < int64(vocab):
					p = 2.0 / 3 / float64(vocab-toyFiller0)
				}
				s += math.Log((1-mix)*p + mix*uniform)
			}
			out[i] = s / float64(len(y))
		}
		return out, nil
	}
}
