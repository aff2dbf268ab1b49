"""`heur-learngene`: train the collective model over a task stream, pick the learngene, train descendants."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from learngene_core.clitools import add_config_arguments, format_presets, make_parser, overrides_of, run_cli
from learngene_core.errors import ConfigError
from learngene_core.learngene.layer_cli import add_descendant_verbs, run_descendant_verb

PACKAGE = "heur_learngene.configs"
EXAMPLES = """\
examples (tiny presets: digits, a laptop CPU, minutes):
  heur-learngene collective --config tiny --output-dir runs/heur       # digits 0-5 as 3 tasks; prints the ranking
  heur-learngene collective --config tiny --output-dir runs/heur --resume   # continue it after a stop
  heur-learngene expand --learngene runs/heur/learngene --num-classes 2 --output-dir runs/heur-d
  heur-learngene train --learngene runs/heur/learngene --config tiny-descendant --output-dir runs/heur-d67
  heur-learngene train --learngene runs/heur/learngene --init random --config tiny-descendant --output-dir runs/heur-rand-d67
  heur-learngene choose --run runs/heur --layers 11,12 --output-dir runs/heur-ref   # the reference's pick, no retraining
"""


def build_parser():
    parser = make_parser(
        "heur-learngene", "Heur-Learngene (Wang et al., AAAI 2022).", EXAMPLES, presets=PACKAGE
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="{collective,choose,expand,train,list}")
    col = verbs.add_parser(
        "collective", help="train the collective model over the task stream; save the learngene"
    )
    add_config_arguments(col, "tiny", example="method.k=3")
    col.add_argument(
        "--output-dir", required=True, help="run directory (collective runs, stream.jsonl, learngene/)"
    )
    col.add_argument(
        "--resume", action="store_true", help="continue the stopped stream in --output-dir (same config)"
    )
    cho = verbs.add_parser(
        "choose", help="a new learngene from a finished collective run, without retraining"
    )
    cho.add_argument("--run", required=True, help="a `collective` run directory")
    cho.add_argument("--layers", help="comma-separated layer indices to inherit (default: the k steadiest)")
    cho.add_argument("--output-dir", required=True, help="the learngene directory to write")
    cho.add_argument(
        "overrides", nargs="*", metavar="key.sub=value", help="e.g. method.criterion=gradient method.k=3"
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

    from .collective import LEARNGENE_DIR, METHOD, rechoose, run_collective
    from .config import CollectiveConfig

    if args.verb == "collective":
        cfg = load_config(args.config, overrides_of(args), CollectiveConfig, PACKAGE)
        learngene, choice = run_collective(cfg, args.output_dir, args.resume)
        _report(learngene, choice, Path(args.output_dir) / LEARNGENE_DIR)
    elif args.verb == "choose":
        layers = None if args.layers is None else _ints(args.layers)
        learngene, choice = rechoose(args.run, list(args.overrides), layers, args.output_dir)
        _report(learngene, choice, args.output_dir)
    else:
        run_descendant_verb(args, METHOD, PACKAGE)
    return 0


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--layers: expected comma-separated integers, got '{text}'") from None


def _report(learngene, choice, directory) -> None:
    from learngene_core.learngene.inherit import learngene_summary

    from .criterion import format_ranking

    print(format_ranking(choice, learngene.manifest["layer_prefixes"]))
    print(learngene_summary(learngene, directory))


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("heur-learngene", _command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
