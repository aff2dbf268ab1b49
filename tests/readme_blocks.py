"""The ```bash blocks of the repo's READMEs, as the README tests run them.

A block runs as written, in a fresh temporary directory per README (blocks of one README run in order and share
it, as a reader following that README would), with the repo's `shared/` beside it. Lines that set up an
environment (`python3 -m venv ...`, `pip install ...`) are skipped: the test environment has every package
installed (tests/test_install_lines.py checks those lines). An HTML comment right above a block changes that:

    <!-- readme-test: skip (needs GPUs) -->          not run; the reason in parentheses is required
    <!-- readme-test: append train.epochs=1 -->      run at its smallest size: these overrides are appended
                                                     to every command of the block that takes --config
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md"))]
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|append)\s*(.*?)\s*-->")
SETUP = re.compile(r"^\s*(python3? -m venv|pip install|\. \.venv/bin/activate|source \.venv/bin/activate)")


@dataclass
class Block:
    readme: Path
    line: int  # 1-based line of the opening fence
    commands: list[str]
    skip: str | None = None  # the reason, for a skipped block
    append: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.readme.relative_to(ROOT)}:{self.line}"

    def script(self) -> str:
        """The block as a bash script: setup lines dropped, the smallest-size overrides appended."""
        lines = []
        for command in self.commands:
            if SETUP.match(command):
                continue
            if self.append and "--config" in command.split("#")[0].split():
                code = command.partition("  #")[0]
                command = f"{code.rstrip()} {' '.join(self.append)}"
            lines.append(command)
        return "\n".join(lines)


def blocks(readme: Path) -> list[Block]:
    """Every ```bash block of `readme`, with its marker."""
    found, marker, inside, start, body = [], None, False, 0, []
    for number, line in enumerate(readme.read_text().splitlines(), start=1):
        if inside:
            if line.strip() == "```":
                found.append(_block(readme, start, body, marker))
                inside, marker = False, None
            else:
                body.append(line)
        elif line.strip() in ("```bash", "```sh", "```console"):
            inside, start, body = True, number, []
        elif match := MARKER.search(line):
            marker = match
        elif line.strip():
            marker = None  # a marker applies only to the block right below it
    return found


def _block(readme: Path, start: int, body: list[str], marker) -> Block:
    commands = join_continuations(body)
    block = Block(readme, start, commands)
    if marker is not None and marker.group(1) == "skip":
        reason = marker.group(2).strip()
        if not (reason.startswith("(") and reason.endswith(")") and len(reason) > 2):
            raise ValueError(f"{block.name}: readme-test skip needs a reason in parentheses")
        block.skip = reason[1:-1]
    elif marker is not None:
        block.append = shlex.split(marker.group(2))
    return block


def join_continuations(body: list[str]) -> list[str]:
    """The commands of shell lines: comment lines dropped, lines ending in a backslash joined to the next."""
    commands, pending = [], ""
    for line in body:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def all_blocks() -> list[Block]:
    return [block for readme in READMES for block in blocks(readme)]


def normalise(command: str) -> str:
    """A command without its trailing comment and with single spaces, for comparing with --help examples."""
    code = command.split("  #")[0]
    return " ".join(code.split())
