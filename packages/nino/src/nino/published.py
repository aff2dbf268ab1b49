"""NiNo checkpoints by name: the shipped one and the authors' published ones, fetched on first use.

`resolve_checkpoint("nino-no-posw")` returns a local path: the published file is downloaded once from the
authors' repository at a pinned commit (see `checkpoints/SOURCE.md`), checked against its pinned sha256 and
kept in the cache folder, `$NINO_CACHE` or else `$XDG_CACHE_HOME/nino` (`~/.cache/nino`). `$NINO_CHECKPOINT_URL`
replaces the download base (a mirror URL, a `file://` URL or a plain folder). Offline, the error says which
file to put where. Any other string is a path to a checkpoint file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from learngene_core.checkpoint import temp_file
from learngene_core.errors import CheckpointError

__all__ = ["PUBLISHED", "REPO", "COMMIT", "cache_dir", "checkpoint_names", "resolve_checkpoint"]

logger = logging.getLogger("nino")

REPO = "SamsungSAILMontreal/nino"
COMMIT = "84fb0cf2a12e06dfcafd9a1550621a1acd16f35b"
SHIPPED = "nino-cpu"  # the checkpoint inside the package
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Published:
    filename: str
    sha256: str
    description: str


PUBLISHED = {
    "nino-no-posw": Published(
        "nino_no_posw.pt",
        "2e2186e4a0e50193080eb9074648786ef25cd5ac3149a7df790127fe41101620",
        "NiNo GNN without the GPT-2 token embedding (549,992 parameters; states 200 steps apart)",
    ),
    "nino-mlp": Published(
        "nino_mlp.pt",
        "34d9ff3703274fa07615e27937dac8ea07f375ed95b5bde6d39abd8c41c06f52",
        "WNN+ per-parameter MLP baseline (57,384 parameters; states 200 steps apart)",
    ),
}


def checkpoint_names() -> list[str]:
    """Every name `resolve_checkpoint` knows: the shipped checkpoint first, then the published ones."""
    return [SHIPPED, *PUBLISHED]


def cache_dir() -> Path:
    """Where published checkpoints are kept: $NINO_CACHE, else $XDG_CACHE_HOME/nino, else ~/.cache/nino."""
    if os.environ.get("NINO_CACHE"):
        return Path(os.environ["NINO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nino"


def download_url(name: str) -> str:
    """The URL of a published checkpoint (at the pinned commit, or under $NINO_CHECKPOINT_URL)."""
    base = (
        os.environ.get("NINO_CHECKPOINT_URL")
        or f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/checkpoints"
    )
    if "://" not in base:  # a plain folder
        base = Path(base).expanduser().resolve().as_uri()
    return f"{base.rstrip('/')}/{PUBLISHED[name].filename}"


def resolve_checkpoint(ckpt: str | os.PathLike | None) -> Path | None:
    """A local checkpoint path for `ckpt`: None (the shipped one, resolved by `load_nino`), a known name, or a
    path. Published names are downloaded and verified on first use; a bad name or path is a CheckpointError."""
    if ckpt is None or str(ckpt) == SHIPPED:
        return None
    text = str(ckpt)
    if text in PUBLISHED:
        return _fetch(text)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise CheckpointError(f"NiNo checkpoint {path} is not a file")
    if path.suffix or os.sep in text or "/" in text:
        raise CheckpointError(f"NiNo checkpoint not found: {path}")
    raise CheckpointError(
        f"unknown NiNo checkpoint {text!r}: give a path to a .pt file or one of {', '.join(checkpoint_names())}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(name: str) -> Path:
    entry = PUBLISHED[name]
    target = cache_dir() / entry.filename
    if target.is_file():
        found = _sha256(target)
        if found != entry.sha256:
            raise CheckpointError(
                f"{target} has sha256 {found[:12]}..., not the published {name}'s {entry.sha256[:12]}...; "
                "delete it to download it again"
            )
        return target
    url = download_url(name)
    logger.info("downloading NiNo checkpoint %s from %s to %s", name, url, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_file(target)  # the umask's mode, not mkstemp's 0600
    except OSError as exc:
        raise CheckpointError(
            f"cannot write to the NiNo cache folder {target.parent}: {exc.strerror}"
        ) from None
    try:
        with tmp.open("wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        found = _sha256(tmp)
        if found != entry.sha256:
            raise CheckpointError(
                f"the file downloaded from {url} has sha256 {found[:12]}..., not the published {name}'s "
                f"{entry.sha256[:12]}...; nothing was saved"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise CheckpointError(
            f"cannot download NiNo checkpoint {name!r} from {url} ({reason}); offline, put {entry.filename} "
            f"(github.com/{REPO}, commit {COMMIT[:7]}, checkpoints/) at {target}, or set NINO_CACHE to a "
            "folder holding it"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
