"""A target that does not import says which part of its path is wrong."""

from __future__ import annotations

import pytest

from factory.build.targets import import_target
from factory.errors import TargetImportError
from factory.registry.table import Provenance, Registration


def hint_for(target: str) -> str:
    reg = Registration("model", "toy", target, Provenance("toy.yaml", 7, "path"))
    with pytest.raises(TargetImportError) as err:
        import_target(reg)
    assert err.value.file == "toy.yaml" and err.value.line == 7
    return err.value.hint or ""


def test_a_missing_submodule_of_an_installed_package_is_a_typo_to_fix():
    assert hint_for("factory.models.configration:Config") == (
        "package 'factory' has no module 'factory.models.configration'; did you mean 'factory.models.configuration'?"
    )


def test_a_misspelt_package_in_the_middle_of_the_path():
    assert hint_for("factory.modls.configuration:Config") == (
        "package 'factory' has no module 'factory.modls'; did you mean 'factory.models.configuration'?"
    )


def test_no_close_name_says_what_is_missing_only():
    assert hint_for("factory.models.zzzzqqq:Config") == "package 'factory' has no module 'factory.models.zzzzqqq'"


def test_a_missing_top_level_package_is_something_to_install():
    assert hint_for("no_such_package_xyz.models:Model") == (
        "no installed package provides 'no_such_package_xyz': install it, or fix the module path "
        "'no_such_package_xyz.models'"
    )


def test_a_module_that_imports_a_missing_package(tmp_path, monkeypatch):
    (tmp_path / "needs_missing.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert hint_for("needs_missing:Model") == (
        "'needs_missing' imports 'no_such_dependency_xyz', which is not installed: install the package that provides it"
    )


def test_a_misspelt_class_name():
    assert hint_for("factory.models.configuration:Confg") == "did you mean 'Config'?"
    assert hint_for("factory.models.configuration:config") == "did you mean 'Config'?"
