"""The console script shared by learngene methods: extract, expand, train, compare, list.

Parsing, `--help` and `list` import no torch; the verbs (`commands.py`) and the method are imported when run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..clitools import add_config_arguments, format_presets, make_parser, run_cli

if TYPE_CHECKING:
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


def build_parser(prog: str, description: str, package: str) -> argparse.ArgumentParser:
    parser = make_parser(prog, description, EXAMPLES.format(prog=prog), presets=package)
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

    verbs.add_parser("list", help="list this method's presets", threads=False)
    return parser


def method_cli(
    method: Callable[[], LearngeneMethod], prog: str, description: str, package: str
) -> Callable[[Sequence[str] | None], int]:
    """The `main(argv)` of a learngene method's console script; `method()` builds the method (imports torch)
    only when a verb runs, and `package` holds the presets."""

    def command(argv: Sequence[str] | None) -> int:
        args = build_parser(prog, description, package).parse_args(argv)
        if args.verb == "list":
            print(format_presets(package))
            return 0
        from .commands import VERBS

        VERBS[args.verb](args, method(), package)
        return 0

    return lambda argv=None: run_cli(prog, command, argv)
