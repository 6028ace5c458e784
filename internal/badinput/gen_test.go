package badinput

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"

	"prism/configs"
	"prism/trainer/checkpoint"
)

var update = flag.Bool("update", false, "rewrite the generated files of testdata/bad")

// TestCorpusFiles checks that the generated files of the corpus are
// committed as the generator makes them (it is deterministic); with
// -update it writes them.
func TestCorpusFiles(t *testing.T) {
	root := corpusDir(t)
	files, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		b := files[name]
		if len(b) >= 64<<10 {
			t.Errorf("%s: %d bytes; corpus files must stay under 64 KiB (generate large ones at test time)", name, len(b))
		}
		path := filepath.Join(root, filepath.FromSlash(name))
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s differs from what the generator makes (run go test ./internal/badinput -run TestCorpusFiles -update): %v", name, err)
		}
	}
	// Hand-written corpus files must stay small too.
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Size() >= 64<<10 {
			t.Errorf("%s: %d bytes; corpus files must stay under 64 KiB", path, fi.Size())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The good model: a Llama small enough to commit (1,632 weights), with a
// vocabulary that holds the good tokenizer's 100 ids. Its MLP is twice
// as wide as the hidden state.
const (
	vocab   = 128
	hidden  = 8
	heads   = 2
	kvHeads = 1
)

const goodModelConfig = `{
  "architectures": ["LlamaForSequenceClassification"],
  "model_type": "llama",
  "vocab_size": 128,
  "hidden_size": 8,
  "intermediate_size": 16,
  "num_hidden_layers": 1,
  "num_attention_heads": 2,
  "num_key_value_heads": 1,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000,
  "max_position_embeddings": 128,
  "tie_word_embeddings": false,
  "hidden_act": "silu",
  "pad_token_id": 0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "num_labels": 1,
  "torch_dtype": "float32"
}
`

// param is a weight of the good model.
type param struct {
	name  string
	shape []int64
}

// params lists the good model's weights in the order transformers names
// them, for a model of the given hidden size.
func params(d int64) []param {
	q, kv, f := d, d/heads*kvHeads, 2*d
	return []param{
		{"model.embed_tokens.weight", []int64{vocab, d}},
		{"model.layers.0.self_attn.q_proj.weight", []int64{q, d}},
		{"model.layers.0.self_attn.k_proj.weight", []int64{kv, d}},
		{"model.layers.0.self_attn.v_proj.weight", []int64{kv, d}},
		{"model.layers.0.self_attn.o_proj.weight", []int64{d, q}},
		{"model.layers.0.mlp.gate_proj.weight", []int64{f, d}},
		{"model.layers.0.mlp.up_proj.weight", []int64{f, d}},
		{"model.layers.0.mlp.down_proj.weight", []int64{d, f}},
		{"model.layers.0.input_layernorm.weight", []int64{d}},
		{"model.layers.0.post_attention_layernorm.weight", []int64{d}},
		{"model.norm.weight", []int64{d}},
		{"score.weight", []int64{1, d}},
	}
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// tensor is one entry of a safetensors file to build.
type tensor struct {
	name  string
	dtype string
	shape []int64
	data  []byte
}

// stHeader is a header entry, fields in the order Hugging Face writes them.
type stHeader struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// safetensorsFile lays out valid tensors: data in the order given, header
// keys sorted (json sorts map keys).
func safetensorsFile(ts []tensor) []byte {
	h := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, t := range ts {
		h[t.name] = stHeader{t.dtype, t.shape, [2]int64{int64(len(data)), int64(len(data) + len(t.data))}}
		data = append(data, t.data...)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		panic(err)
	}
	return rawSafetensors(string(hb), data)
}

// rawSafetensors frames a header, as given, and a data buffer.
func rawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(b, header...), data...)
}

