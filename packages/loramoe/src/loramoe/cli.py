"""`loramoe`: train a LoRAMoE adapter, evaluate it per task type, generate with it."""

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

PRESETS = "loramoe.configs"
EXAMPLES = """\
examples:
  loramoe train --config tiny --output-dir runs/loramoe-tiny
  loramoe train --config tiny --output-dir runs/no-lbc loramoe.blc_weight=0
  loramoe eval --run runs/loramoe-tiny
  loramoe generate --adapter runs/loramoe-tiny/adapter --prompt "$(printf 'Reverse the letters of the word.\\nabcd')"
  loramoe import-official --adapter official/output --base /models/Llama-2-7b-hf --output-dir runs/imported   # an adapter of the official LoRAMoE code
  accelerate launch --multi_gpu --num_processes 8 -m loramoe.cli train --config llama2-7b --output-dir runs/7b model.name=/models/Llama-2-7b-hf data.path=/data/loramoe data.options.tokenizer=/models/Llama-2-7b-hf
"""


def build_parser():
    parser = make_parser(
        "loramoe", "LoRAMoE: LoRA experts with a router and localised balancing.", EXAMPLES, presets=PRESETS
    )
    verbs = parser.add_subparsers(
        dest="verb", required=True, metavar="{train,eval,generate,import-official,list}"
    )

    train = verbs.add_parser("train", help="train an adapter from a preset or YAML config", epilog=EXAMPLES)
    add_config_arguments(train)
    train.add_argument("--output-dir", required=True, help="run directory (metrics, checkpoints, adapter/)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir")

    evaluate = verbs.add_parser("eval", help="exact match / option accuracy / loss per task type")
    evaluate.add_argument("--run", help="a run directory of `loramoe train` (its config.yaml and adapter/)")
    evaluate.add_argument("--config", help="preset or YAML (default: the run's config.yaml)")
    evaluate.add_argument("--adapter", help="adapter directory (default: RUN/adapter)")
    evaluate.add_argument("--base", help="base model directory (default: the one recorded in the adapter)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("overrides", nargs="*", metavar="key.sub=value")

    gen = verbs.add_parser("generate", help="greedy answer of an adapted model to a prompt")
    gen.add_argument("--adapter", required=True, help="adapter directory written by `loramoe train`")
    gen.add_argument("--prompt", required=True, action="append", help="prompt text (repeat for several)")
    gen.add_argument("--base", help="base model directory (default: the one recorded in the adapter)")
    gen.add_argument("--max-new-tokens", type=int, default=32)

    imp = verbs.add_parser("import-official", help="an adapter of the official LoRAMoE code as ours")
    imp.add_argument(
        "--adapter",
        required=True,
        help="official adapter directory (adapter_model.bin + adapter_config.json)",
    )
    imp.add_argument("--base", required=True, help="the local base model directory it was trained on")
    imp.add_argument("--output-dir", required=True, help="adapter directory to write")
    imp.add_argument("--alpha", type=float, help="lora_alpha when the adapter has no adapter_config.json")
    imp.add_argument("--tokenizer", help="local tokenizer directory (default: the base's, if it has one)")

    verbs.add_parser("list", help="list the shipped presets", threads=False)
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        print(format_presets(PRESETS))
        return 0
    from accelerate import PartialState

    from learngene_core.config import load_config

    from . import experiment
    from .experiment import LoraMoEExperimentConfig

    state = PartialState()
    if args.verb == "train":
        cfg = load_config(args.config, overrides_of(args), LoraMoEExperimentConfig, PRESETS)
        result = experiment.train(cfg, args.output_dir, resume=args.resume)
        state.print(json.dumps({"split": "test", **result["test"]}))
    elif args.verb == "eval":
        run = Path(args.run) if args.run else None
        config = args.config or (run / "config.yaml" if run else None)
        if config is None:
            raise ConfigError("eval needs --run DIR or --config PRESET_OR_YAML with --adapter DIR")
        adapter = args.adapter or (run / experiment.ADAPTER_DIR if run else None)
        if adapter is None:
            raise ConfigError("eval --config needs --adapter DIR")
        cfg = load_config(config, list(args.overrides), LoraMoEExperimentConfig, PRESETS)
        metrics = experiment.evaluate(cfg, adapter, args.split, args.base)
        state.print(json.dumps({"split": args.split, **metrics}))
    elif args.verb == "generate":
        if args.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
        for answer in experiment.generate(args.adapter, args.prompt, args.max_new_tokens, args.base):
            print(answer)
    else:  # import-official
        model = experiment.import_official(
            args.adapter, args.base, args.output_dir, args.alpha, args.tokenizer
        )
        cfg = model.loramoe_config
        state.print(
            f"imported {len(model.target_names)} layers x {cfg.num_experts} experts (rank {cfg.rank}, alpha "
            f"{cfg.alpha:g}) from {args.adapter} into {args.output_dir}; try: loramoe generate --adapter "
            f"{args.output_dir} --prompt TEXT"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("loramoe", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
