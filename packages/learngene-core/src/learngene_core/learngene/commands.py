"""The verbs of a learngene method's console script (`cli.py` parses; these import torch)."""

from __future__ import annotations

import json
from pathlib import Path

from .. import experiment
from ..clitools import overrides_of
from ..config import load_config
from ..errors import ConfigError
from ..models import count_parameters
from .anatomy import VIT_NAME
from .artifact import Learngene
from .config import DescendantConfig, ExtractConfig
from .descendants import build_descendant, compare, format_table
from .expand import INHERITANCE_NAME, descendant_kwargs, expand, save_descendant, summarize_inheritance
from .extract import extract
from .methods import LearngeneMethod


def extract_command(args, method: LearngeneMethod, package: str) -> None:
    """`extract`: distil the ancestry into the aux net and save the learngene."""
    cfg = load_config(args.config, overrides_of(args), ExtractConfig, package)
    learngene, metrics = extract(method, cfg, args.output_dir, resume=args.resume)
    sizes = learngene.manifest["parameters"]
    print(
        f"{method.name} learngene: {sizes['learngene']:,} parameters "
        f"({sizes['learngene'] / sizes['ancestry']:.1%} of the ancestry's {sizes['ancestry']:,}); "
        f"aux net test {cfg.train.best_metric} {metrics.get(cfg.train.best_metric, float('nan')):.4f}; "
        f"saved to {args.output_dir}"
    )


def compare_command(args, method: LearngeneMethod, package: str) -> None:
    """`compare`: learngene vs scratch descendants at several depths, a table and curves."""
    cfg = _descendant_config(args, package)
    if args.layouts:
        cfg.descendant.layouts.update(_layouts(args.layouts))
    learngene = Learngene.load(args.learngene, method.name)
    depths = _ints(args.depths)
    if not depths:
        raise ConfigError(f"--depths needs at least one depth, e.g. 2,4,6; got '{args.depths}'")
    for depth in depths:
        _depth(str(depth))
    rows = compare(learngene, method, cfg, depths, args.output_dir, resume=args.resume)
    print(format_table(rows, cfg.train.epochs))
    print(f"curves: {Path(args.output_dir) / 'compare.png'}")


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got '{text}'") from None


def _depth(value: str) -> int:
    try:
        depth = int(value)
    except ValueError:
        raise ConfigError(f"--depth must be an integer, got '{value}'") from None
    if depth < 1:
        raise ConfigError(f"--depth must be >= 1, got {depth}")
    return depth


def _layouts(text: str) -> dict[int, list[int]]:
    """'12:0,0,1;6:0,1,2' -> {12: [0, 0, 1], 6: [0, 1, 2]}; each layout must have `depth` entries."""
    layouts = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        depth, sep, layout = item.partition(":")
        if not sep:
            raise ConfigError(f"--layouts: '{item}' is not DEPTH:LAYOUT, e.g. 4:0,0,1,2")
        layouts[_depth(depth)] = _ints(layout)
        if len(layouts[int(depth)]) != int(depth):
            raise ConfigError(
                f"--layouts: the layout of depth {depth} has {len(layouts[int(depth)])} entries"
            )
    return layouts


def _descendant_config(args, package: str) -> DescendantConfig:
    cfg = load_config(args.config, overrides_of(args), DescendantConfig, package)
    if args.load_head is not None:
        cfg.descendant.load_head = args.load_head
    return cfg


def _layout(
    args, method: LearngeneMethod, learngene: Learngene, layouts: dict[int, list[int]] | None = None
) -> list[int]:
    depth = _depth(args.depth)
    if args.layout is not None:
        layout = _ints(args.layout)
    else:
        layout = (layouts or {}).get(depth) or method.default_layout(depth, learngene.spec)
    if len(layout) != depth:
        raise ConfigError(f"--layout/--stages has {len(layout)} entries but --depth is {depth}")
    method.check_layout(layout, learngene.spec)
    return layout