func f32(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// weights draws the good model's weights: N(0, 0.02) matrices, unit norms.
func weights(d int64, seed uint64) []tensor {
	rng := rand.New(rand.NewPCG(seed, 0xbad))
	var out []tensor
	for _, p := range params(d) {
		v := make([]float32, numel(p.shape))
		for i := range v {
			if strings.HasSuffix(p.name, "norm.weight") {
				v[i] = 1
			} else {
				v[i] = float32(math.Round(rng.NormFloat64()*0.02*1e4) / 1e4)
			}
		}
		out = append(out, tensor{p.name, "F32", p.shape, f32(v)})
	}
	return out
}

// optimizer lays out AdamW moments as prism's checkpoints hold them: flat
// F32 tensors exp_avg.NAME and exp_avg_sq.NAME, sorted by name.
func optimizer(d int64) []byte {
	var ts []tensor
	for _, p := range params(d) {
		n := numel(p.shape)
		for _, k := range []string{"exp_avg.", "exp_avg_sq."} {
			ts = append(ts, tensor{k + p.name, "F32", []int64{n}, f32(make([]float32, n))})
		}
	}
	slices.SortFunc(ts, func(a, b tensor) int { return strings.Compare(a.name, b.name) })
	return safetensorsFile(ts)
}

// goodTokenizer is a BPE tokenizer without merges over printable ASCII and
// newline, with <unk> for everything else: ids 0-99, inside the good
// model's vocabulary.
func goodTokenizer() []byte {
	v := map[string]int{"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
	for c := 32; c < 127; c++ {
		v[string(rune(c))] = c - 28
	}
	v["\n"] = 99
	var added []map[string]any
	for i, s := range []string{"<pad>", "<s>", "</s>", "<unk>"} {
		added = append(added, map[string]any{"id": i, "content": s, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true})
	}
	return mustJSON(map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  nil,
		"post_processor": nil,
		"decoder":        nil,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": "<unk>", "fuse_unk": false,
			"byte_fallback": false, "vocab": v, "merges": []string{}},
	})
}

const goodChatTemplate = `{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}`

