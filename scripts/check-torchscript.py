#!/usr/bin/python3
"""Loads Lopper's TorchScript exports with Python PyTorch (torch.jit.load) and compares their logits with the
reference logits of Lopper's Java forward pass (written by dev.lopper.export.ExportSamples, see docs/EXPORT.md).

usage: check-torchscript.py SAMPLES_DIR     (each SAMPLES_DIR/<name>/ holds torchscript/model.pt + reference.*)
Exits 1 if any max abs diff exceeds the tolerance in reference.json (1e-4).
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch


def check(sample: Path) -> bool:
    ref = json.loads((sample / "reference.json").read_text())
    want = np.fromfile(sample / ref["logits_file"], dtype="<f4").reshape(ref["shape"])
    module = torch.jit.load(str(sample / "torchscript" / "model.pt"), map_location="cpu")
    module.eval()
    ids = torch.tensor(ref["ids"], dtype=torch.int64)
    with torch.no_grad():
        got = module(ids)
    assert got.dtype == torch.float32, got.dtype
    assert list(got.shape) == ref["shape"], (list(got.shape), ref["shape"])
    diff = float(np.abs(got.numpy() - want).max())
    ok = diff <= ref["tolerance"]
    print(f"{sample.name}: torch {torch.__version__} torch.jit.load {sample / 'torchscript' / 'model.pt'}: "
          f"logits {list(got.shape)}, max abs diff vs Java forward pass {diff:.3g} -> {'OK' if ok else 'FAIL'}")
    # a second shape: batch 1, first 5 tokens (causal, so it equals the reference prefix)
    with torch.no_grad():
        got1 = module(ids[:1, :5])
    diff1 = float(np.abs(got1.numpy() - want[:1, :5]).max())
    ok1 = diff1 <= ref["tolerance"]
    print(f"{sample.name}: batch 1, length 5: max abs diff {diff1:.3g} -> {'OK' if ok1 else 'FAIL'}")
    return ok and ok1


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    samples = sorted(p for p in root.iterdir() if (p / "reference.json").exists())
    if not samples:
        print(f"no samples (*/reference.json) under {root}", file=sys.stderr)
        return 2
    results = [check(s) for s in samples]
    print(f"torchscript: {sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
