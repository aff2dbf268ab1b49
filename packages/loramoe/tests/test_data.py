"""Instruction data: the reference layout, prompt masking, padding, and bad records named by file and line."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from learngene_core.config import DataConfig
from learngene_core.data.tokenizers import ByteTokenizer
from learngene_core.errors import DataError
from loramoe.data import IGNORE, Collator, InstructionDataset, PromptCodec, build_instruction_data
from loramoe.records import Record, read_records, write_records
from loramoe.synthetic import synthetic_tasks

GOOD = {
    "instruction": "Question: capital of France?\nAnswer:",
    "input": "",
    "output": "Paris",
    "task_type": 1,
}


def write_json_list(path, records):
    path.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    return path


def test_reference_layout_loads_train_folder_and_test_file(tmp_path):
    (tmp_path / "train").mkdir()
    write_json_list(tmp_path / "train" / "train.json", [GOOD] * 12)
    write_json_list(tmp_path / "test.json", [{**GOOD, "task_type": 0, "output": "x"}] * 3)
    data = build_instruction_data(DataConfig(name="instructions", path=str(tmp_path), seq_len=64), 0, 2)
    assert (len(data.splits.train), len(data.splits.test)) == (11, 3) and len(data.splits.val) == 1
    assert data.splits.test.records[0].output == "x"


def test_prompt_tokens_are_masked_out_of_the_loss():
    codec = PromptCodec(ByteTokenizer())
    record = Record("Reverse.\nabc", "cba", 0)
    (inputs, labels), = InstructionDataset([record], codec, seq_len=64)  # fmt: skip
    prompt = len("Reverse.\nabc") + 1  # + end-of-text separator
    assert inputs["input_ids"].tolist() == list(b"Reverse.\nabc") + [256] + list(b"cba") + [256]
    assert labels[:prompt].tolist() == [IGNORE] * prompt
    assert labels[prompt:].tolist() == list(b"cba") + [256]
    assert int(inputs["task_types"]) == 0


def test_collator_right_pads_and_masks():
    codec = PromptCodec(ByteTokenizer())
    ds = InstructionDataset([Record("a", "b", 0), Record("long prompt", "answer", 1)], codec, seq_len=64)
    inputs, labels = Collator(codec.pad)([ds[0], ds[1]])
    assert inputs["input_ids"].shape == labels.shape == inputs["attention_mask"].shape == (2, 19)
    assert inputs["attention_mask"][0].tolist() == [1] * 4 + [0] * 15
    assert (labels[0, 4:] == IGNORE).all() and inputs["task_types"].tolist() == [0, 1]


def test_input_field_is_joined_to_the_instruction():
    assert Record("Summarise.", "s", 0, input="a text").source == "Summarise.\na text"


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"input": "", "output": "Paris", "task_type": 1}, "missing string field 'instruction'"),
        ({"instruction": "q", "task_type": 1}, "missing string field 'output'"),
        ({"instruction": "q", "output": "a"}, "missing field 'task_type'"),
        ({"instruction": "q", "output": "a", "task_type": 5}, "unknown task_type 5"),
        ({"instruction": "q", "output": "a", "task_type": "qa"}, "unknown task_type 'qa'"),
        ({"instruction": "q", "output": "a", "task_type": 0, "options": ["b"]}, "not one of the record's"),
    ],
)
def test_bad_record_in_json_list_names_file_and_line(tmp_path, bad, message):
    path = write_json_list(tmp_path / "train.json", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(DataError, match=message) as err:
        read_records(path, num_task_types=2)
    assert f"{path}:4:" in str(err.value)  # "[" is line 1, the third record is on line 4


def test_bad_record_in_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "task_type": 3}) + "\n")
    with pytest.raises(DataError, match=rf"{path}:3: unknown task_type 3"):
        read_records(path, num_task_types=2)
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(DataError, match=rf"{path}:2: not valid JSON"):
        read_records(path, num_task_types=2)


def test_missing_path_and_unknown_dataset_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        build_instruction_data(DataConfig(name="instructions", path=str(tmp_path / "nowhere")), 0, 2)
    with pytest.raises(DataError, match="did you mean 'instructions'"):
        build_instruction_data(DataConfig(name="instruction"), 0, 2)


def test_synthetic_tasks_are_seeded_two_task_data_that_round_trips_through_files(tmp_path):
    train, test = synthetic_tasks(seed=3, num_samples=40)
    again, _ = synthetic_tasks(seed=3, num_samples=40)
    assert [r.source for r in train] == [r.source for r in again]
    assert {r.task_type for r in train} == {0, 1} and len(test) == 10
    assert all(r.output == r.source.split("\n")[1][::-1] for r in train if r.task_type == 0)
    assert all(r.output in r.options for r in train if r.task_type == 1)
    write_records(train, tmp_path / "train.jsonl")
    assert [r.output for r in read_records(tmp_path / "train.jsonl", 2)] == [r.output for r in train]
    assert torch.tensor([r.task_type for r in train]).bincount().min() > 5


def test_records_kept_per_split_and_task_type_are_reported_and_a_vanished_type_warns(tmp_path):
    long = {**GOOD, "task_type": 0, "instruction": "Read the article and answer. " + "word " * 20}
    write_json_list(tmp_path / "train.json", [GOOD] * 5 + [long] * 4)
    write_json_list(tmp_path / "test.json", [GOOD] * 2 + [long] * 3)
    cfg = DataConfig(name="instructions", path=str(tmp_path), seq_len=48, options={"val_fraction": 0.0})
    with pytest.warns(UserWarning) as caught:
        data = build_instruction_data(cfg, 0, 2)
    assert "train 5/9 (task types 0: 0/4, 1: 5/5)" in data.splits.description
    assert "test 2/5 (task types 0: 0/3, 1: 2/2)" in data.splits.description
    messages = [str(w.message) for w in caught]
    assert any("drops all 4 train records of task type 0" in m and "balancing loss" in m for m in messages)
    assert any("drops all 3 test records of task type 0" in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a seq_len that fits everything keeps every record, silently
        data = build_instruction_data(DataConfig(**{**vars(cfg), "seq_len": 256}), 0, 2)
    assert "train 9/9 (task types 0: 4/4, 1: 5/5)" in data.splits.description