func tokenizerConfig(template string) []byte {
	return mustJSON(map[string]any{"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>",
		"model_max_length": 128, "chat_template": template})
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// ckFiles are a checkpoint folder's files before the manifest.
type ckFiles map[string][]byte

// withManifest adds MANIFEST.json listing the four checked files.
func (c ckFiles) withManifest(step int) ckFiles {
	man := checkpoint.Manifest{Step: step, Files: map[string]checkpoint.FileEntry{}}
	for _, f := range []string{"model/config.json", "model/model.safetensors", "optimizer.safetensors", "state.json"} {
		sum := sha256.Sum256(c[f])
		man.Files[f] = checkpoint.FileEntry{Size: int64(len(c[f])), SHA256: hex.EncodeToString(sum[:])}
	}
	out := ckFiles{}
	for k, v := range c {
		out[k] = v
	}
	out["MANIFEST.json"] = mustJSON(man)
	return out
}

// goodCheckpoint is step 1 of good/train.yaml. sets change the saved
// configuration; edit changes the state.
func goodCheckpoint(root string, sets []string, edit func(*checkpoint.State)) (ckFiles, error) {
	cfg, err := configs.Load(filepath.Join(root, "good", "train.yaml"), sets, nil)
	if err != nil {
		return nil, err
	}
	y, err := cfg.YAML()
	if err != nil {
		return nil, err
	}
	st := checkpoint.State{Format: checkpoint.Format, Step: 1, DataSeed: uint64(cfg.Run.Seed), Tokens: 20, ElapsedS: 0.5,
		FirstTagShare: -1, Config: string(y)}
	st.EpochPos = 2
	if edit != nil {
		edit(&st)
	}
	return ckFiles{
		"model/config.json":       []byte(goodModelConfig),
		"model/model.safetensors": safetensorsFile(weights(hidden, 1)),
		"optimizer.safetensors":   optimizer(hidden),
		"state.json":              mustJSON(st),
	}, nil
}

// Parquet rows.
type pqPair struct {
	Prompt   string `parquet:"prompt"`
	Chosen   string `parquet:"chosen"`
	Rejected string `parquet:"rejected"`
}

type pqOther struct {
	Question string `parquet:"question"`
	Answer   string `parquet:"answer"`
}

type pqIntChosen struct {
	Prompt   string `parquet:"prompt"`
	Chosen   int64  `parquet:"chosen"`
	Rejected string `parquet:"rejected"`
}

func parquetFile[T any](rows []T) ([]byte, error) {
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// generate returns the generated files of the corpus, by path relative to
// root with forward slashes.
func generate(root string) (map[string][]byte, error) {
	files := map[string][]byte{}
	add := func(dir string, c map[string][]byte) {
		for k, v := range c {
			files[dir+"/"+k] = v
		}
	}

	// The good fixtures every case starts from.
	tok := goodTokenizer()
	files["good/tok/tokenizer.json"] = tok
	files["good/tok/tokenizer_config.json"] = tokenizerConfig(goodChatTemplate)
	files["good/model/config.json"] = []byte(goodModelConfig)
	files["good/model/model.safetensors"] = safetensorsFile(weights(hidden, 1))
	good, err := goodCheckpoint(root, nil, nil)
	if err != nil {
		return nil, err
	}
	add("good/checkpoint/step-00000001", good.withManifest(1))

	// Safetensors: each case is a model folder whose config.json is the
	// good one and whose model.safetensors is damaged.
	w := weights(hidden, 1)
	embedJSON := func(dtype, shape, offsets string) string {
		return `{"model.embed_tokens.weight":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + offsets + `}}`
	}
	full := safetensorsFile(w)
	st := map[string][]byte{
		"truncated":             full[:len(full)/2],
		"shorter-than-prefix":   {0x10, 0, 0, 0},
		"header-past-eof":       rawSafetensors(strings.Repeat(" ", 64), nil)[:40],
		"header-claims-1gb":     binary.LittleEndian.AppendUint64(nil, 1<<30),
		"header-not-json":       rawSafetensors(`{"model.embed_tokens.weight" {"dtype": "F32"}}`, nil),
		"header-not-object":     rawSafetensors(`["model.embed_tokens.weight"]`, nil),
		"trailing-after-header": rawSafetensors(`{} {}`, nil),
		"offsets-overlap": rawSafetensors(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},`+
			`"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}`, make([]byte, 24)),
		"offsets-outside-data":  rawSafetensors(embedJSON("F32", "[128,8]", "[0,4096]"), make([]byte, 64)),
		"offsets-reversed":      rawSafetensors(embedJSON("F32", "[0]", "[16,8]"), make([]byte, 16)),
		"offsets-negative":      rawSafetensors(embedJSON("F32", "[2]", "[-8,0]"), make([]byte, 16)),
		"dtype-shape-bytes":     rawSafetensors(embedJSON("F32", "[128,8]", "[0,2048]"), make([]byte, 2048)),
		"shape-overflow":        rawSafetensors(embedJSON("F32", "[4294967296,4294967296,4]", "[0,16]"), make([]byte, 16)),
		"shape-negative":        rawSafetensors(embedJSON("F32", "[-1,8]", "[0,32]"), make([]byte, 32)),
		"unknown-dtype":         rawSafetensors(embedJSON("F128", "[128,8]", "[0,16]"), make([]byte, 16)),
		"duplicate-names":       rawSafetensors(`{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[32,64]}}`, make([]byte, 64)),
		"name-not-utf8":         rawSafetensors("{\"model.norm.weight\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", make([]byte, 32)),
		"name-lone-surrogate":   rawSafetensors(`{"model.norm.weight\ud800":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}`, make([]byte, 32)),
		"metadata-not-string":   rawSafetensors(`{"__metadata__":{"format":1}}`, nil),
		"unknown-field":         rawSafetensors(`{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32],"offset":0}}`, make([]byte, 32)),
		"not-a-weight":          safetensorsFile(append(slices.Clone(w), tensor{"model.layers.7.mlp.up_proj.weight", "F32", []int64{1}, make([]byte, 4)})),
		"wrong-shape":           safetensorsFile(replace(w, tensor{"model.norm.weight", "F32", []int64{4, 2}, make([]byte, 32)})),
		"integer-weight":        safetensorsFile(replace(w, tensor{"model.norm.weight", "I32", []int64{8}, make([]byte, 32)})),
		"missing-weight":        safetensorsFile(w[1:]),
		"empty-header":          rawSafetensors(`{}`, nil),
		"header-length-garbage": []byte("PK\x03\x04 this is a zip file, not safetensors"),
	}
	// The format packs tensors: no gaps, nothing after the last one.
	st["gap-between-tensors"] = rawSafetensors(`{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[0,32]},`+
		`"model.embed_tokens.weight":{"dtype":"F32","shape":[128,8],"data_offsets":[48,4144]}}`, make([]byte, 4144))
	st["bytes-after-last-tensor"] = append(slices.Clone(full), make([]byte, 24)...)
	st["one-byte-after-last-tensor"] = append(slices.Clone(full), 0)
	st["gap-before-first-tensor"] = rawSafetensors(`{"model.norm.weight":{"dtype":"F32","shape":[8],"data_offsets":[8,40]}}`, make([]byte, 40))
	for name, b := range st {
		files["safetensors/"+name+"/config.json"] = []byte(goodModelConfig)
		files["safetensors/"+name+"/model.safetensors"] = b
	}
	// Weights that are not numbers, refused at load naming the tensor.
	withValue := func(name string, v float32) []byte {
		out := slices.Clone(w)
		for i, t := range out {
			if t.name == name {
				vals := make([]float32, numel(t.shape))
				for j := range vals {
					vals[j] = 0.01
				}
				vals[len(vals)/2] = v
				out[i].data = f32(vals)
			}
		}
		return safetensorsFile(out)
	}
	for name, st := range map[string][]byte{
		"nan-score-weight": withValue("score.weight", float32(math.NaN())),
		"inf-norm-weight":  withValue("model.norm.weight", float32(math.Inf(1))),
		"nan-embedding":    withValue("model.embed_tokens.weight", float32(math.NaN())),
		"neg-inf-q-proj":   withValue("model.layers.0.self_attn.q_proj.weight", float32(math.Inf(-1))),
	} {
		files["safetensors/"+name+"/config.json"] = []byte(goodModelConfig)
		files["safetensors/"+name+"/model.safetensors"] = st
	}
	// A config whose rotary frequencies overflow: finite weights, NaN
	// rewards.
	files["safetensors/rope-theta-tiny/config.json"] = []byte(strings.Replace(goodModelConfig, `"rope_theta": 10000`, `"rope_theta": 1e-30`, 1))
	files["safetensors/rope-theta-tiny/model.safetensors"] = full
	// A causal-LM config without a pad token (Llama 3's has none).
	files["modelcfg/no-pad-token/config.json"] = []byte(strings.Replace(goodModelConfig, "  \"pad_token_id\": 0,\n", "", 1))
	files["modelcfg/no-pad-token/model.safetensors"] = full
	// A one-row reward head under a config of three labels: transformers
	// would build a three-output head and refuse these weights.
	files["safetensors/num-labels-3/config.json"] = []byte(strings.Replace(goodModelConfig, `"num_labels": 1`, `"num_labels": 3`, 1))
	files["safetensors/num-labels-3/model.safetensors"] = full
	// Sharded checkpoints whose index points outside the folder or at a
	// missing shard.
	files["safetensors/index-escapes/config.json"] = []byte(goodModelConfig)
	files["safetensors/index-escapes/model.safetensors.index.json"] = mustJSON(map[string]any{
		"metadata": map[string]any{"total_size": 6432}, "weight_map": map[string]string{"model.norm.weight": "../good/model/model.safetensors"}})
	files["safetensors/index-missing-shard/config.json"] = []byte(goodModelConfig)
	files["safetensors/index-missing-shard/model.safetensors.index.json"] = mustJSON(map[string]any{
		"metadata": map[string]any{"total_size": 6432}, "weight_map": map[string]string{"model.norm.weight": "model-00001-of-00002.safetensors"}})

	// Model configs that claim shapes the file does not hold or that no
	// machine could allocate; the weights are an empty safetensors file.
	for name, cfg := range map[string]string{
		"huge-hidden": strings.Replace(goodModelConfig, `"hidden_size": 8`, `"hidden_size": 1099511627776`, 1),
		"huge-layers": strings.Replace(goodModelConfig, `"num_hidden_layers": 1`, `"num_hidden_layers": 4000000000`, 1),
		// What transformers' config classes refuse.
		"max-position-negative": strings.Replace(goodModelConfig, `"max_position_embeddings": 128`, `"max_position_embeddings": -7`, 1),
		"max-position-zero":     strings.Replace(goodModelConfig, `"max_position_embeddings": 128`, `"max_position_embeddings": 0`, 1),
		"rope-scaling-no-type":  strings.Replace(goodModelConfig, `"rope_theta": 10000,`, `"rope_theta": 10000, "rope_scaling": {"factor": 8.0},`, 1),
		"rope-parameters-yarn": strings.Replace(goodModelConfig, `"rope_theta": 10000,`,
			`"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000, "factor": 4.0},`, 1),
		"rope-parameters-theta-conflict": strings.Replace(goodModelConfig, `"rope_theta": 10000,`,
			`"rope_theta": 10000, "rope_parameters": {"rope_type": "default", "rope_theta": 500000},`, 1),
		"rope-parameters-and-scaling": strings.Replace(goodModelConfig, `"rope_theta": 10000,`,
			`"rope_parameters": {"rope_type": "default"}, "rope_scaling": {"rope_type": "llama3", "factor": 8.0},`, 1),
		"num-labels-negative":        strings.Replace(goodModelConfig, `"num_labels": 1`, `"num_labels": -1`, 1),
		"max-position-string":        strings.Replace(goodModelConfig, `"max_position_embeddings": 128`, `"max_position_embeddings": "128"`, 1),
		"rope-parameters-not-object": strings.Replace(goodModelConfig, `"rope_theta": 10000,`, `"rope_parameters": [10000],`, 1),
		"rope-parameters-no-type":    strings.Replace(goodModelConfig, `"rope_theta": 10000,`, `"rope_parameters": {"rope_theta": 10000},`, 1),
		"rope-llama3-factor-half": strings.Replace(goodModelConfig, `"rope_theta": 10000,`,
			`"rope_theta": 10000, "rope_scaling": {"rope_type": "llama3", "factor": 0.5, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 64},`, 1),
		"num-labels-string":       strings.Replace(goodModelConfig, `"num_labels": 1`, `"num_labels": "one"`, 1),
		"rms-norm-eps-zero":       strings.Replace(goodModelConfig, `"rms_norm_eps": 1e-05`, `"rms_norm_eps": 0`, 1),
		"rope-theta-negative":     strings.Replace(goodModelConfig, `"rope_theta": 10000`, `"rope_theta": -10000`, 1),
		"sliding-window-negative": strings.Replace(goodModelConfig, `"model_type": "llama"`, `"model_type": "mistral", "sliding_window": -4`, 1),
		"head-dim-odd":            strings.Replace(goodModelConfig, `"num_key_value_heads": 1,`, `"num_key_value_heads": 1, "head_dim": 3,`, 1),
		"attention-bias":          strings.Replace(goodModelConfig, `"hidden_act": "silu",`, `"hidden_act": "silu", "attention_bias": true,`, 1),
		"mlp-bias":                strings.Replace(goodModelConfig, `"hidden_act": "silu",`, `"hidden_act": "silu", "mlp_bias": true,`, 1),
		"pretraining-tp":          strings.Replace(goodModelConfig, `"hidden_act": "silu",`, `"hidden_act": "silu", "pretraining_tp": 2,`, 1),
		"attention-dropout":       strings.Replace(goodModelConfig, `"hidden_act": "silu",`, `"hidden_act": "silu", "attention_dropout": 0.1,`, 1),
		"torch-dtype-int8":        strings.Replace(goodModelConfig, `"torch_dtype": "float32"`, `"torch_dtype": "int8"`, 1),
		"vocab-zero":              strings.Replace(goodModelConfig, `"vocab_size": 128`, `"vocab_size": 0`, 1),
		"layers-zero":             strings.Replace(goodModelConfig, `"num_hidden_layers": 1`, `"num_hidden_layers": 0`, 1),
		"heads-zero":              strings.Replace(goodModelConfig, `"num_attention_heads": 2`, `"num_attention_heads": 0`, 1),
		"intermediate-negative":   strings.Replace(goodModelConfig, `"intermediate_size": 16`, `"intermediate_size": -16`, 1),
	} {
		files["modelcfg/"+name+"/config.json"] = []byte(cfg)
		files["modelcfg/"+name+"/model.safetensors"] = rawSafetensors(`{}`, nil)
	}

	// Checkpoints.
	ck := func(name string, c ckFiles) { add("checkpoint/"+name+"/step-00000001", c) }
	noManifest := good.withManifest(1)
	delete(noManifest, "MANIFEST.json")
	ck("missing-manifest", noManifest)
	damaged := good.withManifest(1)
	m := slices.Clone(damaged["model/model.safetensors"])
	m[len(m)-1] ^= 0x40
	damaged["model/model.safetensors"] = m
	ck("checksum-mismatch", damaged)
	other := goodCheckpoint2(good, func(c ckFiles) { c["optimizer.safetensors"] = optimizer(2 * hidden) })
	ck("optimizer-other-shape", other.withManifest(1))
	trunc := goodCheckpoint2(good, func(c ckFiles) {
		c["optimizer.safetensors"] = c["optimizer.safetensors"][:len(c["optimizer.safetensors"])-100]
	})
	ck("optimizer-truncated", trunc.withManifest(1))
	badJSON := good.withManifest(1)
	badJSON["MANIFEST.json"] = []byte(`{"step": 1, "files": {"state.json": {"size": 10,` + "\n")
	ck("manifest-invalid-json", badJSON)
	unlisted := good.withManifest(1)
	unlisted["MANIFEST.json"] = bytes.Replace(unlisted["MANIFEST.json"], []byte(`"optimizer.safetensors"`), []byte(`"optimiser.safetensors"`), 1)
	ck("manifest-missing-entry", unlisted)
	stepMismatch, err := goodCheckpoint(root, nil, func(s *checkpoint.State) { s.Step = 7 })
	if err != nil {
		return nil, err
	}
	ck("state-step-mismatch", stepMismatch.withManifest(1))
	otherRun, err := goodCheckpoint(root, []string{"train.weight_decay=0.5"}, nil)
	if err != nil {
		return nil, err
	}
	ck("state-other-config", otherRun.withManifest(1))
	selected, err := goodCheckpoint(root, nil, func(s *checkpoint.State) { s.Phase, s.Selected, s.Priorities = 1, []int{0, 99}, []float64{0, 0} })
	if err != nil {
		return nil, err
	}
	ck("selected-out-of-range", selected.withManifest(1))
	// States edited with their manifest recomputed: the checksums hold,
	// the contents do not.
	for name, edit := range map[string]func(*checkpoint.State){
		"state-negative-epoch-pos":   func(s *checkpoint.State) { s.EpochPos = -5 },
		"state-epoch-pos-past-end":   func(s *checkpoint.State) { s.EpochPos = 1000 },
		"state-empty-selection":      func(s *checkpoint.State) { s.Phase = 1 },
		"state-priorities-mismatch":  func(s *checkpoint.State) { s.Phase, s.Selected, s.Priorities = 1, []int{0, 1}, []float64{0} },
		"state-optimizer-step-ahead": func(s *checkpoint.State) { n := 5; s.OptimizerStep = &n },
		"state-more-bad-steps":       func(s *checkpoint.State) { s.BadSteps = 3 },
		"state-negative-tokens":      func(s *checkpoint.State) { s.Tokens = -20 },
		"state-bad-run-past-bad":     func(s *checkpoint.State) { s.BadSteps, s.BadRun = 1, 2 },
		"state-phase0-selection":     func(s *checkpoint.State) { s.Selected, s.Priorities = []int{0, 1}, []float64{0, 0} },
		"state-negative-elapsed":     func(s *checkpoint.State) { s.ElapsedS = -3 },
		"state-negative-metrics":     func(s *checkpoint.State) { s.MetricsBytes = -100 },
		"state-negative-first-bad":   func(s *checkpoint.State) { s.FirstBad = -1 },
		"state-negative-decomp-time": func(s *checkpoint.State) { s.DecompSeconds = -1 },
		"state-negative-epoch":       func(s *checkpoint.State) { s.Epoch = -1 },
		"state-negative-phase":       func(s *checkpoint.State) { s.Phase = -2 },
	} {
		c, err := goodCheckpoint(root, nil, edit)
		if err != nil {
			return nil, err
		}
		ck(name, c.withManifest(1))
	}
	otherModel := goodCheckpoint2(good, func(c ckFiles) {
		c["model/config.json"] = bytes.Replace(c["model/config.json"], []byte(`"rope_theta": 10000`), []byte(`"rope_theta": 500000`), 1)
	})
	ck("model-other-rope-theta", otherModel.withManifest(1))
	otherMaxPos := goodCheckpoint2(good, func(c ckFiles) {
		c["model/config.json"] = bytes.Replace(c["model/config.json"], []byte(`"max_position_embeddings": 128`), []byte(`"max_position_embeddings": 4096`), 1)
	})
	ck("model-other-max-position", otherMaxPos.withManifest(1))
	unknown := goodCheckpoint2(good, func(c ckFiles) {
		c["state.json"] = bytes.Replace(c["state.json"], []byte(`"format": 1,`), []byte(`"format": 1, "learning_rate": 0.1,`), 1)
	})
	ck("state-unknown-field", unknown.withManifest(1))

	// Parquet.
	pairs := []pqPair{{"Capital of France?", "Paris.", "Lyon."}, {"2+2?", "4", "5"}}
	okPQ, err := parquetFile(pairs)
	if err != nil {
		return nil, err
	}
	files["good/text.parquet"] = okPQ
	if files["pairs/parquet-wrong-columns.parquet"], err = parquetFile([]pqOther{{"Capital of France?", "Paris."}}); err != nil {
		return nil, err
	}
	if files["pairs/parquet-int-column.parquet"], err = parquetFile([]pqIntChosen{{"2+2?", 4, "5"}}); err != nil {
		return nil, err
	}
	if files["pairs/parquet-empty-response.parquet"], err = parquetFile([]pqPair{pairs[0], {"2+2?", "  ", "5"}}); err != nil {
		return nil, err
	}
	if files["pairs/parquet-no-rows.parquet"], err = parquetFile([]pqPair{}); err != nil {
		return nil, err
	}
	files["pairs/parquet-truncated-footer.parquet"] = okPQ[:len(okPQ)-10]
	huge := slices.Clone(okPQ)
	binary.LittleEndian.PutUint32(huge[len(huge)-8:], 0xFFFFFFF0)
	files["pairs/parquet-footer-length-4gb.parquet"] = huge
	files["pairs/parquet-header-only.parquet"] = []byte("PAR1")
	if files["pairs/parquet-schema-list-2g.parquet"], err = hugeSchemaList(okPQ); err != nil {
		return nil, err
	}
	// A pair whose prompt column is empty: nothing to score against.
	if files["pairs/parquet-empty-prompt.parquet"], err = parquetFile([]pqPair{pairs[0], {" ", "4", "5"}}); err != nil {
		return nil, err
	}
	// Invalid UTF-8 in a string column (json would make it U+FFFD).
	if files["pairs/parquet-invalid-utf8.parquet"], err = parquetFile([]pqPair{pairs[0], {"2+2?", "fo\xffur", "5"}}); err != nil {
		return nil, err
	}
	// A zstd page that inflates past the size its header states (a
	// decompression bomb, in the small).
	bomb := []pqPair{{strings.Repeat("Say a lot. ", 900), "a lot", "a little"}}
	for name, codec := range map[string]compress.Codec{"zstd": &parquet.Zstd, "gzip": &parquet.Gzip, "snappy": &parquet.Snappy,
		"lz4": &parquet.Lz4Raw, "brotli": &parquet.Brotli} {
		if files["pairs/parquet-"+name+"-inflates-past-size.parquet"], err = understatedPage(bomb, codec); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if files["pairs/parquet-page-size-2g.parquet"], err = hugePage(okPQ); err != nil {
		return nil, err
	}

	// Bytes that text editors mangle.
	files["pairs/invalid-utf8.jsonl"] = []byte(`{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}` + "\n" +
		"{\"prompt\": \"Hi\", \"chosen\": \"caf\xe9\", \"rejected\": \"tea\"}\n")
	files["pairs/utf16.jsonl"] = utf16LE(`{"prompt": "Hi", "chosen": "Hello", "rejected": "Go away"}` + "\n")
	files["tokens/invalid-utf8.jsonl"] = []byte("{\"chosen_ids\": [5, 2], \"rejected_ids\": [6, 2], \"tags\": {\"src\": \"\xc3\x28\"}}\n")
	files["score/invalid-utf8.jsonl"] = []byte("{\"prompt\": \"Hi\", \"response\": \"\xff\xfe\"}\n")
	files["pairs/nul-bytes.jsonl"] = []byte("\x00\x00\x00\x00{\"prompt\": \"Hi\"}\n")

	// Tokenizers derived from the good one.
	var tj map[string]json.RawMessage
	if err := json.Unmarshal(tok, &tj); err != nil {
		return nil, err
	}
	withField := func(k, v string) []byte {
		c := map[string]json.RawMessage{}
		for kk, vv := range tj {
			c[kk] = vv
		}
		c[k] = json.RawMessage(v)
		return mustJSON(c)
	}
	files["tokenizer/huge-token-id.json"] = withField("model", `{"type":"BPE","vocab":{"a":0,"b":1099511627776},"merges":[]}`)
	files["tokenizer/added-token-huge-id.json"] = withField("added_tokens", `[{"id":4294967296,"content":"<x>","special":true}]`)
	files["tokenizer/merge-unknown-token.json"] = withField("model", `{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b","b c"]}`)
	for name, tmpl := range map[string]string{
		"syntax-error":    `{% for m in messages %}{{ m.content }`,
		"raise-exception": `{{ raise_exception("conversations must start with a system message") }}`,
		"recursive":       `{% macro turn(m) %}{{ turn(m) }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}`,
		"endless-loops":   `{% for i in range(1000000) %}{% for m in messages %}{% for c in range(1000000) %}{{ m.role }}{% endfor %}{% endfor %}{% endfor %}`,
	} {
		files["chattemplate/"+name+"/tokenizer.json"] = tok
		files["chattemplate/"+name+"/tokenizer_config.json"] = tokenizerConfig(tmpl)
	}
	files["chattemplate/no-template/tokenizer.json"] = tok
	files["chattemplate/no-template/tokenizer_config.json"] = mustJSON(map[string]any{"bos_token": "<s>", "eos_token": "</s>"})
	return files, nil
}

