"""The shared "base" venv behind the nox sessions (imported by ../noxfile.py).

Installing torch & co takes minutes, so it happens once: the heavy third-party stack lives in one
venv outside the repo, at $LEARNGENE_BASE_VENV or
``${XDG_CACHE_HOME:-~/.cache}/learngene-nox/base-py<X.Y>-<sha256(constraints + requirements)[:12]>``
(so editing shared/constraints.txt or the requirement list selects a fresh base; old ones can be
deleted by hand). It is built in place on first use and trusted only once its marker file, written
last, exists: an interrupted build is deleted and redone by the next run. A lock file serialises
concurrent nox runs.

A session venv uses the base through a ``_learngene_base.pth`` file in its purelib holding the
base's site-packages path: Python appends that path to sys.path (after the venv's own packages),
so pip sees torch etc. as already installed and installs only what is missing into the session
venv; it never modifies the base ("outside environment").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import nox

MARKER = ".learngene-base-complete"  # json: python version + site-packages path; written last
BUILDING = ".learngene-base-building"  # written first: this directory is ours to delete
PTH_NAME = "_learngene_base.pth"


def py_info(python: str | Path) -> tuple[str, str]:
    """Return ("X.Y", purelib) of an interpreter."""
    code = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout
    version, purelib = out.split()[-2:]
    return version, purelib


def base_location(constraints: str, requirements: Sequence[str], py_version: str) -> Path:
    if os.environ.get("LEARNGENE_BASE_VENV"):
        return Path(os.environ["LEARNGENE_BASE_VENV"]).expanduser().resolve()
    key = Path(constraints).read_bytes() + "\n".join(requirements).encode()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "learngene-nox" / f"base-py{py_version}-{hashlib.sha256(key).hexdigest()[:12]}"


def ensure_base(
    session: nox.Session, python: str | Path, py_version: str, constraints: str, requirements: Sequence[str]
) -> str:
    """Return the site-packages of the base venv for Python `py_version`, building the base if needed."""
    base = base_location(constraints, requirements, py_version)
    marker, building = base / MARKER, base / BUILDING
    base.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{base}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.is_file():
            info = json.loads(marker.read_text())
            if info["python"] != py_version:
                session.error(f"base venv {base} is for Python {info['python']}, not {py_version}")
            session.log(f"base venv: {base} (reused)")
            return info["purelib"]
        if base.exists() and any(base.iterdir()) and not building.exists():
            session.error(
                f"{base} exists but is no learngene base venv: delete it or set LEARNGENE_BASE_VENV"
            )
        if base.exists():
            session.warn(f"base venv {base} is incomplete (interrupted build?): rebuilding it")
            shutil.rmtree(base)
        session.log(f"base venv: {base} (building it: torch & co, ~3 min)")
        start = time.monotonic()
        base.mkdir()
        building.touch()
        pip = [str(base / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off"]
        try:
            subprocess.run([str(python), "-m", "venv", str(base)], check=True)
            subprocess.run([*pip, "-c", constraints, *requirements], check=True)
        except subprocess.CalledProcessError as exc:
            session.error(f"building the base venv failed ({exc}); the next run starts it over")
        info = {"python": py_version, "purelib": py_info(base / "bin" / "python")[1]}
        marker.with_suffix(".tmp").write_text(json.dumps(info))
        os.replace(marker.with_suffix(".tmp"), marker)  # from now on the base is trusted
        session.log(f"base venv: {base} (built in {time.monotonic() - start:.0f} s)")
        return info["purelib"]


def attach_base(
    session: nox.Session, constraints: str, requirements: Sequence[str], python: str | Path | None = None
) -> None:
    """Make the base venv's packages visible to `python` (default: the session's) via a .pth file."""
    python = python or Path(session.bin) / "python"
    py_version, purelib = py_info(python)
    site_packages = ensure_base(session, python, py_version, constraints, requirements)
    Path(purelib, PTH_NAME).write_text(site_packages + "\n")
