"""`nino` console script: collect trajectories, meta-train NiNo, train a task with or without it, show graphs."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

from learngene_core.clitools import (
    add_config_arguments,
    format_presets,
    make_parser,
    overrides_of,
    run_cli,
)
from learngene_core.config import load_config, save_config
from learngene_core.errors import CheckpointError, ConfigError, LearngeneError

PROG = "nino"
PRESETS = "nino.configs"
MODEL_SOURCE = Path(__file__).parent / "tasks.py"  # `list` reads the MODELS registrations here without torch

EPILOG = """examples:
  nino list                                                      # presets, tasks and models
  nino graph --model fm16-cnn                                    # node/edge counts by type
  nino train --config train-cnn-digits --compare --output runs/cmp   # AdamW vs AdamW + NiNo, one PNG
  nino train --config train-cnn-digits --optimizer nino --output runs/n lr=3e-3 steps=500
  nino collect --config collect-tiny --output runs/traj-tiny      # AdamW trajectories (collect-cpu: the shipped run)
  nino metatrain --config metatrain-tiny --data runs/traj-tiny --output runs/nino-tiny   # meta-train NiNo on them
  nino train --config train-tiny --optimizer nino --output runs/m --ckpt runs/nino-tiny/nino.pt
  nino collect --config collect-cpu --output runs/traj            # the shipped checkpoint's data (minutes)
  nino metatrain --config metatrain-cpu --data runs/traj --output runs/nino-cpu
"""


def _output_dir(path: str) -> Path:
    """Refuse a non-empty output directory before any work (existing outputs are never overwritten)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"output dir {out} is a file, not a directory; choose another --output")
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(
            f"output dir {out} is not empty; pass --resume to continue its run or choose another"
        )
    return out


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "--output-dir", dest="output", required=True, help="output directory")


def cmd_collect(args: argparse.Namespace) -> int:
    from .collect import CollectConfig, collect

    cfg = load_config(args.config, overrides_of(args), cls=CollectConfig, package=PRESETS)
    if not args.resume:
        _output_dir(args.output)
    out = collect(cfg, args.output, resume=args.resume)
    save_config(cfg, out / "collect.yaml")
    print(f"trajectories: {out}")
    return 0


def cmd_metatrain(args: argparse.Namespace) -> int:
    from .metatrain import MetatrainConfig, metatrain

    overrides = overrides_of(args) + (["global_norm=true"] if args.global_norm else [])
    cfg = load_config(args.config, overrides, cls=MetatrainConfig, package=PRESETS)
    out = Path(args.output)
    resume = args.resume and _continues(out, cfg, METATRAIN_OUTPUTS, "nino metatrain", [out])
    if not resume:
        _output_dir(args.output)
    try:
        path = metatrain(cfg, args.data, out, init=args.init, resume=resume)
    except LearngeneError as exc:
        if resume and isinstance(exc, CheckpointError):  # e.g. another --data: nothing was changed
            raise
        raise type(exc)(f"{exc}{_after_failure(out, [out])}") from None
    print(f"NiNo checkpoint: {path}")
    return 0


def _after_failure(out: Path, run_dirs: list[Path]) -> str:
    """What to do after a run in `out` failed: nothing written yet, start over, or continue its checkpoint."""
    from .runstate import has_checkpoint

    if not Path(out, "config.yaml").exists():  # failed before writing anything
        return ""
    if any(has_checkpoint(run_dir) for run_dir in run_dirs):
        return "; its last checkpoint is kept: after fixing it, add --resume to the same command to continue"
    return f"; after fixing it, add --resume to the same command to start over in {out}"