// hugeSchemaList rewrites a Parquet footer so that its schema list claims
// 2^31-1 elements (thrift compact protocol: FileMetaData starts with the
// version, field 1, then the schema list, field 2).
func hugeSchemaList(pq []byte) ([]byte, error) {
	n := int(binary.LittleEndian.Uint32(pq[len(pq)-8:]))
	f := pq[len(pq)-8-n : len(pq)-8]
	if f[0] != 0x15 || f[2] != 0x19 {
		return nil, fmt.Errorf("unexpected Parquet footer % x", f[:4])
	}
	nf := binary.AppendUvarint(append(slices.Clone(f[:3]), 0xFC), 1<<31-1)
	nf = append(nf, f[4:]...)
	out := append(slices.Clone(pq[:len(pq)-8-n]), nf...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(nf)))
	return append(out, "PAR1"...), nil
}

// hugePage rewrites the first page header (at byte 4) so that the page
// claims 2^31-16 bytes, keeping the header's length: its compressed size
// (field 3) and CRC (field 4) become a 5-byte size and a zero CRC.
func hugePage(pq []byte) ([]byte, error) {
	pos := 4
	field := func() (int, error) { // skips an i32 field, returns its start
		start := pos
		if pq[pos] != 0x15 {
			return 0, fmt.Errorf("unexpected page header byte %#x at %d", pq[pos], pos)
		}
		pos++
		for pq[pos] >= 0x80 {
			pos++
		}
		pos++
		return start, nil
	}
	var start int
	for i := 0; i < 4; i++ { // type, uncompressed, compressed, crc
		s, err := field()
		if err != nil {
			return nil, err
		}
		if i == 2 {
			start = s
		}
	}
	repl := []byte{0x15}
	v := uint64(1<<31-16) << 1 // zigzag of a positive value
	for i := 0; i < pos-start-4; i++ {
		repl = append(repl, byte(v&0x7f)|0x80)
		v >>= 7
	}
	repl = append(repl, byte(v), 0x15, 0x00)
	if len(repl) != pos-start || v > 0x7f {
		return nil, fmt.Errorf("page header fields of %d bytes cannot hold the size", pos-start)
	}
	out := slices.Clone(pq)
	copy(out[start:], repl)
	return out, nil
}

