#!/usr/bin/env python3
"""What a user would run instead of ternlm on a GPU: BitNet b1.58 2B4T's linear layers as bf16 matmuls in PyTorch.

Times one generated token (every linear of 30 layers plus the 128256 x 2560 head, batch 1) and a 512-token prompt
(the same as matrix products), and measures the GPU's memory bandwidth with a large copy, so the roofline for
ternlm's 1.18 GB per token can be computed. Prints one JSON object.
"""
import json
import time

import torch

E, FF, KV, L, V = 2560, 6912, 640, 30, 128256
dev = "cuda"
shapes = [(E, E), (KV, E), (KV, E), (E, E), (FF, E), (FF, E), (E, FF)]


def timed(fn, reps):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def main():
    torch.manual_seed(0)
    ws = [torch.randn(o, i, device=dev, dtype=torch.bfloat16) for o, i in shapes]
    head = torch.randn(V, E, device=dev, dtype=torch.bfloat16)

    def token(x):
        for _ in range(L):
            for w in ws:
                w @ x[: w.shape[1]]
        head @ x[:E]

    x1 = torch.randn(FF, 1, device=dev, dtype=torch.bfloat16)
    xp = torch.randn(FF, 512, device=dev, dtype=torch.bfloat16)
    t_tok = timed(lambda: token(x1), 20)
    # the same token loop captured in a CUDA graph (no launch gaps), for a fair comparison with ternlm's graph
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        token(x1)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        token(x1)
    t_graph = timed(g.replay, 50)
    t_prompt = timed(lambda: token(xp), 10)
    big = torch.empty(1 << 30, dtype=torch.float32, device=dev)
    dst = torch.empty_like(big)
    t_copy = timed(lambda: dst.copy_(big), 10)
    bw = 2 * big.numel() * 4 / t_copy  # read + write
    bytes_bf16 = 2 * (L * sum(o * i for o, i in shapes) + V * E)
    print(json.dumps({
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "bf16_generate_tps_eager": round(1 / t_tok, 1), "bf16_generate_tps_graph": round(1 / t_graph, 1),
        "bf16_prompt512_tps": round(512 / t_prompt, 1), "bandwidth_gbs": round(bw / 1e9, 1),
        "bf16_bytes_per_token": bytes_bf16, "ternlm_bytes_per_token": 1179449920,
        "ternlm_roofline_tps": round(bw / 1179449920, 1), "bf16_roofline_tps": round(bw / bytes_bf16, 1)}))


if __name__ == "__main__":
    main()
