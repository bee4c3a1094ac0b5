"""factory.registry.sources: walking registry directories that hold links, loops and things that are not files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import factory
from factory.cli.main import main
from factory.errors import RegistryError
from factory.registry.sources import Source


@pytest.fixture
def tree(reg_env, tmp_path: Path, arch_yaml) -> Path:
    """A registry directory beside an isolated built-in one (the task table only): loads take milliseconds."""
    root = tmp_path / "reg"
    (root / "models").mkdir(parents=True)
    (root / "models" / "alpha.yaml").write_text(arch_yaml("alpha"))
    return root


@pytest.mark.parametrize(
    "links",
    [
        {"models/loop": "."},  # a link to its own directory
        {"models/up": ".."},  # to the root
        {"models/a": "b", "models/b": "a"},  # two links pointing at each other (ELOOP)
        {"models/self.yaml": "self.yaml"},  # a file link to itself (ELOOP)
        {"models/deep/x": "../.."},  # from a subdirectory back up
    ],
    ids=["self", "parent", "mutual", "self-file", "deep"],
)
def test_link_loops_are_walked_once(tree: Path, links: dict[str, str], capsys):
    for name, target in links.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, tree / name)
    files = Source("path", tree).files()
    assert [f.relative_to(tree).as_posix() for f in files if f.name == "alpha.yaml"] == ["models/alpha.yaml"]
    if "models/self.yaml" in links:  # a YAML name that cannot be read: reported, not skipped
        with pytest.raises(RegistryError, match="self.yaml: cannot be read"):
            factory.load_registry(paths=[tree], include_plugins=False, packs=False)
    else:
        assert "alpha" in factory.load_registry(paths=[tree], include_plugins=False, packs=False).architectures
        assert main(["validate", "--quiet", str(tree)]) == 0


def test_a_link_to_another_directory_is_followed_once(tree: Path, tmp_path: Path, arch_yaml):
    other = tmp_path / "other"
    other.mkdir()
    (other / "beta.yaml").write_text(arch_yaml("beta"))
    os.symlink(other, tree / "linked")
    os.symlink(other, tree / "again")  # the same real directory under a second name
    names = [f.name for f in Source("path", tree).files()]
    assert names.count("beta.yaml") == 1 and "alpha.yaml" in names


def test_dangling_links_and_fifos_named_yaml_are_reported(tree: Path, finishes):
    os.symlink("nowhere.yaml", tree / "models" / "gone.yaml")
    with pytest.raises(RegistryError, match="gone.yaml: file does not exist"):
        factory.load_registry(paths=[tree], include_plugins=False, packs=False)
    (tree / "models" / "gone.yaml").unlink()
    os.mkfifo(tree / "models" / "pipe.yaml")
    with pytest.raises(RegistryError, match="pipe.yaml: is a FIFO"):
        finishes(lambda: factory.load_registry(paths=[tree], include_plugins=False, packs=False))
    assert finishes(lambda: main(["validate", str(tree)])) == 1


def test_a_source_root_that_vanished(tmp_path: Path):
    with pytest.raises(RegistryError, match="path registry source cannot be read"):
        Source("path", tmp_path / "gone").files()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every directory")
def test_an_unreadable_directory_is_a_registry_error(tree: Path):
    (tree / "models").chmod(0)
    try:
        with pytest.raises(RegistryError, match="registry directory cannot be read"):
            Source("path", tree).files()
    finally:
        (tree / "models").chmod(0o755)
