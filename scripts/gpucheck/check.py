"""The GPU check's measurements, run by scripts/gpu-check.sh after it built prism.

Parts (each can be skipped with --skip NAME; results are written to --out
after every part, so a run cut short keeps what it measured):

  peak      the device's fp32 and bf16 matmul GFLOP/s (torch)
  parity    prism score against the reference on random Llama-3-shaped (GQA,
            llama3 rope scaling), Mistral-shaped (sliding window shorter than
            the rows) and ~1B-shaped models, fp32 and bf16, the reference
            batched with right and with left padding
  saved     a model folder prism trained and saved, scored by the reference
            and by prism
  train     bench/train: prism's training step against the reference's on
            the 1b shape (bf16, SDPA), losses checked equal first
  lora8b    a random model of Llama-3-8B's config, LoRA + gradient
            checkpointing, bf16: peak device memory against prism's
            dry-run plan, and steps/s
  decomp    bench/decomp: the Δr2 recompute's pairs/s on the device

The reference is transformers' AutoModelForSequenceClassification where
transformers imports; elsewhere (the CPU rehearsal: Debian has no
transformers) it is bench/train/reference.py's model, written out in torch,
and the results say so. Only the standard library, torch and (for speed)
numpy are needed.
"""

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "train"))
import reference  # noqa: E402  (bench/train/reference.py)

try:
    import transformers
except ImportError:
    transformers = None

PARTS = ["peak", "parity", "saved", "train", "lora8b", "decomp", "tensorboard"]


def llama3_8b():
    # Meta-Llama-3-8B-Instruct's config.json (architecture keys).
    return dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=8192)


def tiny_llama3():
    return dict(model_type="llama", vocab_size=512, hidden_size=64, intermediate_size=160,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                rms_norm_eps=1e-5, rope_theta=500000.0, max_position_embeddings=256,
                rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                  high_freq_factor=4.0, original_max_position_embeddings=32))


def tiny_mistral():
    return dict(model_type="mistral", vocab_size=512, hidden_size=64, intermediate_size=160,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
                rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=256, sliding_window=16)


def shape_1b():
    # TinyLlama-1.1B's shape with a 32000 vocabulary (bench/train's 1b).
    return dict(model_type="llama", vocab_size=32000, hidden_size=2048, intermediate_size=5632,
                num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4, head_dim=64,
                rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=2048)


def small_llama():
    # The --quick stand-in for the large shapes.
    return dict(model_type="llama", vocab_size=1024, hidden_size=128, intermediate_size=352,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=512)


def hf_config(arch):
    cfg = dict(arch)
    cls = {"llama": "LlamaForSequenceClassification", "mistral": "MistralForSequenceClassification"}[arch["model_type"]]
    cfg.update(architectures=[cls], hidden_act="silu", pad_token_id=0, bos_token_id=1, eos_token_id=2,
               num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0}, tie_word_embeddings=False,
               attention_bias=False, mlp_bias=False, initializer_range=0.02, torch_dtype="float32")
    return cfg


def tensor_shapes(c):
    d, f, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", [c["vocab_size"], d])]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [d]), (p + "post_attention_layernorm.weight", [d]),
                (p + "self_attn.q_proj.weight", [q, d]), (p + "self_attn.k_proj.weight", [kv, d]),
                (p + "self_attn.v_proj.weight", [kv, d]), (p + "self_attn.o_proj.weight", [d, q]),
                (p + "mlp.gate_proj.weight", [f, d]), (p + "mlp.up_proj.weight", [f, d]),
                (p + "mlp.down_proj.weight", [d, f])]
    return out + [("model.norm.weight", [d]), ("score.weight", [1, d])]


