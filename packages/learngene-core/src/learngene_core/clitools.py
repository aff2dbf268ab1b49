"""The shared shape of every console script: common arguments, readable help, `--threads`, one-line errors.

A console script built from these helpers answers `--help` without importing torch: build the parser from
this module (and `config`, which needs only PyYAML) and import the heavy modules inside the command that
needs them. See the learngene-core README, "Writing a console script".

Exit codes of every script (`run_cli`): 0 done; 2 a user error (one `prog: error: ...` line naming the
culprit); 130 interrupted by Ctrl-C (the shell convention 128 + SIGINT; one line with the command that
continues the run); 141 its output pipe was closed by the reader (`| head`; 128 + SIGPIPE, silently).
"""

from __future__ import annotations

import argparse
import contextvars
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib import resources

from .errors import LearngeneError
from .threads import add_threads_argument, apply_threads

#: The destination of the `key.sub=value` positional (`add_config_arguments`, or a parser's own).
OVERRIDES = "overrides"


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
        OVERRIDES, nargs="*", metavar="key.sub=value", help=f"config overrides, e.g. {example}"
    )


def overrides_of(args: argparse.Namespace) -> list[str]:
    """The override list of parsed args, with `--seed` folded in."""
    return list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser that prints descriptions and epilogs as written (examples stay one per line), for
    itself and every sub-command; sub-commands get `--threads N` unless added with `threads=False`, and parsing
    applies it (before a command that imports torch lazily has imported it).

    `key.sub=value` overrides may stand anywhere among the options (`a=1 --resume b=2`), not only in one run:
    argparse fills a `*` positional once, so overrides after an option would otherwise be "unrecognized".
    `--help` and usage text written into a closed pipe raise BrokenPipeError (argparse would swallow it and
    exit 0), so `run_cli` ends silently with 141 as for any other output.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Verbs)

    def print_help(self, file=None) -> None:
        (file or sys.stdout).write(self.format_help())

    def print_usage(self, file=None) -> None:
        (file or sys.stdout).write(self.format_usage())

    def parse_known_args(self, args=None, namespace=None):
        parsed, extras = super().parse_known_args(args, namespace)
        if any(action.dest == OVERRIDES and not action.option_strings for action in self._actions):
            late = [arg for arg in extras if not arg.startswith("-")]  # overrides after an option
            parsed.overrides = [*(getattr(parsed, OVERRIDES) or []), *late]
            extras = [arg for arg in extras if arg.startswith("-")]
        if hasattr(parsed, "threads"):
            apply_threads(parsed.threads)
        _parsed.set(parsed)  # for `run_cli`'s interrupt message: does this verb take --resume?
        return parsed, extras


#: The arguments the running command parsed last (a sub-command parser parses first, the top level last).
_parsed: contextvars.ContextVar[argparse.Namespace | None] = contextvars.ContextVar("parsed", default=None)


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
    is read-only, the disk is full), which name the path involved. Ctrl-C is one line with the command that
    continues the run (`--resume` added when the verb has it) and exit code 130; a reader that closed the
    output pipe early (`prog list | head -1`) ends the script silently with exit code 141.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    token = _parsed.set(None)
    try:
        code = command(argv) or 0
    except SystemExit:  # argparse after --help or a usage error: what it printed may meet a closed pipe too
        if not _flushed():
            return 141
        raise
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except LearngeneError as exc:
        code = _error(prog, str(exc))
    except OSError as exc:
        code = _error(prog, describe_os_error(exc))
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted; {_continue_hint(prog, argv, _parsed.get())}")
        code = 130
    finally:
        _parsed.reset(token)
    return code if _flushed() else 141  # a closed pipe fails here, inside the guard, not at interpreter exit


def _continue_hint(prog: str, argv: list[str], parsed: argparse.Namespace | None) -> str:
    """How to go on after Ctrl-C: the same command, with `--resume` if the verb has that flag (a verb without it
    may refuse to start over in the output dir it wrote)."""
    if parsed is not None and hasattr(parsed, "resume"):
        again = argv if "--resume" in argv else [*argv, "--resume"]
        return f"to continue, run: {shlex.join([prog, *again])}"
    hint = f"to start over, run: {shlex.join([prog, *argv])}"
    writes = parsed is not None and any(hasattr(parsed, name) for name in ("output_dir", "output"))
    return f"{hint} (with a new --output-dir if it already wrote there)" if writes else hint


def _error(prog: str, message: str) -> int:
    _say(f"{prog}: error: {message}")
    return 2


def _say(line: str) -> None:
    """Print one line on stderr; if stderr is a closed pipe too, stay silent."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):
        pass


def _flushed() -> bool:
    """Flush stdout; False (and stdout silenced) if its reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return False
    return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what a closed pipe refused is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (e.g. captured by a test)
        pass
