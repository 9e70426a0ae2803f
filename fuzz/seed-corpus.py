#!/usr/bin/env python3
"""Seeds fuzz/corpus/ from the Go vectors (core/vectors/go-needle-wire.json).

Run from the repository root: python3 fuzz/seed-corpus.py [path/to/vectors.json]
"""
import hashlib
import json
import os
import random
import sys

vectors = sys.argv[1] if len(sys.argv) > 1 else "core/vectors/go-needle-wire.json"
frames = [bytes.fromhex(f["frame_hex"]) for f in json.load(open(vectors))["frames"]]


def put(target, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


rng = random.Random(7)
for fr in frames:
    # frame_decoder input: u16 max frame, u64 split seed, then the stream.
    put("frame_decoder", (4095).to_bytes(2, "little") + rng.randbytes(8) + fr)
    put("wire", fr[8:])
put("frame_decoder", (4095).to_bytes(2, "little") + rng.randbytes(8) + b"".join(frames))
put("frame_decoder", (16).to_bytes(2, "little") + rng.randbytes(8) + (-1).to_bytes(8, "little", signed=True))
for _ in range(8):
    put("cache", rng.randbytes(rng.randrange(16, 256)))
    put("node", rng.randbytes(rng.randrange(32, 512)))
# Node inputs that carry a whole vector request frame to an inbound connection.
for fr in frames[:7]:
    put("node", bytes([2, 3]) + fr)