def write_model(folder, arch, seed, dtype=torch.float32, device="cpu"):
    """A random reward model in Hugging Face's format: normal(0, 0.02)
    matrices as transformers initialises them, norms at one. The tensors are
    made one at a time on device and streamed into model.safetensors, so an
    8B model never sits in host memory whole."""
    os.makedirs(folder, exist_ok=True)
    cfg = hf_config(arch)
    if dtype == torch.bfloat16:
        cfg["torch_dtype"] = "bfloat16"
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    shapes = tensor_shapes(arch)
    size = 2 if dtype == torch.bfloat16 else 4
    header, off = {}, 0
    for name, shape in shapes:
        n = math.prod(shape) * size
        header[name] = {"dtype": "BF16" if size == 2 else "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    gen = torch.Generator(device=device).manual_seed(seed)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name, shape in shapes:
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=dtype, device=device)
            else:
                t = torch.empty(shape, dtype=dtype, device=device).normal_(0.0, 0.02, generator=gen)
            t = t.cpu().contiguous()
            f.write(memoryview(t.view(torch.int16 if size == 2 else torch.int32).numpy()))
    return folder


def rows_for(arch, n, seed, lo, hi):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(lo, hi + 1, (1,), generator=g))
        out.append(torch.randint(3, arch["vocab_size"], (length,), generator=g).tolist())
    return out


class Reference:
    """Rewards from transformers, or from reference.py where it is absent."""

    def __init__(self, folder, dtype, device):
        self.device = torch.device(device)
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        if transformers is not None:
            m = transformers.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="sdpa")
            self.model = m.to(device=self.device, dtype=dtype).eval()
            self.name = f"transformers {transformers.__version__} AutoModelForSequenceClassification (sdpa)"
        else:
            prec = "bf16" if dtype == torch.bfloat16 else "fp32"
            attention = "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "eager"
            self.model = reference.RewardModel(self.cfg, reference.read_safetensors(os.path.join(folder, "model.safetensors")),
                                               prec, attention).to(self.device).eval()
            self.name = f"bench/train/reference.py, {attention} (transformers is not installed here)"

    @torch.no_grad()
    def rewards(self, rows, side):
        """side: none (one row at a time), right or left padding."""
        if side == "none":
            return [r for row in rows for r in self._forward([row], "right")]
        return self._forward(rows, side)

    def _forward(self, rows, side):
        T = max(len(r) for r in rows)
        ids, mask = [], []
        for r in rows:
            pad = [0] * (T - len(r))
            ids.append(pad + r if side == "left" else r + pad)
            mask.append([0] * len(pad) + [1] * len(r) if side == "left" else [1] * len(r) + [0] * len(pad))
        ids = torch.tensor(ids, device=self.device)
        mask = torch.tensor(mask, device=self.device)
        if transformers is None:
            return self.model(ids, mask).float().tolist()
        # Positions count real tokens, as prism's do, so a left-padded row
        # is the same computation as the unpadded one.
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        return out.logits[:, 0].float().tolist()


def prism_score(prism, folder, rows, device, precision, work, batch=5):
    inp = os.path.join(work, "rows.jsonl")
    outp = os.path.join(work, "rewards.jsonl")
    with open(inp, "w") as f:
        for r in rows:
            f.write(json.dumps({"input_ids": r}) + "\n")
    run([prism, "score", "--model", folder, "--input", inp, "--output", outp, "--device", device,
         "--precision", precision, "--batch-size", str(batch), "--max-length", "4096"])
    with open(outp) as f:
        return [json.loads(line)["reward"] for line in f]


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p.stdout


def maxdiff(a, b):
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def part_peak(a, res):
    out = {}
    for name, dt in [("fp32", torch.float32), ("bf16", torch.bfloat16)]:
        n = 8192 if a.device.startswith("cuda") else 1024
        x = torch.randn(n, n, device=a.device, dtype=dt)
        y = torch.randn(n, n, device=a.device, dtype=dt)
        best = math.inf
        for i in range(6):
            t0 = time.perf_counter()
            (x @ y).sum().item()
            if i:
                best = min(best, time.perf_counter() - t0)
        out[name + "_gflops"] = 2 * n**3 / best / 1e9
    return out


