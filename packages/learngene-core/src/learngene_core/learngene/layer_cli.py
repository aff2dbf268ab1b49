"""The verbs shared by layer-learngene console scripts (Heur-/Auto-Learngene): `expand` and `train`.

Building the parser imports no torch; running a verb imports `layer_descendants`.
"""

from __future__ import annotations

import argparse

from ..clitools import add_config_arguments, overrides_of


def add_descendant_verbs(verbs: argparse._SubParsersAction, default_config: str) -> None:
    """`expand` (write a descendant) and `train` (train one, from the learngene or from random init)."""
    exp = verbs.add_parser("expand", help="write a descendant (learngene layers + fresh rest + new head)")
    exp.add_argument("--learngene", required=True, help="a learngene directory")
    exp.add_argument("--num-classes", type=int, required=True, help="classes of the new head")
    exp.add_argument(
        "--in-chans", type=int, default=None, help="input channels (default: the ancestry's data)"
    )
    exp.add_argument("--placement", choices=["same", "top"], default="same")
    exp.add_argument("--output-dir", required=True)

    train = verbs.add_parser("train", help="train a descendant on a few samples of a new task")
    add_config_arguments(train, default_config, example="data.samples_per_class=10")
    train.add_argument("--learngene", required=True, help="a learngene directory (its architecture is used)")
    train.add_argument(
        "--init", default="learngene", choices=["learngene", "random"],
        help="learngene: inherit its layers; random: the same architecture, every tensor fresh (baseline)",
    )  # fmt: skip
    train.add_argument("--output-dir", required=True)
    train.add_argument("--resume", action="store_true")


def run_descendant_verb(args: argparse.Namespace, method: str, package: str) -> None:
    """Run the `expand` or `train` verb added by `add_descendant_verbs` (`method`: the learngene's method name)."""
    from .layer_descendants import run_expand, run_train

    if args.verb == "expand":
        run_expand(args, method)
    else:
        run_train(args, method, package, overrides_of(args))
