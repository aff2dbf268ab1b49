"""Every console script answers `--help` (and each verb's `--help`) and `list` without importing torch, lists its
presets with a description, and gives `--threads` to every verb that does work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    name: target
    for toml in sorted(ROOT.glob("packages/*/pyproject.toml"))
    for name, target in tomllib.loads(toml.read_text())["project"].get("scripts", {}).items()
}
HEAVY = ("torch", "timm", "transformers", "accelerate", "peft", "torch_geometric")

PROBE = """
import contextlib, io, json, sys
from {module} import {func} as main
def run(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit:
            pass
    return out.getvalue()
top = run(["--help"])
verbs = sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else []
helps = {{verb: run([verb, "--help"]) for verb in verbs}}
listed = run(["list"]) if sys.argv[2] == "list" else None
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print(json.dumps({{"top": top, "verbs": helps, "list": listed, "heavy": heavy}}))
"""


def probe(script: str, verbs: list[str] = (), *, listing: bool = False) -> dict:
    """`script --help` (and each verb's `--help`, and `list` if `listing`) in one fresh interpreter, with the
    heavy modules they imported."""
    module, func = SCRIPTS[script].split(":")
    code = PROBE.format(module=module, func=func, heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code, ",".join(verbs), "list" if listing else ""],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def verbs_of(help_text: str) -> list[str]:
    """The verbs listed in the `{a,b,c}` line of a top-level help."""
    for line in help_text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return line[1:-1].split(",")
    raise AssertionError(f"no verb list in:\n{help_text}")


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_of_every_verb_imports_no_torch(script):
    verbs = verbs_of(probe(script)["top"])
    seen = probe(script, verbs)
    assert seen["heavy"] == [], f"`{script} --help` imported {seen['heavy']}: import them inside the command"
    for verb, text in seen["verbs"].items():
        assert f"usage: {script} {verb}" in text
        assert ("--threads N" in text) == (verb != "list"), (
            f"{script} {verb}: --threads on every working verb"
        )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_presets_each_with_a_description(script):
    text = probe(script)["top"]
    assert "presets (--config NAME):\n" in text, "make_parser(..., presets='<pkg>.configs') lists them"
    section = text.split("presets (--config NAME):\n", 1)[1].split("\n\n")[0].splitlines()
    assert section, f"{script} --help lists no presets"
    undescribed = [line.split()[0] for line in section if len(line.split()) < 2]
    assert undescribed == [], f"presets without a first comment line (their description): {undescribed}"


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_list_imports_no_torch_and_lists_the_presets(script):
    seen = probe(script, listing=True)
    assert seen["heavy"] == [], f"`{script} list` imported {seen['heavy']}: import them inside the command"
    assert seen["list"].startswith("presets (--config NAME):\n"), seen["list"]
