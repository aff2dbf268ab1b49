"""CPU threads for torch: one `--threads N` option for every console script and a load-proof default.

Small models gain little from more than one thread on an idle machine, and lose badly when another job competes
for the cores (OpenMP threads spin and wait on each other), so the default is 1 unless `OMP_NUM_THREADS` says
otherwise. `tools/bench/threads.py` measures the default against torch's own on an idle and a busy machine.
This module imports no torch until threads are applied, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_THREADS = 1
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_applied: dict[str, Any] = {}


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads must be a whole number >= 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--threads must be >= 1, got {value}")
    return value


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: torch CPU threads for this command (in its own help section, after the command's options)."""
    parser.add_argument_group("CPU").add_argument(
        "--threads",
        type=_threads,
        default=None,
        metavar="N",
        help=f"torch CPU threads (default: $OMP_NUM_THREADS if set, else {DEFAULT_THREADS}: small models run "
        "about as fast on one and never slow down on a busy machine; raise it for big models on free cores)",
    )


def choose_threads(requested: int | None = None) -> dict[str, Any]:
    """The thread count to use and why: `--threads`, else a valid `OMP_NUM_THREADS`, else the default."""
    if requested is not None:
        return {"threads": requested, "source": "--threads"}
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return {"threads": int(env), "source": "OMP_NUM_THREADS"}
    return {"threads": DEFAULT_THREADS, "source": "default"}


def apply_threads(requested: int | None = None) -> dict[str, Any]:
    """Use the chosen thread count in this process and its children; return the choice (see `thread_record`).

    The environment variables are set first, so a torch imported afterwards starts with them; a torch already
    imported is told through `torch.set_num_threads`.
    """
    choice = choose_threads(requested)
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(choice["threads"])
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(choice["threads"])
    _applied.clear()
    _applied.update(choice)
    return dict(choice)


def thread_record() -> dict[str, Any]:
    """What a run records in its metadata: the threads torch uses, where the number came from, the wait policy."""
    import torch

    threads = torch.get_num_threads()
    if not _applied:
        source = "torch's setting (not started from a console script)"
    elif _applied["threads"] == threads:
        source = _applied["source"]
    else:
        source = "changed in code after --threads"
    return {
        "threads": threads,
        "source": source,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }
