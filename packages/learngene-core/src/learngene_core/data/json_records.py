"""Records of a JSON-lines file or of a JSON list file, each with its `file:line` for error messages."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError


def read_json_records(file: Path) -> list[tuple[str, object]]:
    """(`file:line`, value) of every record of a `.json` list or a `.jsonl` file (one value per line).

    Not UTF-8 text, invalid JSON or a `.json` file that is no list is a DataError naming the file and line.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{file}: not UTF-8 text") from None
    return _json_list(file, text) if file.suffix == ".json" else _json_lines(file, text)


def _json_lines(file: Path, text: str) -> list[tuple[str, object]]:
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            out.append((f"{file}:{n}", _loads(f"{file}:{n}", line)))
    return out


def _json_list(file: Path, text: str) -> list[tuple[str, object]]:
    """The items of a JSON list with the line each starts on (json.loads alone loses positions)."""
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        raise DataError(f"{file}: expected a JSON list of records ('[' at line {_line(text, pos)})")
    pos = _skip(text, pos + 1)
    out: list[tuple[str, object]] = []
    if text.startswith("]", pos):
        return out
    while True:
        where = f"{file}:{_line(text, pos)}"
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        out.append((where, obj))
        pos = _skip(text, pos)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("]", pos):
            return out
        else:
            raise DataError(f"{file}:{_line(text, pos)}: not valid JSON (expected ',' or ']')")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _loads(where: str, line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
