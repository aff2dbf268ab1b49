"""L2C top-k inference: grouped (one mixed-adapter batch) against the naive loop (one pass per sample per expert).

    python tools/bench/l2c_inference.py [--samples 64] [--experts 5] [--repeats 3] [--json out.json]

A ViT of the tiny preset's shape (or --width/--depth) carries a selector and `--experts` LoRA experts with random
(non-zero) weights, so every expert really differs. For k = 1..experts both paths predict the same samples; the
table gives samples per second of each (best of --repeats), their ratio, the number of backbone forward calls,
and the largest difference between the probability outputs (they must agree). A third column runs the other
obvious batching, one pass per selected expert over the samples that chose it. Both paths run the same
N x k backbone sample-passes; grouping saves the per-call overhead and batches the work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import timm
import torch

from l2c.aggregate import SELECTOR, TopKPredictor, expert_name
from l2c.config import LoraSettings
from l2c.pool import AdapterPool


def build(experts: int, width: int, depth: int, image: int) -> TopKPredictor:
    torch.manual_seed(0)
    backbone = timm.create_model(
        "vit_tiny_patch16_224", img_size=image, patch_size=4, in_chans=1, embed_dim=width, depth=depth,
        num_heads=4, mlp_ratio=2.0, num_classes=0,
    )  # fmt: skip
    pool = AdapterPool(backbone)
    for name in (SELECTOR, *(expert_name(t) for t in range(experts))):
        pool.add(name, LoraSettings(rank=4, alpha=4.0))
        with torch.no_grad():
            for param in pool.adapter_parameters(name):
                param.normal_(0, 0.2)
    classes = 2 * experts
    heads = torch.nn.Linear(width, classes), torch.nn.Linear(width, classes)
    return TopKPredictor(pool, heads[0], heads[1], tuple(range(0, classes + 1, 2)), experts)


def per_expert_loop(predictor: TopKPredictor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The other obvious batching: for each expert, one pass over the samples that selected it."""
    g = predictor.task_weights(x)
    top = g.topk(k, dim=1)
    probs = torch.zeros(len(x), k, predictor.seen)
    with torch.no_grad():
        for expert in top.indices.unique().tolist():
            rows, slots = (top.indices == expert).nonzero(as_tuple=True)
            features = predictor.pool.features(x[rows], expert_name(expert))
            probs[rows, slots] = predictor.expert_head(features)[:, : predictor.seen].softmax(1)
    return (top.values.unsqueeze(2) * probs).sum(1)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--experts", type=int, default=5)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--image", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = build(args.experts, args.width, args.depth, args.image)
    x = torch.randn(args.samples, 1, args.image, args.image, generator=torch.Generator().manual_seed(1))
    rows = []
    for k in range(1, args.experts + 1):
        grouped = predictor.predict_proba(x, k, grouped=True)
        naive = predictor.predict_proba(x, k, grouped=False)
        per_expert = per_expert_loop(predictor, x, k)
        diff = float(max((grouped - naive).abs().max(), (per_expert - naive).abs().max()))
        t_grouped = best_time(lambda k=k: predictor.predict_proba(x, k, grouped=True), args.repeats)
        t_naive = best_time(lambda k=k: predictor.predict_proba(x, k, grouped=False), args.repeats)
        t_expert = best_time(lambda k=k: per_expert_loop(predictor, x, k), args.repeats)
        rows.append(
            {
                "k": k,
                "grouped_samples_per_s": args.samples / t_grouped,
                "naive_samples_per_s": args.samples / t_naive,
                "per_expert_samples_per_s": args.samples / t_expert,
                "speedup": t_naive / t_grouped,
                "grouped_forward_calls": 2,  # selector + one mixed-adapter batch
                "naive_forward_calls": 1 + args.samples * k,
                "per_expert_forward_calls": 1
                + int(torch.unique(predictor.task_weights(x).topk(k, 1).indices).numel()),
                "max_abs_diff": diff,
                "same_predictions": bool(torch.equal(grouped.argmax(1), naive.argmax(1))),
            }
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s), load {load:.1f}, torch "
        f"{torch.__version__}; ViT width {args.width} depth {args.depth}, {args.image}x{args.image}, "
        f"{args.samples} samples, {args.experts} experts"
    )
    print(
        "| k | grouped samples/s | naive samples/s | per-expert loop samples/s | grouped / naive | "
        "forward calls (grouped / naive / per-expert) | max |diff| | same predictions |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['k']} | {r['grouped_samples_per_s']:.0f} | {r['naive_samples_per_s']:.0f} | "
            f"{r['per_expert_samples_per_s']:.0f} | {r['speedup']:.1f}x | {r['grouped_forward_calls']} / "
            f"{r['naive_forward_calls']} / {r['per_expert_forward_calls']} | {r['max_abs_diff']:.1e} | "
            f"{r['same_predictions']} |"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"load": load, "threads": args.threads, "args": vars(args), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
