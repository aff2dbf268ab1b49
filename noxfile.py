"""Nox sessions for the learngene monorepo.

The two commands you need:

    nox -s demo     # install every package, run tools/demo.py (trains on digits, prints a table)
    nox -t tests    # what CI runs (also plain `nox`): tests(<pkg>), integration, lint, build

Other sessions: `nox -s bench [-- NAME ...]` runs tools/bench/*.py, `nox -l` lists everything.
Fix lint locally with `ruff check --fix . && ruff format .`.

Torch is installed once, not once per session: the heavy third-party stack (BASE_REQUIREMENTS,
pinned by shared/constraints.txt) lives in a shared "base" venv outside the repo, at
$LEARNGENE_BASE_VENV or ~/.cache/learngene-nox/base-py<X.Y>-<sha256(constraints + list)[:12]>.
It is built on first use and only trusted once its marker file (written last) exists. Every
session venv gets a `_learngene_base.pth` pointing at the base's site-packages, so pip sees
torch & co as installed and only installs the repo packages (and anything missing) on top.
Packages are discovered from packages/*/pyproject.toml: a new package needs no edit here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import nox

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: nox depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = str(ROOT / "shared" / "constraints.txt")
BASE_REQUIREMENTS = [
    "torch", "torchvision", "timm", "transformers", "peft", "accelerate", "torch_geometric",
    "safetensors", "pyyaml", "tqdm", "numpy", "scikit-learn", "matplotlib", "pytest",
]  # fmt: skip
BASE_MARKER = ".learngene-base-complete"
TEST_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
# Session venvs skip ensurepip (~4 s each): `python -m pip` then runs the base venv's pip via the .pth.
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


# --------------------------------------------------------------------------- base venv
def _py_info(python: str | Path) -> tuple[str, str]:
    """(X.Y, purelib) of an interpreter."""
    code = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    version, purelib = out.split()[-2:]
    return version, purelib


def _base_location(py_version: str) -> Path:
    if os.environ.get("LEARNGENE_BASE_VENV"):
        return Path(os.environ["LEARNGENE_BASE_VENV"]).expanduser().resolve()
    key = Path(CONSTRAINTS).read_bytes() + "\n".join(BASE_REQUIREMENTS).encode()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "learngene-nox" / f"base-py{py_version}-{hashlib.sha256(key).hexdigest()[:12]}"


def _ensure_base(session: nox.Session, python: str | Path, py_version: str) -> str:
    """Return the base venv's site-packages, building the venv first if it is not complete."""
    base = _base_location(py_version)
    marker, building = base / BASE_MARKER, base / ".learngene-base-building"
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{base}.lock", "w") as lock:  # concurrent nox runs wait for one builder
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file():
            info = json.loads(marker.read_text())
            if info["python"] != py_version:
                session.error(f"base venv {base} is for Python {info['python']}, session uses {py_version}")
            session.log(f"base venv: {base} (reused)")
            return info["purelib"]
        if base.exists() and not building.exists() and any(base.iterdir()):
            session.error(
                f"{base} exists but is not a learngene base venv: remove it or change LEARNGENE_BASE_VENV"
            )
        if base.exists():
            session.warn(f"base venv {base} is incomplete (interrupted build?): rebuilding")
            shutil.rmtree(base)
        session.log(f"base venv: {base} (building: torch & co, ~3 min)")
        start = time.monotonic()
        base.mkdir()
        building.touch()
        pip = [str(base / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
        try:
            subprocess.run([str(python), "-m", "venv", str(base)], check=True)
            subprocess.run([*pip, "-c", CONSTRAINTS, *BASE_REQUIREMENTS], check=True)
        except subprocess.CalledProcessError as exc:
            session.error(f"building the base venv failed ({exc}); the next run starts over")
        info = {"python": py_version, "purelib": _py_info(base / "bin" / "python")[1]}
        (base / f"{BASE_MARKER}.tmp").write_text(json.dumps(info))
        os.replace(base / f"{BASE_MARKER}.tmp", marker)  # written last: from now on the base is trusted
        session.log(f"base venv: {base} (built in {time.monotonic() - start:.0f} s)")
        return info["purelib"]


def _attach_base(session: nox.Session, python: str | Path | None = None) -> None:
    """Make the base venv's packages visible to `python` (default: the session's) via a .pth file."""
    python = python or Path(session.bin) / "python"
    py_version, purelib = _py_info(python)
    base_site = _ensure_base(session, python, py_version)
    Path(purelib, "_learngene_base.pth").write_text(base_site + "\n")


# --------------------------------------------------------------------------- repo packages
def _with_local_deps(names) -> list[str]:
    """`names` plus the repo packages they depend on (transitively), dependencies first."""
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered:
            return
        for req in PYPROJECTS[name][1]["project"].get("dependencies", []):
            dep = _canon(re.match(r"\s*([\w.-]+)", req).group(1))
            if dep in PYPROJECTS:
                visit(dep)
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def _install_repo(session: nox.Session, names, extras_for=()) -> None:
    """Install repo packages (+ their repo deps); `extras_for` get their `test` extra.

    Regular (non-editable) installs: tests see what a wheel ships, and hatchling needs no `editables`.
    """
    names = _with_local_deps(names)
    build_reqs = {r for n in names for r in PYPROJECTS[n][1].get("build-system", {}).get("requires", [])}
    session.install("-c", CONSTRAINTS, *sorted(build_reqs))
    args = []
    for name in names:
        pkg_dir, data = PYPROJECTS[name]
        has_test_extra = "test" in data["project"].get("optional-dependencies", {})
        args.append(f"{pkg_dir}[test]" if name in extras_for and has_test_extra else str(pkg_dir))
    session.install("-c", CONSTRAINTS, "--no-build-isolation", *args)


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
        raise nox.command.CommandFailed(
            f"{' and '.join(failed)} failed; fix: ruff check --fix . && ruff format ."
        )


@nox.session(tags=["tests"], **WITH_BASE)
def build(session: nox.Session) -> None:
    """Build + check every package's sdist/wheel; install all wheels in one clean venv, run scripts --help.

    The clean venv sees only the base venv (via .pth) and the wheels: no checkout on sys.path.
    """
    build_reqs = {r for _, d in PYPROJECTS.values() for r in d.get("build-system", {}).get("requires", [])}
    _attach_base(session)  # only for its pip: the build itself needs just `build` + the backends
    session.install("-c", CONSTRAINTS, "build", *sorted(build_reqs))
    tmp = Path(session.create_tmp()).resolve()
    shutil.rmtree(tmp / "dist", ignore_errors=True)
    wheels, top_levels = [], set()
    for name, (pkg_dir, data) in PYPROJECTS.items():
        outdir = tmp / "dist" / name
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(outdir), _rel(pkg_dir))
        (sdist,), (wheel,) = outdir.glob("*.tar.gz"), outdir.glob("*.whl")
        with tarfile.open(sdist) as tar:
            in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        with zipfile.ZipFile(wheel) as whl:
            in_wheel = set(whl.namelist())
        readme = data["project"].get("readme", "README.md")
        readme = readme if isinstance(readme, str) else readme.get("file", "README.md")
        shipped = [
            p.relative_to(pkg_dir).as_posix()
            for pattern in ("src/**/*", "configs/**/*")
            for p in pkg_dir.glob(pattern)
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
        missing = [f"sdist: {f}" for f in ["pyproject.toml", readme, *shipped] if f not in in_sdist]
        missing += [f"wheel: {f}" for f in shipped if f.startswith("src/") and f[4:] not in in_wheel]
        if missing:
            session.error(f"{name}: files missing from the built distributions: {missing}")
        wheels.append(str(wheel))
        top_levels |= {n.split("/")[0] for n in in_wheel if n.count("/") == 1 and n.endswith("/__init__.py")}

    venv = tmp / "clean-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", "--without-pip", str(venv))
    _attach_base(session, venv / "bin" / "python")
    with session.chdir(tmp):  # keep the checkout off sys.path
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", "-c", CONSTRAINTS, *wheels, external=True)
        for module in sorted(top_levels):
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
    """Run every tools/bench/*.py, or only those named: `nox -s bench -- lora_speed other`."""
    bench_dir = ROOT / "tools" / "bench"
    if session.posargs:
        scripts = [bench_dir / (Path(a).stem + ".py") for a in session.posargs]
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
