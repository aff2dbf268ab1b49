"""`snell`: SNELL-tune a timm backbone, evaluate the run, merge the sparse updates, compare with baselines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from learngene_core.clitools import (
    add_config_arguments,
    format_presets,
    make_parser,
    overrides_of,
    run_cli,
)
from learngene_core.errors import ConfigError

PRESETS = "snell.configs"
EXAMPLES = """\
examples (the tiny preset runs on a laptop CPU in seconds):
  snell train --config tiny --output-dir runs/snell-tiny
  snell eval --run runs/snell-tiny --split test
  snell merge --run runs/snell-tiny --output-dir runs/snell-merged     # a plain timm checkpoint
  snell compare --config tiny --output-dir runs/snell-compare                # SNELL vs LoRA vs full vs probe
  snell train --config vtab-cifar --backbone ckpt/ViT-B_16.npz --output-dir runs/vtab-cifar data.path=data/vtab-1k
  snell train --config tiny --output-dir runs/s8 snell.rank=8 snell.sparsity=0.5 snell.mask=binary
  snell train --config tiny --backbone vit_tiny_patch16_224 --random-backbone --output-dir runs/random
  snell pretrain-tiny --config tiny-backbone --output-dir runs/tiny-backbone    # regenerates the shipped tiny backbone
  snell import-official --checkpoint 90.5_model_best.pth --config vtab-cifar --output-dir runs/cifar-official data.path=data/vtab-1k snell.sparsity=0.9   # official SNELL code
