"""The learngene on disk: `learngene.safetensors` (learngene + inherited tensors) and `manifest.json`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import atomic_write_text, load_weights, read_json_file, save_weights
from ..errors import CheckpointError, ConfigError
from .backbones import backbone_named

TENSORS_NAME = "learngene.safetensors"
MANIFEST_NAME = "manifest.json"
ARCH_KEYS = ("embed_dim", "num_heads", "mlp_ratio", "in_chans")  # what a model must share with a learngene


@dataclass
class Learngene:
    """Learngene tensors (`<group>.<block tensor>`), inherited tensors (`inherited.<name>`) and a manifest."""

    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any]

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def backbone(self) -> str:
        """`timm-vit` or `hf-causal-lm` (manifests written before LMs were supported have none: timm-vit)."""
        return self.manifest.get("backbone", "timm-vit")

    @property
    def arch(self) -> dict[str, Any]:
        return self.manifest["arch"]

    @property
    def spec(self) -> dict[str, Any]:
        return self.manifest["spec"]

    def num_parameters(self, include_head: bool = False) -> int:
        return sum(t.numel() for k, t in self.tensors.items() if include_head or not k.startswith("head."))

    def save(self, directory: str | Path) -> Path:
        """Write the two files atomically, manifest last: a half-written learngene never loads."""
        directory = Path(directory)
        save_weights(self.tensors, directory / TENSORS_NAME)
        atomic_write_text(directory / MANIFEST_NAME, json.dumps(self.manifest, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path, method: str | None = None) -> Learngene:
        """Read a learngene directory; `method` (e.g. "tleg") must match the manifest when given."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_NAME
        if not directory.is_dir():
            raise CheckpointError(f"learngene directory not found: {directory}")
        if not manifest_path.is_file():
            raise CheckpointError(
                f"{directory} is not a learngene: no {MANIFEST_NAME} (write one with `extract`)"
            )
        manifest = read_json_file(manifest_path)
        check_manifest(manifest, manifest_path)
        if method is not None and manifest["method"] != method:
            raise CheckpointError(f"{directory} holds a {manifest['method']} learngene, not {method}")
        return cls(load_weights(directory / TENSORS_NAME), manifest)

    def check_model_kwargs(self, kwargs: dict[str, Any], where: str) -> None:
        """Refuse a model config whose width/heads/MLP/channels differ from the learngene's."""
        if self.backbone != "timm-vit":
            regularisation = self.regularisation_keys()
            for key, value in kwargs.items():
                if key in self.arch and key not in regularisation and value != self.arch[key]:
                    raise ConfigError(
                        f"{where}: {key}={value} but the {self.method} learngene has {key}={self.arch[key]}; "
                        "a learngene initialises models of its own architecture (any depth) only"
                    )
            return
        for key in ARCH_KEYS:
            if key in kwargs and kwargs[key] != self.arch[key]:
                raise ConfigError(
                    f"{where}: {key}={kwargs[key]} but the {self.method} learngene has {key}={self.arch[key]} "
                    f"(width {self.arch['embed_dim']}, {self.arch['num_heads']} heads); "
                    "a learngene initialises models of its own width only"
                )

    def regularisation_keys(self) -> tuple[str, ...]:
        """`model.kwargs` keys a descendant applies: ViT drop_path_rate, drop_rate, ...; an LM config's dropouts."""
        return backbone_named(self.backbone).regularisation_keys(self.arch)

    def descendant_model_kwargs(self, kwargs: dict[str, Any], where: str) -> dict[str, Any]:
        """The regularisation keys of a descendant's `model.kwargs` (`regularisation_keys`), to apply.

        Architecture keys equal to the learngene's are accepted (they change nothing); any other key would change
        the descendant's shape, which the learngene and --depth fix, so it is refused instead of dropped.
        """
        self.check_model_kwargs(kwargs, where)
        regularisation = self.regularisation_keys()
        own = self.arch if self.backbone != "timm-vit" else ARCH_KEYS
        shape_keys = [k for k in kwargs if k not in regularisation and k not in own]
        if shape_keys:
            fixed_by = (
                "a descendant's shape comes from the learngene (width, heads, patch), --depth and the data "
                "(image size, classes)"
                if self.backbone == "timm-vit"
                else "a language-model descendant's architecture comes from the learngene and --depth"
            )
            raise ConfigError(
                f"{where}.{shape_keys[0]}: {fixed_by}; model.kwargs takes only " + ", ".join(regularisation)
            )
        return {k: v for k, v in kwargs.items() if k in regularisation}


# manifest fields a learngene cannot be used without, and their JSON types
_MANIFEST_FIELDS = {"method": str, "arch": dict, "spec": dict}
_VIT_ARCH_FIELDS = {"embed_dim": int, "num_heads": int, "mlp_ratio": (int, float), "in_chans": int,
                    "patch_size": int, "img_size": int}  # fmt: skip


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """CheckpointError naming the field when a manifest lacks what expand/train read from it, or mistypes it."""

    def need(data: dict[str, Any], fields: dict[str, Any], where: str) -> None:
        for key, kind in fields.items():
            value = data.get(key)
            if value is None or isinstance(value, bool) or not isinstance(value, kind):
                raise CheckpointError(f"{path}: '{where}{key}' is missing or not {_kind_name(kind)}")

    need(manifest, _MANIFEST_FIELDS, "")
    backbone = manifest.get("backbone", "timm-vit")
    if backbone == "timm-vit":
        need(manifest["arch"], _VIT_ARCH_FIELDS, "arch.")
        if not isinstance(manifest.get("num_classes"), int) or manifest["num_classes"] < 1:
            raise CheckpointError(f"{path}: 'num_classes' is missing or not a positive integer")
    elif backbone == "hf-causal-lm":
        need(manifest["arch"], {"model_type": str}, "arch.")
    elif backbone == "layers":  # heur/auto: whole ancestry layers, by index into layer_prefixes
        prefixes, layers = manifest.get("layer_prefixes"), manifest["spec"].get("layers")
        if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) for p in prefixes):
            raise CheckpointError(f"{path}: 'layer_prefixes' is missing or not a list of module names")
        if (
            not isinstance(layers, list)
            or not layers
            or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(prefixes) for i in layers
            )
        ):
            raise CheckpointError(
                f"{path}: 'spec.layers' is missing or not a list of layer indices in 0..{len(prefixes) - 1}"
            )
    elif not isinstance(backbone, str):  # other kinds (e.g. layer learngenes) check their own fields
        raise CheckpointError(f"{path}: 'backbone' is not a string")


def _kind_name(kind: Any) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", dict: "a mapping"}
    return " or ".join(names[k] for k in kinds)
