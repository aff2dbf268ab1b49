"""READMEs as tests: every ```bash block of the root and package READMEs runs (see tests/readme_blocks.py for
the rules and markers), the READMEs never write to the same output directory, and every example of every
console script's `--help` is a command of a README block (so it runs too, or is marked as needing data/GPUs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # tests/ helpers (pytest runs with import-mode=importlib)
from readme_blocks import READMES, ROOT, all_blocks, blocks, join_continuations, normalise  # noqa: E402
from test_cli_help import SCRIPTS, probe  # noqa: E402

OUTPUT_OPTIONS = ("--output-dir", "--output", "--plot")


def readme_id(readme: Path) -> str:
    return str(readme.relative_to(ROOT))


@pytest.mark.parametrize("readme", READMES, ids=readme_id)
def test_readme_commands_run_as_written(readme, tmp_path):
    """All blocks of one README, in order, in a fresh directory (a reader following that README)."""
    runnable = [b for b in blocks(readme) if b.skip is None and b.script().strip()]
    if not runnable:
        pytest.skip("no runnable command blocks")
    (tmp_path / "shared").symlink_to(ROOT / "shared")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)  # the console scripts' own default applies, as for a reader
    for block in runnable:
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.script()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, (
            f"{block.name} failed (exit {result.returncode}):\n{block.script()}\n--- stderr:\n{result.stderr[-3000:]}"
        )


def output_dirs(command: str) -> set[str]:
    words = command.split("  #")[0].split()
    return {words[i + 1].rstrip("/") for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS}


def test_readmes_never_write_to_the_same_directory():
    """Following two READMEs in one clone must not fail on "output dir not empty"."""
    owner: dict[str, str] = {}
    clashes = []
    for block in (b for readme in READMES for b in blocks(readme)):
        for command in block.commands:
            for path in output_dirs(command):
                first = owner.setdefault(path, readme_id(block.readme))
                if first != readme_id(block.readme):
                    clashes.append(f"{path}: {first} and {block.name}")
    assert clashes == []


def help_examples(script: str) -> list[str]:
    """The example commands in `script --help` (the lines of its `examples` section)."""
    text = probe(script)["top"]
    section = re.split(r"\nexamples[^\n]*:\n", text, maxsplit=1)
    assert len(section) == 2, f"{script} --help has no examples section"
    lines = section[1].split("\n\n")[0].splitlines()
    return [normalise(command) for command in join_continuations(lines)]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_help_example_is_a_readme_command(script):
    in_readmes = {normalise(c) for b in all_blocks() for c in b.commands}
    missing = [example for example in help_examples(script) if example not in in_readmes]
    assert missing == [], (
        f"`{script} --help` examples not found in any README ```bash block (so not run by the README tests)"
    )


def test_skipped_blocks_give_a_reason_and_bash_is_there():
    assert shutil.which("bash")
    assert all(b.skip for b in all_blocks() if b.skip is not None)
