#!/usr/bin/env python3
"""Quantization-aware training of a tiny BitNet b1.58 model with the 2B4T architecture, exported as a GGUF that
ternlm runs (arch bitnet-b1.58, I2_S linears, tied F16 embedding).

    python3 tools/train/train.py --ternlm build/ternlm --out models/ternlm-tinystories.gguf [--minutes 7]

Steps: (1) train a byte-level BPE vocabulary on the corpus and write it as a vocab-only GGUF; (2) tokenize the
corpus with `ternlm tokenize` itself, so training and inference split text identically; (3) train with absmean
ternary weights and per-token int8 activations (straight-through estimators), RMSNorm, attention and FFN sub-norms,
ReLU², NEOX RoPE, GQA and tied embeddings; (4) export and check that `ternlm logits` matches the PyTorch model
within the fixture tolerance rule (abs 0.75, mean 0.2, top-1 where the margin > 1).
"""
import argparse
import collections
import json
import math
import os
import re
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPORA = os.path.join(ROOT, "..", "shared", "corpora")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
NAMES = ("lily tim tom sue sam ben max mia anna lucy jack jill bob joe kate amy emma zoe sara sarah jane mark "
         "mike molly timmy billy tommy bella daisy lisa john rosie spot fluffy mittens buddy").split()


# ---------------------------------------------------------------- corpus

def clean(text):
    for bad, good in (("â€™", "'"), ("â€œ", '"'), ("â€\x9d", '"'), ("â€˜", "'"), ("â€”", " - "), ("â€“", " - "),
                      ("â€¦", "..."), ("“", '"'), ("”", '"'), ("’", "'"), ("‘", "'")):
        text = text.replace(bad, good)
    return "".join(c for c in text if ord(c) < 128)


def recase(text):
    """Restore capitals in the lowercased corpus: sentence starts, 'I', and common TinyStories names."""
    text = re.sub(r"\bi\b", "I", text)
    text = re.sub(r"\b(" + "|".join(NAMES) + r")\b", lambda m: m.group(1).capitalize(), text)
    return re.sub(r'(^|[.!?]\s+|\n|"\s*)([a-z])', lambda m: m.group(1) + m.group(2).upper(), text)


def load_corpus(corpora=CORPORA):
    low = recase(clean(open(os.path.join(corpora, "tinystories-train-head-lowercased.txt"), encoding="utf-8").read()))
    cased = clean(open(os.path.join(corpora, "tinystories-sample-cased.txt"), encoding="utf-8").read())
    return cased * 3 + low


# ---------------------------------------------------------------- byte-level BPE

def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


GPT2_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


