"""Stitch-layer initialisation: `ours` from the learned distillation projections, `lstsq` from features.

ours: instance X's mean block projection M_X maps teacher features to X's width (identity when X is as wide as the
teacher). A stitch from A to B is M_B @ M_A^T: for the paper's tiny -> base stitches (base as wide as the teacher)
that is the transpose of tiny's mean projection; for other pairs it goes A -> teacher space -> B (our extension).
lstsq: SN-Net's fit of the end instance's block-b output from the front's block-a output on one batch of images,
averaged over the positions that share a stitch layer. Biases: zero (ours), fitted (lstsq).
"""

from __future__ import annotations

import torch

from .pool import LearngenePool, pair_key
from .stitching import stitch_pairs


@torch.no_grad()
def init_ours(pool: LearngenePool, projections: list[torch.Tensor | None], teacher_width: int) -> None:
    """`projections[k]`: instance k's mean block projection (width_k x teacher_width), None for an identity."""
    for i, j in stitch_pairs(len(pool.instances), pool.nearest):
        layers = pool.stitches[pair_key(i, j)]
        if not isinstance(layers[0], torch.nn.Linear):
            continue  # equal widths: Identity
        m_a = projections[i] if projections[i] is not None else torch.eye(teacher_width)
        m_b = projections[j] if projections[j] is not None else torch.eye(teacher_width)
        weight = m_b @ m_a.T
        for layer in layers:
            layer.weight.copy_(weight)
            layer.bias.zero_()


@torch.no_grad()
def block_features(model, images: torch.Tensor) -> list[torch.Tensor]:
    """Every block's output over all tokens, as (images * tokens, width) matrices."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    outputs = []
    for block in model.blocks:
        x = block(x)
        outputs.append(x.reshape(-1, x.shape[-1]))
    return outputs


@torch.no_grad()
def init_lstsq(pool: LearngenePool, images: torch.Tensor) -> None:
    """Least-squares stitches fitted on the features of `images` (SN-Net's init)."""
    was_training = pool.training
    pool.eval()
    features = [block_features(instance, images) for instance in pool.instances]
    pool.train(was_training)
    for i, j in stitch_pairs(len(pool.instances), pool.nearest):
        layers = pool.stitches[pair_key(i, j)]
        if not isinstance(layers[0], torch.nn.Linear):
            continue
        for s, layer in enumerate(layers):
            fits = []
            for cfg in pool.configs:
                if (cfg.front, cfg.end, cfg.stitch) == (i, j, s):
                    x, y = features[i][cfg.front_block], features[j][cfg.end_block]
                    x1 = torch.cat([x, torch.ones(len(x), 1)], 1).double()
                    fits.append(torch.linalg.lstsq(x1, y.double()).solution)
            solution = torch.stack(fits).mean(0).float()
            layer.weight.copy_(solution[:-1].T)
            layer.bias.copy_(solution[-1])
