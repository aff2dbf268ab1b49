"""Nox sessions for the learngene monorepo.

The two commands you need:

    nox -s demo     # install every package, run tools/demo.py (trains on digits, prints a table)
    nox -t tests    # what CI runs (also plain `nox`): tests(<pkg>), integration, lint, build

Also: `nox -s bench [-- NAME ...]` runs tools/bench/*.py; `nox -l` lists the sessions;
`nox -s "tests(learngene-core)" -- -k config` passes pytest arguments. Fix lint findings with
`ruff check --fix . && ruff format .`.

Torch is installed once, not once per session: BASE_REQUIREMENTS (pinned by shared/constraints.txt,
like every pip install here) live in a shared "base" venv outside the repo, at $LEARNGENE_BASE_VENV
or ~/.cache/learngene-nox/base-py<X.Y>-<hash>, built on first use (~3 min). Each session venv sees
it through a .pth file, so pip installs only the repo packages (and anything missing) on top.
Details: tools/nox_base.py. Packages are discovered from packages/*/pyproject.toml: a new package
joins every session without an edit here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: nox depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tools"))
import nox_base  # noqa: E402

CONSTRAINTS = str(ROOT / "shared" / "constraints.txt")
BASE_REQUIREMENTS = [
    "torch", "torchvision", "timm", "transformers", "peft", "accelerate", "torch_geometric",
    "safetensors", "pyyaml", "tqdm", "numpy", "scikit-learn", "matplotlib", "pytest",
]  # fmt: skip
TEST_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
# Venvs that get the base skip ensurepip (~4 s each): `python -m pip` is the base's pip, via the .pth.
WITH_BASE = {"venv_params": ["--without-pip"]}

nox.options.default_venv_backend = "venv"
nox.options.tags = ["tests"]  # bare `nox` == `nox -t tests`


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


PYPROJECTS = {}  # canonical dist name -> (package dir, parsed pyproject.toml)
for _toml in sorted(ROOT.glob("packages/*/pyproject.toml")):
    _data = tomllib.loads(_toml.read_text())
    PYPROJECTS[_canon(_data["project"]["name"])] = (_toml.parent, _data)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _has_tests(directory: Path) -> bool:
    return any(directory.rglob("test_*.py")) or any(directory.rglob("*_test.py"))


def _attach_base(session: nox.Session, python: str | Path | None = None) -> None:
    nox_base.attach_base(session, CONSTRAINTS, BASE_REQUIREMENTS, python)


def _build_requires(names) -> list[str]:
    return sorted({r for n in names for r in PYPROJECTS[n][1].get("build-system", {}).get("requires", [])})


def _with_local_deps(names) -> list[str]:
    """`names` plus the repo packages they depend on (transitively), dependencies first."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name not in ordered:
            for req in PYPROJECTS[name][1]["project"].get("dependencies", []):
                if (dep := _canon(re.match(r"\s*([\w.-]+)", req).group(1))) in PYPROJECTS:
                    visit(dep)
            ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def _install_repo(session: nox.Session, names, extras_for=()) -> None:
    """pip-install repo packages (+ the repo packages they need); those in `extras_for` with their
    `test` extra. Regular installs, not editable: tests see what the wheel ships."""
    names = _with_local_deps(names)
    session.install("-c", CONSTRAINTS, *_build_requires(names))
    specs = []
    for name in names:
        pkg_dir, data = PYPROJECTS[name]
        with_test = name in extras_for and "test" in data["project"].get("optional-dependencies", {})
        specs.append(f"{pkg_dir}[test]" if with_test else str(pkg_dir))
    session.install("-c", CONSTRAINTS, "--no-build-isolation", *specs)


def _should_ship(pkg_dir: Path) -> list[str]:
    """Files under src/ and configs/ (tracked or untracked-but-not-ignored), relative to pkg_dir."""
    dirs = [d for d in ("src", "configs") if (pkg_dir / d).is_dir()]
    git = ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *dirs]
    listed = subprocess.run(git, cwd=pkg_dir, capture_output=True, text=True)
    if listed.returncode == 0:
        files = [f for f in listed.stdout.splitlines() if (pkg_dir / f).is_file()]
    else:  # not a git checkout
        files = [
            p.relative_to(pkg_dir).as_posix() for d in dirs for p in (pkg_dir / d).rglob("*") if p.is_file()
        ]
    return [f for f in files if "__pycache__" not in f and not f.endswith(".pyc")]


# --------------------------------------------------------------------------- sessions
@nox.session(tags=["tests"], **WITH_BASE)
@nox.parametrize("package", [nox.param(name, id=name) for name in PYPROJECTS])
def tests(session: nox.Session, package: str) -> None:
    """Unit tests of one package (packages/<pkg>/tests) in its own venv."""
    tests_dir = PYPROJECTS[package][0] / "tests"
    if not _has_tests(tests_dir):
        session.error(f"{_rel(tests_dir)} has no test_*.py files: every package must have tests")
    _attach_base(session)
    _install_repo(session, [package], extras_for=[package])
    session.run("python", "-m", "pytest", _rel(tests_dir), *session.posargs, env=TEST_ENV)