def part_parity(a, res):
    """fp32: prism within atol 1e-5 + rtol 1e-4 of the fp32 reference in
    every padding. bf16: prism's distance from the fp32 reference at most
    twice the bf16 reference's own distance from it (what bfloat16 costs
    the reference), or 1% of the largest reward."""
    specs = [("tiny-llama3", tiny_llama3(), 24, 200), ("tiny-mistral", tiny_mistral(), 12, 60)]
    specs.append(("1b", shape_1b(), 8, 512) if not a.quick else ("small-llama", small_llama(), 8, 128))
    out, ok = {}, True
    for name, arch, n, hi in specs:
        folder = write_model(os.path.join(a.work, "parity", name), arch, seed=11, device=a.device)
        rows = rows_for(arch, n, seed=5, lo=2, hi=hi)
        ref32 = Reference(folder, torch.float32, a.device)
        base = ref32.rewards(rows, "none")
        scale = max(abs(x) for x in base)
        entry = {"reference": ref32.name, "rows": n, "longest": max(map(len, rows)), "max_abs_reward": scale}
        for side in ["right", "left"]:
            entry[f"reference_fp32_{side}_vs_unpadded"] = maxdiff(ref32.rewards(rows, side), base)
        del ref32
        p32 = prism_score(a.prism, folder, rows, a.device, "fp32", a.work)
        entry["prism_fp32_vs_reference_fp32"] = maxdiff(p32, base)
        ref16 = Reference(folder, torch.bfloat16, a.device)
        r16 = {side: ref16.rewards(rows, side) for side in ["none", "right", "left"]}
        del ref16
        entry["reference_bf16_vs_reference_fp32"] = max(maxdiff(v, base) for v in r16.values())
        p16 = prism_score(a.prism, folder, rows, a.device, "bf16", a.work)
        entry["prism_bf16_vs_reference_fp32"] = maxdiff(p16, base)
        entry["prism_bf16_vs_reference_bf16"] = maxdiff(p16, r16["none"])
        tol32 = 1e-5 + 1e-4 * scale
        tol16 = max(2 * entry["reference_bf16_vs_reference_fp32"], 0.01 * scale)
        entry["fp32_tolerance"], entry["bf16_tolerance"] = tol32, tol16
        entry["pass"] = (entry["prism_fp32_vs_reference_fp32"] <= tol32 and entry["prism_bf16_vs_reference_fp32"] <= tol16
                         and all(entry[f"reference_fp32_{s}_vs_unpadded"] <= tol32 for s in ["right", "left"]))
        ok = ok and entry["pass"]
        out[name] = entry
        log(f"parity {name}: {json.dumps(entry)}")
    out["pass"] = ok
    return out


def write_pairs(path, arch, n, seed, plen, rlen):
    g = torch.Generator().manual_seed(seed)
    with open(path, "w") as f:
        for _ in range(n):
            ids = lambda k: torch.randint(3, arch["vocab_size"], (k,), generator=g).tolist()  # noqa: E731
            f.write(json.dumps({"prompt_ids": ids(plen), "chosen_ids": ids(rlen), "rejected_ids": ids(rlen)}) + "\n")


def train_sets(run_dir, model, pairs, device, precision, extra=()):
    sets = [f"run.dir={run_dir}", f"run.device={device}", "model.preset=", f"model.path={model}",
            f"model.precision={precision}", "model.attention=auto", f"data.train={pairs}", "data.eval_fraction=0",
            "eval.every=0", "checkpoint.every=0", "run.log_every=1"]
    return [x for s in list(sets) + list(extra) for x in ("--set", s)]


def part_saved(a, res):
    arch = tiny_llama3()
    folder = write_model(os.path.join(a.work, "saved", "base"), arch, seed=3, device=a.device)
    pairs = os.path.join(a.work, "saved", "pairs.jsonl")
    write_pairs(pairs, arch, 16, seed=4, plen=12, rlen=8)
    run_dir = os.path.join(a.work, "saved", "run")
    run([a.prism, "train"] + train_sets(run_dir, folder, pairs, a.device, "fp32",
                                        ["train.steps=4", "train.batch_size=4", "data.max_length=64"]))
    saved = os.path.join(run_dir, "model")
    rows = rows_for(arch, 10, seed=8, lo=2, hi=60)
    ref = Reference(saved, torch.float32, a.device)
    r = ref.rewards(rows, "right")
    p = prism_score(a.prism, saved, rows, a.device, "fp32", a.work)
    base = prism_score(a.prism, folder, rows, a.device, "fp32", a.work)
    d, moved = maxdiff(p, r), maxdiff(p, base)
    tol = 1e-5 + 1e-4 * max(abs(x) for x in r)
    out = {"reference": ref.name, "files": sorted(os.listdir(saved)), "prism_vs_reference": d, "tolerance": tol,
           "rewards_moved_by_training": moved, "pass": d <= tol and moved > 0}
    log(f"saved: {json.dumps(out)}")
    return out


