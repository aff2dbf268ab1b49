"""Stage 2: order the auxiliary models' blocks by width into a pool, add stitch layers, train it one config per step.

A pool directory is the build's run directory (config.yaml, metrics, best/, final/ = the pool's weights) plus
`pool.json` (format version, instances with their timm kwargs, every config, the ancestry's fingerprint, and every
descendant's parameters and FLOPs, which `list` prints without importing torch).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from learngene_core import experiment
from learngene_core.checkpoint import atomic_write_text, load_model_weights
from learngene_core.config import from_dict, read_yaml_file
from learngene_core.distill import Distiller
from learngene_core.errors import CheckpointError, ConfigError
from learngene_core.learngene import load_ancestry
from learngene_core.models import count_parameters

from .aux import mean_block_projection, read_aux
from .config import AuxConfig, BuildConfig
from .listing import list_descendants
from .manifest import POOL_FORMAT, POOL_NAME, POOL_VERSION, read_pool_manifest
from .pool import LearngenePool
from .stitch_init import init_lstsq, init_ours

SHARED_GEOMETRY = ("img_size", "in_chans", "patch_size", "class_token", "global_pool", "num_classes")


def _checked_aux(directories: list[str]) -> list[tuple[Path, dict[str, Any]]]:
    """(directory, manifest) of every aux model, ordered by width; one ancestry, one geometry, one depth."""
    if len(directories) < 2:
        raise ConfigError(
            f"a pool needs at least two auxiliary models (aux: [dir1, dir2, ...]), got {directories}"
        )
    found = [(Path(d), read_aux(d)) for d in directories]
    first_dir, first = found[0]
    for directory, manifest in found[1:]:
        if manifest["ancestry"]["fingerprint"] != first["ancestry"]["fingerprint"]:
            raise ConfigError(
                f"aux model {directory} was distilled from another ancestry ({manifest['ancestry']['source']}) "
                f"than {first_dir} ({first['ancestry']['source']}); a pool comes from one ancestry"
            )
        for key in SHARED_GEOMETRY:
            if manifest["timm_kwargs"].get(key) != first["timm_kwargs"].get(key):
                raise ConfigError(
                    f"aux model {directory} has {key}={manifest['timm_kwargs'].get(key)} but {first_dir} has "
                    f"{first['timm_kwargs'].get(key)}; pool instances share patch, image size, tokens and classes"
                )
        if manifest["depth"] != first["depth"]:
            raise ConfigError(
                f"aux model {directory} has {manifest['depth']} blocks but {first_dir} has {first['depth']}; "
                "paired stitching needs instances of one depth"
            )
    return sorted(found, key=lambda item: item[1]["width"])


def _images(loader, count: int) -> torch.Tensor:
    batches, seen = [], 0
    for inputs, _ in loader:
        batches.append(inputs)
        seen += len(inputs)
        if seen >= count:
            break
    return torch.cat(batches)[:count]


def assemble_pool(cfg: BuildConfig, run: experiment.Run) -> tuple[LearngenePool, list[tuple[Path, dict]]]:
    """The untrained pool of `cfg.aux` for `run`'s data: instance weights loaded, stitch layers initialised."""
    aux = _checked_aux(cfg.aux)
    kwargs = [m["timm_kwargs"] for _, m in aux]
    pool = LearngenePool(kwargs, nearest=cfg.nearest_stitching, train_ids=cfg.train_ids)
    shape = (kwargs[0]["in_chans"], kwargs[0]["img_size"], kwargs[0]["img_size"])
    if tuple(run.splits.input_shape) != shape or run.splits.num_classes != kwargs[0]["num_classes"]:
        raise ConfigError(
            f"data gives {run.splits.num_classes} classes of {tuple(run.splits.input_shape)} images but the aux "
            f"models take {kwargs[0]['num_classes']} classes of {shape}; build on the data they were distilled on"
        )
    for instance, (directory, _) in zip(pool.instances, aux):
        load_model_weights(instance, directory / "final")
    if cfg.stitch_init == "ours":
        teacher_width = aux[0][1]["ancestry"]["width"]
        init_ours(pool, [mean_block_projection(d, m) for d, m in aux], teacher_width)
    else:
        init_lstsq(pool, _images(run.loaders[0], cfg.lstsq_samples))
    return pool, aux


def build_pool(
    cfg: BuildConfig, output_dir: str | Path, *, resume: bool = False
) -> tuple[dict, dict[str, float]]:
    """Build the pool from `cfg.aux`, initialise its stitches, train it and write the pool directory."""
    output_dir = Path(output_dir)
    experiment.check_output_dir(output_dir, cfg, resume)
    run = experiment.prepare_run(cfg)
    pool, aux = assemble_pool(cfg, run)
    hooks: dict[str, Any] = {}
    if cfg.distill is not None:
        aux_cfg = from_dict(AuxConfig, _run_config(aux[0][0]), source=str(aux[0][0]))
        teacher, _ = load_ancestry(aux_cfg.ancestry, run.splits.num_classes, run.splits.input_shape)
        hooks["loss_fn"] = Distiller(
            teacher, run.task, cfg.distill, label_smoothing=cfg.train.label_smoothing
        )
    manifest = {
        "format": POOL_FORMAT,
        "version": POOL_VERSION,
        "instances": [
            {
                "aux": str(d),
                "timm_kwargs": m["timm_kwargs"],
                "width": m["width"],
                "parameters": m["parameters"],
            }
            for d, m in aux
        ],
        "depth": pool.depth,
        "nearest_stitching": cfg.nearest_stitching,
        "train_ids": pool.train_ids,
        "stitch_init": cfg.stitch_init,
        "configs": [c.as_dict() for c in pool.configs],
        "ancestry": aux[0][1]["ancestry"],
        "parameters": count_parameters(pool),
    }
    metrics = experiment.train(
        cfg, output_dir, resume=resume, model=pool, run=run, metadata={"method": "learngene-pool"}, **hooks
    )
    # every descendant's parameters and FLOPs, so `list` prints them without torch
    manifest["descendants"] = [asdict(row) for row in list_descendants(pool)]
    atomic_write_text(output_dir / POOL_NAME, json.dumps(manifest, indent=2))
    return manifest, metrics


def _run_config(directory: Path) -> dict:
    config = read_yaml_file(directory / experiment.CONFIG_NAME, CheckpointError)
    if not isinstance(config, dict):
        raise CheckpointError(f"{directory / experiment.CONFIG_NAME} holds no YAML mapping")
    return config


def load_pool(directory: str | Path, weights: str = "final") -> tuple[LearngenePool, dict[str, Any]]:
    """The trained pool of a pool directory (eval mode) and its manifest."""
    directory = Path(directory)
    manifest = read_pool_manifest(directory)
    pool = LearngenePool(
        [i["timm_kwargs"] for i in manifest["instances"]],
        nearest=manifest["nearest_stitching"],
        train_ids=manifest["train_ids"],
    )
    load_model_weights(pool, directory / weights)
    return pool.eval(), manifest
