"""Bad inputs through the `sws` console script: one `sws: error:` line naming the culprit, exit code 2.

The table runs in one fresh interpreter (`run_named_console_cases`), so torch is imported once for all cases.
"""

from __future__ import annotations

import json

import pytest

from learngene_core.testing import one_error_line, run_named_console_cases

ARCH = {"embed_dim": 64, "num_heads": 4, "mlp_ratio": 4.0, "in_chans": 1, "patch_size": 4, "img_size": 16}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    manifests = {
        "tleg": {"method": "tleg", "arch": ARCH, "spec": {}, "num_classes": 5},
        "no-classes": {"method": "sws", "arch": ARCH, "spec": {}},
        "list-arch": {"method": "sws", "arch": [64, 4], "spec": {}, "num_classes": 5},
    }
    for name, manifest in manifests.items():
        (tmp / name).mkdir()
        (tmp / name / "manifest.json").write_text(json.dumps(manifest))
    (tmp / "latin1.yaml").write_bytes(b"train:\n  lr: 0.1  # caf\xe9\n")

    def expand(lg: str) -> list[str]:
        return ["expand", "--learngene", str(tmp / lg), "--depth", "3", "--output-dir", str(tmp / "out")]

    cases = {
        "a tleg learngene": (expand("tleg"), "holds a tleg learngene, not sws"),
        "manifest without num_classes": (expand("no-classes"), "'num_classes' is missing"),
        "manifest with a list as arch": (expand("list-arch"), "'arch' is missing or not a mapping"),
        "non-UTF-8 config": (["extract", "--config", str(tmp / "latin1.yaml"), "--output-dir", str(tmp / "o1")], "not UTF-8"),
        "seed=-1": (["extract", "--config", "tiny", "--output-dir", str(tmp / "o2"), "seed=-1"], "seed must be in [0,"),
    }  # fmt: skip
    return run_named_console_cases("sws.cli", cases)


CASES = [
    "a tleg learngene",
    "manifest without num_classes",
    "manifest with a list as arch",
    "non-UTF-8 config",
    "seed=-1",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_with_exit_code_2(results, case):
    result, culprit = results[case]
    one_error_line(result, "sws", culprit)
