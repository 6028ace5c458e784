package models

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sugarme/gotch"

	"prism/internal/safetensors"
	"prism/internal/torch"
)

func TestMain(m *testing.M) {
	if _, err := torch.Setup(0); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func newRandom(t *testing.T, preset string, seed uint64) (*RewardModel, map[string][]float32) {
	t.Helper()
	c, err := Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	vals := RandomInit(c, rand.New(rand.NewPCG(seed, 1)))
	// Larger weights than the init so that every part of the network moves
	// the reward measurably.
	for name, v := range vals {
		if !isNorm(name) {
			for i := range v {
				v[i] *= 5
			}
		}
	}
	m, err := FromValues(c, vals, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Drop)
	return m, vals
}

func randomSeqs(rng *rand.Rand, n, minLen, maxLen, vocab int) [][]int64 {
	out := make([][]int64, n)
	for i := range out {
		l := minLen + rng.IntN(maxLen-minLen+1)
		out[i] = make([]int64, l)
		for j := range out[i] {
			out[i][j] = 1 + rng.Int64N(int64(vocab-1))
		}
	}
	return out
}

func pad(seqs [][]int64, left bool, padID int64) *Batch {
	T := 0
	for _, s := range seqs {
		T = max(T, len(s))
	}
	b := &Batch{B: len(seqs), T: T, IDs: make([]int64, len(seqs)*T), Mask: make([]int64, len(seqs)*T)}
	for r, s := range seqs {
		off := 0
		if left {
			off = T - len(s)
		}
		for j := 0; j < T; j++ {
			b.IDs[r*T+j] = padID
		}
		for j, id := range s {
			b.IDs[r*T+off+j] = id
			b.Mask[r*T+off+j] = 1
		}
	}
	return b
}

func rewards(t *testing.T, m *RewardModel, b *Batch) []float64 {
	t.Helper()
	r, err := m.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Drop()
	return r.Float64Values()
}

// TestForwardMatchesReference compares libtorch rewards with the plain-Go
// float64 reference on every preset, including sequences longer than
// Mistral's sliding window and Llama 3.1 rope scaling with explicit
// head_dim and one KV head.
func TestForwardMatchesReference(t *testing.T) {
	for _, preset := range PresetNames() {
		t.Run(preset, func(t *testing.T) {
			m, vals := newRandom(t, preset, 7)
			seqs := randomSeqs(rand.New(rand.NewPCG(3, 3)), 5, 3, 20, m.Config.VocabSize)
			got := rewards(t, m, pad(seqs, false, 0))
			for i, s := range seqs {
				want := refForward(m.Config, vals, s)
				if d := math.Abs(got[i] - want); d > 1e-4*math.Max(1, math.Abs(want)) {
					t.Errorf("seq %d (len %d): reward %v, reference %v (diff %g)", i, len(s), got[i], want, d)
				}
			}
		})
	}
}

// TestPaddingAndBatchInvariance: left and right padding, and the other
// rows of a batch, do not change a sequence's reward.
func TestPaddingAndBatchInvariance(t *testing.T) {
	for _, preset := range []string{"tiny-llama", "tiny-mistral"} {
		t.Run(preset, func(t *testing.T) {
			m, _ := newRandom(t, preset, 11)
			seqs := randomSeqs(rand.New(rand.NewPCG(5, 5)), 6, 2, 24, m.Config.VocabSize)
			right := rewards(t, m, pad(seqs, false, 0))
			left := rewards(t, m, pad(seqs, true, 0))
			// A pad id equal to a real token id must not matter either.
			leftEOS := rewards(t, m, pad(seqs, true, 2))
			for i, s := range seqs {
				alone := rewards(t, m, pad([][]int64{s}, false, 0))[0]
				for name, v := range map[string]float64{"right": right[i], "left": left[i], "left, pad=eos": leftEOS[i]} {
					if d := math.Abs(v - alone); d > 1e-5*math.Max(1, math.Abs(alone)) {
						t.Errorf("seq %d: %s-padded batch gives %v, alone %v", i, name, v, alone)
					}
				}
			}
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	m, _ := newRandom(t, "tiny-mistral", 13)
	seqs := randomSeqs(rand.New(rand.NewPCG(9, 9)), 4, 2, 16, m.Config.VocabSize)
	b := pad(seqs, false, 0)
	want := rewards(t, m, b)
	dir := filepath.Join(t.TempDir(), "model")
	if err := m.Save(dir, &Stats{RewardMean: 0.5, RewardStd: 2}); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	b2, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if err := json.Unmarshal(b2, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["architectures"].([]any)[0] != "MistralForSequenceClassification" || cfg["num_labels"].(float64) != 1 || cfg["pad_token_id"].(float64) != 0 {
		t.Errorf("config.json is not a sequence-classification config: %v", cfg)
	}
	m2, info, err := Load(dir, gotch.CPU, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Drop()
	if info.NewHead || info.Stats == nil || info.Stats.RewardStd != 2 {
		t.Errorf("load info %+v", info)
	}
	if d := m2.Config.ShapeDiff(m.Config); d != "" {
		t.Errorf("the reloaded config differs: %s", d)
	}
	// A Mistral without a window is saved so that it reloads without one
	// (an absent key means 4096 to transformers and prism).
	nw := *m.Config
	nw.SlidingWindow = 0
	raw, err := hfConfig(&nw)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := ParseConfig(raw, "config.json"); err != nil || c.SlidingWindow != 0 {
		t.Errorf("windowless Mistral reloads with sliding_window %d (%v)", c.SlidingWindow, err)
	}
	got := rewards(t, m2, b)
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-6 {
			t.Errorf("row %d: %v after reload, %v before", i, got[i], want[i])
		}
	}
}

// writeHF writes values as a Hugging Face folder in the given dtype,
// optionally sharded, optionally as a causal LM (lm_head, no score).
func writeHF(t *testing.T, c *Config, vals map[string][]float32, dt safetensors.DType, shards int, causalLM bool) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := hfConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var tensors []safetensors.Tensor
	for _, name := range c.ParamNames() {
		shape, _ := c.ParamShape(name)
		if causalLM && name == "score.weight" {
			name = "lm_head.weight"
			shape = []int64{int64(c.VocabSize), int64(c.HiddenSize)}
			lm := make([]float32, c.VocabSize*c.HiddenSize)
			data, _ := safetensors.EncodeFloat32(dt, lm)
			tensors = append(tensors, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: data})
			continue
		}
		data, err := safetensors.EncodeFloat32(dt, vals[name])
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: data})
	}
	if shards <= 1 {
		if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	wm := map[string]string{}
	per := (len(tensors) + shards - 1) / shards
	for s := 0; s*per < len(tensors); s++ {
		name := "model-0000" + itoa(s+1) + "-of-0000" + itoa(shards) + ".safetensors"
		part := tensors[s*per : min((s+1)*per, len(tensors))]
		for _, x := range part {
			wm[x.Name] = name
		}
		if err := safetensors.Write(filepath.Join(dir, name), part, nil); err != nil {
			t.Fatal(err)
		}
	}
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": wm})
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadFormats(t *testing.T) {
	m, vals := newRandom(t, "tiny-llama", 17)
	seqs := randomSeqs(rand.New(rand.NewPCG(2, 2)), 3, 2, 12, m.Config.VocabSize)
	b := pad(seqs, false, 0)
	want := rewards(t, m, b)
	tests := []struct {
		name   string
		dt     safetensors.DType
		shards int
		tol    float64
	}{
		{"f32 single", safetensors.F32, 1, 1e-6},
		{"f32 sharded", safetensors.F32, 3, 1e-6},
		{"bf16", safetensors.BF16, 1, 0.1},
		{"f16 sharded", safetensors.F16, 2, 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeHF(t, m.Config, vals, tt.dt, tt.shards, false)
			m2, info, err := Load(dir, gotch.CPU, rand.New(rand.NewPCG(1, 1)))
			if err != nil {
				t.Fatal(err)
			}
			defer m2.Drop()
			if info.NewHead {
				t.Error("head reported new")
			}
			got := rewards(t, m2, b)
			for i := range want {
				if d := math.Abs(got[i] - want[i]); d > tt.tol*math.Max(1, math.Abs(want[i])) {
					t.Errorf("row %d: %v, want %v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestLoadCausalLMStartsNewHead(t *testing.T) {
	m, vals := newRandom(t, "tiny-llama", 19)
	dir := writeHF(t, m.Config, vals, safetensors.BF16, 1, true)
	m2, info, err := Load(dir, gotch.CPU, rand.New(rand.NewPCG(4, 4)))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Drop()
	if !info.NewHead {
		t.Fatal("a checkpoint without score.weight did not start a new head")
	}
	head, _ := tensorFloat32(m2.Param("score.weight").T)
	var ss float64
	for _, v := range head {
		ss += float64(v) * float64(v)
	}
	// Variance 1/(d+1): the sample variance of 64 draws is within a factor of 2.
	variance := ss / float64(len(head))
	if want := 1 / float64(m.Config.HiddenSize+1); variance < want/2 || variance > want*2 {
		t.Errorf("head variance %v, want about %v", variance, want)
	}
}

func TestConfigErrors(t *testing.T) {
	base := `{"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rms_norm_eps":1e-5,"hidden_act":"silu"`
	tests := []struct {
		extra string
		want  string
	}{
		{`,"hidden_act":"gelu"}`, "hidden_act"},
		{`,"rope_scaling":{"type":"linear","factor":2}}`, "rope_scaling.rope_type"},
		{`,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64,"beta":1}}`, "rope_scaling.beta"},
		{`,"attention_bias":true}`, "attention_bias"},
		{`,"quantization_config":{}}`, "quantization_config"},
		{`,"num_key_value_heads":3}`, "num_key_value_heads"},
		{`,"pad_token_id":99}`, "pad_token_id"},
		{`,"model_type":"gpt2"}`, "model_type"},
		{`,"attention_dropout":0.1}`, "attention_dropout"},
		{`,"vocab_size":"128"}`, "vocab_size: want an integer, got string"},
		{`,"rope_theta":[1]}`, "rope_theta: want a number, got array"},
		// Sizes no machine could hold are refused before anything is
		// allocated from them.
		{`,"hidden_size":1099511627776}`, "hidden_size"},
		{`,"num_hidden_layers":4000000000}`, "num_hidden_layers"},
		{`,"vocab_size":1000000000}`, "vocab_size"},
		{`,"hidden_size":1048576,"intermediate_size":1048576,"num_hidden_layers":4096,"num_attention_heads":512,"num_key_value_heads":512}`, "parameters"},
		// transformers 5's rope_parameters.
		{`,"rope_parameters":{"rope_type":"yarn","factor":4}}`, `rope_type "yarn"`},
		{`,"rope_parameters":{"rope_theta":5e5}}`, "rope_parameters.rope_type is missing"},
		{`,"rope_scaling":{"factor":8}}`, "rope_scaling.rope_type"},
		{`,"max_position_embeddings":-7}`, "max_position_embeddings"},
		{`,"max_position_embeddings":0}`, "max_position_embeddings"},
		{`,"num_labels":-1}`, "num_labels"},
		{`,"rope_parameters":{"rope_type":"default","rope_theta":5e5},"rope_theta":1e4}`, "rope_parameters.rope_theta"},
		{`,"rope_parameters":{"rope_type":"default"},"rope_scaling":{"rope_type":"llama3"}}`, "both rope_parameters and rope_scaling"},
		{`,"rope_parameters":[1]}`, "rope_parameters"},
		{`,"rope_parameters":{"rope_type":"llama3","rope_theta":5e5,"factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64,"beta_fast":32}}`, "rope_parameters.beta_fast"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(base+tt.extra), "config.json")
		if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("%s: err = %v, want ErrConfig naming %s and the file", tt.extra, err, tt.want)
		}
	}
	// transformers 5 writes rope_theta and the scaling in rope_parameters:
	// the same model as the older keys.
	old, err := ParseConfig([]byte(base+`,"rope_theta":500000,"rope_scaling":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, extra := range []string{
		`,"rope_parameters":{"rope_type":"llama3","rope_theta":500000,"factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`,
		`,"rope_theta":500000.0,"rope_scaling":null,"rope_parameters":{"rope_type":"llama3","rope_theta":500000,"factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`,
	} {
		c, err := ParseConfig([]byte(base+extra), "config.json")
		if err != nil || !reflect.DeepEqual(c, old) {
			t.Errorf("%s: %v\n%+v\nwant %+v", extra, err, c, old)
		}
	}
	c, err := ParseConfig([]byte(base+`,"rope_parameters":{"rope_type":"default","rope_theta":1000000.0}}`), "config.json")
	if err != nil || c.RopeTheta != 1e6 || c.RopeScaling != nil {
		t.Errorf("default rope_parameters: %v %+v", err, c)
	}
	// "type" is read as "rope_type" (older configs).
	c, err = ParseConfig([]byte(base+`,"rope_scaling":{"type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":64}}`), "config.json")
	if err != nil || c.RopeScaling == nil || c.RopeScaling.Type != "llama3" {
		t.Fatalf("rope_scaling with type: %v %+v", err, c)
	}
}

func TestLlama3InvFreq(t *testing.T) {
	c, err := Preset("tiny-llama3")
	if err != nil {
		t.Fatal(err)
	}
	inv := c.InvFreq()
	base := func(i int) float64 { return 1 / math.Pow(c.RopeTheta, float64(2*i)/float64(c.HeadDim)) }
	// Highest frequency (i=0, wavelength 2π < 64/4): unchanged.
	if math.Abs(float64(inv[0])-base(0)) > 1e-7 {
		t.Errorf("inv[0] = %v, want %v", inv[0], base(0))
	}
	// Lowest frequency: wavelength beyond 64/1, divided by the factor 8.
	last := len(inv) - 1
	if got, want := float64(inv[last]), base(last)/8; math.Abs(got-want) > 1e-7*want+1e-12 {
		t.Errorf("inv[last] = %v, want %v", got, want)
	}
}

func TestBatchValidate(t *testing.T) {
	tests := []struct {
		b    Batch
		want string
	}{
		{Batch{B: 1, T: 2, IDs: []int64{1, 2}, Mask: []int64{0, 0}}, "no real token"},
		{Batch{B: 1, T: 2, IDs: []int64{1, 200}, Mask: []int64{1, 1}}, "outside the vocabulary"},
		{Batch{B: 1, T: 2, IDs: []int64{1}, Mask: []int64{1, 1}}, "ids"},
		{Batch{B: 1, T: 1, IDs: []int64{1}, Mask: []int64{2}}, "not 0 or 1"},
	}
	for _, tt := range tests {
		if err := tt.b.Validate(128); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want %q", tt.b, err, tt.want)
		}
	}
}

func TestCausalLMLogLik(t *testing.T) {
	m, vals := newRandom(t, "tiny-llama", 23)
	// writeHF's causal-LM layout has an all-zero lm_head: every token then
	// has probability 1/V.
	dir := writeHF(t, m.Config, vals, safetensors.F32, 1, true)
	lm, err := LoadCausalLM(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Drop()
	prompts := [][]int64{{1, 5}, {1, 6, 7, 8}}
	responses := [][]int64{{9, 10, 2}, {11, 2}}
	ll, err := lm.ResponseLogLik(prompts, responses, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := -math.Log(float64(m.Config.VocabSize))
	for i, v := range ll {
		if math.Abs(v-want) > 1e-5 {
			t.Errorf("row %d: %v, want log(1/V) = %v", i, v, want)
		}
	}
	// A real head: batching must not change a row's value.
	vals2 := map[string][]float32{}
	for k, v := range vals {
		vals2[k] = v
	}
	dir2 := writeHF(t, m.Config, vals2, safetensors.F32, 1, false)
	// Add an lm_head equal to the embeddings (as a tied model would use).
	if err := os.WriteFile(filepath.Join(dir2, "config.json"), []byte(strings.Replace(mustRead(t, filepath.Join(dir2, "config.json")), `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tied, err := LoadCausalLM(dir2, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer tied.Drop()
	both, err := tied.ResponseLogLik(prompts, responses, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range prompts {
		one, err := tied.ResponseLogLik(prompts[i:i+1], responses[i:i+1], 1)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(one[0]-both[i]) > 1e-5 || one[0] >= 0 {
			t.Errorf("row %d: %v alone, %v in a batch", i, one[0], both[i])
		}
	}
	// Tied, a stored lm_head is ignored, as transformers ignores it: the
	// zero head of dir gives way to the embeddings.
	cfg := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfg, []byte(strings.Replace(mustRead(t, cfg), `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	tiedStored, err := LoadCausalLM(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer tiedStored.Drop()
	ll3, err := tiedStored.ResponseLogLik(prompts, responses, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ll3 {
		if math.Abs(ll3[i]-both[i]) > 1e-5 {
			t.Errorf("row %d: tied with a stored lm_head %v, tied without %v", i, ll3[i], both[i])
		}
	}
	// Without lm_head and untied, it is not a language model.
	dir3 := writeHF(t, m.Config, vals, safetensors.F32, 1, false)
	if _, err := LoadCausalLM(dir3, gotch.CPU); err == nil || !strings.Contains(err.Error(), "lm_head") {
		t.Errorf("reward model loaded as a causal LM: %v", err)
	}
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigFollowsTransformers: keys whose meaning depends on the
// architecture are read as transformers' config classes read them.
func TestConfigFollowsTransformers(t *testing.T) {
	base := `{"vocab_size":32,"hidden_size":16,"intermediate_size":32,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"rms_norm_eps":1e-5,"hidden_act":"silu",`
	tests := []struct {
		extra         string
		window, maxPE int
	}{
		// LlamaModel has no sliding window, whatever config.json says.
		{`"model_type":"llama","sliding_window":4}`, 0, 2048},
		{`"model_type":"llama","max_position_embeddings":8192}`, 0, 8192},
		// MistralConfig: an absent window is 4096; null turns it off.
		{`"model_type":"mistral"}`, 4096, 131072},
		{`"model_type":"mistral","sliding_window":null}`, 0, 131072},
		{`"model_type":"mistral","sliding_window":16,"max_position_embeddings":32768}`, 16, 32768},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(base+tt.extra), "config.json")
		if err != nil {
			t.Fatalf("%s: %v", tt.extra, err)
		}
		if c.SlidingWindow != tt.window || c.MaxPositionEmbeddings != tt.maxPE {
			t.Errorf("%s: sliding_window %d, max_position_embeddings %d; want %d, %d", tt.extra, c.SlidingWindow, c.MaxPositionEmbeddings, tt.window, tt.maxPE)
		}
	}
}
