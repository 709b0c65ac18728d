#!/usr/bin/env python3
"""Data-parallel arithmetic for docs/scaling.md: gradient bytes all-reduced per optimizer step,
ring all-reduce time at nominal link bandwidths, and the scaling efficiency that follows.
Nothing here is measured; every input is a number printed below. Run: python3 tools/bench/scaling_paper.py"""

def bert_base(labels=2):
    v, h, L, ffn, pos, types = 30522, 768, 12, 3072, 512, 2
    emb = (v + pos + types) * h + 2 * h                       # word/position/type tables + LayerNorm
    layer = 4 * (h * h + h) + 2 * h + (h * ffn + ffn) + (ffn * h + h) + 2 * h   # q,k,v,o; LN; MLP; LN
    pooler = h * h + h
    head = h * labels + labels
    lora = L * 2 * (h * 8 + 8 * h)                            # r = 8 on query and value
    return emb + L * layer + pooler + head, lora + head

def llama_1b(labels=2):
    # Llama-3.2-1B: hidden 2048, 16 layers, MLP 8192, 32 query heads and 8 key/value heads of 64, vocab 128256, tied embeddings.
    v, h, L, ffn, kv = 128256, 2048, 16, 8192, 512
    layer = h * h + 2 * h * kv + h * h + 3 * h * ffn + 2 * h  # q, k, v, o; gate, up, down; two RMSNorms
    head = h * labels                                         # score, no bias
    lora = L * ((h * 8 + 8 * h) + (h * 8 + 8 * kv))           # r = 8 on q_proj and v_proj
    return v * h + L * layer + h + head, lora + head

# Where the ranks are: (ranks, nominal per-direction bandwidth one rank drives into the all-reduce, GB/s).
# Across nodes the inter-node link is the ring's slowest hop, so it sets the time.
SETUPS = {
    "1 node, 8 GPUs, NVLink 4 (H100 SXM)": (8, 450.0),
    "1 node, 8 GPUs, NVLink 3 (A100 SXM)": (8, 300.0),
    "2 nodes x 8 GPUs, InfiniBand NDR 400 Gb/s per GPU": (16, 50.0),
    "8 nodes x 8 GPUs, InfiniBand NDR 400 Gb/s per GPU": (64, 50.0),
    "8 nodes x 8 GPUs, InfiniBand HDR 200 Gb/s per GPU": (64, 25.0),
    "4 CPU nodes, 1 rank each, 100 Gb Ethernet": (4, 12.5),
}

def ring_seconds(bytes_, ranks, gbps, hop_latency=5e-6):
    """Ring all-reduce: reduce-scatter then all-gather; each rank sends and receives
    2(N-1)/N of the buffer, in 2(N-1) hops of latency alpha."""
    return 2 * (ranks - 1) / ranks * bytes_ / (gbps * 1e9) + 2 * (ranks - 1) * hop_latency

def main():
    models = {"bert-base": bert_base(), "Llama-3.2-1B": llama_1b()}
    print("| model | method | trained parameters | gradient bytes per step (float32) |")
    print("|---|---|---:|---:|")
    sizes = {}
    for name, (full, lora) in models.items():
        for method, n in (("full", full), ("LoRA r=8", lora)):
            sizes[(name, method)] = 4 * n
            print(f"| {name} | {method} | {n:,} | {4 * n / 1e6:,.1f} MB |")
    print()
    print("All-reduce time per step, T = 2(N-1)/N * S / B + 2(N-1) * 5 us (ms):\n")
    print("| setup | N | B (GB/s) | " + " | ".join(f"{m} {k}" for m, k in sizes) + " |")
    print("|---|---:|---:|" + "---:|" * len(sizes))
    for setup, (ranks, bw) in SETUPS.items():
        print(f"| {setup} | {ranks} | {bw:g} | " + " | ".join(f"{1e3 * ring_seconds(b, ranks, bw):.2f}" for b in sizes.values()) + " |")
    print()
    # Efficiency: compute time per step on one GPU from 6·P·tokens FLOPs at an assumed achieved rate.
    achieved = 400e12   # bf16 FLOP/s actually achieved (about 40% of an H100 SXM's dense peak); an assumption
    cases = [("bert-base", "full", 32 * 128), ("bert-base", "LoRA r=8", 32 * 128), ("Llama-3.2-1B", "full", 8 * 1024), ("Llama-3.2-1B", "LoRA r=8", 8 * 1024)]
    print("Efficiency on paper, E = Tc / (Tc + Tar) without overlap, Tc / max(Tc, Tar) with full overlap:\n")
    print("| model | method | tokens per GPU per step | Tc (ms) | setup | Tar (ms) | E, all-reduce after backward | E, fully overlapped |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for name, method, tokens in cases:
        full, _ = models[name]
        # Forward + backward FLOPs: 6·P·tokens for full fine-tuning; LoRA skips the weight gradients
        # of the frozen matrices, about 4·P·tokens.
        flops = (6 if method == "full" else 4) * full * tokens
        tc = flops / achieved
        for setup in ("1 node, 8 GPUs, NVLink 4 (H100 SXM)", "8 nodes x 8 GPUs, InfiniBand NDR 400 Gb/s per GPU"):
            ranks, bw = SETUPS[setup]
            tar = ring_seconds(sizes[(name, method)], ranks, bw)
            print(f"| {name} | {method} | {tokens:,} | {1e3 * tc:.1f} | {setup} | {1e3 * tar:.2f} | {tc / (tc + tar):.1%} | {tc / max(tc, tar):.1%} |")

if __name__ == "__main__":
    main()
