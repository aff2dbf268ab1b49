"""`l2c`: train the expert selector, train the experts, evaluate with top-k aggregation, or run everything."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from learngene_core.clitools import add_config_arguments, make_parser, overrides_of, run_cli

EXAMPLES = """\
examples (the tiny preset runs on a laptop CPU in minutes):
  l2c run --config tiny --output-dir runs/l2c-tiny                # selector, experts, top-k eval, baselines, table
  l2c train-selector --config tiny --output-dir runs/l2c-stages   # stage 1: continual LoRA selector
  l2c train-experts --run runs/l2c-stages                         # stage 2: one LoRA expert per task
  l2c eval --run runs/l2c-stages --topk 3                         # stage 3: top-k aggregation
  l2c run --config tiny --output-dir runs/l2c-tiny --resume       # continue a stopped command (any verb that trains)
  l2c train-selector --config cl_lora_cifar100_10t_vitb_in21k --output-dir runs/c100 \\
      model.checkpoint=ckpt/ViT-B_16.npz data.path=data/cifar100
  l2c train-experts --run runs/c100 --config l2c_lora_cifar100_10t_vitb_in21k \\
      model.checkpoint=ckpt/ViT-B_16.npz data.path=data/cifar100
  l2c eval --run runs/c100 --topk 5
"""


def build_parser():
    parser = make_parser(
        "l2c",
        "L2C: class-incremental learning with a task selector and cooperating LoRA experts.",
        EXAMPLES,
        presets="l2c.configs",
    )
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="{run,train-selector,train-experts,eval,list}"
    )
    run = verbs.add_parser("run", help="all three stages plus the baselines, and the results table")
    add_config_arguments(run, example="experts.lora.rank=4")
    run.add_argument("--output-dir", required=True, help="a new run directory")
    run.add_argument("--resume", action="store_true", help="continue the stopped run in --output-dir")

    selector = verbs.add_parser(
        "train-selector", help="stage 1: the shared continual LoRA + head (task weights)"
    )
    add_config_arguments(selector, example="selector.train.epochs=5")
    selector.add_argument("--output-dir", required=True, help="a new run directory")
    selector.add_argument("--resume", action="store_true", help="continue the stopped run in --output-dir")

    experts = verbs.add_parser(
        "train-experts", help="stage 2: one LoRA expert per task, head aligned on replay"
    )
    experts.add_argument("--run", required=True, help="the run directory of `l2c train-selector`")
    experts.add_argument(
        "--config",
        help="the experts' preset or YAML (default: the run's config; with --resume, the stopped stage's)",
    )
    experts.add_argument("--resume", action="store_true", help="continue the run's stopped experts stage")
    experts.add_argument("overrides", nargs="*", metavar="key.sub=value", help="e.g. experts.train.epochs=5")

    evaluate = verbs.add_parser(
        "eval", help="stage 3: accuracy matrices of top-k aggregation and top-1 selection"
    )
    evaluate.add_argument("--run", required=True, help="a run directory with trained experts")
    evaluate.add_argument("--topk", type=int, default=None, help="experts per sample (default: eval.topk)")

    verbs.add_parser("list", help="list the presets", threads=False)
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        _list()
        return 0

    from . import run
    from .config import load_l2c_config

    if args.verb == "run":
        cfg = load_l2c_config(args.config, overrides_of(args))
        results = run.run_all(cfg, Path(args.output_dir), resume=args.resume)
        print(json.dumps(results))
    elif args.verb == "train-selector":
        cfg = load_l2c_config(args.config, overrides_of(args))
        matrix = run.train_selector(cfg, Path(args.output_dir), resume=args.resume)
        print(json.dumps({"selector": matrix.summary()}))
    elif args.verb == "train-experts":
        matrix = run.train_experts(Path(args.run), args.config, list(args.overrides), resume=args.resume)
        print(json.dumps({"experts_top1_validation": matrix.summary()}))
    else:
        topk = args.topk
        if topk is None:
            topk = load_l2c_config(str(Path(args.run) / "config.yaml")).eval.topk
        matrices = run.evaluate(Path(args.run), topk)
        print(json.dumps({f"top{topk}": matrices["topk"].summary(), "top1": matrices["top1"].summary()}))
    return 0


def _list() -> None:
    from learngene_core.config import preset_names, read_yaml

    from .config import PRESETS

    print("presets (--config NAME):")
    for name in preset_names(PRESETS):
        data, _ = read_yaml(name, PRESETS)
        scenario = data.get("scenario", {})
        tasks = scenario.get("num_tasks") or f"{scenario.get('task_size')}-class"
        print(
            f"  {name:<36} {data.get('data', {}).get('name', '')}, {tasks} tasks, {data.get('model', {}).get('name', '')}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("l2c", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
