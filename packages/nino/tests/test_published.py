"""Checkpoints by name: download on first use from a (here local) base URL, pinned sha256, cache, clear errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

import nino.published as published
from learngene_core.errors import CheckpointError
from nino.checkpoint import load_nino, save_nino, shipped_checkpoint
from nino.model import WNNPlus
from nino.published import COMMIT, PUBLISHED, Published, cache_dir, checkpoint_names, resolve_checkpoint


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'repository' folder holding a tiny WNN+ as nino_mlp.pt, pinned by its own sha256, and an empty
    cache; returns (mirror folder, cache folder)."""
    src, cache = tmp_path / "mirror", tmp_path / "cache"
    torch.manual_seed(0)
    path = save_nino(WNNPlus(hid=4), src / "nino_mlp.pt")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(PUBLISHED, "nino-mlp", Published("nino_mlp.pt", sha, "tiny stand-in"))
    monkeypatch.setenv("NINO_CHECKPOINT_URL", str(src))
    monkeypatch.setenv("NINO_CACHE", str(cache))
    return src, cache


def test_a_name_is_downloaded_once_verified_cached_and_loaded(mirror):
    src, cache = mirror
    net = load_nino("nino-mlp")
    assert isinstance(net, WNNPlus) and net.hid == 4 and net.snapshot_every == 200
    cached = cache / "nino_mlp.pt"
    assert cached.read_bytes() == (src / "nino_mlp.pt").read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == ["nino_mlp.pt"]  # no temp file left behind
    (src / "nino_mlp.pt").unlink()  # second use: from the cache, no download
    assert resolve_checkpoint("nino-mlp") == cached


def test_file_urls_work_as_download_base(mirror, monkeypatch):
    src, cache = mirror
    monkeypatch.setenv("NINO_CHECKPOINT_URL", src.as_uri())
    assert resolve_checkpoint("nino-mlp") == cache / "nino_mlp.pt"


def test_a_download_with_the_wrong_sha256_is_refused_and_not_kept(mirror):
    src, cache = mirror
    (src / "nino_mlp.pt").write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="sha256") as info:
        resolve_checkpoint("nino-mlp")
    assert "\n" not in str(info.value)
    assert list(cache.iterdir()) == []


def test_offline_error_says_which_file_to_put_where(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("NINO_CHECKPOINT_URL", str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError) as info:
        load_nino("nino-mlp")
    message = str(info.value)
    assert "\n" not in message and "cannot download" in message
    assert (
        "put nino_mlp.pt" in message and str(mirror[1] / "nino_mlp.pt") in message and "NINO_CACHE" in message
    )


def test_a_corrupt_cached_file_is_named(mirror):
    cache = mirror[1]
    cache.mkdir()
    (cache / "nino_mlp.pt").write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match="delete it"):
        resolve_checkpoint("nino-mlp")


def test_unknown_names_and_missing_paths_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="unknown NiNo checkpoint 'nino-big'.*nino-no-posw, nino-mlp"):
        load_nino("nino-big")
    with pytest.raises(CheckpointError, match="not found"):
        load_nino(tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_nino(tmp_path)


def test_shipped_name_and_none_are_the_packaged_checkpoint():
    assert checkpoint_names()[0] == "nino-cpu"
    assert resolve_checkpoint(None) is None and resolve_checkpoint("nino-cpu") is None
    assert load_nino("nino-cpu").state_dict().keys() == load_nino(None).state_dict().keys()
    assert shipped_checkpoint().is_file()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NINO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nino"
    monkeypatch.setenv("NINO_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_default_url_is_the_pinned_commit(monkeypatch):
    monkeypatch.delenv("NINO_CHECKPOINT_URL", raising=False)
    url = published.download_url("nino-no-posw")
    assert (
        url
        == f"https://raw.githubusercontent.com/SamsungSAILMontreal/nino/{COMMIT}/checkpoints/nino_no_posw.pt"
    )


def test_source_md_pins_the_same_commit_and_hashes():
    text = (Path(published.__file__).parent / "checkpoints" / "SOURCE.md").read_text()
    assert COMMIT in text
    for name, entry in PUBLISHED.items():
        assert f"`{name}` | `{entry.filename}`" in text and entry.sha256 in text


@pytest.mark.skipif(not os.environ.get("NINO_OFFICIAL_DIR"), reason="set NINO_OFFICIAL_DIR")
def test_the_real_files_download_from_a_local_copy_and_verify(monkeypatch, tmp_path):
    monkeypatch.setenv("NINO_CHECKPOINT_URL", os.environ["NINO_OFFICIAL_DIR"])
    monkeypatch.setenv("NINO_CACHE", str(tmp_path))
    assert sum(p.numel() for p in load_nino("nino-no-posw").parameters()) == 549_992
    assert sum(p.numel() for p in load_nino("nino-mlp").parameters()) == 57_384
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nino_mlp.pt", "nino_no_posw.pt"]


def test_the_cached_file_gets_the_umask_mode(mirror):
    old = os.umask(0o022)
    try:
        path = resolve_checkpoint("nino-mlp")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
