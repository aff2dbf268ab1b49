"""Instruction records in the reference's layout: JSON lists (`train.json`, `test.json`) or JSON lines.

Each record is `{"instruction": str, "input": str (optional), "output": str, "task_type": int}` plus an
optional `"options": [str, ...]` (answer choices, scored by log-likelihood in `loramoe eval`). Errors name
the file and the line of the bad record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from learngene_core.data.json_records import read_json_records
from learngene_core.errors import DataError

SUFFIXES = (".json", ".jsonl")
LAYOUT = (
    "a .json list or .jsonl file of records, or a folder with train.json(l) (or train/*.json(l)) and "
    "optional val.json(l) and test.json(l)"
)


@dataclass
class Record:
    """One instruction sample; `where` is 'file:line' for error messages."""

    instruction: str
    output: str
    task_type: int
    input: str = ""
    options: list[str] | None = None
    where: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The prompt text: instruction, then the input on a new line when there is one."""
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction


def split_files(path: Path) -> dict[str, list[Path]]:
    """The files of each split under `path` (a file is the train split)."""
    if not path.exists():
        raise DataError(f"data.path={path} does not exist; expected {LAYOUT}")
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise DataError(f"data.path={path}: a '{path.suffix}' file; expected {LAYOUT}")
        return {"train": [path]}
    files: dict[str, list[Path]] = {}
    for part in ("train", "val", "test"):
        found = [path / f"{part}{s}" for s in SUFFIXES if (path / f"{part}{s}").is_file()]
        folder = path / part
        if not found and folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES)
        if found:
            files[part] = found
    if "train" not in files:
        raise DataError(f"data.path={path}: no train.json, train.jsonl or train/ folder; expected {LAYOUT}")
    return files


def read_records(file: Path, num_task_types: int) -> list[Record]:
    """All records of `file`, validated; DataError naming `file:line` for the first bad one."""
    records = [_record(where, obj, num_task_types) for where, obj in read_json_records(file)]
    if not records:
        raise DataError(f"{file}: no records")
    return records


def _record(where: str, obj: object, num_task_types: int) -> Record:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a record must be a JSON object, got {type(obj).__name__}")
    for key in ("instruction", "output"):
        if not isinstance(obj.get(key), str):
            raise DataError(f"{where}: missing string field '{key}'")
    if not isinstance(obj.get("input", ""), str):
        raise DataError(f"{where}: field 'input' must be a string")
    task_type = obj.get("task_type")
    if task_type is None:
        raise DataError(f"{where}: missing field 'task_type' (an integer 0..{num_task_types - 1})")
    if not isinstance(task_type, int) or isinstance(task_type, bool) or not 0 <= task_type < num_task_types:
        raise DataError(
            f"{where}: unknown task_type {task_type!r}; known task types are 0..{num_task_types - 1} "
            "(loramoe.task_type_groups maps each to an expert group)"
        )
    options = obj.get("options")
    if options is not None and (
        not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options)
    ):
        raise DataError(f"{where}: 'options' must be a non-empty list of strings")
    if options is not None and obj["output"] not in options:
        raise DataError(f"{where}: 'output' is not one of the record's 'options'")
    known = {"instruction", "input", "output", "task_type", "options"}
    return Record(
        instruction=obj["instruction"],
        output=obj["output"],
        task_type=task_type,
        input=obj.get("input", ""),
        options=options,
        where=where,
        extra={k: v for k, v in obj.items() if k not in known},
    )


def write_records(records: list[Record], path: Path) -> None:
    """Write records as a JSON list (`.json`) or JSON lines (`.jsonl`)."""
    rows = []
    for r in records:
        row = {"instruction": r.instruction, "input": r.input, "output": r.output, "task_type": r.task_type}
        if r.options is not None:
            row["options"] = r.options
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path.write_text(json.dumps(rows, indent=1))
