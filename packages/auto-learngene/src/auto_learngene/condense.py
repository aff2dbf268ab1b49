"""Condensing: train a pseudo-descendant with meta-learned transfer from the ancestry, read out the transfer
weights, and keep the ancestry layers with the largest aggregated weight as the learngene.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from learngene_core import experiment
from learngene_core.checkpoint import read_metadata, save_weights
from learngene_core.config import ExperimentConfig, ModelConfig, from_dict, read_yaml_file
from learngene_core.errors import MISMATCH_ERRORS, CheckpointError, ConfigError, ModelError, first_line
from learngene_core.learngene.artifact import Learngene
from learngene_core.learngene.extract import load_ancestry
from learngene_core.learngene.inherit import format_ranking, layer_prefixes, make_layer_learngene, top_k
from learngene_core.models import build_model

from .config import CondenseConfig
from .meta import AncestryFeatures, MetaTransferLoss
from .transfer import MetaWeights, Regressor, Student, layer_pairs

METHOD = "auto-learngene"
PSEUDO_RUN = "pseudo-descendant"
LEARNGENE_DIR = "learngene"


def ancestry_model_config(cfg: CondenseConfig) -> tuple[ModelConfig, tuple[int, ...]]:
    """The model config that rebuilds the ancestry, and the input shape it was trained on."""
    if cfg.ancestry.run:
        run = Path(cfg.ancestry.run)
        config = run / experiment.CONFIG_NAME
        if not config.is_file():
            raise CheckpointError(
                f"ancestry.run: {config} not found (a `learngene train` or heur collective run)"
            )
        model = from_dict(ExperimentConfig, read_yaml_file(config, CheckpointError), source=str(config)).model
        shape = read_metadata(run / cfg.ancestry.checkpoint).get("input_shape")
        if not isinstance(shape, list):
            raise CheckpointError(
                f"{run / cfg.ancestry.checkpoint}/metadata.json records no input_shape list"
            )
        return model, tuple(shape)
    if cfg.ancestry.model is None or not cfg.ancestry.model.checkpoint:
        raise ConfigError("set ancestry.run=<run dir> or ancestry.model with model.checkpoint")
    return cfg.ancestry.model, ()


def aggregate(weights: dict[tuple[int, int], float], num_layers: int, how: str) -> list[float]:
    """lambda_m: the sum (or max) over paired descendant layers n of the mean weight lambda_{m,n}."""
    scores = []
    for m in range(num_layers):
        values = [v for (mm, _), v in weights.items() if mm == m]
        scores.append((sum(values) if how == "sum" else max(values)) if values else 0.0)
    return scores


def condense(
    cfg: CondenseConfig, output_dir: str | Path, resume: bool = False
) -> tuple[Learngene, dict[str, Any]]:
    """Meta-train on the pseudo-descendant task, pick the top-k layers, save the learngene in output_dir/learngene.
    With `resume`, meta-training continues from the pseudo-descendant's checkpoint (meta-network included)."""
    output_dir = Path(output_dir)
    experiment.check_runs_dir(output_dir, cfg, PSEUDO_RUN, resume)
    spec = cfg.method
    arch, trained_shape = ancestry_model_config(cfg)
    exp = ExperimentConfig(arch, cfg.data, cfg.train, cfg.seed)
    run = experiment.prepare_run(exp)
    shape = run.splits.input_shape
    if len(shape) == 3 and trained_shape and trained_shape[0] != shape[0]:
        raise ConfigError(
            f"the ancestry takes {trained_shape[0]}-channel inputs but data '{cfg.data.name}' has {shape[0]} "
            "(set data.channels)"
        )
    ancestry, source = load_ancestry(cfg.ancestry, None, shape, run.splits.vocab_size)
    num_layers = len(layer_prefixes(ancestry))
    if spec.k > num_layers:
        raise ConfigError(f"method.k={spec.k} is larger than the ancestry's {num_layers} layers")
    set_seed(cfg.seed)
    net = build_model(
        arch, num_classes=run.splits.num_classes, input_shape=shape, vocab_size=run.splits.vocab_size
    )
    probe = next(iter(run.loaders[0]))[0][:2]
    features = AncestryFeatures(ancestry)
    sources = _named_on_mismatch(f"the ancestry ({source})", features, probe)
    pairs = layer_pairs(num_layers, num_layers, spec.max_layer_distance)
    student = Student(net, {}, spec.feature_norm)
    with torch.no_grad():
        _named_on_mismatch(f"the pseudo-descendant ({arch.name})", student.net, probe)
    targets = student.tap.take()
    student.regressors.update({f"{m}_{n}": Regressor(targets[n], sources[m]) for m, n in pairs})
    loss = MetaTransferLoss(features, MetaWeights(sources, pairs, spec.weight_activation), spec, run.task)
    experiment.save_runs_config(cfg, output_dir, resume)
    metrics = experiment.train(
        exp, output_dir / PSEUDO_RUN, resume=resume, model=student, run=run, loss_fn=loss,
        metadata={"method": METHOD, "ancestry": source},
    )  # fmt: skip
    weights = loss.mean_weights(run.loaders[0], spec.score_batches)
    scores = aggregate(weights, num_layers, spec.aggregate)
    layers = top_k(scores, spec.k, largest=True)
    choice = {
        "scores": scores,
        "ranking": sorted(range(num_layers), key=lambda i: (-scores[i], -i)),
        "layers": layers,
        "weights": [[weights.get((m, n)) for n in range(num_layers)] for m in range(num_layers)],
    }
    spec_record = {key: value for key, value in choice.items() if key != "layers"}
    learngene = make_layer_learngene(
        METHOD, ancestry, arch, layers, spec_record,
        {"input_shape": list(shape), "ancestry_source": source, "pseudo_task": run.splits.description,
         "pseudo_test": metrics, "meta_losses": loss.meta_losses},
    )  # fmt: skip
    learngene.save(output_dir / LEARNGENE_DIR)
    save_weights(loss.meta, output_dir / LEARNGENE_DIR / "meta_net.safetensors")
    (output_dir / "weights.json").write_text(json.dumps(choice["weights"]))
    return learngene, choice


def _named_on_mismatch(what: str, forward: Any, inputs: torch.Tensor) -> Any:
    """`forward(inputs)`; a model that cannot run on the data is one ModelError naming `what`."""
    try:
        return forward(inputs)
    except MISMATCH_ERRORS as exc:
        raise ModelError(
            f"{what} cannot run on a training batch (inputs {tuple(inputs.shape)}): {first_line(exc)}"
        ) from None


def format_scores(choice: dict[str, Any], prefixes: list[str]) -> str:
    """The ranking table `condense` prints."""
    title = "ancestry layers by aggregated transfer weight lambda_m (largest first):"
    return format_ranking(title, "lambda_m", choice, prefixes)
