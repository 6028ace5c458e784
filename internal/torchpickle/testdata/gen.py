"""Writes the torchpickle test fixtures with torch.save (run with a Python
that has torch: /usr/bin/python3 internal/torchpickle/testdata/gen.py).

state.pt     an OrderedDict state dict: fp32, fp16 and bf16 tensors, a view
             sharing its storage at an offset, a scalar and an empty tensor
strided.pt   a transposed (non-contiguous) tensor, which the reader refuses
evil.pt      a pickle that would call os.system; the reader must refuse it
             without running it
values.json  the expected values of state.pt, as float lists
"""
import collections
import json
import os

import torch

here = os.path.dirname(os.path.abspath(__file__))
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8 - 0.5
sd = collections.OrderedDict()
sd["a.weight"] = base.clone()
sd["b.half"] = (base[:2] * 3).to(torch.float16)
sd["c.bf16"] = (base[1:] - 1).to(torch.bfloat16)
shared = torch.linspace(-1, 1, 10)
sd["d.view"] = shared[3:7]  # offset 3 into a shared storage
sd["e.whole"] = shared
sd["f.scalar"] = torch.tensor(2.5)
sd["g.empty"] = torch.zeros(0, 4)
torch.save(sd, os.path.join(here, "state.pt"))
with open(os.path.join(here, "values.json"), "w") as f:
    json.dump({k: {"shape": list(v.shape), "values": v.float().flatten().tolist()} for k, v in sd.items()}, f, indent=1)
    f.write("\n")

torch.save(collections.OrderedDict(t=base.t()), os.path.join(here, "strided.pt"))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/torchpickle-pwned",))


torch.save(collections.OrderedDict(x=Evil()), os.path.join(here, "evil.pt"))
