"""Converts the safetensors model that TestWritePickleFixtureSource writes
into testdata/pickle-model (config.json + pytorch_model.bin via torch.save):

  PRISM_WRITE_PICKLE_SOURCE=/tmp/pk go test ./models -run TestWritePickleFixtureSource
  /usr/bin/python3 models/testdata/pickle-model-gen.py /tmp/pk models/testdata/pickle-model
"""
import collections
import json
import os
import shutil
import struct
import sys

import torch

src, dst = sys.argv[1], sys.argv[2]
with open(os.path.join(src, "model.safetensors"), "rb") as f:
    raw = f.read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8 : 8 + n])
data = bytearray(raw[8 + n :])
sd = collections.OrderedDict()
for name, info in sorted(header.items()):
    if name == "__metadata__":
        continue
    lo, hi = info["data_offsets"]
    sd[name] = torch.frombuffer(data[lo:hi], dtype=torch.float32).reshape(info["shape"]).clone()
os.makedirs(dst, exist_ok=True)
shutil.copy(os.path.join(src, "config.json"), os.path.join(dst, "config.json"))
torch.save(sd, os.path.join(dst, "pytorch_model.bin"))