def expand_command(args, method: LearngeneMethod, package: str) -> None:
    """`expand`: write a descendant of `--depth` (a timm ViT, or a causal LM with `save_pretrained`)."""
    learngene = Learngene.load(args.learngene, method.name)
    layout = _layout(args, method, learngene)
    if learngene.backbone != "timm-vit":
        _expand_lm(args, method, learngene, layout)
        return
    patch = learngene.arch["patch_size"]
    if args.img_size is not None and (args.img_size < patch or args.img_size % patch):
        raise ConfigError(
            f"--img-size must be a positive multiple of the patch size {patch}, got {args.img_size}"
        )
    if args.num_classes is not None and args.num_classes < 1:
        raise ConfigError(f"--num-classes must be >= 1, got {args.num_classes}")
    num_classes = args.num_classes if args.num_classes is not None else learngene.manifest["num_classes"]
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output dir {out} is not empty; choose another")
    load_head = args.load_head if args.load_head is not None else args.num_classes is None
    model, inheritance = expand(
        learngene, method, layout, num_classes, img_size=args.img_size, load_head=load_head
    )
    kwargs = descendant_kwargs(learngene, len(layout), num_classes, args.img_size)
    save_descendant(model, kwargs, inheritance, out, {"method": method.name, "layout": layout})
    print(f"descendant: depth {len(layout)}, layout {layout}, {count_parameters(model):,} parameters")
    print(f"inheritance: {summarize_inheritance(inheritance)}")
    print(f"saved to {out}: timm.create_model('{VIT_NAME}', **kwargs) of {out / 'config.json'} + strict load")


def _expand_lm(args, method: LearngeneMethod, learngene: Learngene, layout: list[int]) -> None:
    """A causal-LM descendant saved with `save_pretrained` (+ inheritance.json): AutoModelForCausalLM loads it."""
    if args.img_size is not None or args.num_classes is not None or args.load_head is not None:
        raise ConfigError(
            "--img-size, --num-classes and --load-head apply to ViT learngenes only "
            "(an LM descendant copies the learngene's embeddings and LM head)"
        )
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"output dir {out} is not empty; choose another")
    model, inheritance = expand(learngene, method, layout)
    model.save_pretrained(out)
    (out / INHERITANCE_NAME).write_text(json.dumps(inheritance, indent=2))
    print(f"descendant: depth {len(layout)}, layout {layout}, {count_parameters(model):,} parameters")
    print(f"inheritance: {summarize_inheritance(inheritance)}")
    print(f"saved to {out}: AutoModelForCausalLM.from_pretrained('{out}')")


def train_command(args, method: LearngeneMethod, package: str) -> None:
    """`train`: one descendant from the learngene or from scratch (the learngene's architecture)."""
    cfg = _descendant_config(args, package)
    if args.init.startswith("learngene:"):
        init, source = "learngene", args.init.removeprefix("learngene:")
    elif args.init == "scratch":
        init, source = "scratch", args.learngene
        if not source:
            raise ConfigError("--init scratch needs --learngene DIR to match the descendant's architecture")
    else:
        raise ConfigError(f"unknown --init '{args.init}'; use learngene:<dir> or scratch")
    learngene = Learngene.load(source, method.name)
    layout = _layout(args, method, learngene, cfg.descendant.layouts)
    experiment.check_output_dir(args.output_dir, cfg, args.resume)
    run = experiment.prepare_run(cfg)
    model, how = build_descendant(init, learngene, method, layout, run, cfg.descendant.load_head)
    print(f"{init} descendant, depth {len(layout)}: {how}")
    metrics = experiment.train(
        cfg,
        args.output_dir,
        resume=args.resume,
        model=model,
        run=run,
        metadata={"init": init, "layout": layout},
    )
    print(json.dumps({"split": "test", **metrics}))


# verb -> command(args, method, package)
VERBS = {
    "extract": extract_command,
    "expand": expand_command,
    "train": train_command,
    "compare": compare_command,
}