"""


def build_parser():
    parser = make_parser(
        "snell", "SNELL: sparse tuning with kernelised LoRA for timm backbones.", EXAMPLES, presets=PRESETS
    )
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="{train,eval,merge,compare,pretrain-tiny,import-official,list}"
    )
    train = verbs.add_parser("train", help="SNELL-tune a backbone from a preset or YAML config")
    add_config_arguments(train)
    train.add_argument(
        "--backbone", help="a local checkpoint file (sets model.checkpoint) or a timm model name"
    )
    _add_random_backbone(train)
    train.add_argument("--output-dir", required=True, help="run directory (metrics, checkpoints, adapter/)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir")

    evaluate = verbs.add_parser("eval", help="evaluate a snell run")
    evaluate.add_argument("--run", required=True, help="a run directory written by `snell train`")
    evaluate.add_argument("--checkpoint", default="final", help="final, best, last, or a path")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("overrides", nargs="*", metavar="key.sub=value")

    merge = verbs.add_parser(
        "merge", help="fold the sparse updates into the weights: a plain timm checkpoint"
    )
    merge.add_argument("--run", required=True, help="a run directory written by `snell train`")
    merge.add_argument("--checkpoint", default="final", help="final, best, last, or a path")
    merge.add_argument("--output-dir", required=True)

    cmp_ = verbs.add_parser("compare", help="SNELL vs peft LoRA vs full fine-tuning vs linear probe")
    add_config_arguments(cmp_)
    cmp_.add_argument("--backbone", help="as for train")
    _add_random_backbone(cmp_)
    cmp_.add_argument(
        "--methods", default=None, help="comma-separated methods (default: all: snell,lora,full,linear-probe)"
    )
    cmp_.add_argument("--output-dir", required=True)
    cmp_.add_argument("--resume", action="store_true", help="continue a stopped comparison")

    pre = verbs.add_parser("pretrain-tiny", help="train the tiny preset's backbone (a ViT on digits 0-4)")
    add_config_arguments(pre, default_config="tiny-backbone")
    pre.add_argument("--output-dir", required=True)
    pre.add_argument("--resume", action="store_true", help="continue the run in --output-dir")

    imp = verbs.add_parser(
        "import-official", help="a checkpoint of the official SNELL code as a run directory (eval, merge)"
    )
    imp.add_argument(
        "--checkpoint", required=True, help="the official .pth (a state dict; read without running code)"
    )
    add_config_arguments(imp)
    imp.add_argument("--backbone", help="as for train (needed when the file holds only the tuned tensors)")
    imp.add_argument(
        "--output-dir", required=True, help="run directory to write (config.yaml, final/, adapter/)"
    )

    verbs.add_parser("list", help="list presets and kernels", threads=False)
    return parser


def _add_random_backbone(parser) -> None:
    parser.add_argument(
        "--random-backbone",
        action="store_true",
        help="allow tuning a randomly initialised backbone (refused otherwise when model.checkpoint is null)",
    )


def _apply_backbone(args, overrides: list[str]) -> list[str]:
    if getattr(args, "random_backbone", False):
        overrides = [*overrides, "random_backbone=true"]
    backbone = getattr(args, "backbone", None)
    if not backbone:
        return overrides
    if Path(backbone).expanduser().is_file():
        return [*overrides, f"model.checkpoint={backbone}"]
    import timm

    from learngene_core.registry import did_you_mean

    if timm.is_model(backbone):
        return [*overrides, f"model.name={backbone}", "model.checkpoint=null"]
    raise ConfigError(
        f"--backbone '{backbone}' is neither a checkpoint file nor a timm model"
        f"{did_you_mean(backbone, timm.list_models())}"
    )


def _methods(text: str | None) -> tuple[str, ...]:
    from .compare import METHODS

    if text is None:
        return METHODS
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ConfigError(
            f"--methods: unknown method '{(bad or [text])[0]}'; choose from {', '.join(METHODS)}"
        )
    return methods


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        _list()
        return 0
    from accelerate import PartialState

    from learngene_core import experiment as core_experiment
    from learngene_core.config import ExperimentConfig, load_config

    from . import experiment
    from .compare import compare, format_table

    state = PartialState()
    if args.verb == "train":
        cfg = experiment.load_snell_config(args.config, _apply_backbone(args, overrides_of(args)))
        metrics, model = experiment.train(cfg, args.output_dir, resume=args.resume)
        counts = model.parameter_counts()
        state.print(json.dumps({"split": "test", **metrics, "trainable_parameters": counts["trainable"]}))
    elif args.verb == "eval":
        cfg, run, model = experiment.load_run(args.run, args.checkpoint, overrides=list(args.overrides))
        state.print(
            json.dumps({"split": args.split, **experiment.evaluate_model(model, cfg, run, args.split)})
        )
    elif args.verb == "merge":
        meta = experiment.merge(args.run, args.output_dir, args.checkpoint)
        state.print(
            f"merged {args.run} into {args.output_dir} (max |merged - unmerged| on a test batch: "
            f"{meta['max_abs_diff_vs_unmerged']:.2e}); evaluate with: learngene eval --config "
            f"{Path(args.output_dir) / 'config.yaml'} --checkpoint {args.output_dir}"
        )
    elif args.verb == "compare":
        methods = _methods(args.methods)
        cfg = experiment.load_snell_config(args.config, _apply_backbone(args, overrides_of(args)))
        rows = compare(cfg, args.output_dir, methods, resume=args.resume)
        state.print(format_table(rows))
    elif args.verb == "pretrain-tiny":
        cfg = load_config(args.config, overrides_of(args), ExperimentConfig, experiment.PRESETS)
        metrics = core_experiment.train(cfg, args.output_dir, resume=args.resume)
        state.print(
            json.dumps({"split": "test", **metrics})
            + f"\nbackbone: {Path(args.output_dir) / 'final' / 'model.safetensors'} "
            "(copy it to packages/snell/src/snell/assets/tiny-vit-digits04.safetensors to update the shipped one)"
        )
    else:  # import-official
        cfg = experiment.load_snell_config(args.config, _apply_backbone(args, overrides_of(args)))
        meta = experiment.import_official(args.checkpoint, cfg, args.output_dir)
        state.print(
            f"imported {meta['branches']} SNELL branches and {meta['base_tensors']} backbone tensors from "
            f"{args.checkpoint} into {args.output_dir}; evaluate with: snell eval --run {args.output_dir}"
        )
    return 0


def _list() -> None:
    from .kernels import KERNELS

    print(format_presets(PRESETS))

    print("kernels (snell.kernel=NAME):")
    for k in KERNELS.values():
        print(f"  {k.name:<10} {k.help}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("snell", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
