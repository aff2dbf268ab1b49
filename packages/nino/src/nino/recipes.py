"""The tasks by name, as data: model, dataset, AdamW learning rate and batch size (`nino list` reads them without
importing torch; `nino.tasks.build_task` builds them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LM_VOCAB, LM_SEQ = 128, 32


@dataclass(frozen=True)
class Recipe:
    """A task: its model (`nino.tasks.MODELS`), dataset, AdamW learning rate, batch size and data options."""

    model: str
    data: str
    lr: float
    batch_size: int
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None


_SYNTH = {"num_samples": 2000, "image_size": 16, "channels": 3, "noise": 2.0}
_TEXT = {"vocab_size": LM_VOCAB, "num_samples": 512}
RECIPES: dict[str, Recipe] = {
    "cnn-digits-16": Recipe("cnn-digits-16", "digits", 6e-3, 64),
    "cnn-digits-32": Recipe("cnn-digits-32", "digits", 6e-3, 64),
    "cnn-synth-16": Recipe("cnn-synth-16", "synthetic-images", 3e-3, 64, _SYNTH),
    "cnn-synth-32": Recipe("cnn-synth-32", "synthetic-images", 3e-3, 64, _SYNTH),
    "mlp-digits": Recipe("mlp-digits", "digits", 3e-3, 64),
    "gpt2-tiny": Recipe("gpt2-tiny", "synthetic-text", 2e-3, 16, _TEXT),
    "gpt2-3-24": Recipe("gpt2-3-24", "synthetic-text", 2e-3, 16, _TEXT),
    "llama-tiny": Recipe("llama-tiny", "synthetic-text", 2e-3, 16, _TEXT),
    "cnn-digits-8": Recipe("cnn-digits-8", "digits", 6e-3, 64),
    "cnn-digits-24": Recipe("cnn-digits-24", "digits", 6e-3, 64),
    "cnn-digits-16-d4": Recipe("cnn-digits-16-d4", "digits", 3e-3, 64),
    "cnn-synth-8": Recipe("cnn-synth-8", "synthetic-images", 3e-3, 64, _SYNTH),
    "cnn-synth-24": Recipe("cnn-synth-24", "synthetic-images", 3e-3, 64, _SYNTH),
    "cnn-synth-16-d2": Recipe("cnn-synth-16-d2", "synthetic-images", 6e-3, 64, _SYNTH),
    "mlp-digits-64": Recipe("mlp-digits-64", "digits", 2e-3, 64),
    "mlp-digits-d3": Recipe("mlp-digits-d3", "digits", 3e-3, 64),
    "mlp-digits-48": Recipe("mlp-digits-48", "digits", 3e-3, 64),
    "mlp-synth": Recipe("mlp-synth", "synthetic-images", 1e-3, 64, _SYNTH),
    "gpt2-1-16": Recipe("gpt2-1-16", "synthetic-text", 3e-3, 16, _TEXT),
    "gpt2-2-24": Recipe("gpt2-2-24", "synthetic-text", 2e-3, 16, _TEXT),
    "llama-1-24": Recipe("llama-1-24", "synthetic-text", 2e-3, 16, _TEXT),
    "cnn-digits-12": Recipe("cnn-digits-12", "digits", 3e-3, 64),
    "cnn-digits-20": Recipe("cnn-digits-20", "digits", 1e-2, 64),
    "cnn-digits-8-d2": Recipe("cnn-digits-8-d2", "digits", 6e-3, 32),
    "cnn-synth-12": Recipe("cnn-synth-12", "synthetic-images", 6e-3, 64, _SYNTH),
    "cnn-synth-20": Recipe("cnn-synth-20", "synthetic-images", 2e-3, 64, _SYNTH),
    "cnn-synth-8-d4": Recipe("cnn-synth-8-d4", "synthetic-images", 3e-3, 32, _SYNTH),
    "mlp-digits-16": Recipe("mlp-digits-16", "digits", 6e-3, 64),
    "mlp-digits-96": Recipe("mlp-digits-96", "digits", 1e-3, 64),
    "mlp-digits-d1": Recipe("mlp-digits-d1", "digits", 3e-3, 32),
    "mlp-synth-64": Recipe("mlp-synth-64", "synthetic-images", 3e-4, 64, _SYNTH),
    "gpt2-2-16": Recipe("gpt2-2-16", "synthetic-text", 3e-3, 16, _TEXT),
    "gpt2-1-32": Recipe("gpt2-1-32", "synthetic-text", 1e-3, 16, _TEXT),
    "llama-2-16": Recipe("llama-2-16", "synthetic-text", 4e-3, 16, _TEXT),
}
TASKS = sorted(RECIPES)
# Tasks for choosing among meta-training candidates (tools/bench/nino_select.py): none is trained on by the
# collect-cpu presets, none is run by tools/bench/nino_speedup.py, so choosing here does not tune on its test set.
VALIDATION_TASKS = ("cnn-digits-24", "cnn-synth-24", "mlp-digits-48", "gpt2-2-24")


def task_names() -> list[str]:
    """Names accepted by `build_task`."""
    return list(TASKS)
