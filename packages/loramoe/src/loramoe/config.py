"""`LoraMoEConfig`: where the LoRA experts go, how many, their rank, the router and the balancing loss."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from learngene_core.checkpoint import read_json_file
from learngene_core.errors import ConfigError

CONFIG_NAME = "adapter_config.json"
DEFAULT_GROUP_NAMES = ["world-knowledge", "downstream"]


class LoraMoEConfigError(ConfigError, ValueError):
    """A bad LoraMoEConfig value (a ConfigError; also a ValueError so core config loading names the key)."""


@dataclass
class LoraMoEConfig:
    """The settings of a LoRAMoE adapter (peft-style: every field has a default).

    Expert groups: by default the first half of the experts is the world-knowledge group and the second half
    the downstream-task group; samples of task_type 1 belong to the world-knowledge group and task_type 0 to
    the downstream group (as in the reference code).
    """

    # Names of the linears to wrap: a list of name suffixes ("gate_proj" matches "...mlp.gate_proj") or one
    # regular expression matched against the full module name. None: the model's FFN projections.
    target_modules: list[str] | str | None = None
    num_experts: int = 8  # N LoRA experts per wrapped linear
    rank: int = 4  # r of every expert
    alpha: float = 32.0  # output scaling alpha / r (applied per expert, as in the paper)
    dropout: float = 0.05  # dropout on the experts' input (the router sees the un-dropped input)
    router: Literal["dense", "topk"] = "dense"  # dense softmax over all experts, or softmax over the top k
    top_k: int = 2  # experts per token when router == "topk"
    blc_weight: float = 0.1  # beta: weight of the localised balancing loss (0 turns it off)
    blc_alpha: float = 0.1  # delta: imbalance between the sample's own expert group and the others
    mask_padding: bool = False  # exclude padding tokens from the expert importance Q (reference: off)
    expert_groups: list[list[int]] | None = None  # expert indices of each group; None: two halves
    task_type_groups: list[int] | None = None  # group index of each task_type id; None: [1, 0]
    group_names: list[str] | None = (
        None  # names of the groups (usage tables); None: world-knowledge, downstream
    )
    extra: dict[str, Any] = field(default_factory=dict)  # free-form metadata saved with the adapter

    def __post_init__(self) -> None:
        for name in ("num_experts", "rank"):
            if getattr(self, name) < 1:
                raise LoraMoEConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise LoraMoEConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.blc_weight < 0:
            raise LoraMoEConfigError(f"blc_weight must be >= 0, got {self.blc_weight}")
        if not -1.0 <= self.blc_alpha <= 1.0:
            raise LoraMoEConfigError(f"blc_alpha must be in [-1, 1], got {self.blc_alpha}")
        if self.router == "topk" and not 1 <= self.top_k <= self.num_experts:
            raise LoraMoEConfigError(
                f"top_k must be in [1, num_experts={self.num_experts}], got {self.top_k}"
            )
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise LoraMoEConfigError("target_modules is an empty list; name at least one module or use null")
        groups = self.groups()
        seen: set[int] = set()
        for members in groups:
            for n in members:
                if not 0 <= n < self.num_experts or n in seen:
                    raise LoraMoEConfigError(
                        f"expert_groups: expert {n} is out of range 0..{self.num_experts - 1} or listed twice"
                    )
                seen.add(n)
        for t, g in enumerate(self.task_groups()):
            if not 0 <= g < len(groups):
                raise LoraMoEConfigError(f"task_type_groups: task_type {t} maps to unknown group {g}")
        if self.group_names is not None and len(self.group_names) != len(groups):
            raise LoraMoEConfigError(
                f"group_names has {len(self.group_names)} names for {len(groups)} groups"
            )

    # ------------------------------------------------------------------------------------------ groups

    def groups(self) -> list[list[int]]:
        """Expert indices of each group (default: world-knowledge = first half, downstream = second half)."""
        if self.expert_groups is not None:
            return [list(g) for g in self.expert_groups]
        if self.num_experts % 2:
            raise LoraMoEConfigError(
                f"num_experts={self.num_experts} is odd: the default two expert groups need an even number; "
                "give expert_groups explicitly"
            )
        half = self.num_experts // 2
        return [list(range(half)), list(range(half, self.num_experts))]

    def task_groups(self) -> list[int]:
        """Group index of each task_type id (default: task_type 0 -> downstream, 1 -> world-knowledge)."""
        return list(self.task_type_groups) if self.task_type_groups is not None else [1, 0]

    def names(self) -> list[str]:
        """Display names of the groups."""
        if self.group_names is not None:
            return list(self.group_names)
        if self.expert_groups is None:
            return list(DEFAULT_GROUP_NAMES)
        return [f"group{g}" for g in range(len(self.groups()))]

    @property
    def num_task_types(self) -> int:
        return len(self.task_groups())

    # ------------------------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> LoraMoEConfig:
        """Build from plain data; unknown keys and bad values are one ConfigError naming `source`."""
        from learngene_core.config import from_dict

        return from_dict(cls, data, source=source)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": "loramoe", **self.to_dict()}, indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> LoraMoEConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"no {CONFIG_NAME} in {directory}: not a loramoe adapter directory")
        data = read_json_file(path, ConfigError)
        if data.pop("method", None) != "loramoe":
            raise ConfigError(f'{path} is not a loramoe adapter config (no "method": "loramoe")')
        return cls.from_dict(data, source=str(path))
