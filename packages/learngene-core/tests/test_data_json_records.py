"""`read_json_records`: JSON lists and JSON lines, each record with the line it starts on."""

import pytest

from learngene_core.data.json_records import read_json_records
from learngene_core.errors import DataError


def test_json_list_items_carry_the_line_they_start_on(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('[\n  {"a": 1},\n\n  {"a": 2,\n   "b": 3}\n]\n')
    assert read_json_records(path) == [(f"{path}:2", {"a": 1}), (f"{path}:4", {"a": 2, "b": 3})]


def test_json_lines_skip_blank_lines_and_keep_line_numbers(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_json_records(path) == [(f"{path}:1", {"a": 1}), (f"{path}:3", {"a": 2})]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", '[{"a": 1},\n {"a": }]', r"bad\.json:2: not valid JSON"),
        ("bad.json", '{"a": 1}', r"bad\.json: expected a JSON list of records"),
        ("bad.jsonl", '{"a": 1}\n{oops\n', r"bad\.jsonl:2: not valid JSON"),
    ],
)
def test_bad_json_names_file_and_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message):
        read_json_records(tmp_path / name)


def test_non_utf8_file_is_a_data_error(tmp_path):
    (tmp_path / "x.jsonl").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="not UTF-8"):
        read_json_records(tmp_path / "x.jsonl")
