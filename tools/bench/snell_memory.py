"""Peak training memory and step time: SNELL-r vs peft LoRA-r vs full fine-tuning vs full-matrix sparse tuning.

Each method trains a few steps of the same ViT-B/16-sized timm model (random init, no download) in its own
subprocess, and every tuned method targets the same linears: the ones SNELL wraps (`snell.find_targets`: each
block's qkv, proj, fc1, fc2), given to peft and to sparse-full by their full names (no adapter on
`patch_embed.proj`). Peak memory is reported three ways, from the high-water RSS of that process (ru_maxrss):
the training delta without the frozen weights (minus the RSS after the model and optimizer were built, i.e.
minus the weights every method holds), the delta with them (minus the RSS before the model was built), and the
whole-process peak (interpreter and torch included). Workers run with a fixed glibc mmap threshold
(128 KiB) so that freed buffers leave the RSS (otherwise glibc's adaptive threshold keeps them cached and the
high-water mark measures the allocator, not the method). Goals: SNELL peak <= 1.1x LoRA's and <= 0.6x
full fine-tuning's. On a shared CPU the step times are noisy (`--threads 1` steadies them); memory is stable.

    python tools/bench/snell_memory.py --threads 1           # ViT-B/16, batch 2 at 224, rank 8
    python tools/bench/snell_memory.py --json runs/snell_memory.json --steps 4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("snell", "lora", "full", "sparse-full")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def build(method: str, args) -> tuple:
    import timm
    import torch

    from snell import SnellConfig, get_snell_model
    from snell.model import find_targets

    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=100, img_size=args.img)
    config = SnellConfig(rank=args.rank, sparsity=args.sparsity)
    targets = set(find_targets(model, config))  # every arm tunes exactly these linears
    if method == "snell":
        model = get_snell_model(model, config)
    elif method == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        model = inject_adapter_in_model(
            LoraConfig(r=args.rank, lora_alpha=args.rank, lora_dropout=0.1, target_modules=sorted(targets)),
            model,
        )
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or name.startswith("head") or name == "cls_token")
    elif method == "sparse-full":
        # a fixed random mask over each full target weight (the sparse tuning SNELL improves on): the whole
        # matrix is a parameter with gradient and optimizer state, the mask is stored, and gradients are masked
        for name, module in model.named_modules():
            if name not in targets:
                continue
            p = module.weight
            mask = torch.rand(p.shape) >= args.sparsity
            module.register_buffer("tune_mask", mask)
            p.register_hook(lambda g, m=mask: g * m)
        for name, p in model.named_parameters():
            tuned = name.endswith(".weight") and name.rsplit(".", 1)[0] in targets
            p.requires_grad_(tuned or name.startswith("head") or name == "cls_token")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    return model, optimizer, sum(p.numel() for p in params)


def adapted_layers(model) -> int:
    """How many layers carry a SNELL branch, a LoRA adapter or a sparse-tuning mask (the same in every arm)."""
    return sum(
        type(m).__name__ == "SnellLinear" or hasattr(m, "lora_A") or hasattr(m, "tune_mask")
        for m in model.modules()
    )


def worker(method: str, args) -> dict:
    import peft  # noqa: F401  (every arm imports the same libraries before the "before model" RSS)
    import timm  # noqa: F401
    import torch

    import snell  # noqa: F401

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.img, args.img)
    y = torch.randint(0, 100, (args.batch,))
    empty = rss_mb()
    model, optimizer, trainable = build(method, args)
    model.train()
    base = rss_mb()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak = peak_mb()
    return {
        "method": method,
        "trainable_parameters": trainable,
        "adapted_layers": adapted_layers(model),
        "rss_before_model_mb": round(empty, 1),
        "rss_before_training_mb": round(base, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_training_delta_mb": round(peak - base, 1),
        "peak_with_weights_mb": round(peak - empty, 1),
        "step_seconds": round(statistics.median(times[1:] or times), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--img", type=int, default=224)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per worker (default: torch's). 1 gives steadier step times on a shared machine, "
        "where a parallel op can wait on a descheduled thread",
    )
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--mmap-threshold",
        type=int,
        default=1 << 17,
        help="glibc MALLOC_MMAP_THRESHOLD_ for the workers: buffers above it are returned to the OS when freed, "
        "so RSS follows live memory instead of allocator caching (default 128 KiB; with 1 MiB, freed "
        "sub-MiB temporaries stayed on a fragmented heap and added 20-60 MB to SNELL's high-water mark)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    rows = []
    passthrough = [
        f"--{k}={getattr(args, k)}" for k in ("model", "rank", "sparsity", "batch", "img", "steps", "threads")
    ]
    for method in args.methods.split(","):
        out = subprocess.run(
            [sys.executable, __file__, f"--worker={method}", *passthrough],
            env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(args.mmap_threshold)},
            capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode:
            sys.exit(f"{method} failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"{method}: done", file=sys.stderr)
    by = {r["method"]: r for r in rows}
    print(f"{args.model}, batch {args.batch} at {args.img}px, rank {args.rank}, sparsity {args.sparsity}, "
          f"{args.steps} steps (CPU, torch threads {args.threads or __import__('torch').get_num_threads()})")  # fmt: skip
    print(
        "| method | trainable params | peak without frozen weights (MB) | peak with weights (MB) | "
        "whole-process peak RSS (MB) | step (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['method']} | {r['trainable_parameters']:,} | {r['peak_training_delta_mb']:.0f} | "
            f"{r['peak_with_weights_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['step_seconds']:.2f} |"
        )
    if "snell" in by:
        print(
            "| SNELL / other | without frozen weights | with weights | whole process |\n|---|---:|---:|---:|"
        )
        for other, goal in (("lora", 1.1), ("full", 0.6), ("sparse-full", None)):
            if other not in by:
                continue
            ratios = [
                by["snell"][key] / by[other][key]
                for key in ("peak_training_delta_mb", "peak_with_weights_mb", "peak_rss_mb")
            ]
            verdict = (
                "" if goal is None else f" (goal <= {goal}: {'met' if ratios[0] <= goal else 'NOT met'})"
            )
            print(f"| {other} | {ratios[0]:.2f}{verdict} | {ratios[1]:.2f} | {ratios[2]:.2f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
