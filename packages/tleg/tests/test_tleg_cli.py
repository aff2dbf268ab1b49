"""`tleg` console script, in-process: user errors are one `tleg: error: ...` line naming the culprit and
exit code 2; nothing is written on refusal; help and presets are discoverable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tleg.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *culprits: str) -> str:
    """Exit code 2 and exactly one stderr line `tleg: error: ...` containing every culprit."""
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{err}"
    assert lines[0].startswith("tleg: error: "), lines[0]
    for culprit in culprits:
        assert culprit in lines[0], f"{culprit!r} not named in: {lines[0]}"
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------- the learngene dir


@pytest.mark.parametrize("verb", ["expand", "train", "compare"])
def test_unknown_learngene_dir_is_one_line_error_naming_it(capsys, tmp_path, verb):
    missing = tmp_path / "no-such-learngene"
    out = tmp_path / "out"
    argv = {
        "expand": ["expand", "--learngene", missing, "--depth", "2", "--output-dir", out],
        "train": ["train", "--init", f"learngene:{missing}", "--depth", "2", "--config", "tiny-descendant",
                  "--output-dir", out],
        "compare": ["compare", "--learngene", missing, "--depths", "2", "--config", "tiny-descendant",
                    "--output-dir", out],
    }[verb]  # fmt: skip
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, str(missing))
    assert not out.exists()


def test_learngene_dir_without_manifest_is_one_line_error_naming_it(capsys, tmp_path):
    directory = tmp_path / "half-written"
    directory.mkdir()
    (directory / "learngene.safetensors").write_bytes(b"not really")
    code, _, err = run(
        capsys, "expand", "--learngene", directory, "--depth", "2", "--output-dir", tmp_path / "o"
    )
    assert_user_error(code, err, str(directory), "manifest.json")


# ------------------------------------------------------------------------------------- depth and layout


@pytest.mark.parametrize("depth", ["0", "-3"])
def test_depth_below_one_is_one_line_error(capsys, tmp_path, learngene_dir, depth):
    out = tmp_path / "out"
    code, _, err = run(capsys, "expand", "--learngene", learngene_dir, "--depth", depth, "--output-dir", out)
    assert_user_error(code, err, "--depth", depth)
    assert not out.exists()


def test_non_integer_depth_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "expand", "--learngene", learngene_dir, "--depth", "x", "--output-dir", tmp_path / "o"
    )
    assert_user_error(code, err, "--depth", "'x'")


def test_train_with_non_integer_depth_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "train", "--init", f"learngene:{learngene_dir}", "--depth", "x",
        "--config", "tiny-descendant", "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "--depth")


def test_layout_length_mismatch_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "expand", "--learngene", learngene_dir, "--depth", "3", "--layout", "0,1",
        "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "--layout", "2 entries", "--depth is 3")


def test_layout_other_than_0_to_L_minus_1_is_one_line_error(capsys, tmp_path, learngene_dir):
    out = tmp_path / "o"
    code, _, err = run(
        capsys,
        "expand",
        "--learngene",
        learngene_dir,
        "--depth",
        "3",
        "--layout",
        "0,0,1",
        "--output-dir",
        out,
    )
    assert_user_error(code, err, "layout")
    assert not out.exists()


def test_non_integer_layout_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "expand", "--learngene", learngene_dir, "--depth", "2", "--layout", "0,a",
        "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "'0,a'")


def test_compare_with_bad_depths_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "compare", "--learngene", learngene_dir, "--depths", "2,x", "--config", "tiny-descendant",
        "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "2,x")


@pytest.mark.parametrize("depths", [",", ""])
def test_compare_without_any_depth_is_one_line_error(capsys, tmp_path, learngene_dir, depths):
    out = tmp_path / "o"
    code, _, err = run(
        capsys, "compare", "--learngene", learngene_dir, "--depths", depths, "--config", "tiny-descendant",
        "--output-dir", out, "train.epochs=1", "train.progress=false",
    )  # fmt: skip
    assert_user_error(code, err, "--depths")


@pytest.mark.parametrize("img_size", ["0", "-16"])
def test_expand_to_non_positive_image_size_is_one_line_error(capsys, tmp_path, learngene_dir, img_size):
    out = tmp_path / "o"
    code, _, err = run(
        capsys, "expand", "--learngene", learngene_dir, "--depth", "2", "--img-size", img_size,
        "--output-dir", out,
    )  # fmt: skip
    assert_user_error(code, err, "--img-size", img_size)
    assert not out.exists()


def test_load_head_with_other_class_count_is_one_line_error(capsys, tmp_path, learngene_dir):
    out = tmp_path / "o"
    code, _, err = run(
        capsys, "expand", "--learngene", learngene_dir, "--depth", "2", "--num-classes", "3", "--load-head",
        "--output-dir", out,
    )  # fmt: skip
    assert_user_error(code, err, "head")
    assert not out.exists()


# ------------------------------------------------------------------------------- architecture mismatch


@pytest.mark.parametrize("verb", ["train", "compare"])
def test_descendant_config_of_other_width_is_one_line_error_naming_embed_dim(
    capsys, tmp_path, learngene_dir, verb
):
    out = tmp_path / "out"
    argv = (
        ["train", "--init", f"learngene:{learngene_dir}", "--depth", "2"]
        if verb == "train"
        else ["compare", "--learngene", learngene_dir, "--depths", "2"]
    )
    code, _, err = run(
        capsys, *argv, "--config", "tiny-descendant", "--output-dir", out,
        "model.kwargs.embed_dim=96", "train.progress=false",
    )  # fmt: skip
    assert_user_error(code, err, "embed_dim", "96", "64")
    assert not out.exists() or not any(out.iterdir())


# -------------------------------------------------------------------------------------- output dirs


def test_expand_into_non_empty_dir_refuses_and_leaves_it_untouched(capsys, tmp_path, learngene_dir):
    out = tmp_path / "taken"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "sub" / "model.safetensors").write_bytes(b"\x00\x01 precious")
    before, siblings = snapshot(out), sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(capsys, "expand", "--learngene", learngene_dir, "--depth", "2", "--output-dir", out)
    assert_user_error(code, err, str(out), "not empty")
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no temporary leftovers either


def test_train_into_non_empty_dir_refuses_and_leaves_it_untouched(capsys, tmp_path, learngene_dir):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(
        capsys, "train", "--init", f"learngene:{learngene_dir}", "--depth", "2", "--config", "tiny-descendant",
        "--output-dir", out, "train.progress=false",
    )  # fmt: skip
    assert_user_error(code, err, str(out))
    assert snapshot(out) == {"notes.txt": b"keep me"}


# ------------------------------------------------------------------------------------------ configs


def test_extract_without_ancestry_run_names_ancestry_run(capsys, tmp_path):
    out = tmp_path / "lg"
    code, _, err = run(capsys, "extract", "--config", "tiny", "--output-dir", out, "train.progress=false")
    assert_user_error(code, err, "ancestry.run")
    assert not out.exists()


def test_extract_with_missing_ancestry_run_names_its_config(capsys, tmp_path):
    missing = tmp_path / "no-run"
    code, _, err = run(
        capsys, "extract", "--config", "tiny", "--output-dir", tmp_path / "lg", f"ancestry.run={missing}",
        "train.progress=false",
    )  # fmt: skip
    assert_user_error(code, err, "ancestry.run", str(missing))


def test_extract_on_other_classes_than_the_ancestry_is_one_line_error(capsys, tmp_path, ancestry_dir):
    out = tmp_path / "lg"
    code, _, err = run(
        capsys, "extract", "--config", "tiny", "--output-dir", out, f"ancestry.run={ancestry_dir}",
        "data.classes=[5,6,7]", "train.progress=false",
    )  # fmt: skip
    assert_user_error(code, err, "5 classes", "3")
    assert not out.exists()


@pytest.mark.parametrize("verb", ["extract", "train"])
def test_unknown_config_key_is_one_line_error_naming_it(capsys, tmp_path, learngene_dir, verb):
    argv = (
        ["extract", "--config", "tiny"]
        if verb == "extract"
        else ["train", "--init", f"learngene:{learngene_dir}", "--depth", "2", "--config", "tiny-descendant"]
    )
    code, _, err = run(capsys, *argv, "--output-dir", tmp_path / "o", "train.bogus_key=1")
    assert_user_error(code, err, "train.bogus_key")


def test_unknown_method_setting_is_one_line_error_naming_it(capsys, tmp_path):
    code, _, err = run(
        capsys, "extract", "--config", "tiny", "--output-dir", tmp_path / "o", "method.stages=3"
    )
    assert_user_error(code, err, "method.stages")


def test_aux_depth_below_one_is_one_line_error_naming_it(capsys, tmp_path):
    out = tmp_path / "o"
    code, _, err = run(capsys, "extract", "--config", "tiny", "--output-dir", out, "method.aux_depth=0")
    assert_user_error(code, err, "method.aux_depth")
    assert not out.exists()


def test_unknown_preset_is_one_line_error_listing_presets(capsys, tmp_path):
    code, _, err = run(capsys, "extract", "--config", "tinyy", "--output-dir", tmp_path / "o")
    assert_user_error(code, err, "'tinyy'", "tiny-descendant")


def test_train_with_unknown_init_is_one_line_error(capsys, tmp_path, learngene_dir):
    code, _, err = run(
        capsys, "train", "--init", "pretrained", "--depth", "2", "--config", "tiny-descendant",
        "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "--init", "'pretrained'")


def test_train_from_scratch_without_learngene_names_the_flag(capsys, tmp_path):
    code, _, err = run(
        capsys, "train", "--init", "scratch", "--depth", "2", "--config", "tiny-descendant",
        "--output-dir", tmp_path / "o",
    )  # fmt: skip
    assert_user_error(code, err, "--learngene")


# ------------------------------------------------------------------------------------ help and list


def test_help_exits_zero_and_shows_examples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples" in out
    assert "tleg extract --config tiny" in out
    assert "tleg expand --learngene" in out
    assert "tleg compare --learngene" in out
    for verb in ("extract", "expand", "train", "compare", "list"):
        assert verb in out


@pytest.mark.parametrize("verb", ["extract", "expand", "train", "compare"])
def test_verb_help_exits_zero(capsys, verb):
    with pytest.raises(SystemExit) as info:
        main([verb, "--help"])
    assert info.value.code == 0
    assert "--output-dir" in capsys.readouterr().out


def test_list_shows_the_tleg_presets(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]  # "name  description"
    assert "tiny" in names and "tiny-descendant" in names
