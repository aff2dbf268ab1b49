"""Every verb of every console script that takes `key.sub=value` overrides takes them anywhere among its options:
before, between and after flags (`a=1 --resume b=2`), in the order given."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

from learngene_core.clitools import OVERRIDES, CliParser

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # tests/ helpers (pytest runs with import-mode=importlib)
from test_cli_help import SCRIPTS  # noqa: E402


class Parsed(Exception):
    """Raised instead of running the command: carries the parser and what it parsed."""


@pytest.fixture
def parse(monkeypatch):
    """`parse(script, argv)` -> (top-level parser, namespace): the script's own parsing of argv, nothing run."""

    def parse_args(self, args=None, namespace=None):
        raise Parsed(self, argparse.ArgumentParser.parse_args(self, args, namespace))

    monkeypatch.setattr(CliParser, "parse_args", parse_args)

    def run(script: str, argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
        module, func = SCRIPTS[script].split(":")
        with pytest.raises(Parsed) as parsed:
            getattr(importlib.import_module(module), func)(argv)
        return parsed.value.args

    return run


def _verbs_with_overrides(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [verbs] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        verb: sub
        for verb, sub in verbs.choices.items()
        if any(a.dest == OVERRIDES and not a.option_strings for a in sub._actions)
    }


def _argv(verb: str, sub: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """`verb`, its required options, and overrides before, between and after two of its flags."""
    required = [
        arg
        for a in sub._actions
        if a.required and a.option_strings
        for arg in (a.option_strings[0], (list(a.choices) if a.choices else ["x"])[0])
    ]
    options = {o for a in sub._actions for o in a.option_strings}
    flags = [["--resume"], ["--seed", "3"], ["--threads", "1"]]
    flags = [flag for flag in flags if flag[0] in options]
    assert flags, f"{verb}: no option to put overrides around"
    overrides = [f"k{i}.sub=-{i}" for i in range(len(flags) + 1)]
    between = [arg for override, flag in zip(overrides, flags) for arg in (override, *flag)]
    return [verb, *required, *between, overrides[-1]], overrides


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_overrides_may_stand_on_both_sides_of_any_option(script, parse):
    parser, _ = parse(script, ["list"] if script != "learngene-pool" else ["list", "--pool", "x"])
    verbs = _verbs_with_overrides(parser)
    assert verbs, f"{script}: no verb takes key.sub=value overrides"
    for verb, sub in verbs.items():
        argv, overrides = _argv(verb, sub)
        _, args = parse(script, argv)
        assert getattr(args, OVERRIDES) == overrides, f"{script} {' '.join(argv)}"


def test_an_unknown_option_among_overrides_is_still_a_usage_error(capsys):
    from learngene_core.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", "digits-vit", "--output-dir", "x", "a=1", "--bogus", "b=2"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