// understatedPage writes rows as a Parquet file compressed with codec and rewrites the
// first page header's uncompressed size to 8,200 bytes, in a varint of the
// same length, so the page inflates past what it states.
func understatedPage(rows []pqPair, codec compress.Codec) ([]byte, error) {
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows, parquet.Compression(codec)); err != nil {
		return nil, err
	}
	pq := buf.Bytes()
	pos := 4
	skip := func() error { // an i32 field
		if pq[pos] != 0x15 {
			return fmt.Errorf("unexpected page header byte %#x at %d", pq[pos], pos)
		}
		for pos++; pq[pos] >= 0x80; pos++ {
		}
		pos++
		return nil
	}
	if err := skip(); err != nil { // type
		return nil, err
	}
	start := pos + 1
	if err := skip(); err != nil { // uncompressed_page_size
		return nil, err
	}
	n := pos - start
	v := uint64(8200) << 1 // zigzag
	var repl []byte
	for range n - 1 {
		repl = append(repl, byte(v&0x7f)|0x80)
		v >>= 7
	}
	if repl = append(repl, byte(v)); v > 0x7f || n != 3 {
		return nil, fmt.Errorf("the page size varint has %d bytes, want 3", n)
	}
	copy(pq[start:], repl)
	return pq, nil
}

// goodCheckpoint2 copies c (without its manifest) and edits the copy.
func goodCheckpoint2(c ckFiles, edit func(ckFiles)) ckFiles {
	out := ckFiles{}
	for k, v := range c {
		out[k] = slices.Clone(v)
	}
	edit(out)
	return out
}

// replace swaps the tensor of the same name.
func replace(ts []tensor, t tensor) []tensor {
	out := slices.Clone(ts)
	for i := range out {
		if out[i].name == t.name {
			out[i] = t
		}
	}
	return out
}

func utf16LE(s string) []byte {
	b := []byte{0xFF, 0xFE}
	for _, r := range s {
		b = binary.LittleEndian.AppendUint16(b, uint16(r))
	}
	return b
}

// corpusDir is testdata/bad at the repository root.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "bad"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cases.json")); err != nil && !*update {
		t.Fatalf("corpus missing: %v", err)
	}
	return dir
}
