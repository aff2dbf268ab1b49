"""Forward+backward time and memory of one LoRAMoE layer against a peft LoRA layer and a naive expert loop.

    python tools/bench/loramoe_layer.py [--tokens 512] [--d-in 1024] [--d-out 2816] [--experts 8] [--rank 4]
                                        [--repeats 9] [--json out.json]

Same frozen base nn.Linear and the same input (requiring grad, as inside a network) for every variant:
- `base linear`: the frozen linear alone (context: what any adapter adds to);
- `peft LoRA r=N*r`: peft's LoRA layer with the same number of adapter parameters (minus the router);
- `LoRAMoE (batched)`: `loramoe.LoraMoELayer`, N experts of rank r, dense router;
- `LoRAMoE naive loop`: the reference's shape, one Linear pair per expert and a Python loop.
Time: median over interleaved repeats. Memory: on CUDA the peak allocated bytes of a step; on CPU (no
allocator statistics) the bytes kept alive for backward (saved tensors, deduplicated by storage) plus the
output, trainable parameters and their gradients -- the part of peak memory an adapter layer controls.
Goals: LoRAMoE <= 1.3x the time and <= 1.1x the memory of peft LoRA.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from loramoe import LoraMoELayer


class NaiveLoraMoE(nn.Module):
    """N separate LoRA experts and a router, summed in a Python loop (one dropout call per expert)."""

    def __init__(self, base: nn.Linear, experts: int, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.router = nn.Linear(base.in_features, experts, bias=False)
        self.A = nn.ModuleList(nn.Linear(base.in_features, rank, bias=False) for _ in range(experts))
        self.B = nn.ModuleList(nn.Linear(rank, base.out_features, bias=False) for _ in range(experts))
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / rank

    def forward(self, x):
        out = self.base(x)
        gates = torch.softmax(self.router(x).float(), -1).to(out.dtype)
        for i, (a, b) in enumerate(zip(self.A, self.B, strict=True)):
            out = out + gates[..., i : i + 1] * b(a(self.dropout(x))) * self.scaling
        return out


def build(args, base: nn.Linear) -> dict[str, nn.Module]:
    total_rank = args.experts * args.rank
    peft = get_peft_model(
        nn.Sequential(base),
        LoraConfig(r=total_rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=["0"]),
    ).base_model.model[0]
    for module in (peft.lora_B["default"],):
        nn.init.normal_(module.weight, std=0.02)
    ours = LoraMoELayer(base, args.experts, args.rank, args.alpha, args.dropout)
    naive = NaiveLoraMoE(base, args.experts, args.rank, args.alpha, args.dropout)
    with torch.no_grad():
        ours.lora_B.normal_(std=0.02)
        for b in naive.B:
            b.weight.normal_(std=0.02)
    return {
        "base linear": base,
        f"peft LoRA r={total_rank}": peft,
        f"LoRAMoE {args.experts}x r={args.rank} (batched)": ours,
        f"LoRAMoE {args.experts}x r={args.rank} naive loop": naive,
    }


def step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = module(x)
    out.float().square().mean().backward()
    return out


def cpu_memory(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes saved for backward + output + trainable parameters and their gradients."""
    saved: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        saved[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return t

    params = [p for p in module.parameters() if p.requires_grad]
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()} | {x.untyped_storage().data_ptr()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    activations = sum(n for (ptr, _), n in saved.items() if ptr not in weights)
    out.float().square().mean().backward()
    return (
        activations + out.numel() * out.element_size() + 2 * sum(p.numel() * p.element_size() for p in params)
    )


def measure(modules: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    times: dict[str, list[float]] = {name: [] for name in modules}
    for module in modules.values():  # warm-up
        step(module, x)
    for _ in range(repeats):
        for name, module in modules.items():  # interleaved, so machine noise hits every variant alike
            x.grad = None
            module.zero_grad(set_to_none=True)
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(module, x)
            if x.is_cuda:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    results = {}
    for name, module in modules.items():
        module.zero_grad(set_to_none=True)
        x.grad = None
        if x.is_cuda:
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            step(module, x)
            memory = torch.cuda.max_memory_allocated() - before
        else:
            memory = cpu_memory(module, x)
        results[name] = {"ms": 1000 * statistics.median(times[name]), "memory_mb": memory / 2**20}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=512, help="batch x sequence length")
    parser.add_argument("--d-in", type=int, default=1024)
    parser.add_argument("--d-out", type=int, default=2816)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=32.0)
    parser.add_argument("--dropout", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = nn.Linear(args.d_in, args.d_out).to(device).requires_grad_(False)
    modules = {k: m.to(device) for k, m in build(args, base).items()}
    x = torch.randn(4, args.tokens // 4, args.d_in, device=device, requires_grad=True)
    results = measure(modules, x, args.repeats)
    names = list(results)
    peft, ours = results[names[1]], results[names[2]]
    machine = f"{platform.processor() or platform.machine()}, {device}, {args.threads} thread(s)"
    print(
        f"x: {tuple(x.shape)}, base {args.d_in}->{args.d_out}, {args.experts} experts of rank {args.rank}; {machine}"
    )
    print(f"{'layer':<34} {'fwd+bwd ms':>11} {'memory MB':>10} {'time/peft':>10} {'mem/peft':>9}")
    for name, r in results.items():
        print(
            f"{name:<34} {r['ms']:>11.2f} {r['memory_mb']:>10.2f} "
            f"{r['ms'] / peft['ms']:>9.2f}x {r['memory_mb'] / peft['memory_mb']:>8.2f}x"
        )
    time_ratio, mem_ratio = ours["ms"] / peft["ms"], ours["memory_mb"] / peft["memory_mb"]
    print(
        f"LoRAMoE / peft LoRA: time {time_ratio:.2f}x (goal <= 1.3x: {'met' if time_ratio <= 1.3 else 'MISSED'}), "
        f"memory {mem_ratio:.2f}x (goal <= 1.1x: {'met' if mem_ratio <= 1.1 else 'MISSED'})"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "machine": machine, "results": results,
                       "time_ratio": time_ratio, "memory_ratio": mem_ratio}, fh, indent=2)  # fmt: skip


if __name__ == "__main__":
    main()
