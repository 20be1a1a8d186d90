#!/usr/bin/env python3
"""PyTorch eager reference for scripts/bench/calibration-speed: the same layer-streamed calibration pass as
Lopper's CalibrationEngine with FLAP / Wanda-sp statistics (per-channel fp64 sum, sum of squares and centred
sum of squares of o_proj's and down_proj's inputs, merged per sequence), on the same safetensors model, the same
seeded-random-shaped windows, the same chunking and thread count; and the GEMM rate of the same layer shapes.

usage: calibration_torch.py MODEL THREADS SAMPLES SEQ_LEN REPEATS [CHUNK_TOKENS]
Prints a markdown row: | pytorch | threads | tokens/s | achieved GFLOP/s | GEMM GFLOP/s | ratio | tokens per
CPU-second | GFLOP per CPU-second | (best of the repeats; CPU = the whole process's, all threads).
"""
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F


def tensors(model_dir):
    """name -> (file, dtype, shape, begin, end) from the index or the single file."""
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for f in files:
        path = os.path.join(model_dir, f)
        with open(path, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                b, e = info["data_offsets"]
                out[name] = (path, info["dtype"], info["shape"], 8 + n + b, 8 + n + e)
    return out


def load(index, name):
    path, dtype, shape, b, e = index[name]
    with open(path, "rb") as fh:
        fh.seek(b)
        raw = bytearray(fh.read(e - b))
    dt = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}[dtype]
    return torch.frombuffer(raw, dtype=dt).reshape(shape).float()


class Stats:
    """Lopper's ChannelStats: per-sequence fp64 reductions merged with Chan's formula, FLAP's fluctuation."""

    def __init__(self, c):
        z = lambda: torch.zeros(c, dtype=torch.float64)
        self.sum, self.sq, self.mean, self.m2, self.fluc = z(), z(), z(), z(), z()
        self.tokens = 0
        self.sequences = 0

    def add(self, x):
        t = x.shape[1]
        x64 = x.double()
        s = x64.sum(1)
        sq = x64.square().sum(1)
        m2 = (x64 - (s / t).unsqueeze(1)).square().sum(1)
        for i in range(x.shape[0]):
            n0 = self.tokens
            n = n0 + t
            k = self.sequences + 1
            seq_mean = s[i] / t
            delta = seq_mean - self.mean
            new_mean = self.mean + delta * t / n
            self.m2 += m2[i] + delta * delta * n0 * t / n
            self.mean = new_mean
            self.sum += s[i]
            self.sq += sq[i]
            if k >= 2:
                dev = seq_mean - new_mean
                self.fluc = self.fluc * (k - 2) / (k - 1) + (m2[i] + t * dev * dev) / k
            self.tokens = n
            self.sequences = k


def rope_tables(t, d, theta):
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.arange(t, dtype=torch.float32)[:, None] * inv.float()[None, :]
    emb = torch.cat([ang, ang], -1)
    return emb.cos(), emb.sin()


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin


def rms(x, w, eps):
    return x / x.square().mean(-1, keepdim=True).add(eps).sqrt() * w


