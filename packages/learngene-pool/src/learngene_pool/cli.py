"""`learngene-pool`: distil auxiliary models, build the pool, list its descendants, export and fine-tune them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from learngene_core.clitools import add_config_arguments, format_presets, make_parser, overrides_of, run_cli
from learngene_core.config import ExperimentConfig, load_config
from learngene_core.errors import CheckpointError, ConfigError

PACKAGE = "learngene_pool.configs"
EXAMPLES = """\
examples (the tiny presets run on a laptop CPU in a few minutes):
  learngene train --config digits-ancestry --output-dir runs/pool-ancestry
  learngene-pool distill --config tiny-aux-narrow --output-dir runs/aux-narrow ancestry.run=runs/pool-ancestry
  learngene-pool distill --config tiny-aux-wide --output-dir runs/aux-wide ancestry.run=runs/pool-ancestry
  learngene-pool build --config tiny-build --output-dir runs/pool "aux=[runs/aux-narrow,runs/aux-wide]"
  learngene-pool list --pool runs/pool                                  # its descendants, smallest first
  learngene-pool eval --pool runs/pool --config-id all --config tiny-train
  learngene-pool init --pool runs/pool --config-id 4 --output-dir runs/descendant-4
  learngene-pool train --pool runs/pool --config-id 4 --config tiny-train --output-dir runs/train-4
  learngene-pool train --pool runs/pool --config-id 4 --init scratch --config tiny-train --output-dir runs/scratch-4
