"""`auto-learngene`: meta-learn layer-transfer weights from an ancestry, keep the top layers, train descendants."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from learngene_core.clitools import add_config_arguments, format_presets, make_parser, overrides_of, run_cli
from learngene_core.learngene.layer_cli import add_descendant_verbs, run_descendant_verb

PACKAGE = "auto_learngene.configs"
EXAMPLES = """\
examples (tiny presets: digits, a laptop CPU, minutes; any `learngene train` run is an ancestry):
  learngene train --config digits-ancestry --output-dir runs/ancestry
  auto-learngene condense --config tiny --output-dir runs/auto ancestry.run=runs/ancestry
  auto-learngene expand --learngene runs/auto/learngene --num-classes 2 --output-dir runs/auto-d
  auto-learngene train --learngene runs/auto/learngene --config tiny-descendant --output-dir runs/auto-d67
"""


def build_parser():
    parser = make_parser(
        "auto-learngene", "Auto-Learngene (Wang et al., arXiv 2305.02279).", EXAMPLES, presets=PACKAGE
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{condense,expand,train,list}")
    con = verbs.add_parser(
        "condense", help="meta-train the transfer weights on a pseudo-descendant; save the learngene"
    )
    add_config_arguments(con, "tiny", example="ancestry.run=runs/heur/collective/task-02 method.k=3")
    con.add_argument("--output-dir", required=True, help="run directory (pseudo-descendant run, learngene/)")
    con.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped meta-training in --output-dir (same config)",
    )
    add_descendant_verbs(verbs, "tiny-descendant")
    verbs.add_parser("list", help="list the presets", threads=False)
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.verb == "list":
        print(format_presets(PACKAGE))
        return 0
    from learngene_core.config import load_config
    from learngene_core.learngene.inherit import learngene_summary

    from .condense import LEARNGENE_DIR, METHOD, condense, format_scores
    from .config import CondenseConfig

    if args.verb == "condense":
        cfg = load_config(args.config, overrides_of(args), CondenseConfig, PACKAGE)
        learngene, choice = condense(cfg, args.output_dir, args.resume)
        print(format_scores(choice, learngene.manifest["layer_prefixes"]))
        print(learngene_summary(learngene, Path(args.output_dir) / LEARNGENE_DIR))
    else:
        run_descendant_verb(args, METHOD, PACKAGE)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("auto-learngene", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