def layer(w, x, cos, sin, mask, cfg, stats):
    b, t, h = x.shape
    d = cfg["head_dim"]
    nh, kvh = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    n = rms(x, w["input_layernorm.weight"], cfg["rms_norm_eps"])
    q = F.linear(n, w["self_attn.q_proj.weight"]).view(b, t, nh, d).transpose(1, 2)
    k = F.linear(n, w["self_attn.k_proj.weight"]).view(b, t, kvh, d).transpose(1, 2)
    v = F.linear(n, w["self_attn.v_proj.weight"]).view(b, t, kvh, d).transpose(1, 2)
    q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    if nh != kvh:
        k = k.repeat_interleave(nh // kvh, 1)
        v = v.repeat_interleave(nh // kvh, 1)
    a = (q @ k.transpose(2, 3) * (1.0 / math.sqrt(d)) + mask).softmax(-1) @ v
    a = a.transpose(1, 2).reshape(b, t, nh * d)
    stats[0].add(a)
    x = x + F.linear(a, w["self_attn.o_proj.weight"])
    n = rms(x, w["post_attention_layernorm.weight"], cfg["rms_norm_eps"])
    g = F.linear(n, w["mlp.gate_proj.weight"])
    m = torch.sigmoid(g) * g * F.linear(n, w["mlp.up_proj.weight"])
    stats[1].add(m)
    return x + F.linear(m, w["mlp.down_proj.weight"])


NAMES = ["input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
         "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
         "mlp.down_proj.weight"]


def calibrate(index, cfg, ids, chunk):
    t = ids.shape[1]
    cos, sin = rope_tables(t, cfg["head_dim"], cfg.get("rope_theta", 10000.0))
    mask = torch.full((t, t), float("-inf")).triu(1)
    embed = load(index, "model.embed_tokens.weight")
    hidden = [embed[ids[s:s + chunk]] for s in range(0, ids.shape[0], chunk)]
    del embed
    all_stats = []
    for i in range(cfg["num_hidden_layers"]):
        w = {n: load(index, f"model.layers.{i}.{n}") for n in NAMES}
        stats = [Stats(cfg["num_attention_heads"] * cfg["head_dim"]), Stats(cfg["intermediate_size"])]
        hidden = [layer(w, x, cos, sin, mask, cfg, stats) for x in hidden]
        all_stats.append(stats)
        del w
    return sum(float(s.fluc.sum() + s.sq.sum()) for st in all_stats for s in st)


def gemm_rate(cfg, tokens, n=3):
    h, d = cfg["hidden_size"], cfg["head_dim"]
    q, kv, inter = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d, cfg["intermediate_size"]
    shapes = [(q, h), (kv, h), (kv, h), (h, q), (inter, h), (inter, h), (h, inter)]
    pairs = [(torch.randn(1, tokens, i), torch.randn(o, i)) for o, i in shapes]
    flops = sum(2.0 * tokens * o * i for o, i in shapes)
    best = float("inf")
    for r in range(n + 1):
        t0 = time.perf_counter()
        for x, w in pairs:
            F.linear(x, w)
        if r > 0:
            best = min(best, time.perf_counter() - t0)
    return flops / best


def flops_per_token(cfg, t):
    h, d = cfg["hidden_size"], cfg["head_dim"]
    q, kv, inter = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d, cfg["intermediate_size"]
    lin = h * q + 2 * h * kv + q * h + 3 * h * inter
    return cfg["num_hidden_layers"] * (2.0 * lin + 2.0 * 2 * t * cfg["num_attention_heads"] * d)


def main():
    model, threads, samples, seq_len, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    chunk_tokens = int(sys.argv[6]) if len(sys.argv) > 6 else 512
    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model, "config.json")))
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    index = tensors(model)
    chunk = max(1, min(samples, chunk_tokens // seq_len))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (samples, seq_len), generator=g)
    with torch.inference_mode():
        gemm = gemm_rate(cfg, chunk * seq_len)
        calibrate(index, cfg, ids[:chunk], chunk)  # warm-up
        secs, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            checksum = calibrate(index, cfg, ids, chunk)
            secs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    best, best_cpu = min(secs), min(cpu)
    tokens = samples * seq_len
    achieved = flops_per_token(cfg, seq_len) * tokens / best
    print(f"pytorch {torch.__version__} threads {torch.get_num_threads()}, {samples} x {seq_len} tokens, chunk {chunk} windows; "
          f"runs (s): {[round(s, 3) for s in secs]}; process CPU (s): {[round(s, 3) for s in cpu]}; checksum {checksum:.6e}")
    print(f"| pytorch | {threads} | {tokens / best:.1f} | {achieved / 1e9:.1f} | {gemm / 1e9:.1f} | {achieved / gemm:.2f} | "
          f"{tokens / best_cpu:.1f} | {flops_per_token(cfg, seq_len) * tokens / best_cpu / 1e9:.1f} |")


if __name__ == "__main__":
    main()