def part_train(a, res):
    shape = "tiny" if a.quick else "1b"
    outp = os.path.join(a.work, "train.json")
    impl = "transformers" if transformers is not None else "reference"
    run([a.go, "run", "./bench/train", "-only", shape, "-device", a.device, "-precision", "bf16",
         "-attention", "auto", "-impl", impl, "-python", sys.executable, "-out", outp] + (["-smoke"] if a.quick else []),
        cwd=ROOT)
    with open(outp) as f:
        return json.load(f)


def gpu_memory_mib(pid):
    """Device memory of one process (nvidia-smi), or None off a GPU."""
    try:
        q = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in q.splitlines():
        f = [x.strip() for x in line.split(",")]
        if len(f) == 2 and f[0] == str(pid):
            return float(f[1])
    return 0.0


def part_lora8b(a, res):
    """Memory against the plan. The run is stopped with SIGKILL after its
    measured steps: what is measured is the steps, not writing 32 GB of
    weights at the end."""
    arch = small_llama() if a.quick else llama3_8b()
    name = "small-llama (--quick stand-in)" if a.quick else "Llama-3-8B config, random weights"
    on_gpu = a.device.startswith("cuda")
    t0 = time.perf_counter()
    folder = write_model(os.path.join(a.work, "lora8b", "model"), arch, seed=1, dtype=torch.bfloat16, device=a.device)
    write_s = time.perf_counter() - t0
    seq = 256 if a.quick else 2048
    pairs = os.path.join(a.work, "lora8b", "pairs.jsonl")
    write_pairs(pairs, arch, 8, seed=2, plen=seq // 2, rlen=seq // 2)
    steps = 4
    sets = train_sets(os.path.join(a.work, "lora8b", "run"), folder, pairs, a.device, "bf16",
                      ["train.lora_rank=16", "train.gradient_checkpointing=true", f"data.max_length={seq}",
                       "train.batch_size=1", f"train.steps={steps + 10}"])
    plan = json.loads(run([a.prism, "train", "--dry-run", "--json"] + sets))
    metrics = os.path.join(a.work, "lora8b", "run", "metrics.jsonl")
    errlog = open(os.path.join(a.work, "lora8b", "stderr.log"), "w+")
    proc = subprocess.Popen([a.prism, "train", "--ignore-memory-plan"] + sets, stdout=subprocess.DEVNULL, stderr=errlog)
    peak, rows, t_start = 0.0, [], time.perf_counter()
    try:
        while proc.poll() is None and time.perf_counter() - t_start < a.lora_timeout:
            if on_gpu:
                peak = max(peak, gpu_memory_mib(proc.pid) or 0.0)
            rows = train_rows(metrics)
            if len(rows) >= steps:
                break
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, status, usage = os.wait4(proc.pid, 0)
    if len(rows) < steps:
        errlog.seek(0)
        raise RuntimeError(f"prism train ran {len(rows)} of {steps} steps (exit status {status}): {errlog.read()[-2000:]}")
    if not on_gpu:
        peak = usage.ru_maxrss / 1024  # KiB to MiB: resident memory on the CPU
    times = [r["wall_s"] for r in rows]
    out = {"model": name, "params": plan["Params"], "trained": plan["Trained"], "max_length": seq,
           "model_write_s": write_s, "plan_total_mib": plan["memory_total_bytes"] / 2**20,
           "plan": plan["Memory"], "measured_peak_mib": peak,
           "measured_as": "nvidia-smi used_memory of the process (CUDA context included)" if on_gpu else "peak RSS",
           "steps_per_s": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else None,
           "load_and_first_step_s": times[0]}
    out["measured_over_plan"] = peak / out["plan_total_mib"]
    log(f"lora8b: {json.dumps(out)}")
    return out


def train_rows(path):
    try:
        with open(path) as f:
            return [r for r in map(json.loads, f) if r.get("kind") == "train"]
    except (OSError, ValueError):
        return []


def part_decomp(a, res):
    outp = os.path.join(a.work, "decomp.json")
    cmd = [a.go, "run", "./bench/decomp", "-device", a.device, "-precision", "bf16", "-toy-run=false", "-out", outp]
    if a.quick:
        cmd += ["-smoke"]
    else:
        folder = os.path.join(a.work, "parity", "1b")
        cmd += ["-model", folder, "-pairs", "512", "-batch", "64"]
    run(cmd, cwd=ROOT)
    with open(outp) as f:
        return json.load(f)


def part_tensorboard(a, res):
    """A toy run with run.tensorboard: TensorBoard's own reader loads its
    event file, and every training loss equals metrics.jsonl's (as float32)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:
        return {"skipped": f"tensorboard is not installed here ({e})"}
    run_dir = os.path.join(a.work, "tensorboard", "run")
    run([a.prism, "train", "--set", f"run.dir={run_dir}", "--set", f"run.device={a.device}", "--set", "model.preset=tiny-llama",
         "--set", "data.train=toy:length_bias", "--set", "data.synthetic_pairs=128", "--set", "train.steps=12",
         "--set", "train.batch_size=8", "--set", "eval.every=4", "--set", "run.tensorboard=true"])
    acc = EventAccumulator(os.path.join(run_dir, "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    got = {e.step: e.value for e in acc.Scalars("train/loss")}
    want = {r["step"]: r["loss"] for r in train_rows(os.path.join(run_dir, "metrics.jsonl")) if r.get("loss") is not None}
    worst = max(abs(got[k] - want[k]) for k in want) if want and set(got) == set(want) else float("inf")
    out = {"tags": sorted(tags), "train_loss_steps": len(got), "max_difference": worst,
           "pass": worst <= 1e-6 * max(1.0, max(abs(v) for v in want.values())) and "eval/eval_accuracy" in tags}
    log(f"tensorboard: {json.dumps(out)}")
    return out


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prism", required=True)
    ap.add_argument("--go", default="go")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true", help="small stand-ins for the large shapes (the CPU rehearsal)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: " + ",".join(PARTS))
    ap.add_argument("--work", default="")
    ap.add_argument("--lora-timeout", type=float, default=300)
    ap.add_argument("--build-seconds", type=float, default=None)
    a = ap.parse_args()
    skip = {s for s in a.skip.split(",") if s}
    if skip - set(PARTS):
        ap.error(f"--skip {sorted(skip - set(PARTS))}: want some of {PARTS}")
    a.work = a.work or tempfile.mkdtemp(prefix="prism-gpu-check-")
    res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": a.device, "quick": a.quick,
           "torch": torch.__version__, "transformers": transformers.__version__ if transformers else None,
           "prism_version": run([a.prism, "version"]).strip().splitlines(), "build_s": a.build_seconds}
    if a.device.startswith("cuda"):
        res["card"] = torch.cuda.get_device_name(torch.device(a.device))
        res["card_memory_gib"] = torch.cuda.get_device_properties(torch.device(a.device)).total_memory / 2**30
    failed = []
    for name in PARTS:
        if name in skip:
            continue
        # parity writes the 1b model decomp scores with
        if name == "decomp" and "parity" in skip and not a.quick:
            res[name] = {"skipped": "needs parity's 1b model"}
            continue
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            res[name] = globals()["part_" + name](a, res)
        except Exception as e:  # one part's failure is recorded and the rest still run
            res[name] = {"error": f"{type(e).__name__}: {e}"}
            failed.append(name)
        res[name]["seconds"] = time.perf_counter() - t0
        if isinstance(res[name], dict) and res[name].get("pass") is False:
            failed.append(name)
        write(a.out, res)
        log(f"{name}: {res[name]['seconds']:.1f}s" + (" FAILED" if name in failed else ""))
    res["failed"] = failed
    write(a.out, res)
    return 1 if failed else 0


def write(path, res):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
