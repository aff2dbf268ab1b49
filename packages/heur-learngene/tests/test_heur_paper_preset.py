"""The paper presets read a CIFAR-100 stream of 5-class tasks from a local path (sizes shrunk for a test)."""

from __future__ import annotations

import json

from heur_learngene.cli import main
from learngene_core.learngene import Learngene
from learngene_core.testing import write_fake_cifar100

SMALL = ["model.kwargs.widths=[4,4,4,4,4,4,4,4,4,4,4,4,4]", "model.kwargs.hidden=8", "train.epochs=1"]


def test_paper_presets_run_a_cifar100_stream_from_a_local_path(tmp_path):
    data = write_fake_cifar100(tmp_path / "cifar", n_train=2000, n_test=500, num_classes=100)
    run = tmp_path / "run"
    code = main(["collective", "--config", "paper", "--output-dir", str(run), f"data.path={data}",
                 "stream.classes=[0,1,2,3,4,5,6,7,8,9]", *SMALL])  # fmt: skip
    assert code == 0
    stream = [json.loads(line) for line in (run / "stream.jsonl").read_text().splitlines()]
    assert [r["classes"] for r in stream] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    learngene = Learngene.load(run / "learngene", "heur-learngene")
    assert learngene.manifest["input_shape"] == [3, 32, 32] and len(learngene.spec["layers"]) == 2
    code = main(["train", "--learngene", str(run / "learngene"), "--config", "paper-descendant",
                 "--output-dir", str(tmp_path / "d"), f"data.path={data}", "train.epochs=1"])  # fmt: skip
    assert code == 0 and (tmp_path / "d" / "final" / "model.safetensors").is_file()
