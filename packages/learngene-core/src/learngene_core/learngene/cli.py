"""The console script shared by learngene methods: extract, expand, train, compare, list."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import experiment
from ..clitools import add_config_arguments, make_parser, overrides_of, run_cli
from ..config import load_config, preset_names
from ..errors import ConfigError
from ..models import count_parameters
from .anatomy import VIT_NAME
from .artifact import Learngene
from .config import DescendantConfig, ExtractConfig
from .descendants import build_descendant, compare, format_table
from .expand import INHERITANCE_NAME, descendant_kwargs, expand, save_descendant, summarize_inheritance
from .extract import extract
from .methods import LearngeneMethod

EXAMPLES = """\
examples (tiny presets run on a laptop CPU in a minute or two):
  learngene train --config digits-ancestry --output-dir runs/{prog}-ancestry
  {prog} extract --config tiny --output-dir runs/{prog}-lg ancestry.run=runs/{prog}-ancestry
  {prog} expand --learngene runs/{prog}-lg --depth 6 --num-classes 5 --output-dir runs/{prog}-d6
  {prog} train --init learngene:runs/{prog}-lg --depth 4 --config tiny-descendant --output-dir runs/{prog}-d4
  {prog} train --init scratch --learngene runs/{prog}-lg --depth 4 --config tiny-descendant --output-dir runs/{prog}-scratch-d4
  {prog} compare --learngene runs/{prog}-lg --depths 2,4,6 --config tiny-descendant --output-dir runs/{prog}-compare
"""


LOAD_HEAD_HELP = (
    "copy the aux net's head into learngene descendants (default: descendant.load_head, which by default "
    "copies when the data has the learngene's classes)"
)


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


def build_parser(prog: str, description: str):
    parser = make_parser(prog, description, EXAMPLES.format(prog=prog))
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{extract,expand,train,compare,list}")

    ext = verbs.add_parser("extract", help="distil an ancestry into the aux net and save the learngene")
    add_config_arguments(ext)
    ext.add_argument("--output-dir", required=True, help="the learngene directory to write")
    ext.add_argument("--resume", action="store_true", help="continue an interrupted extraction")

    exp = verbs.add_parser("expand", help="write a descendant of any depth as a plain timm checkpoint")
    exp.add_argument("--learngene", required=True, help="a learngene directory written by extract")
    exp.add_argument("--depth", required=True, help="descendant depth (>= 1)")
    exp.add_argument(
        "--layout",
        "--stages",
        help="per-layer layout, e.g. SWS stages 0,0,1,1,2 (default: the method's mapping)",
    )
    exp.add_argument("--num-classes", type=int, help="classes of the new head (default: the learngene's)")
    exp.add_argument("--img-size", type=int, help="descendant image size (position embeddings are resized)")
    exp.add_argument(
        "--load-head",
        action=argparse.BooleanOptionalAction,
        help="copy the aux net's head (default: when --num-classes is not given, i.e. the learngene's classes)",
    )
    exp.add_argument("--output-dir", required=True)

    train = verbs.add_parser("train", help="train a descendant initialised from a learngene or from scratch")
    add_config_arguments(train)
    train.add_argument(
        "--init", required=True, help="learngene:<dir> or scratch (needs --learngene for shape)"
    )
    train.add_argument("--learngene", help="with --init scratch: the learngene whose architecture to match")
    train.add_argument("--depth", required=True)
    train.add_argument("--layout", "--stages", help="per-layer layout (default: the method's mapping)")
    train.add_argument("--load-head", action=argparse.BooleanOptionalAction, help=LOAD_HEAD_HELP)
    train.add_argument("--output-dir", required=True)
    train.add_argument("--resume", action="store_true")

    cmp_ = verbs.add_parser("compare", help="learngene vs scratch descendants at several depths")
    add_config_arguments(cmp_)
    cmp_.add_argument("--learngene", required=True)
    cmp_.add_argument("--depths", required=True, help="comma-separated depths, e.g. 2,4,6")
    cmp_.add_argument(
        "--layouts",
        help="per-depth layouts, e.g. '12:0,0,0,1,1,1,2,2,3,3,4,4;6:0,1,2,2,3,4' (default: descendant.layouts, "
        "then the method's mapping)",
    )
    cmp_.add_argument("--load-head", action=argparse.BooleanOptionalAction, help=LOAD_HEAD_HELP)
    cmp_.add_argument("--output-dir", required=True)
    cmp_.add_argument("--resume", action="store_true", help="continue a stopped comparison")

    verbs.add_parser("list", help="list this method's presets")
    return parser


def method_cli(method: LearngeneMethod, prog: str, description: str, package: str) -> Callable:
    """The `main(argv)` of a learngene method's console script."""

    def command(argv: Sequence[str] | None) -> int:
        args = build_parser(prog, description).parse_args(argv)
        if args.verb == "extract":
            cfg = load_config(args.config, overrides_of(args), ExtractConfig, package)
            learngene, metrics = extract(method, cfg, args.output_dir, resume=args.resume)
            sizes = learngene.manifest["parameters"]
            print(
                f"{method.name} learngene: {sizes['learngene']:,} parameters "
                f"({sizes['learngene'] / sizes['ancestry']:.1%} of the ancestry's {sizes['ancestry']:,}); "
                f"aux net test {cfg.train.best_metric} {metrics.get(cfg.train.best_metric, float('nan')):.4f}; "
                f"saved to {args.output_dir}"
            )
        elif args.verb == "expand":
            _expand(args)
        elif args.verb == "train":
            _train(args)
        elif args.verb == "compare":
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
        else:
            print("presets (--config NAME):")
            for name in preset_names(package):
                print(f"  {name}")
        return 0

    def _layout(args, learngene: Learngene, layouts: dict[int, list[int]] | None = None) -> list[int]:
        depth = _depth(args.depth)
        if args.layout is not None:
            layout = _ints(args.layout)
        else:
            layout = (layouts or {}).get(depth) or method.default_layout(depth, learngene.spec)
        if len(layout) != depth:
            raise ConfigError(f"--layout/--stages has {len(layout)} entries but --depth is {depth}")
        method.check_layout(layout, learngene.spec)
        return layout

    def _expand(args) -> None:
        learngene = Learngene.load(args.learngene, method.name)
        layout = _layout(args, learngene)
        if learngene.backbone != "timm-vit":
            _expand_lm(args, learngene, layout)
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
        print(
            f"saved to {out}: timm.create_model('{VIT_NAME}', **kwargs) of {out / 'config.json'} + strict load"
        )

    def _expand_lm(args, learngene: Learngene, layout: list[int]) -> None:
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

    def _train(args) -> None:
        cfg = _descendant_config(args, package)
        if args.init.startswith("learngene:"):
            init, source = "learngene", args.init.removeprefix("learngene:")
        elif args.init == "scratch":
            init, source = "scratch", args.learngene
            if not source:
                raise ConfigError(
                    "--init scratch needs --learngene DIR to match the descendant's architecture"
                )
        else:
            raise ConfigError(f"unknown --init '{args.init}'; use learngene:<dir> or scratch")
        learngene = Learngene.load(source, method.name)
        layout = _layout(args, learngene, cfg.descendant.layouts)
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

    return lambda argv=None: run_cli(prog, command, argv)
