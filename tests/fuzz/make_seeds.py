#!/usr/bin/env python3
"""Writes the small regression seeds in tests/fuzz/corpus-*: complete tiny models (weights, a tokenizer, a chat
template), so the fuzzers start past the header. Deterministic; run from the repository root."""
import os
import random
import struct

U32, F32, BOOL, STR, ARR = 4, 6, 7, 8, 9


def s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<Q", len(b)) + b


def kv(key, t, payload):
    return s(key) + struct.pack("<I", t) + payload


def kv_u32(k, v): return kv(k, U32, struct.pack("<I", v))
def kv_f32(k, v): return kv(k, F32, struct.pack("<f", v))
def kv_bool(k, v): return kv(k, BOOL, bytes([v]))
def kv_str(k, v): return kv(k, STR, s(v))
def kv_strs(k, vs): return kv(k, ARR, struct.pack("<IQ", STR, len(vs)) + b"".join(s(v) for v in vs))
def kv_i32s(k, vs): return kv(k, ARR, struct.pack("<IQ", 5, len(vs)) + b"".join(struct.pack("<i", v) for v in vs))
def kv_f32s(k, vs): return kv(k, ARR, struct.pack("<IQ", 6, len(vs)) + b"".join(struct.pack("<f", v) for v in vs))


LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                   "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
                   "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                   "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
                   "<|end_header_id|>\\n\\n' }}{% endif %}")


def vocab_kvs(kind):
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [" ", "\u2581"]
    special = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
    if kind == "spm":
        toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + letters + ["\u2581a", "ab"] + special
        types = [2, 3, 3] + [6] * 256 + [1] * (len(letters) + 2) + [3] * len(special)
        return [kv_str("tokenizer.ggml.model", "llama"), kv_strs("tokenizer.ggml.tokens", toks),
                kv_i32s("tokenizer.ggml.token_type", types),
                kv_f32s("tokenizer.ggml.scores", [-float(i) for i in range(len(toks))]),
                kv_str("tokenizer.chat_template", LLAMA3_TEMPLATE)], len(toks)
    byte_chars = [chr(c) for c in range(0x21, 0x7F)] + ["\u0120", "\u010A"]
    toks = byte_chars + ["he", "ll", "\u0120w", "hell"] + special
    types = [1] * (len(byte_chars) + 4) + [3] * len(special)
    merges = ["h e", "l l", "\u0120 w", "he ll"]
    return [kv_str("tokenizer.ggml.model", "gpt2"), kv_str("tokenizer.ggml.pre", "llama-bpe"),
            kv_strs("tokenizer.ggml.tokens", toks), kv_i32s("tokenizer.ggml.token_type", types),
            kv_strs("tokenizer.ggml.merges", merges), kv_u32("tokenizer.ggml.bos_token_id", len(toks) - 4),
            kv_str("tokenizer.chat_template", LLAMA3_TEMPLATE)], len(toks)


def model(kind, E=16, FF=32, align=None, pad=0, qtype=0, n_tensors=11):
    rng = random.Random(kind + str(align))
    kvs, nv = vocab_kvs(kind)
    kvs = [kv_str("general.architecture", "llama"), kv_u32("llama.embedding_length", E), kv_u32("llama.block_count", 1),
           kv_u32("llama.feed_forward_length", FF), kv_u32("llama.attention.head_count", 2),
           kv_u32("llama.context_length", 32), kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)] + kvs
    if align:
        kvs.append(kv_u32("general.alignment", align))
    if pad:
        kvs.append(kv_str("x.padding", "p" * pad))
    A = align or 32
    tensors = [("token_embd.weight", E, nv), ("output_norm.weight", E, 1), ("blk.0.attn_norm.weight", E, 1),
               ("blk.0.attn_q.weight", E, E), ("blk.0.attn_k.weight", E, E), ("blk.0.attn_v.weight", E, E),
               ("blk.0.attn_output.weight", E, E), ("blk.0.ffn_norm.weight", E, 1), ("blk.0.ffn_gate.weight", E, FF),
               ("blk.0.ffn_up.weight", E, FF), ("blk.0.ffn_down.weight", FF, E)][:n_tensors]
    info, blobs, off = b"", [], 0
    for name, ne0, ne1 in tensors:
        q8 = qtype == 8 and ne1 > 1 and name != "token_embd.weight"
        dims = struct.pack("<IQ", 1, ne0) if ne1 == 1 else struct.pack("<IQQ", 2, ne0, ne1)
        info += s(name) + dims + struct.pack("<IQ", 8 if q8 else 0, off)
        if q8:
            blob = b"".join(struct.pack("<e", 0.05) + bytes(rng.randrange(256) for _ in range(32)) for _ in range(ne0 * ne1 // 32))
        else:
            blob = b"".join(struct.pack("<f", 1.0 if ne1 == 1 else rng.uniform(-0.5, 0.5)) for _ in range(ne0 * ne1))
        if len(blobs) + 1 < len(tensors):
            blob += b"\0" * ((-len(blob)) % A)
        blobs.append(blob)
        off += len(blob)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + info
    head += b"\0" * ((-len(head)) % A)
    return head + b"".join(blobs)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    d = "tests/fuzz"
    write(f"{d}/corpus-gguf/tiny-spm-f32", model("spm"))
    write(f"{d}/corpus-gguf/tiny-bpe-q8", model("bpe", E=32, FF=32, qtype=8))
    # the loader target reads 8 bytes of chunk seed first; a header over 64 KiB with 256 KiB alignment (one tensor:
    # the file stays small, and the loader's part is all there)
    write(f"{d}/corpus-loader/big-header-align-256k",
          struct.pack("<Q", 12345) + model("bpe", align=1 << 18, pad=70000, n_tensors=1))
    write(f"{d}/corpus-loader/tiny-spm", struct.pack("<Q", 99) + model("spm"))
    write(f"{d}/corpus-jinja/llama3", LLAMA3_TEMPLATE.encode() + b"\0Sys prompt\0  hello  \0reply")
    write(f"{d}/corpus-jinja/chatml", b"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          b"message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>"
          b"assistant\\n' }}{% endif %}\0hi\0there")
    write(f"{d}/corpus-jinja/limits", b"{% set x = 'ab' %}{% for m in messages %}{% if not (m.role == 'user') and "
          b"loop.last %}{{ x + x | upper }}{{ 1 + 2 }}{% elif m.content is defined %}{{ m.content | length }}"
          b"{% else %}{# c #}{% endif %}{% endfor %}\0a\0b\0c")
    write(f"{d}/corpus-chat/turns", b"You are terse.\0Hi <|eot_id|> there\0Hello!\0<|im_start|>user\0")