"""


def _config_id(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"--config-id must be an integer, got '{value}' (see `learngene-pool list --pool DIR`)"
        ) from None


def build_parser():
    parser = make_parser(
        "learngene-pool",
        "Learngene Pool: distil one ancestry into auxiliary ViTs, pool their blocks and stitch them into descendants.",
        EXAMPLES,
        presets=PACKAGE,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{distill,build,list,init,train,eval}")

    distill = verbs.add_parser(
        "distill", help="distil the ancestry into one auxiliary ViT (its blocks join the pool)"
    )
    add_config_arguments(distill, example="ancestry.run=runs/pool-ancestry model.kwargs.embed_dim=32")
    distill.add_argument("--output-dir", required=True, help="the auxiliary model directory to write")
    distill.add_argument("--resume", action="store_true", help="continue an interrupted distillation")

    build = verbs.add_parser(
        "build", help="pool the aux models' blocks, add stitch layers, train one config per step"
    )
    add_config_arguments(build, example='"aux=[runs/aux-narrow,runs/aux-wide]" stitch_init=lstsq')
    build.add_argument("--output-dir", required=True, help="the pool directory to write")
    build.add_argument("--resume", action="store_true", help="continue an interrupted build")

    listing = verbs.add_parser(
        "list",
        help="the presets, or with --pool every descendant of a pool with parameters and FLOPs, smallest first",
        threads=False,
    )
    listing.add_argument("--pool", help="a pool directory written by build (default: list the presets)")
    listing.add_argument("--json", help="also write the rows to this JSON file")

    init = verbs.add_parser("init", help="export one descendant as a standalone model (safetensors + JSON)")
    init.add_argument("--pool", required=True)
    init.add_argument("--config-id", required=True, help="a config id from `list`")
    init.add_argument("--output-dir", required=True)

    train = verbs.add_parser("train", help="fine-tune and evaluate one descendant with the core Trainer")
    add_config_arguments(train)
    train.add_argument("--pool", required=True)
    train.add_argument("--config-id", required=True, help="a config id from `list`")
    train.add_argument(
        "--init", choices=["pool", "scratch"], default="pool", help="pool weights or a scratch twin"
    )
    train.add_argument("--output-dir", required=True)
    train.add_argument("--resume", action="store_true")

    evaluate = verbs.add_parser("eval", help="evaluate descendants as the pool holds them (no fine-tuning)")
    add_config_arguments(evaluate, default_config="tiny-train", example="data.batch_size=256")
    evaluate.add_argument("--pool", required=True)
    evaluate.add_argument("--config-id", default="all", help="a config id from `list`, or all (default)")
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "distill":
        from .aux import distill_aux
        from .config import AuxConfig

        cfg = load_config(args.config, overrides_of(args), AuxConfig, PACKAGE)
        manifest, metrics = distill_aux(cfg, args.output_dir, resume=args.resume)
        print(
            f"aux model: width {manifest['width']}, {manifest['depth']} blocks, {manifest['parameters']:,} parameters "
            f"(ancestry {manifest['ancestry']['parameters']:,}); test accuracy {metrics.get('accuracy', float('nan')):.4f}; "
            f"saved to {args.output_dir}"
        )
    elif args.verb == "build":
        from .build import build_pool
        from .config import BuildConfig

        cfg = load_config(args.config, overrides_of(args), BuildConfig, PACKAGE)
        manifest, metrics = build_pool(cfg, args.output_dir, resume=args.resume)
        print(
            f"pool: {len(manifest['instances'])} instances x {manifest['depth']} blocks, {len(manifest['configs'])} "
            f"descendants, {manifest['parameters']:,} parameters; test accuracy of config "
            f"{len(manifest['instances']) - 1} {metrics.get('accuracy', float('nan')):.4f}; saved to {args.output_dir}"
        )
    elif args.verb == "list":
        _list(args)
    elif args.verb == "init":
        from .build import load_pool
        from .descendant import save_descendant

        out = Path(args.output_dir)
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"output dir {out} is not empty; choose another")
        pool, _ = load_pool(args.pool)
        cfg_id = _config_id(args.config_id)
        model = pool.descendant(cfg_id)
        save_descendant(model, out, {"config_id": cfg_id, "pool": str(args.pool)})
        print(
            f"descendant {cfg_id}: {sum(p.numel() for p in model.parameters()):,} parameters; saved to {out}"
        )
        print(f"load it with: learngene_pool.load_descendant('{out}')")
    elif args.verb == "train":
        from .finetune import train_descendant

        cfg = load_config(args.config, overrides_of(args), ExperimentConfig, PACKAGE)
        metrics = train_descendant(
            cfg, args.pool, _config_id(args.config_id), args.output_dir, init=args.init, resume=args.resume
        )
        print(json.dumps({"split": "test", **metrics}))
    elif args.verb == "eval":
        from .finetune import evaluate_descendants

        cfg = load_config(args.config, overrides_of(args), ExperimentConfig, PACKAGE)
        ids = None if args.config_id == "all" else [_config_id(args.config_id)]
        for row in evaluate_descendants(cfg, args.pool, ids, args.split):
            print(json.dumps({"split": args.split, **row}))
    return 0


def _list(args) -> None:
    if args.pool is None:
        if args.json:
            raise ConfigError("list --json writes a pool's descendants: give --pool DIR too")
        print(format_presets(PACKAGE))
        return
    from .manifest import read_pool_manifest

    rows = read_pool_manifest(args.pool).get("descendants")  # counted by build, so no torch here
    if rows is None:  # a pool.json written before build recorded them: count them now
        from dataclasses import asdict

        from .build import load_pool
        from .listing import list_descendants

        rows = [asdict(row) for row in list_descendants(load_pool(args.pool)[0])]
    else:  # as stored: damaged or edited rows are refused by name
        keys = {"id": int, "depth": int, "parameters": int, "flops": (int, float), "description": str}
        if not isinstance(rows, list) or not all(
            isinstance(r, dict) and all(isinstance(r.get(k), kind) for k, kind in keys.items()) for r in rows
        ):
            raise CheckpointError(
                f"{Path(args.pool) / 'pool.json'}: 'descendants' is not a list of rows with {', '.join(keys)} "
                "(damaged or edited?)"
            )
    print(f"{'id':>4}  {'depth':>5}  {'parameters':>12}  {'GFLOPs':>9}  descendant")
    for r in rows:
        print(
            f"{r['id']:>4}  {r['depth']:>5}  {r['parameters']:>12,}  {r['flops'] / 1e9:>9.4f}  {r['description']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("learngene-pool", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