@nox.session(tags=["tests"], **WITH_BASE)
def integration(session: nox.Session) -> None:
    """Cross-package tests in the root tests/ directory, with every package installed."""
    if not _has_tests(ROOT / "tests"):
        session.skip("tests/ has no test files yet")
    _attach_base(session)
    _install_repo(session, PYPROJECTS, extras_for=PYPROJECTS)
    session.run("python", "-m", "pytest", "tests", *session.posargs, env=TEST_ENV)


@nox.session(tags=["tests"])
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check (config: root pyproject.toml)."""
    session.install("-c", CONSTRAINTS, "ruff")
    targets = [p for p in ("packages", "tests", "tools", "noxfile.py") if (ROOT / p).exists()]
    failed = []
    for command in (["check"], ["format", "--check"]):
        try:
            session.run("ruff", *command, *targets)
        except nox.command.CommandFailed:
            failed.append("ruff " + " ".join(command))
    if failed:
        session.warn(f"{' and '.join(failed)} failed; fix locally: ruff check --fix . && ruff format .")
        raise nox.command.CommandFailed()


@nox.session(tags=["tests"], **WITH_BASE)
def build(session: nox.Session) -> None:
    """Build + check each package's sdist/wheel; install all wheels in one clean venv, run scripts --help.

    The clean venv has the base (.pth) and the wheels, nothing from the checkout.
    """
    _attach_base(session)  # only for its pip: building needs just `build` + the build backends
    session.install("-c", CONSTRAINTS, "build", *_build_requires(PYPROJECTS))
    tmp = Path(session.create_tmp()).resolve()
    shutil.rmtree(tmp / "dist", ignore_errors=True)
    wheels, modules = [], set()
    for name, (pkg_dir, data) in PYPROJECTS.items():
        outdir = tmp / "dist" / name
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(outdir), _rel(pkg_dir))
        (sdist,), (wheel,) = outdir.glob("*.tar.gz"), outdir.glob("*.whl")  # wheel is built from the sdist
        with tarfile.open(sdist) as tar:
            in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        with zipfile.ZipFile(wheel) as whl:
            in_wheel = set(whl.namelist())
        readme = data["project"].get("readme", "README.md")
        readme = readme if isinstance(readme, str) else readme.get("file", "README.md")
        shipped = _should_ship(pkg_dir)
        missing = [f"sdist: {f}" for f in ["pyproject.toml", readme, *shipped] if f not in in_sdist]
        missing += [f"wheel: {f}" for f in shipped if f.startswith("src/") and f[4:] not in in_wheel]
        if missing:
            session.error(f"{name}: files missing from the built distributions: {missing}")
        wheels.append(str(wheel))
        modules |= {n.split("/")[0] for n in in_wheel if n.count("/") == 1 and n.endswith("/__init__.py")}

    venv = tmp / "clean-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", "--without-pip", str(venv))
    _attach_base(session, venv / "bin" / "python")
    python = str(venv / "bin" / "python")
    with session.chdir(tmp):  # keep the checkout off sys.path
        session.run(python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, *wheels, external=True)
        for module in sorted(modules):
            check = f"import {module}; assert {module}.__file__.startswith({str(venv)!r}), {module}.__file__"
            session.run(python, "-c", check, env=TEST_ENV, external=True)
        for _, data in PYPROJECTS.values():
            for script in data["project"].get("scripts", {}):
                session.run(str(venv / "bin" / script), "--help", env=TEST_ENV, external=True)


@nox.session(**WITH_BASE)
def demo(session: nox.Session) -> None:
    """Install every package and run tools/demo.py (arguments after `--` are passed through)."""
    if not (ROOT / "tools" / "demo.py").is_file():
        session.error("tools/demo.py does not exist yet")
    _attach_base(session)
    _install_repo(session, PYPROJECTS)
    session.run("python", "tools/demo.py", *session.posargs)


@nox.session(**WITH_BASE)
def bench(session: nox.Session) -> None:
    """Run every tools/bench/*.py, or only those named: `nox -s bench -- NAME [NAME ...]`."""
    bench_dir = ROOT / "tools" / "bench"
    if session.posargs:
        scripts = [bench_dir / f"{Path(arg).stem}.py" for arg in session.posargs]
        if unknown := [_rel(s) for s in scripts if not s.is_file()]:
            session.error(f"no such benchmark: {unknown}")
    else:
        scripts = sorted(p for p in bench_dir.glob("*.py") if not p.name.startswith("_"))
    if not scripts:
        session.skip("tools/bench/ has no benchmarks yet")
    _attach_base(session)
    _install_repo(session, PYPROJECTS)
    for script in scripts:
        session.run("python", _rel(script))
