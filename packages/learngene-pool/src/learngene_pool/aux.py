"""Stage 1: distil the frozen ancestry into an auxiliary ViT whose blocks become pool instances.

The loss (core `Distiller`, Learngene Pool's form): alpha*CE + (1-alpha)*(soft CE + block-output MSE +
attention-output MSE), the features matched at `positions` through learnable teacher->student projections.
An auxiliary model directory is an ordinary run directory (config.yaml, metrics, final/) plus `aux.json`
(student kwargs, matched pairs, the ancestry's fingerprint) and `projections.safetensors`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from learngene_core import experiment
from learngene_core.checkpoint import atomic_write_text, load_weights, save_weights
from learngene_core.config import ModelConfig
from learngene_core.distill import Distiller
from learngene_core.errors import ConfigError, ModelError
from learngene_core.learngene import VIT_NAME, load_ancestry
from learngene_core.models import build_model, count_parameters

from .config import AuxConfig
from .manifest import read_manifest

AUX_NAME = "aux.json"
#: What build reads from aux.json (dotted path -> type), checked when it is read.
AUX_FIELDS = {"timm_kwargs": dict, "width": int, "depth": int, "block_projections": list,
              "parameters": int, "ancestry.fingerprint": str, "ancestry.source": str, "ancestry.width": int}  # fmt: skip
PROJECTIONS_NAME = "projections.safetensors"
AUX_FORMAT = "learngene-pool-aux"
AUX_VERSION = 1
POSITION_FRACTIONS = {"[front,end]": (1, 2, 3), "[mid,end]": (2, 3), "[end]": (3,)}


def matched_blocks(positions: str, depth: int) -> list[int]:
    """0-based block indices k*depth/3 - 1 for the position's thirds, e.g. [front,end] of 12 blocks: 3, 7, 11."""
    blocks = [k * depth // 3 - 1 for k in POSITION_FRACTIONS[positions]]
    if blocks[0] < 0 or len(set(blocks)) != len(blocks):
        raise ConfigError(
            f"positions {positions} need a deeper model than {depth} blocks (matched blocks {blocks})"
        )
    return blocks


def feature_pairs(positions: str, student_depth: int, teacher_depth: int, attention: bool) -> dict[str, str]:
    """Student module -> teacher module for block outputs (and attention outputs) at the matched positions."""
    pairs = {}
    matched = list(zip(matched_blocks(positions, student_depth), matched_blocks(positions, teacher_depth)))
    for s, t in matched:
        pairs[f"blocks.{s}"] = f"blocks.{t}"
    if attention:
        for s, t in matched:
            pairs[f"blocks.{s}.attn"] = f"blocks.{t}.attn"
    return pairs


def fingerprint(model: nn.Module) -> str:
    """sha256 of a model's tensors (names, shapes and values): tells whether two aux models share an ancestry."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_heads(kwargs: dict[str, Any], where: str) -> None:
    width, heads = kwargs.get("embed_dim"), kwargs.get("num_heads")
    if width is not None and heads is not None and (heads < 1 or width % heads):
        raise ConfigError(
            f"{where}: embed_dim {width} does not split into {heads} heads (embed_dim % num_heads != 0)"
        )


def student_kwargs(
    cfg: AuxConfig, teacher: VisionTransformer, num_classes: int, input_shape
) -> dict[str, Any]:
    """timm kwargs of the student: the ancestry's geometry (patch, image, channels, tokens, pooling) + cfg's."""
    if cfg.model.source != "timm":
        raise ConfigError("learngene-pool students are timm ViTs (model.source: timm)")
    geometry = {
        "img_size": input_shape[1],
        "in_chans": input_shape[0],
        "patch_size": teacher.patch_embed.patch_size[0],
        "class_token": teacher.cls_token is not None,
        "global_pool": teacher.global_pool,
        "num_classes": num_classes,
    }
    kwargs = {**geometry, **cfg.model.kwargs}
    check_heads(kwargs, "model.kwargs")
    return kwargs


def distill_aux(
    cfg: AuxConfig, output_dir: str | Path, *, resume: bool = False
) -> tuple[dict, dict[str, float]]:
    """Train one auxiliary model by distillation and write its directory; returns (aux manifest, test metrics)."""
    output_dir = Path(output_dir)
    experiment.check_output_dir(output_dir, cfg, resume)
    run = experiment.prepare_run(cfg)
    if run.splits.num_classes is None:
        raise ConfigError(
            f"data '{cfg.data.name}' is not image classification; the pool distils ViTs on images"
        )
    teacher, source = load_ancestry(cfg.ancestry, run.splits.num_classes, run.splits.input_shape)
    if not isinstance(teacher, VisionTransformer):
        raise ModelError(
            f"the ancestry ({source}) must be a timm VisionTransformer, got {type(teacher).__name__}"
        )
    kwargs = student_kwargs(cfg, teacher, run.splits.num_classes, run.splits.input_shape)
    set_seed(cfg.seed)
    student = build_model(ModelConfig("timm", VIT_NAME, kwargs))
    depth, teacher_depth = len(student.blocks), len(teacher.blocks)
    distill = cfg.distill
    if not distill.feature_pairs and distill.feature_weight > 0:
        pairs = feature_pairs(cfg.positions, depth, teacher_depth, cfg.match_attention)
        distill = dataclasses.replace(distill, feature_pairs=pairs)
    sample = next(iter(run.loaders[0]))[0][:2]
    try:
        distiller = Distiller(
            teacher,
            run.task,
            distill,
            student=student,
            sample_inputs=sample,
            label_smoothing=cfg.train.label_smoothing,
        )
    except ValueError as exc:
        raise ConfigError(f"distill.feature_pairs: {exc}") from None
    ancestry = {"source": source, "fingerprint": fingerprint(teacher), "parameters": count_parameters(teacher),
                "width": teacher.embed_dim, "depth": teacher_depth}  # fmt: skip
    metrics = experiment.train(
        cfg, output_dir, resume=resume, model=student, run=run, loss_fn=distiller,
        extra_modules=[distiller.projections], metadata={"method": "learngene-pool aux", "ancestry": source},
    )  # fmt: skip
    block_pairs = [s for s in distill.feature_pairs if not s.endswith(".attn")]
    manifest = {
        "format": AUX_FORMAT,
        "version": AUX_VERSION,
        "timm_kwargs": kwargs,
        "width": student.embed_dim,
        "depth": depth,
        "feature_pairs": distill.feature_pairs,
        "block_projections": block_pairs,  # the "transformation matrices" the `ours` stitch init averages
        "ancestry": ancestry,
        "parameters": count_parameters(student),
    }
    projections = {
        f"{name}.{k}": v
        for name in distill.feature_pairs
        for k, v in distiller.projection_of(name).state_dict().items()
    }
    if projections:  # none when the student is as wide as the teacher (identity projections)
        save_weights(projections, output_dir / PROJECTIONS_NAME)
    atomic_write_text(output_dir / AUX_NAME, json.dumps(manifest, indent=2))
    return manifest, metrics


def read_aux(directory: str | Path) -> dict[str, Any]:
    """The manifest of an auxiliary model directory, checked for format and version."""
    return read_manifest(
        directory,
        AUX_NAME,
        AUX_FORMAT,
        AUX_VERSION,
        "a learngene-pool auxiliary model",
        "write one with `distill`",
        AUX_FIELDS,
    )


def mean_block_projection(directory: str | Path, manifest: dict[str, Any]) -> torch.Tensor | None:
    """Mean over the matched positions of the learned block-output projections (teacher -> student), or None
    when they are identities (student as wide as the teacher)."""
    if manifest["width"] == manifest["ancestry"]["width"]:
        return None
    tensors = load_weights(Path(directory) / PROJECTIONS_NAME)
    return torch.stack([tensors[f"{name}.weight"] for name in manifest["block_projections"]]).mean(0)
