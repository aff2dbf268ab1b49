"""CPU threads for torch: one `--threads N` option for every console script and a load-proof default.

With OpenMP's default wait policy, torch's threads spin while they wait for each other, so on a busy machine a
small model trains many times slower than on an idle one (`tools/bench/threads.py`: 20-30x on the shared 2-core
CI machine). Idle threads that sleep instead (`OMP_WAIT_POLICY=PASSIVE`) remove that; one thread does too, but
was about 3x slower there. So the default is torch's own thread count with `OMP_WAIT_POLICY=PASSIVE`, which has
to be set before torch is imported: a console script parses its arguments first and imports torch afterwards.
Where torch is already loaded without it (a script that imports torch at the top, a test calling `main`), the
default is one thread. `--threads N` or `OMP_NUM_THREADS` choose the count; an `OMP_WAIT_POLICY` you set is kept.
This module imports no torch until threads are applied, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

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
        help="torch CPU threads (default: $OMP_NUM_THREADS if set, else torch's own count with idle threads "
        "sleeping, OMP_WAIT_POLICY=PASSIVE, which keeps small models fast on a busy machine)",
    )


def _sleeping_threads_possible() -> bool:
    """Whether torch's idle threads will sleep: torch not loaded yet, or loaded with a passive wait policy."""
    return "torch" not in sys.modules or os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def choose_threads(requested: int | None = None) -> dict[str, Any]:
    """The thread count to use and why; `threads` None means torch's own count (idle threads sleeping)."""
    if requested is not None:
        return {"threads": requested, "source": "--threads"}
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return {"threads": int(env), "source": "OMP_NUM_THREADS"}
    if _sleeping_threads_possible():
        return {"threads": None, "source": "default"}
    return {"threads": 1, "source": "default (torch was loaded before OMP_WAIT_POLICY could be set)"}


def apply_threads(requested: int | None = None) -> dict[str, Any]:
    """Use the chosen threads in this process and its children; return the choice (see `thread_record`).

    Environment variables are set first, so a torch imported afterwards starts with them; a torch already
    imported is told through `torch.set_num_threads`.
    """
    choice = choose_threads(requested)
    if choice["threads"] is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    else:
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
    elif _applied["threads"] in (None, threads):
        source = _applied["source"]
    else:
        source = "changed in code after --threads"
    return {
        "threads": threads,
        "source": source,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
    }
