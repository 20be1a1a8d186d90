"""Loads a Lopper-written HF directory with an independent PyTorch LLaMA (the fixture training script's model,
which reads only the standard HF config fields) and checks its perplexity against Lopper's own number.

usage: /usr/bin/python3 scripts/check-hf.py MODEL_DIR TEXT_FILE LOPPER_PPL_JSON
Prints 'hf: N passed, N failed'. Exit 1 on a mismatch.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture"))
import bpe  # noqa: E402
import train  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = bytearray(data[b:e])
        if t["dtype"] == "BF16":
            x = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16).float()
        elif t["dtype"] == "F16":
            x = torch.frombuffer(raw, dtype=torch.float16).float()
        elif t["dtype"] == "F32":
            x = torch.frombuffer(raw, dtype=torch.float32).clone()
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {t['dtype']} not handled here")
        out[name] = x.reshape(t["shape"])
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    weights = {}
    for f in files:
        weights.update(load_safetensors(os.path.join(model_dir, f)))
    return weights


def main():
    model_dir, text_file, ppl_json = sys.argv[1:4]
    config = json.load(open(os.path.join(model_dir, "config.json")))
    if "lopper_layers" in config:
        print(f"hf: skipped: {model_dir} has per-layer shapes (lopper_layers); HF loaders need uniform layers")
        return 0
    config.setdefault("initializer_range", 0.02)
    config.setdefault("head_dim", config["hidden_size"] // config["num_attention_heads"])
    model = train.Llama(config)
    weights = load_weights(model_dir)
    if config.get("tie_word_embeddings"):
        weights.setdefault("lm_head.weight", weights["model.embed_tokens.weight"])
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        print(f"hf: 0 passed, 1 failed (missing {missing}, unexpected {unexpected})")
        return 1
    model.eval()
    tok = json.load(open(os.path.join(model_dir, "tokenizer.json")))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in tok["model"]["merges"]]
    enc = bpe.Encoder(tok["model"]["vocab"], merges)
    ref = json.load(open(ppl_json))
    ids = [config["bos_token_id"]] + enc.encode(open(text_file).read())
    ppl, count = train.perplexity(model, ids, ref["seq_len"])
    rel = abs(ppl - ref["perplexity"]) / ref["perplexity"]
    ok = count == ref["predicted_tokens"] and rel < 1e-3
    print(f"hf: PyTorch perplexity {ppl:.4f} over {count} tokens, Lopper {ref['perplexity']:.4f} over "
          f"{ref['predicted_tokens']} (rel diff {rel:.2e})")
    print(f"hf: {1 if ok else 0} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
