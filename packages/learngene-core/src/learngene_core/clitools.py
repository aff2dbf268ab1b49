"""The shared shape of every console script: common arguments, readable help, `--threads`, one-line errors.

A console script built from these helpers answers `--help` without importing torch: build the parser from
this module (and `config`, which needs only PyYAML) and import the heavy modules inside the command that
needs them. See the learngene-core README, "Writing a console script".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources

from .errors import LearngeneError
from .threads import add_threads_argument, apply_threads


def add_config_arguments(
    parser: argparse.ArgumentParser, default_config: str | None = None, example: str = "train.lr=3e-4"
) -> None:
    """`--config PRESET_OR_YAML`, `--seed N` and trailing `key.sub=value` overrides (`example` in the help)."""
    parser.add_argument(
        "--config",
        required=default_config is None,
        default=default_config,
        help="a preset name (see `list`) or a YAML file"
        + (f" (default: {default_config})" if default_config else ""),
    )
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument(
        "overrides", nargs="*", metavar="key.sub=value", help=f"config overrides, e.g. {example}"
    )


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The override list of parsed args, with `--seed` folded in."""
    return list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser that prints descriptions and epilogs as written (examples stay one per line), for
    itself and every sub-command; sub-commands get `--threads N` unless added with `threads=False`, and parsing
    applies it (before a command that imports torch lazily has imported it)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Verbs)

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if hasattr(parsed, "threads"):
            apply_threads(parsed.threads)
        return parsed, extras


class _Verbs(argparse._SubParsersAction):
    def add_parser(self, name: str, *, threads: bool = True, **kwargs) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        if threads:
            add_threads_argument(parser)
        return parser


def make_parser(
    prog: str, description: str, epilog: str = "", *, presets: str | None = None
) -> argparse.ArgumentParser:
    """The top-level parser of a console script; `presets` (a package of YAML presets) lists them in the help."""
    if presets is not None:
        epilog = f"{epilog.rstrip()}\n\n{format_presets(presets)}".lstrip()
    return CliParser(prog=prog, description=description, epilog=epilog)


def preset_description(text: str) -> str:
    """The first sentence of a YAML file's leading comment (indented comment lines, i.e. commands, skipped)."""
    words = []
    for line in text.lstrip().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("#   "):
            words.append(line.lstrip("#").strip())
    paragraph = " ".join(w for w in words if w)
    end = paragraph.find(". ")
    return (paragraph[: end + 1] if end >= 0 else paragraph).rstrip(":")


def preset_descriptions(package: str) -> dict[str, str]:
    """Preset name -> its one-line description (see `preset_description`), sorted by name."""
    found = resources.files(package).iterdir()
    return dict(
        sorted((p.name[:-5], preset_description(p.read_text())) for p in found if p.name.endswith(".yaml"))
    )


def format_presets(package: str, heading: str = "presets (--config NAME):") -> str:
    """The presets of `package`, one per line with their description."""
    described = preset_descriptions(package)
    width = max((len(name) for name in described), default=0) + 2
    return "\n".join([heading, *(f"  {name:<{width}}{text}" for name, text in described.items())])


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: what went wrong and on which path(s)."""
    what = (str(exc.strerror or exc).strip().splitlines() or [type(exc).__name__])[0]
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{what}: {' -> '.join(paths)}" if paths else what


def run_cli(
    prog: str, command: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None
) -> int:
    """Run `command(argv)`; user errors become one `prog: error: ...` line on stderr and exit code 2.

    User errors are `LearngeneError`s and file-system errors (`OSError`: the output dir is a file, a directory
    is read-only, the disk is full), which name the path involved.
    """
    try:
        return command(argv) or 0
    except LearngeneError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; to continue, rerun the same command (with --resume if it trains)",
            file=sys.stderr,
        )
        return 130
