"""factory diff reports component classes (``component_classes:``) added, removed, moved to another
architecture, and changes that do not alter dispatch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.registry import sources
from factory.review.diff import diff_specs, render

VIT = """\
schema_version: 1
kind: architecture
architecture: vit
tasks: {}
components:
  image-processor: pkg.vision:ViTImageProcessor
component_classes:
  image-processor: [ViTImageProcessor, ViTFeatureExtractor]
"""

DEIT = """\
schema_version: 1
kind: architecture
architecture: deit
tasks: {}
components:
  image-processor: pkg.vision:DeiTImageProcessor
component_classes:
  image-processor: [DeiTImageProcessor]
"""


def side(root: Path, files: dict[str, str]) -> Path:
    (root / "registry.d").mkdir(parents=True)
    shutil.copy(sources.builtin_dir() / "tasks.yaml", root / "registry.d" / "tasks.yaml")
    for name, text in files.items():
        path = root / "registry.d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def sides(tmp_path, monkeypatch):
    monkeypatch.delenv("FACTORY_REGISTRY_PATH", raising=False)
    base = side(tmp_path / "base", {"models/vit.yaml": VIT, "models/deit.yaml": DEIT})
    head_vit = VIT.replace("[ViTImageProcessor, ViTFeatureExtractor]", "[ViTImageProcessor]")
    head_deit = DEIT.replace("[DeiTImageProcessor]", "[DeiTImageProcessor, ViTFeatureExtractor, DeiTFeatureExtractor]")
    head = side(tmp_path / "head", {"models/vit.yaml": head_vit, "models/deit.yaml": "# moved\n" + head_deit})
    return base, head


def test_component_class_changes_item_by_item(sides):
    base, head = sides
    diff = diff_specs(str(base), str(head))
    items = {(c.section, c.key): c for c in diff.changes}
    # DeiTImageProcessor only moved a line down: not a change
    assert {k: (c.change, c.dispatch) for k, c in items.items() if k[0] == "component_class"} == {
        ("component_class", "image-processor / ViTFeatureExtractor"): ("moved", True),
        ("component_class", "image-processor / DeiTFeatureExtractor"): ("added", True),
    }
    moved = items[("component_class", "image-processor / ViTFeatureExtractor")]
    assert moved.summary == "image-processor / ViTFeatureExtractor: vit -> deit"
    assert moved.old_at == "registry.d/models/vit.yaml:8" and moved.new_at == "registry.d/models/deit.yaml:9"
    added = items[("component_class", "image-processor / DeiTFeatureExtractor")]
    assert added.summary == "image-processor class DeiTFeatureExtractor -> deit"
    assert diff.dispatch_changed


def test_text_and_markdown_name_the_section(sides, capsys):
    base, head = sides
    text = render(diff_specs(str(base), str(head)))
    assert "\ncomponent classes\n" in text
    assert "  ~ image-processor / ViTFeatureExtractor: vit -> deit" in text
    assert "#### Component classes" in render(diff_specs(str(base), str(head)), "markdown")
    assert main(["diff", str(base), str(head), "--exit-code"]) == 1
    assert "component classes" in capsys.readouterr().out


def test_a_removed_class_and_no_change(sides, tmp_path):
    base, _ = sides
    head = side(
        tmp_path / "gone", {"models/vit.yaml": VIT.replace(", ViTFeatureExtractor", ""), "models/deit.yaml": DEIT}
    )
    [change] = [c for c in diff_specs(str(base), str(head)).changes if c.section == "component_class"]
    assert (change.change, change.summary, change.dispatch) == (
        "removed",
        "image-processor / ViTFeatureExtractor removed (was -> vit)",
        True,
    )
    same = side(tmp_path / "same", {"vit.yaml": VIT, "deit.yaml": DEIT})  # moved files: no change at all
    assert not [c for c in diff_specs(str(base), str(same)).changes if c.section == "component_class"]


def test_a_changed_override_reason_is_no_dispatch_change(tmp_path):
    override = DEIT.replace("[DeiTImageProcessor]", "[{name: ViTImageProcessor, override: REASON}]").replace(
        "components:\n  image-processor: pkg.vision:DeiTImageProcessor\n", ""
    )
    roots = []
    for name, reason in (("a", "our files say ViT"), ("b", "our DeiT files say ViT")):
        root = side(tmp_path / name, {"models/vit.yaml": VIT, "models/deit.yaml": DEIT})
        (root / "overrides.d").mkdir()
        (root / "overrides.d" / "deit.yaml").write_text(override.replace("REASON", reason))
        roots.append(root)
    diff = diff_specs(str(roots[0]), str(roots[1]), dirs=("registry.d", "overrides.d"))
    [change] = [c for c in diff.changes if c.section == "component_class"]
    assert (change.change, change.dispatch) == ("changed", False)
    assert (
        change.summary
        == "image-processor / ViTImageProcessor: override: 'our files say ViT' -> 'our DeiT files say ViT'"
    )
    assert change.details == ("shadows -> vit (registry.d/models/vit.yaml:8, builtin)",)
