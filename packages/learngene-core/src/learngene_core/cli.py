"""`learngene`: train a model from scratch (the baseline every method is compared to), evaluate, list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .clitools import add_config_arguments, format_presets, make_parser, overrides_of, run_cli

EXAMPLES = """\
examples:
  learngene list
  learngene train --config digits-vit --output-dir runs/digits
  learngene train --config digits-vit --output-dir runs/lr3e-4 train.lr=3e-4 train.epochs=10 data.batch_size=32
  learngene train --config digits-vit --output-dir runs/digits --resume     # continue an interrupted run
  learngene eval --run runs/digits --checkpoint best --split test
  learngene train --config digits-vit --output-dir runs/digits-2t --threads 2  # more threads on free cores
  accelerate launch --multi_gpu --num_processes 4 -m learngene_core.cli train --config my.yaml --output-dir runs/big  # GPUs
  ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m learngene_core.cli train --config digits-vit --output-dir runs/ddp
"""
PRESETS = "learngene_core.configs"
DATASET_SOURCES = Path(__file__).parent / "data"  # read by `list`; importing the registry would import torch


def build_parser():
    parser = make_parser(
        "learngene", "Train, evaluate and list models of the learngene toolkit.", EXAMPLES, presets=PRESETS
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{train,eval,list}")

    train = verbs.add_parser("train", help="train a model from a preset or YAML config", epilog=EXAMPLES)
    add_config_arguments(train)
    train.add_argument("--output-dir", required=True, help="run directory (metrics, checkpoints, config)")
    train.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )

    evaluate = verbs.add_parser("eval", help="evaluate a trained run or checkpoint")
    evaluate.add_argument("--run", help="a run directory written by `learngene train` (uses its config.yaml)")
    evaluate.add_argument("--config", help="preset or YAML (default: the run's config.yaml)")
    evaluate.add_argument(
        "--checkpoint", default="final", help="final, best, last, or a path (default: final)"
    )
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("overrides", nargs="*", metavar="key.sub=value")

    verbs.add_parser("list", help="list presets, datasets and installed method packages", threads=False)
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        _list()
        return 0
    from accelerate import PartialState

    if args.verb == "train":
        from . import experiment
        from .config import ExperimentConfig, load_config

        cfg = load_config(args.config, overrides_of(args), ExperimentConfig)
        metrics = experiment.train(cfg, args.output_dir, resume=args.resume)
        PartialState().print(json.dumps({"split": "test", **metrics}))
    else:
        PartialState().print(json.dumps({"split": args.split, **_evaluate(args)}))
    return 0


def _evaluate(args) -> dict[str, float]:
    from . import experiment
    from .config import ExperimentConfig, load_config
    from .errors import ConfigError

    run = Path(args.run) if args.run else None
    config = args.config or (run / experiment.CONFIG_NAME if run else None)
    if config is None:
        raise ConfigError("eval needs --run DIR or --config PRESET_OR_YAML")
    cfg = load_config(config, list(args.overrides), ExperimentConfig)
    named = {"final": "final", "best": "best", "last": "checkpoints/last"}
    weights = run / named[args.checkpoint] if run and args.checkpoint in named else Path(args.checkpoint)
    return experiment.evaluate(cfg, weights, args.split)


def _list() -> None:
    from .methods import discover_methods
    from .registry import declared_entries

    print(format_presets(PRESETS))
    print("datasets (data.name=NAME):")
    for name, summary in declared_entries(DATASET_SOURCES.glob("*.py"), "DATASETS").items():
        print(f"  {name:<18} {summary}")
    methods = discover_methods()
    print("method packages (entry points 'learngene.methods'):")
    for m in methods:
        print(f"  {m.name:<18} {m.distribution} {m.version}  {m.summary}")
    if not methods:
        print("  (none installed; e.g. from a clone: pip install -c shared/constraints.txt -e packages/tleg)")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("learngene", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
