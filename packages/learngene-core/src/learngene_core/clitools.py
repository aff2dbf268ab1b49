"""The shared shape of every console script: common arguments and one-line errors instead of tracebacks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import LearngeneError


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


def make_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


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
