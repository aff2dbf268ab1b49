"""Discovery of method packages through the `learngene.methods` entry-point group."""

import sys

import pytest

from learngene_core.methods import GROUP, MethodInfo, discover_methods


def fake_distribution(root, dist: str, version: str, entry_points: dict[str, str], summary: str = "") -> None:
    """Write an installed-looking distribution (a .dist-info directory) under `root`."""
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nSummary: {summary}\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A sys.path entry holding fake plugins (modules named fakemethod*), forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakemethod")]:
        del sys.modules[name]


def by_name(methods: list[MethodInfo]) -> dict[str, MethodInfo]:
    return {m.name: m for m in methods}


def test_installed_method_is_discovered_with_version_and_summary(plugin_path):
    (plugin_path / "fakemethod.py").write_text(
        '"""Fake method: inherits nothing.\n\nThe rest of the docstring is not shown.\n"""\n'
    )
    fake_distribution(plugin_path, "fakemethod", "0.1", {"fake": "fakemethod"})
    found = by_name(discover_methods())
    assert found["fake"] == MethodInfo(
        name="fake", distribution="fakemethod", version="0.1", summary="Fake method: inherits nothing."
    )


def test_entry_point_to_an_object_uses_its_docstring(plugin_path):
    (plugin_path / "fakemethod_objects.py").write_text(
        '"""Module docstring."""\n\n\ndef run():\n    """Run the object method."""\n\n\ndef nodoc():\n    pass\n'
    )
    fake_distribution(
        plugin_path,
        "fakemethod-objects",
        "2.0",
        {"obj": "fakemethod_objects:run", "bare": "fakemethod_objects:nodoc"},
    )
    found = by_name(discover_methods())
    assert found["obj"].summary == "Run the object method."
    assert found["obj"].version == "2.0"
    assert found["bare"].summary == ""


def test_broken_plugin_is_listed_with_the_failure_instead_of_raising(plugin_path):
    (plugin_path / "fakemethod.py").write_text('"""Works."""\n')
    fake_distribution(plugin_path, "fakemethod", "0.1", {"fake": "fakemethod"})
    fake_distribution(plugin_path, "brokenmethod", "0.3", {"broken": "learngene_no_such_module_xyz"})
    found = by_name(discover_methods())
    broken = found["broken"]
    assert (broken.distribution, broken.version) == ("brokenmethod", "0.3")
    assert broken.summary.startswith("(failed to import")
    assert "learngene_no_such_module_xyz" in broken.summary
    assert found["fake"].summary == "Works."  # the broken one does not hide the others


def test_plugin_raising_on_import_is_listed_with_the_error(plugin_path):
    (plugin_path / "fakemethod.py").write_text('raise RuntimeError("needs a GPU")\n')
    fake_distribution(plugin_path, "fakemethod", "0.1", {"fake": "fakemethod"})
    assert "needs a GPU" in by_name(discover_methods())["fake"].summary


def test_methods_are_sorted_by_name(plugin_path):
    for module in ("zeta", "alpha", "mid"):
        (plugin_path / f"fakemethod_{module}.py").write_text(f'"""{module}."""\n')
    fake_distribution(
        plugin_path, "fakemethod", "0.1", {m: f"fakemethod_{m}" for m in ("zeta", "alpha", "mid")}
    )
    names = [m.name for m in discover_methods()]
    assert names == sorted(names)
    assert {"zeta", "alpha", "mid"} <= set(names)
