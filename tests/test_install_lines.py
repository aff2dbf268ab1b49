"""Every `pip install` line in every README (commands and comments alike) installs only this repo's
distributions, by directory (`-e packages/<dir>`) or by index name, plus tools pinned in shared/constraints.txt."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
READMES = sorted([ROOT / "README.md", *ROOT.glob("packages/*/README.md")])
PACKAGE_DIRS = sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml"))
DISTS = {tomllib.loads((d / "pyproject.toml").read_text())["project"]["name"] for d in PACKAGE_DIRS}
PINNED = {
    re.split(r"[=<>~!]", line)[0].strip().lower().replace("_", "-")
    for line in (ROOT / "shared" / "constraints.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}
TAKEN_ON_INDEX = {"sws", "nino", "learngene"}  # other projects' names on the package index
OPTIONS_WITH_VALUE = {"-c", "--constraint", "-r", "--requirement", "--index-url", "--extra-index-url", "-i"}


def install_lines(readme: Path) -> list[str]:
    """The argument lists of every `pip install ...` in the file, up to a comment, `&&` or the line end."""
    found = []
    for line in readme.read_text().splitlines():
        for match in re.finditer(r"pip install ([^#&;`\n]*)", line):
            found.append(match.group(1).strip())
    return found


def requirements(args: str) -> list[str]:
    """The things an install line installs: `-e`/plain paths and names (options and their values dropped)."""
    words, wanted, skip = shlex.split(args), [], False
    for word in words:
        if skip:
            skip = False
        elif word in OPTIONS_WITH_VALUE:
            skip = True
        elif word == "-e" or word.startswith("-"):
            continue
        else:
            wanted.append(word)
    return wanted


def is_ours_or_pinned(requirement: str) -> bool:
    if requirement.startswith(("packages/", "./packages/")):
        return (ROOT / requirement / "pyproject.toml").is_file()
    name = re.split(r"[\[=<>~!]", requirement)[0].lower().replace("_", "-")
    return name in DISTS or (name in PINNED and name not in TAKEN_ON_INDEX)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_line_names_a_distribution_of_this_repo(readme):
    lines = install_lines(readme)
    assert lines, f"{readme.relative_to(ROOT)} shows no install line"
    bad = [(line, req) for line in lines for req in requirements(line) if not is_ours_or_pinned(req)]
    assert bad == []


@pytest.mark.parametrize("package", PACKAGE_DIRS, ids=lambda p: p.name)
def test_package_readme_installs_itself_from_the_clone_with_constraints(package):
    lines = install_lines(package / "README.md")
    needed = {f"packages/{package.name}", "packages/learngene-core", "shared/constraints.txt"}
    assert any(needed <= set(line.split()) for line in lines), (
        "a working install line from a clone (core is not on the index yet, so it comes along): "
        "pip install -c shared/constraints.txt -e packages/learngene-core -e packages/<dir>"
    )


def test_our_distribution_names_are_not_taken_on_the_index():
    assert DISTS.isdisjoint(TAKEN_ON_INDEX)


def test_the_checker_rejects_other_projects_names():
    for foreign in ("sws", "nino", "learngene", "packages/no-such-package"):
        assert not is_ours_or_pinned(foreign), foreign
    for ours in ("learngene-sws", "learngene-nino", "packages/tleg", "nox"):
        assert is_ours_or_pinned(ours), ours