def _continues(out: Path, cfg, outputs: frozenset[str], command: str, run_dirs: list[Path]) -> bool:
    """--resume: True when `out` holds a checkpoint to continue (with the same config and run layout: else one
    error); False when the run stopped before its first checkpoint, whose files are then cleared to start over.
    `run_dirs`: where this command keeps checkpoints (`nino train --compare`: one per optimizer)."""
    from learngene_core.experiment import check_output_dir

    from .runstate import has_checkpoint

    candidates = [out, *(out / name for name in ("adamw", "nino"))]  # every layout nino train/metatrain write
    found = [d for d in candidates if d.is_dir() and has_checkpoint(d)]
    if not found:
        _start_over_in(out, outputs, command)
        return False
    check_output_dir(out, cfg, resume=True)
    foreign = [d for d in found if d not in run_dirs]
    if foreign:
        raise CheckpointError(
            f"cannot resume {out}: it holds a checkpoint in {foreign[0]}, which this command does not write "
            "(another --compare or --optimizer); use the same command"
        )
    return True


# what `nino train` / `nino metatrain` write into their output dirs (what --resume may clear)
TRAIN_OUTPUTS = frozenset(
    {
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "loss.png",
        "compare.png",
        "adamw",
        "nino",
        "checkpoints",
    }
)
METATRAIN_OUTPUTS = frozenset(
    {"config.yaml", "metrics.jsonl", "summary.json", "metrics.png", "nino.pt", "nino-step*.pt", "checkpoints"}
)


