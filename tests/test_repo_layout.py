"""Repository-wide promises: every package is complete, versions move in lockstep, nothing reads ../shared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in ROOT.glob("packages/*/pyproject.toml"))
CORE = ROOT / "packages" / "learngene-core"


def _project(package: Path) -> dict:
    return tomllib.loads((package / "pyproject.toml").read_text())["project"]


def test_core_is_there():
    assert CORE in PACKAGES


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_package_is_complete(package):
    project = _project(package)
    assert project["name"] in (package.name, f"learngene-{package.name}"), (
        "dist name = directory name, or learngene-<dir> where the index already has <dir>"
    )
    assert (package / "README.md").read_text().strip(), "every package has a README"
    assert project.get("scripts"), "every package has a console script"
    assert list((package / "tests").glob("test_*.py")), "every package has tests"
    import_name = package.name.replace("-", "_")
    assert (package / "src" / import_name / "__init__.py").is_file()


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != CORE], ids=lambda p: p.name)
def test_method_packages_pin_core_to_their_own_version(package):
    project, version = _project(package), _project(CORE)["version"]
    assert project["version"] == version
    assert f"learngene-core=={version}" in [d.replace(" ", "") for d in project["dependencies"]]
    assert "learngene.methods" in project.get("entry-points", {}), (
        "method packages register for `learngene list`"
    )


def test_nothing_in_the_repo_reads_the_team_folder():
    pattern = re.compile(r"\.\./shared|\.\.[/\\]\.\.[/\\]shared")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("packages", "tools", "tests")
        for path in (ROOT / folder).rglob("*.py")
        if path != Path(__file__).resolve() and pattern.search(path.read_text())
    ]
    assert offenders == []
