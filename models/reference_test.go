package models

import (
	"math"
)

// refForward is a plain-Go float64 implementation of the reward model for
// one unpadded sequence, written from the Llama/Mistral definitions
// independently of the libtorch path: RMSNorm, rotary embeddings (with the
// config's inverse frequencies), grouped-query causal attention with an
// optional sliding window, SwiGLU, and the score head on the last token.
func refForward(c *Config, w map[string][]float32, ids []int64) float64 {
	D, H, KV, hd, F := c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize
	T := len(ids)
	mat := func(name string, rows, cols int) func(r, k int) float64 {
		v := w[name]
		return func(r, k int) float64 { return float64(v[r*cols+k]) }
	}
	linear := func(x []float64, name string, out, in int) []float64 {
		m := mat(name, out, in)
		y := make([]float64, out)
		for o := 0; o < out; o++ {
			var s float64
			for i := 0; i < in; i++ {
				s += m(o, i) * x[i]
			}
			y[o] = s
		}
		return y
	}
	norm := func(x []float64, name string) []float64 {
		var ss float64
		for _, v := range x {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(x))+c.RMSNormEps)
		y := make([]float64, len(x))
		for i := range x {
			y[i] = x[i] * inv * float64(w[name][i])
		}
		return y
	}
	inv := c.InvFreq()
	rot := func(x []float64, pos int) []float64 {
		y := make([]float64, hd)
		for i := 0; i < hd/2; i++ {
			a := float64(float32(float64(pos) * float64(inv[i])))
			cs, sn := math.Cos(a), math.Sin(a)
			y[i] = x[i]*cs - x[i+hd/2]*sn
			y[i+hd/2] = x[i+hd/2]*cs + x[i]*sn
		}
		return y
	}
	h := make([][]float64, T)
	for t, id := range ids {
		h[t] = make([]float64, D)
		for i := 0; i < D; i++ {
			h[t][i] = float64(w["model.embed_tokens.weight"][int(id)*D+i])
		}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := "model.layers." + itoa(l) + "."
		q := make([][]float64, T)
		k := make([][]float64, T)
		v := make([][]float64, T)
		for t := 0; t < T; t++ {
			x := norm(h[t], p+"input_layernorm.weight")
			q[t] = linear(x, p+"self_attn.q_proj.weight", H*hd, D)
			k[t] = linear(x, p+"self_attn.k_proj.weight", KV*hd, D)
			v[t] = linear(x, p+"self_attn.v_proj.weight", KV*hd, D)
			for hh := 0; hh < H; hh++ {
				copy(q[t][hh*hd:], rot(q[t][hh*hd:(hh+1)*hd], t))
			}
			for hh := 0; hh < KV; hh++ {
				copy(k[t][hh*hd:], rot(k[t][hh*hd:(hh+1)*hd], t))
			}
		}
		next := make([][]float64, T)
		for t := 0; t < T; t++ {
			att := make([]float64, H*hd)
			for hh := 0; hh < H; hh++ {
				g := hh / (H / KV)
				lo := 0
				if c.SlidingWindow > 0 {
					lo = max(0, t-c.SlidingWindow+1)
				}
				scores := make([]float64, t+1)
				mx := math.Inf(-1)
				for j := lo; j <= t; j++ {
					var s float64
					for i := 0; i < hd; i++ {
						s += q[t][hh*hd+i] * k[j][g*hd+i]
					}
					scores[j] = s / math.Sqrt(float64(hd))
					mx = math.Max(mx, scores[j])
				}
				var z float64
				for j := lo; j <= t; j++ {
					scores[j] = math.Exp(scores[j] - mx)
					z += scores[j]
				}
				for j := lo; j <= t; j++ {
					for i := 0; i < hd; i++ {
						att[hh*hd+i] += scores[j] / z * v[j][g*hd+i]
					}
				}
			}
			o := linear(att, p+"self_attn.o_proj.weight", D, H*hd)
			r := make([]float64, D)
			for i := range r {
				r[i] = h[t][i] + o[i]
			}
			x := norm(r, p+"post_attention_layernorm.weight")
			gate := linear(x, p+"mlp.gate_proj.weight", F, D)
			up := linear(x, p+"mlp.up_proj.weight", F, D)
			for i := range gate {
				gate[i] = gate[i] / (1 + math.Exp(-gate[i])) * up[i]
			}
			down := linear(gate, p+"mlp.down_proj.weight", D, F)
			for i := range r {
				r[i] += down[i]
			}
			next[t] = r
		}
		h = next
	}
	last := norm(h[T-1], "model.norm.weight")
	return linear(last, "score.weight", 1, D)[0]
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