def _start_over_in(out: Path, outputs: frozenset[str], command: str) -> None:
    """--resume of an unfinished run: clear its files so it starts over in place with the config given now
    (e.g. a fixed lr). A finished run (summary.json) or a directory holding anything else is refused."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CheckpointError(f"output dir {out} is a file")
    if (out / "summary.json").exists():
        raise CheckpointError(f"{out} holds a finished run (summary.json); choose another output dir")
    ours = [
        p
        for p in out.iterdir()
        if any(fnmatch(p.name, pattern) for pattern in outputs)
        or (p.name.startswith(".") and p.name.endswith(".tmp"))
    ]
    foreign = sorted({p.name for p in out.iterdir()} - {p.name for p in ours})
    if foreign:
        raise CheckpointError(
            f"{out} is not a {command} run ({foreign[0]!r} is none of its files); choose another"
        )
    for path in ours:
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainRunConfig, plot_compare, run

    overrides = overrides_of(args)
    if args.ckpt is not None:
        overrides.append(f"ckpt={args.ckpt}")
    if args.period is not None:
        overrides.append(f"period={args.period}")
    cfg = load_config(args.config, overrides, cls=TrainRunConfig, package=PRESETS)
    optimizers = ["adamw", "nino"] if args.compare else [args.optimizer]
    if "nino" in optimizers:
        from .checkpoint import load_nino

        load_nino(cfg.ckpt)  # a bad name, path or file fails here, before the output dir exists
    out = Path(args.output)
    runs = {name: out / name if args.compare else out for name in optimizers}
    resume = args.resume and _continues(out, cfg, TRAIN_OUTPUTS, "nino train", list(runs.values()))
    if not resume:
        _output_dir(args.output)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    results, summary = [], {}
    try:
        for name, run_dir in runs.items():
            result = run(cfg, name, run_dir, resume=resume)
            results.append(result)
            if not result.records:  # a resumed run reads them back from its log
                raise CheckpointError(
                    f"{run_dir / 'metrics.jsonl'} holds no validation records (emptied or damaged?); "
                    "run again into a new --output"
                )
            last = result.records[-1]
            summary[name] = {
                "final_val": {k: v for k, v in last.items() if k not in ("step", "split")},
                "train_seconds": round(result.train_seconds, 3),
                "nowcast_seconds": round(result.nowcast_seconds, 3),
                "check_seconds": round(result.check_seconds, 3),
                "nowcasts": result.nowcasts,
                "stopped_at": result.stopped_at,  # the over-fitting stop ended nowcasting here (None: never)
            }
            print(f"{name}: step {last['step']} val loss {_fmt(last['loss'])} ({result.train_seconds:.1f}s)")
    except LearngeneError as exc:
        if resume and isinstance(exc, CheckpointError):  # e.g. another --optimizer: nothing was changed
            raise
        raise type(exc)(f"{exc}{_after_failure(out, list(runs.values()))}") from None
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    png = plot_compare(results, out / ("compare.png" if args.compare else "loss.png"), title=cfg.task)
    print(f"curves: {png}")
    return 0


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def cmd_graph(args: argparse.Namespace) -> int:
    from .graph import build_graph
    from .tasks import build_task_model

    graph = build_graph(build_task_model(args.model))
    print(f"model: {args.model}")
    print(graph.describe())
    if args.plot:
        _plot_adjacency(graph, Path(args.plot))
        print(f"adjacency: {args.plot}")
    return 0


def _plot_adjacency(graph, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    src, dst = graph.edge_index
    ax.scatter(dst.numpy(), src.numpy(), c=graph.edge_type.numpy(), s=1, cmap="tab20", marker="s")
    ax.invert_yaxis()
    ax.set_xlabel("target node")
    ax.set_ylabel("source node")
    ax.set_title("neural graph adjacency (colour = edge type)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_list(args: argparse.Namespace) -> int:
    from learngene_core.registry import declared_entries

    from .recipes import task_names

    print(format_presets(PRESETS))
    print("tasks:", ", ".join(task_names()))
    print("models (nino graph --model):", ", ".join(declared_entries([MODEL_SOURCE], "MODELS")))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG, "NiNo: neuron-interaction nowcasting that wraps any torch optimizer.", EPILOG, presets=PRESETS
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="record AdamW trajectories of tasks x seeds")
    add_config_arguments(p, default_config="collect-cpu", example="steps=500 seeds=[0,1]")
    _add_output(p)
    p.add_argument("--resume", action="store_true", help="add the runs missing from an existing dataset")
    p.set_defaults(fn=cmd_collect)

    p = sub.add_parser("metatrain", help="meta-train a NiNo network on a trajectory dataset")
    add_config_arguments(p, default_config="metatrain-cpu", example="steps=200 hid=32")
    p.add_argument("--data", required=True, help="trajectory directory (ours or the reference layout)")
    _add_output(p)
    p.add_argument("--init", default=None, help="start from this NiNo checkpoint")
    p.add_argument("--global-norm", action="store_true", help="one mu/sigma for LM trajectories (A.5 quirk)")
    p.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run from its last checkpoint (same command; a run stopped before its "
        "first checkpoint is cleared and starts over)",
    )  # fmt: skip
    p.set_defaults(fn=cmd_metatrain)

    p = sub.add_parser("train", help="train a task with AdamW, AdamW + NiNo, or both (--compare)")
    add_config_arguments(p, example="steps=500 lr=3e-3")
    _add_output(p)
    p.add_argument("--optimizer", choices=["adamw", "nino"], default="nino")
    p.add_argument("--compare", action="store_true", help="run both optimizers and plot them together")
    p.add_argument(
        "--ckpt", default=None,
        help="NiNo checkpoint: a path, or nino-cpu (shipped, the default), nino-no-posw or nino-mlp (the "
        "authors' published ones, downloaded once into $NINO_CACHE or ~/.cache/nino)",
    )  # fmt: skip
    p.add_argument("--period", type=int, default=None, help="steps between nowcasts")
    p.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run from its last checkpoint (same command; a run stopped before its "
        "first checkpoint is cleared and starts over)",
    )  # fmt: skip
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("graph", help="print a model's neural-graph node/edge counts by type")
    p.add_argument("--model", required=True, help="a model name (see `nino list`)")
    p.add_argument("--plot", default=None, help="also draw the adjacency into this PNG")
    p.set_defaults(fn=cmd_graph)

    p = sub.add_parser("list", help="presets, tasks and models", threads=False)
    p.set_defaults(fn=cmd_list)
    return parser


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "period", None) is not None and args.period <= 0:
        raise ConfigError(f"--period must be a positive number of steps, got {args.period}")
    return args.fn(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(PROG, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
