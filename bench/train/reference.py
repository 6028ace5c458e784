"""PyTorch eager baseline for prism's training-step benchmark.

It builds the same Llama-style reward model as prism (models/llama.go) from
the same config.json and model.safetensors, and runs the same training step
on the same pairs: one forward pass over the chosen then the rejected
sequences, the Bradley-Terry loss, backward, gradient-norm clipping and
torch.optim.AdamW with no weight decay on norms. It prints one JSON object:
the loss and the time of every step.

Only the standard library and torch are needed (Debian's python3-torch), so
safetensors is read by hand. --impl transformers runs the same step through
transformers' AutoModelForSequenceClassification instead (where it is
installed); --device cuda runs either on the GPU.
"""

import argparse
import json
import math
import struct
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = bytearray(raw[8 + n :])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}, the reference reads F32 only")
        lo, hi = info["data_offsets"]
        t = torch.frombuffer(data[lo:hi], dtype=torch.float32).reshape(info["shape"])
        out[name] = t.clone()
    return out


def llama3_scaling(inv, rs):
    """Llama 3.1's frequency-dependent scaling of the rotary frequencies:
    low frequencies divided by factor, high ones kept, a linear blend
    between the two wavelength bounds."""
    old = rs["original_max_position_embeddings"]
    lo, hi, factor = rs["low_freq_factor"], rs["high_freq_factor"], rs["factor"]
    wavelen = 2 * math.pi / inv
    smooth = (old / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * inv / factor + smooth * inv
    out = torch.where(wavelen > old / lo, inv / factor, blended)
    return torch.where(wavelen < old / hi, inv, out)


class RewardModel(torch.nn.Module):
    """Llama decoder + linear score head on the last real token."""

    def __init__(self, cfg, weights, precision="fp32", attention="eager"):
        super().__init__()
        self.cfg = cfg
        # bf16 is mixed precision as prism runs it: float32 parameters,
        # rounded to bfloat16 for each use; bfloat16 activations; norm
        # statistics, softmax and the rewards in float32.
        self.dt = torch.bfloat16 if precision == "bf16" else torch.float32
        self.sdpa = attention == "sdpa"
        self.heads = cfg["num_attention_heads"]
        self.kv = cfg.get("num_key_value_heads", self.heads)
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        self.window = cfg.get("sliding_window") or 0
        self.params = torch.nn.ParameterDict({n.replace(".", "__"): torch.nn.Parameter(w) for n, w in weights.items()})
        theta = cfg.get("rope_theta", 10000.0)
        inv = 1.0 / (theta ** (torch.arange(0, self.hd, 2, dtype=torch.float64) / self.hd))
        rs = cfg.get("rope_scaling")
        if rs:
            if rs.get("rope_type", rs.get("type")) != "llama3":
                raise SystemExit(f"the reference implements rope_scaling type llama3 only, not {rs}")
            inv = llama3_scaling(inv, rs)
        self.register_buffer("inv_freq", inv.float())

    def w(self, name):
        return self.params[name.replace(".", "__")].to(self.dt)

    def norm(self, x, w):
        x = x.float()
        return (x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)).to(self.dt) * w

    @staticmethod
    def rope(x, cos, sin):
        half = x.shape[-1] // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rot * sin

    def forward(self, ids, mask):
        B, T = ids.shape
        H, KV, hd = self.heads, self.kv, self.hd
        pos = (mask.cumsum(1, dtype=torch.float32) - 1).clamp_min(0)
        ang = pos.unsqueeze(-1) * self.inv_freq
        emb = torch.cat([ang, ang], dim=-1)
        cos, sin = emb.cos().unsqueeze(1).to(self.dt), emb.sin().unsqueeze(1).to(self.dt)
        allowed = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        if 0 < self.window < T:
            allowed = allowed.triu(-(self.window - 1))
        blocked = ~(allowed[None, None] & (mask == 1)[:, None, None, :])
        attend = ~blocked
        attend = attend | ~attend.any(-1, keepdim=True)  # rows with no key attend to all (as prism)
        h = F.embedding(ids, self.w("model.embed_tokens.weight"))
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = self.norm(h, self.w(p + "input_layernorm.weight"))
            q = F.linear(x, self.w(p + "self_attn.q_proj.weight")).view(B, T, H, hd).transpose(1, 2)
            k = F.linear(x, self.w(p + "self_attn.k_proj.weight")).view(B, T, KV, hd).transpose(1, 2)
            v = F.linear(x, self.w(p + "self_attn.v_proj.weight")).view(B, T, KV, hd).transpose(1, 2)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            if H > KV:
                k = k[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
                v = v[:, :, None].expand(B, KV, H // KV, T, hd).reshape(B, H, T, hd)
            if self.sdpa:
                a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            else:
                s = (q @ k.transpose(2, 3)) * (1 / math.sqrt(hd))
                s = s.masked_fill(blocked, torch.finfo(self.dt).min)
                a = s.float().softmax(-1).to(self.dt) @ v
            a = a.transpose(1, 2).contiguous().view(B, T, H * hd)
            h = h + F.linear(a, self.w(p + "self_attn.o_proj.weight"))
            x = self.norm(h, self.w(p + "post_attention_layernorm.weight"))
            m = F.silu(F.linear(x, self.w(p + "mlp.gate_proj.weight"))) * F.linear(x, self.w(p + "mlp.up_proj.weight"))
            h = h + F.linear(m, self.w(p + "mlp.down_proj.weight"))
        h = self.norm(h, self.w("model.norm.weight"))
        last = (torch.arange(1, T + 1, device=ids.device) * mask).argmax(1)
        final = h[torch.arange(B, device=ids.device), last]
        return F.linear(final, self.w("score.weight")).view(B).float()


def transformers_model(path, precision, attention, dev):
    """The same model through transformers' AutoModelForSequenceClassification:
    float32 parameters, and for bf16 torch.autocast, which is what TRL's and
    OpenRLHF's --bf16 give (their norms and residual stream stay in float32,
    where prism rounds the residual stream to bfloat16)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        path, torch_dtype=torch.float32, attn_implementation=attention).to(dev)
    model.train()

    def forward(ids, mask):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(input_ids=ids, attention_mask=mask, use_cache=False)
        return out.logits[:, 0].float()

    return model, forward


def read_pairs(path):
    pairs = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            prompt = row.get("prompt_ids", [])
            pairs.append((prompt + row["chosen_ids"], prompt + row["rejected_ids"]))
    return pairs


def collate(seqs, pad):
    T = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad] * (T - len(s)) for s in seqs], dtype=torch.int64)
    mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs], dtype=torch.int64)
    return ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--weight-decay", type=float, required=True)
    ap.add_argument("--max-grad-norm", type=float, required=True)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--attention", choices=["eager", "sdpa"], default="eager")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--impl", choices=["reference", "transformers"], default="reference")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    with open(f"{args.model}/config.json") as f:
        cfg = json.load(f)
    if args.impl == "transformers":
        model, forward = transformers_model(args.model, args.precision, args.attention, dev)
        named = list(model.named_parameters())
    else:
        model = RewardModel(cfg, read_safetensors(f"{args.model}/model.safetensors"), args.precision, args.attention).to(dev)
        forward = model
        named = [(n.replace("__", "."), p) for n, p in model.params.items()]
    decay = [p for n, p in named if not n.endswith("norm.weight")]
    no_decay = [p for n, p in named if n.endswith("norm.weight")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    pairs = read_pairs(args.pairs)
    pad = cfg.get("pad_token_id") or 0
    losses, seconds = [], []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        ids, mask = collate([c for c, _ in pairs] + [r for _, r in pairs], pad)
        ids, mask = ids.to(dev), mask.to(dev)
        opt.zero_grad(set_to_none=True)
        r = forward(ids, mask)
        n = len(pairs)
        loss = -F.logsigmoid(r[:n] - r[n:]).mean()
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        opt.step()
        lv = loss.item()
        seconds.append(time.perf_counter() - t0)
        losses.append(lv)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "loss": losses, "seconds": seconds}))


if __name__ == "__main__":
    main()