def train_bpe(text, vocab_size):
    b2u = bytes_to_unicode()
    counts = collections.Counter(GPT2_SPLIT.findall(text))
    words = [[b2u[b] for b in w.encode()] for w in counts]
    freq = list(counts.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, w in enumerate(words):
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += freq[i]
            where[(a, b)].add(i)
    vocab = [b2u[b] for b in range(256)]
    merges = []
    while len(vocab) + len(SPECIALS) < vocab_size and pairs:
        (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if c < 2:
            break
        merges.append(a + " " + b)
        vocab.append(a + b)
        for i in list(where[(a, b)]):
            w = words[i]
            for x, y in zip(w, w[1:]):
                pairs[(x, y)] -= freq[i]
                if pairs[(x, y)] <= 0:
                    del pairs[(x, y)]
                where[(x, y)].discard(i)
            j, out = 0, []
            while j < len(w):
                if j + 1 < len(w) and w[j] == a and w[j + 1] == b:
                    out.append(a + b)
                    j += 2
                else:
                    out.append(w[j])
                    j += 1
            words[i] = out
            for x, y in zip(out, out[1:]):
                pairs[(x, y)] += freq[i]
                where[(x, y)].add(i)
    return vocab + SPECIALS, merges


# ---------------------------------------------------------------- GGUF writing

class GGUFWriter:
    def __init__(self):
        self.kv, self.tensors = [], []

    def add(self, key, vtype, value):
        self.kv.append((key, vtype, value))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _value(self, vtype, v):
        if vtype == "u32":
            return struct.pack("<I", 4) + struct.pack("<I", v)
        if vtype == "f32":
            return struct.pack("<I", 6) + struct.pack("<f", v)
        if vtype == "bool":
            return struct.pack("<I", 7) + struct.pack("<B", int(v))
        if vtype == "str":
            return struct.pack("<I", 8) + self._str(v)
        if vtype == "arr_str":
            return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(self._str(s) for s in v)
        if vtype == "arr_f32":
            return struct.pack("<IIQ", 9, 6, len(v)) + np.asarray(v, "<f4").tobytes()
        if vtype == "arr_i32":
            return struct.pack("<IIQ", 9, 5, len(v)) + np.asarray(v, "<i4").tobytes()
        raise ValueError(vtype)

    def add_tensor(self, name, ggml_type, shape, data):
        self.tensors.append((name, ggml_type, shape, data))

    def write(self, path):
        head = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        for k, t, v in self.kv:
            head += self._str(k) + self._value(t, v)
        off, blobs = 0, []
        for name, ggml_type, shape, data in self.tensors:
            head += self._str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
            head += struct.pack("<IQ", ggml_type, off)
            blobs.append(data + b"\0" * ((-len(data)) % 32))
            off += len(blobs[-1])
        head += b"\0" * ((-len(head)) % 32 if self.tensors else 0)
        with open(path, "wb") as f:
            f.write(head)
            for b in blobs:
                f.write(b)


def add_tokenizer(w, vocab, merges):
    n = len(vocab)
    types = [1] * (n - len(SPECIALS)) + [3] * len(SPECIALS)
    w.add("tokenizer.ggml.model", "str", "gpt2")
    w.add("tokenizer.ggml.pre", "str", "gpt-2")
    w.add("tokenizer.ggml.tokens", "arr_str", vocab)
    w.add("tokenizer.ggml.scores", "arr_f32", [0.0] * n)
    w.add("tokenizer.ggml.token_type", "arr_i32", types)
    w.add("tokenizer.ggml.merges", "arr_str", merges)
    w.add("tokenizer.ggml.bos_token_id", "u32", n - 3)
    w.add("tokenizer.ggml.eos_token_id", "u32", n - 2)
    w.add("tokenizer.ggml.padding_token_id", "u32", n - 2)
    w.add("tokenizer.ggml.add_bos_token", "bool", True)


# ---------------------------------------------------------------- the model (2B4T architecture)

def act_quant(x):
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


def weight_quant(w):
    s = w.abs().mean().clamp(min=1e-5)
    return (w / s).round().clamp(-1, 1) * s, s


class BitLinear(nn.Linear):
    def forward(self, x):
        wq, _ = weight_quant(self.weight.float())
        w = self.weight + (wq - self.weight).detach()
        xf = x.float()
        xq = xf + (act_quant(xf) - xf).detach()
        return F.linear(xq, w.float())


class RMSNorm(nn.Module):
    def __init__(self, n, eps=1e-5):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, pos, base):
    d = x.shape[-1]
    inv = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    ang = pos[:, None].float() * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attention(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]  # PyTorch < 2.0
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool, device=q.device), 1), float("-inf"))
    return torch.softmax(s.float(), -1).to(v.dtype) @ v


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        e, hd = c["n_embd"], c["n_embd"] // c["n_head"]
        self.c, self.hd = c, hd
        self.attn_norm, self.ffn_norm = RMSNorm(e), RMSNorm(e)
        self.attn_sub_norm, self.ffn_sub_norm = RMSNorm(e), RMSNorm(c["n_ff"])
        self.q, self.o = BitLinear(e, e, bias=False), BitLinear(e, e, bias=False)
        self.k = BitLinear(e, hd * c["n_head_kv"], bias=False)
        self.v = BitLinear(e, hd * c["n_head_kv"], bias=False)
        self.gate, self.up = BitLinear(e, c["n_ff"], bias=False), BitLinear(e, c["n_ff"], bias=False)
        self.down = BitLinear(c["n_ff"], e, bias=False)

    def forward(self, x, pos):
        B, T, E = x.shape
        c, hd = self.c, self.hd
        h = self.attn_norm(x)
        q = self.q(h).view(B, T, c["n_head"], hd).transpose(1, 2)
        k = self.k(h).view(B, T, c["n_head_kv"], hd).transpose(1, 2)
        v = self.v(h).view(B, T, c["n_head_kv"], hd).transpose(1, 2)
        q, k = rope(q, pos, c["rope_base"]), rope(k, pos, c["rope_base"])
        g = c["n_head"] // c["n_head_kv"]
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        a = attention(q, k, v).transpose(1, 2).reshape(B, T, E)
        x = x + self.o(self.attn_sub_norm(a))
        f = self.ffn_norm(x)
        m = F.relu(self.gate(f)).pow(2) * self.up(f)
        return x + self.down(self.ffn_sub_norm(m))


class TinyBitNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embd = nn.Embedding(c["n_vocab"], c["n_embd"])
        nn.init.normal_(self.embd.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["n_layer"]))
        self.norm = RMSNorm(c["n_embd"])

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.embd(idx).float()
        for b in self.blocks:
            x = b(x, pos)
        return F.linear(self.norm(x), self.embd.weight.float())  # tied head, not activation-quantized


# ---------------------------------------------------------------- export

def pack_i2s(w):
    """Ternary tensor [out, in] -> I2_S bytes: 2-bit codes (0,1,2 = -1,0,+1) in 128-element blocks, then the scale."""
    wq, s = weight_quant(w.float())
    codes = (wq / s).round().clamp(-1, 1).to(torch.int64).add(1).cpu().numpy().astype(np.uint8).reshape(-1)
    blocks = codes.reshape(-1, 4, 32)  # element j of a block: byte j % 32, shift 6 - 2 * (j // 32)
    packed = (blocks[:, 0] << 6) | (blocks[:, 1] << 4) | (blocks[:, 2] << 2) | blocks[:, 3]
    return packed.astype(np.uint8).tobytes() + struct.pack("<f", float(s)) + b"\0" * 28


def export(model, vocab, merges, path):
    c = model.c
    w = GGUFWriter()
    a = "bitnet-b1.58"
    w.add("general.architecture", "str", a)
    w.add("general.name", "str", "ternlm-tinystories")
    w.add(a + ".vocab_size", "u32", c["n_vocab"])
    w.add(a + ".context_length", "u32", c["ctx"])
    w.add(a + ".embedding_length", "u32", c["n_embd"])
    w.add(a + ".block_count", "u32", c["n_layer"])
    w.add(a + ".feed_forward_length", "u32", c["n_ff"])
    w.add(a + ".rope.dimension_count", "u32", c["n_embd"] // c["n_head"])
    w.add(a + ".attention.head_count", "u32", c["n_head"])
    w.add(a + ".attention.head_count_kv", "u32", c["n_head_kv"])
    w.add(a + ".attention.layer_norm_rms_epsilon", "f32", 1e-5)
    w.add(a + ".rope.freq_base", "f32", float(c["rope_base"]))
    w.add("general.file_type", "u32", 40)
    add_tokenizer(w, vocab, merges)
    w.add("general.quantization_version", "u32", 2)
    f32 = lambda t: t.detach().float().cpu().numpy().astype("<f4").tobytes()
    e = c["n_embd"]
    w.add_tensor("token_embd.weight", 1, [e, c["n_vocab"]], model.embd.weight.detach().cpu().half().numpy().tobytes())
    w.add_tensor("output_norm.weight", 0, [e], f32(model.norm.weight))
    for i, b in enumerate(model.blocks):
        p = "blk.%d." % i
        w.add_tensor(p + "attn_norm.weight", 0, [e], f32(b.attn_norm.weight))
        for name, lin in (("attn_q", b.q), ("attn_k", b.k), ("attn_v", b.v), ("attn_output", b.o),
                          ("ffn_gate", b.gate), ("ffn_up", b.up), ("ffn_down", b.down)):
            w.add_tensor(p + name + ".weight", 36, [lin.in_features, lin.out_features], pack_i2s(lin.weight))
        w.add_tensor(p + "attn_sub_norm.weight", 0, [e], f32(b.attn_sub_norm.weight))
        w.add_tensor(p + "ffn_norm.weight", 0, [e], f32(b.ffn_norm.weight))
        w.add_tensor(p + "ffn_sub_norm.weight", 0, [c["n_ff"]], f32(b.ffn_sub_norm.weight))
    w.write(path)


def check_against_ternlm(model, ternlm, path, ids):
    """ternlm's logits on the exported file vs the PyTorch model, with the fixtures' tolerance rule."""
    model.eval()
    with torch.no_grad():
        ref = model(torch.tensor([ids], device=next(model.parameters()).device))[0].float().cpu().numpy()
    out = path + ".check.f32"
    subprocess.run([ternlm, "logits", "-m", path, "--tokens", ",".join(map(str, ids)), "--out", out], check=True)
    got = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
    os.remove(out)
    diff = np.abs(got - ref)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin_ok = (top2[:, 1] - top2[:, 0]) > 1.0
    top1_ok = bool(np.all((got.argmax(1) == ref.argmax(1)) | ~margin_ok))
    res = {"max_abs": float(diff.max()), "max_mean_abs": float(diff.mean(1).max()), "top1_equal_where_margin_gt_1": top1_ok}
    res["pass"] = res["max_abs"] <= 0.75 and res["max_mean_abs"] <= 0.2 and top1_ok
    return res


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ternlm", default=os.path.join(ROOT, "build", "ternlm"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "ternlm-tinystories.gguf"))
    ap.add_argument("--workdir", default="/tmp/ternlm-train")
    ap.add_argument("--corpora", default=CORPORA, help="folder with the TinyStories files (default ../shared/corpora)")
    ap.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--n-layer", type=int, default=8)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--n-head-kv", type=int, default=2)
    ap.add_argument("--n-ff", type=int, default=1536)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time budget only)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    os.makedirs(args.workdir, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    t0 = time.time()

    text = load_corpus(args.corpora)
    vocab, merges = train_bpe(text, args.vocab)
    print(f"bpe: {len(vocab)} tokens, {len(merges)} merges ({time.time() - t0:.1f}s)", flush=True)
    vocab_path = os.path.join(args.workdir, "vocab.gguf")
    vw = GGUFWriter()
    vw.add("general.architecture", "str", "bitnet-b1.58")
    add_tokenizer(vw, vocab, merges)
    vw.write(vocab_path)
    res = subprocess.run([args.ternlm, "tokenize", "-m", vocab_path, "--ids", "--no-special", "-"],
                         input=text.encode(), capture_output=True, check=True)
    ids = np.array(res.stdout.split(), dtype=np.int64)
    print(f"corpus: {len(text)} chars -> {len(ids)} tokens ({time.time() - t0:.1f}s)", flush=True)
    split = int(len(ids) * 0.97)
    train_ids, val_ids = torch.tensor(ids[:split]), torch.tensor(ids[split:])

    c = {"n_vocab": len(vocab), "n_embd": args.n_embd, "n_layer": args.n_layer, "n_head": args.n_head,
         "n_head_kv": args.n_head_kv, "n_ff": args.n_ff, "ctx": 2048, "rope_base": 10000.0}
    model = TinyBitNet(c).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.1f}M parameters on {dev}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)

    def batch(src):
        ix = torch.randint(len(src) - args.seq - 1, (args.batch,), generator=gen)
        x = torch.stack([src[i:i + args.seq] for i in ix]).to(dev)
        y = torch.stack([src[i + 1:i + 1 + args.seq] for i in ix]).to(dev)
        return x, y

    budget = args.minutes * 60
    start, step, log = time.time(), 0, []
    best = (float("inf"), None)
    while True:
        frac = (time.time() - start) / budget
        if frac >= 1 or (args.max_steps and step >= args.max_steps):
            break
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for g in opt.param_groups:
            g["lr"] = lr
        model.train()
        x, y = batch(train_ids)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1:
            model.eval()
            with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                vx, vy = batch(val_ids)
                vl = F.cross_entropy(model(vx).float().view(-1, len(vocab)), vy.view(-1)).item()
            log.append({"step": step, "seconds": round(time.time() - start, 1), "lr": lr, "train_loss": loss.item(), "val_loss": vl})
            print(json.dumps(log[-1]), flush=True)
            if vl < best[0]:
                best = (vl, {k: v.detach().clone() for k, v in model.state_dict().items()})
    if best[1] is not None:
        model.load_state_dict(best[1])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export(model, vocab, merges, args.out)
    check_ids = [len(vocab) - 3] + [int(t) for t in val_ids[:47]]
    check = check_against_ternlm(model.float(), args.ternlm, args.out, check_ids)
    summary = {"steps": step, "best_val_loss": best[0], "params": n_params, "config": c, "check_vs_ternlm": check,
               "file_bytes": os.path.getsize(args.out), "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
               "torch": torch.__version__, "minutes": args.minutes, "seed": args.seed}
    json.dump({"summary": summary, "log": log}, open(args.out + ".train.json", "w"), indent=1)
    print(json.dumps(summary), flush=True)
    return 0 if check["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
