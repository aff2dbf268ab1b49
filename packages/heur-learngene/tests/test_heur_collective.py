"""The collective model over a class-disjoint stream: widening per task, the computed criterion, the learngene."""

from __future__ import annotations

import json

import pytest
import torch

from heur_learngene.collective import stream_tasks as task_classes
from heur_learngene.config import StreamConfig
from heur_learngene.criterion import rank_layers
from learngene_core.checkpoint import load_weights
from learngene_core.errors import DataError
from learngene_core.learngene import Learngene


def records(path):
    return [json.loads(line) for line in (path / "stream.jsonl").read_text().splitlines()]


def test_stream_cuts_the_class_order_into_disjoint_tasks():
    assert task_classes(StreamConfig([3, 1, 4, 0, 5, 2], 2)) == [[3, 1], [4, 0], [5, 2]]
    assert task_classes(StreamConfig([0, 1, 2, 3, 4], 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(DataError, match="repeats class 1"):
        task_classes(StreamConfig([0, 1, 2, 1], 2))


def test_each_task_widens_the_previous_layer_by_half(collective_dir, capsys):
    stream = records(collective_dir)
    assert [r["classes"] for r in stream] == [[0, 1], [2, 3], [4, 5]]
    assert [r["widened_layer"] for r in stream] == [None, 0, 1]
    learngene = Learngene.load(collective_dir / "learngene", "heur-learngene")
    assert learngene.arch["kwargs"]["widths"][:3] == [12, 12, 16]  # 8 -> 12, 8 -> 12, 16 unchanged


def test_every_task_learns_its_classes(collective_dir):
    assert all(r["test"]["accuracy"] > 0.8 for r in records(collective_dir))


def test_ranking_follows_the_recorded_criterion(collective_dir):
    stream = records(collective_dir)
    learngene = Learngene.load(collective_dir / "learngene", "heur-learngene")
    spec = learngene.spec
    late = stream[-2:]  # late_fraction 0.5 of 3 tasks -> the last 2
    scores = [sum(r["gradient"][i] for r in late) / 2 for i in range(13)]
    assert spec["scores"] == pytest.approx(scores)
    assert spec["layers"] == sorted(sorted(range(13), key=lambda i: scores[i])[:3])
    assert spec["ranking"][:3] == sorted(range(13), key=lambda i: scores[i])[:3]


def test_rank_layers_picks_the_smallest_late_stream_scores():
    stream = [
        {"task": 0, "update": [0.0, 9.0, 9.0]},  # early tasks do not count with late_fraction 0.5
        {"task": 1, "update": [5.0, 1.0, 2.0]},
        {"task": 2, "update": [5.0, 3.0, 1.0]},
    ]
    choice = rank_layers(stream, "update", 0.5, 1)
    assert choice["late_tasks"] == [1, 2] and choice["scores"] == [5.0, 2.0, 1.5]
    assert choice["ranking"] == [2, 1, 0] and choice["layers"] == [2]


def test_learngene_tensors_are_the_final_collective_layers_bit_for_bit(collective_dir):
    learngene = Learngene.load(collective_dir / "learngene", "heur-learngene")
    final = load_weights(collective_dir / "collective" / "task-02" / "final" / "model.safetensors")
    assert learngene.tensors and all(torch.equal(v, final[k]) for k, v in learngene.tensors.items())
    prefixes = {k.rsplit(".", 1)[0] for k in learngene.tensors}
    assert prefixes == {f"features.{i}" for i in learngene.spec["layers"]}


def test_collective_prints_the_ranking_and_choose_rewrites_it(collective_dir, tmp_path, capsys):
    from heur_learngene.cli import main

    assert main(["choose", "--run", str(collective_dir), "--output-dir", str(tmp_path / "lg"),
                 "method.criterion=update", "method.k=2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "layer ranking by update" in out and out.count("| yes |") == 2
    learngene = Learngene.load(tmp_path / "lg", "heur-learngene")
    assert learngene.spec["criterion"] == "update" and len(learngene.spec["layers"]) == 2
    assert main(["choose", "--run", str(collective_dir), "--layers", "11,12", "--output-dir",
                 str(tmp_path / "ref")]) == 0  # fmt: skip
    assert Learngene.load(tmp_path / "ref").spec["layers"] == [11, 12]


@pytest.mark.parametrize("preset", ["tiny", "tiny-vit", "paper"])
def test_presets_load_and_cut_class_disjoint_streams(preset):
    from heur_learngene.config import CollectiveConfig
    from learngene_core.config import load_config

    cfg = load_config(preset, [], CollectiveConfig, "heur_learngene.configs")
    tasks = task_classes(cfg.stream)
    assert len({c for t in tasks for c in t}) == sum(map(len, tasks))
    if preset == "paper":
        assert cfg.data.name == "cifar100" and len(tasks) == 16 and all(len(t) == 5 for t in tasks)
