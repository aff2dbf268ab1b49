"""Meta-training: windows carry exactly the normalised trajectory, and the L1 loss falls on tiny data."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from learngene_core.errors import DataError
from nino.checkpoint import load_nino
from nino.collect import flat_params
from nino.metatrain import MetatrainConfig, WindowSampler, batch_loss, build_nino_net, cosine_lr, metatrain
from nino.normalize import EPS, normalize_per_tensor
from nino.tasks import build_task_model, graph_args
from nino.trajectories import Trajectory, TrajectoryWriter, open_dataset

TINY = dict(hid=16, layers=2, horizon=10, min_future=5, windows_per_trajectory=2, progress=False)


def test_window_edge_features_are_the_normalised_past_and_targets_the_normalised_future(trajectory_dir):
    dataset = open_dataset(trajectory_dir)
    dataset.trajectories = [t for t in dataset if t.task == "cnn-digits-16"]
    cfg = MetatrainConfig(**TINY)
    sampler = WindowSampler(dataset, cfg, random.Random(0))
    windows = sampler.sample()
    assert len(windows) == 2
    graph, _ = sampler.graph(dataset[0].param_names, dataset[0].param_shapes, {})
    w = windows[0]
    past = graph.params_from_edges(w.data.edge_attr.view(-1, cfg.max_feat_size, cfg.ctx))  # [P, ctx]
    # re-derive the window from the stored array: the past is normalised, the target uses the past's stats
    array = dataset[0].array().astype(np.float32)
    for start in range(len(array) - cfg.ctx):
        raw = torch.from_numpy(array[start : start + cfg.ctx]).T
        normed, mu, sigma = normalize_per_tensor(raw, graph.param_sizes)
        if torch.allclose(normed, past, atol=1e-5):
            break
    else:
        pytest.fail("the window's input is not a normalised run of ctx consecutive states")
    future = torch.from_numpy(array[start + cfg.ctx : start + cfg.ctx + w.target.shape[1]]).T
    assert torch.allclose(w.target, (future - mu) / (sigma + EPS), atol=1e-5)
    assert w.target.shape[1] == cfg.horizon  # enough states remain: all horizons present


def test_a_model_that_predicts_the_targets_has_zero_loss(trajectory_dir):
    dataset = open_dataset(trajectory_dir)
    cfg = MetatrainConfig(**TINY)
    windows = WindowSampler(dataset, cfg, random.Random(1)).sample()

    class Oracle(torch.nn.Module):
        def forward(self, batch):
            out = torch.zeros(batch.num_edges, cfg.max_feat_size, cfg.horizon)
            offset = 0
            for w in windows:
                out[offset + w.param_edge, w.param_slot, : w.target.shape[1]] = w.target
                offset += w.data.num_edges
            return out

    assert batch_loss(Oracle(), windows).item() == 0.0
    assert batch_loss(build_nino_net(cfg), windows).item() > 0.0


def test_meta_training_loss_falls_on_a_tiny_trajectory_set(trajectory_dir):
    torch.manual_seed(0)
    cfg = MetatrainConfig(**TINY, lr=3e-2)
    sampler = WindowSampler(open_dataset(trajectory_dir), cfg, random.Random(0))
    fixed = [w for _ in range(2) for w in sampler.sample()]
    model = build_nino_net(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses = []
    for _ in range(30):
        loss = batch_loss(model, fixed)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0], losses


def test_metatrain_cli_writes_a_loadable_checkpoint_and_metrics(nino_ckpt):
    model = load_nino(nino_ckpt)
    assert sum(p.numel() for p in model.parameters()) > 0 and model.hid == 16
    records = [json.loads(line) for line in (nino_ckpt.parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[-1]["lr"] < records[0]["lr"]  # cosine decay


def test_cosine_schedule_runs_from_lr_to_min_lr():
    assert cosine_lr(0, 100, 3e-3, 1e-6) == pytest.approx(3e-3)
    assert cosine_lr(100, 100, 3e-3, 1e-6) == pytest.approx(1e-6)
    assert cosine_lr(50, 100, 3e-3, 1e-6) == pytest.approx((3e-3 + 1e-6) / 2)


def test_large_vocabulary_is_subsampled_with_original_token_ids(tmp_path):
    model = build_task_model("gpt2-tiny")  # vocab 128
    init = flat_params(model).numpy()
    states = init[None] + 0.01 * np.random.default_rng(0).standard_normal((12, init.size)).astype("f4")
    meta = Trajectory(file="", task="gpt2-tiny", model="gpt2-tiny", seed=0,
                      param_names=[n for n, _ in model.named_parameters()],
                      param_shapes=[list(p.shape) for p in model.parameters()], graph_args=graph_args(model))  # fmt: skip
    TrajectoryWriter(tmp_path).add(meta, states)
    cfg = MetatrainConfig(**{**TINY, "vocab_sample": 16})
    windows = WindowSampler(open_dataset(tmp_path), cfg, random.Random(0)).sample()
    token_ids = windows[0].data.pos_w[windows[0].data.pos_w > 0] - 1
    assert len(token_ids) == 16 and token_ids.unique().numel() == 16
    assert int(token_ids.max()) < 128 and bool((token_ids.diff() > 0).all())
    assert windows[0].target.shape[0] == init.size - (128 - 16) * 32


def test_trajectories_too_short_for_a_window_are_a_data_error(trajectory_dir):
    cfg = MetatrainConfig(hid=8, horizon=40, min_future=40)  # needs 5 + 40 + 3 states; the fixture has 21
    with pytest.raises(DataError, match="needs"):
        WindowSampler(open_dataset(trajectory_dir), cfg, random.Random(0))


def test_reference_lm1b_trajectory_gives_the_spec_graph_with_1000_sampled_tokens(tmp_path):
    (tmp_path / "lm1b-3-24").mkdir()
    states = np.random.default_rng(0).standard_normal((12, 1_252_464)).astype(np.float16)
    states.tofile(tmp_path / "lm1b-3-24" / "model0.dat")  # raw float16 memmap, 12 checkpoints
    cfg = MetatrainConfig(**TINY, wte_pos_enc=True)
    windows = WindowSampler(open_dataset(tmp_path), cfg, random.Random(0)).sample()
    data = windows[0].data
    assert (data.num_nodes, data.num_edges) == (2_665, 73_249)  # spec A.4.4 for LM1B-3-24 with V = 1,000
    assert int((data.pos_w > 0).sum()) == 1_000 and int(data.pos_w.max()) <= 50_257
    assert windows[0].target.shape[0] == 1_252_464 - (50_257 - 1_000) * 24


def test_kept_checkpoints_are_the_states_at_their_steps(tmp_path, trajectory_dir):
    cfg = MetatrainConfig(**TINY, steps=4, checkpoint_every=2, keep_checkpoints=True, log_every=2)
    final = metatrain(cfg, trajectory_dir, tmp_path / "run")
    kept = sorted((tmp_path / "run").glob("nino-step*.pt"))
    assert [p.name for p in kept] == ["nino-step00002.pt", "nino-step00004.pt"]
    flat = lambda path: torch.cat([p.flatten() for p in load_nino(path).parameters()])  # noqa: E731
    assert torch.equal(flat(kept[1]), flat(final))
    assert not torch.equal(flat(kept[0]), flat(final))  # step 2's weights, not a copy of the last


def test_state_stride_meta_trains_on_every_nth_snapshot_and_records_that_spacing(tmp_path, trajectory_dir):
    base = dict(TINY, steps=1, checkpoint_every=1, log_every=1)
    strided = load_nino(metatrain(MetatrainConfig(**base, state_stride=2), trajectory_dir, tmp_path / "a"))
    assert (
        strided.snapshot_every
        == 2 * load_nino(metatrain(MetatrainConfig(**base), trajectory_dir, tmp_path / "b")).snapshot_every
        == 20
    )
    # 21 snapshots at stride 4 leave 6 states, fewer than a window's 5 + 5 + 1: refused, naming the need
    with pytest.raises(DataError, match="needs"):
        metatrain(MetatrainConfig(**base, state_stride=4), trajectory_dir, tmp_path / "c")
